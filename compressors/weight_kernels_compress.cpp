// compress_weights (DESIGN.md rules 1-7 for one tensor): prune, then quantize / binarize /
// half-round. Two fused paths skip passes over the weights for the common search setting,
// unstructured pruning with per-channel minmax quantization of contiguous rows: in place, one read
// pass (threshold + row maxima) then one sweep per row; out of place, one sweep from the source
// that fixes the few weights inside the threshold bracket afterwards. Everything else runs the
// kernels in sequence.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>
#include <tuple>
#include <utility>

#include "compressors/weight_kernels_internal.h"

namespace compsearch::compressors {

using namespace detail;

namespace {

#if COMPSEARCH_AVX2_PATHS
// Out-of-place unstructured pruning (k > 0 weights, or none for k = 0) + per-channel minmax
// quantization of contiguous rows in ONE read pass over `src`: a strided sample brackets the
// threshold key in [lo, hi]; each row's max is taken (the row then sits in L2) and the row is
// swept to `dst`, zeroing keys below lo, quantizing the others and setting aside the few inside
// the bracket. The selection then finishes on those candidates alone and only the ones it prunes
// are rewritten (as 0). A row whose max lies inside the bracket (its amax depends on the threshold)
// is redone whole at the end. Returns false, having written garbage to dst, when the bracket misses
// the threshold; the caller then takes the exact two-pass path.
bool sweep_prune_quantize(const float* src, float* dst, int64_t O, int64_t R, int64_t k, int qmax,
                          int8_t* q, std::vector<double>& scales) {
  const int64_t n = O * R;
  uint32_t lo = 0, hi = 0;
  if (k > 0) {
    // select_smallest's sample and first bracket (+-4 standard deviations of the sample
    // quantile); every candidate inside costs a second touch here, and a miss falls back to the
    // exact two-pass path instead of widening.
    KeySample sample(src, n, k);
    std::tie(lo, hi) = sample.bracket(sample.sigma4, 0x7fffffffu);
  }
  // Candidate keys are histogrammed as they are found (2^14 bins over [lo, hi]: 64 KiB per
  // thread, L2-resident during the sweep), so the bucket of the threshold is known without
  // another look at them.
  constexpr int kSweepHistogramBits = 14;
  int shift = 0;
  while (((hi - lo) >> shift) >= (1u << kSweepHistogramBits)) ++shift;
  const size_t bins = ((hi - lo) >> shift) + 1;
  const int threads = parallel_worth(static_cast<size_t>(n)) ? omp_get_max_threads() : 1;
  std::vector<std::vector<Candidate>> parts(threads);
  std::vector<std::vector<uint32_t>> hists(threads);
  std::vector<int64_t> part_below(threads, 0);
  std::vector<uint8_t> redo(O, 0), part_redo(threads, 0);
  scales.assign(O, 1.0);
#pragma omp parallel num_threads(threads)
  {
    const int t = omp_get_thread_num(), nt = omp_get_num_threads();
    const int64_t r0 = O * t / nt, r1 = O * (t + 1) / nt;
    if (k > 0) {
      parts[t].reserve(static_cast<size_t>((r1 - r0) * R / 64 + 64));
      hists[t].assign(bins, 0);
    }
    int64_t below = 0;
    for (int64_t o = r0; o < r1; ++o) {
      const float* s = src + o * R;
      const float amax = amax_contiguous(s, R);
      if (k > 0 && abs_key(amax) <= hi) {
        uint32_t m;
        redo[o] = 1;
        part_redo[t] = 1;
        const size_t first = parts[t].size();
        below += count_below_collect_inside(src, o * R, (o + 1) * R, lo, hi, parts[t], &m);
        for (size_t c = first; c < parts[t].size(); ++c)
          ++hists[t][(parts[t][c].key - lo) >> shift];
        continue;
      }
      scales[o] = scale_from_amax(amax, qmax);
      below +=
          sweep_row_avx2(s, dst + o * R, R, o * R, lo, hi, scales[o], qmax, q ? q + o * R : nullptr,
                         k > 0 ? &parts[t] : nullptr, k > 0 ? hists[t].data() : nullptr, shift,
                         o + 1 < r1 ? s + R : nullptr);
    }
    part_below[t] = below;
  }
  if (k == 0) return true;
  const bool any_redo = std::find(part_redo.begin(), part_redo.end(), 1) != part_redo.end();
  int64_t below = 0, inside = 0;
  for (int t = 0; t < threads; ++t)
    below += part_below[t], inside += static_cast<int64_t>(parts[t].size());
  if (k - 1 < below || k - 1 >= below + inside) return false;
  const int64_t rank = k - 1 - below;  // among the candidates
  // Lower buckets: all pruned. No structured binding: OpenMP regions read these (clang 14).
  const auto bucket_and_before = bucket_of_rank(hists, rank);
  const size_t bucket = bucket_and_before.first;
  const int64_t before = bucket_and_before.second;
  // Zero the candidates of lower buckets; set aside the threshold's bucket.
  std::vector<std::vector<Candidate>> found(threads);
#pragma omp parallel num_threads(threads)
  {
    const int t = omp_get_thread_num();
    const std::vector<Candidate>& part = parts[t];
    for (size_t ci = 0; ci < part.size(); ++ci) {
      const Candidate& c = part[ci];
      // dst lines left the cache during the sweep: ask for the ones a little ahead.
      if (ci + 16 < part.size()) __builtin_prefetch(dst + part[ci + 16].index, 1);
      const size_t b = (c.key - lo) >> shift;
      if (b == bucket) {
        found[t].push_back(c);
      } else if (b < bucket && !(any_redo && redo[c.index / R])) {
        dst[c.index] = 0.0f;
        if (q) q[c.index] = 0;
      }
    }
  }
  std::vector<Candidate> members;
  const Selection sel = select_in_bucket(found, rank, before, members);
  for (const Candidate& c : members) {
    const bool pruned =
        c.key < sel.t_key || std::binary_search(sel.ties.begin(), sel.ties.end(), c.index);
    if (pruned && !redo[c.index / R]) {
      dst[c.index] = 0.0f;
      if (q) q[c.index] = 0;
    }
  }
  if (!any_redo) return true;
#pragma omp parallel for schedule(dynamic) num_threads(threads)
  for (int64_t o = 0; o < O; ++o) {
    if (!redo[o]) continue;
    float* d = dst + o * R;
    std::memcpy(d, src + o * R, static_cast<size_t>(R) * sizeof(float));
    for (auto it = std::lower_bound(sel.ties.begin(), sel.ties.end(), o * R);
         it != sel.ties.end() && *it < (o + 1) * R; ++it)
      dst[*it] = 0.0f;
    zero_below(d, R, sel.t_key);
    scales[o] = scale_from_amax(amax_contiguous(d, R), qmax);
    prune_quantize_row(d, R, 0, scales[o], qmax, q ? q + o * R : nullptr);
  }
  return true;
}
#endif

}  // namespace

WeightCompressionResult compress_weights(std::span<float> w, const WeightLayout& layout,
                                         const LayerSetting& setting, QuantizedWeights* out) {
  check_size(w, layout);
  WeightCompressionResult res;
  const PruneSpec& p = setting.prune;
  const int bits = setting.w_bits;
  const bool quant = bits >= 2 && bits <= 8;
  if (bits != 32 && bits != 16 && !(bits >= 1 && bits <= 8))
    throw std::invalid_argument("w_bits " + std::to_string(bits) + " is not one of 1..8, 16, 32");

  // Fused path: unstructured pruning + per-channel minmax quantization of contiguous rows.
  if (p.kind == PruneKind::kUnstructured && quant && !layout.transposed &&
      setting.granularity.kind == GranularityKind::kPerChannel &&
      setting.w_calibration == WeightCalibration::kMinMax) {
    const int64_t n = static_cast<int64_t>(w.size());
    const int64_t k = static_cast<int64_t>(std::floor(p.ratio * static_cast<double>(n)));
    const int64_t O = layout.out_channels, R = layout.row_length();
    // One read pass selects the threshold and records each row's max |w|; then one sweep per row
    // prunes and quantizes it. A row's max survives pruning when it lies above the threshold, so it
    // is the row's amax after pruning; a row whose max lies below is all pruned (amax 0).
    Selection s;  // t_key 0 and no ties: nothing pruned
    std::vector<uint32_t> row_max;
    if (k > 0) s = select_smallest(w.data(), n, k, R, &row_max);
    const int qmax = qmax_for(bits);
    int8_t* q = nullptr;
    if (out) {
      out->bits = bits;
      out->granularity = setting.granularity;
      out->q.assign(n, 0);
      out->scales.assign(O, 1.0);
      q = out->q.data();
    }
    int64_t total = 0;
    float* data = w.data();
#pragma omp parallel for schedule(static) reduction(+ : total) if (parallel_worth(w.size()))
    for (int64_t o = 0; o < O; ++o) {
      float* row = data + o * R;
      // Tied weights at the threshold that the count reaches: zeroed first (key 0, so the sweep
      // below counts them again when the threshold key is above 0).
      int64_t ties_here = 0;
      for (auto it = std::lower_bound(s.ties.begin(), s.ties.end(), o * R);
           it != s.ties.end() && *it < (o + 1) * R; ++it, ++ties_here)
        data[*it] = 0.0f;
      uint32_t limit = s.t_key;
      int64_t pruned = limit == 0 ? ties_here : 0;
      float amax;
      if (k > 0 && row_max[o] > s.t_key) {
        std::memcpy(&amax, &row_max[o], sizeof amax);
      } else if (k > 0 && row_max[o] < s.t_key) {
        amax = 0.0f;
      } else {  // nothing pruned, or the row's max is the threshold itself: prune, then look
        if (limit) pruned += zero_below(row, R, limit);
        limit = 0;
        amax = amax_contiguous(row, R);
      }
      const double scale = scale_from_amax(amax, qmax);
      if (out) out->scales[o] = scale;
      total += pruned + prune_quantize_row(row, R, limit, scale, qmax, q ? q + o * R : nullptr,
                                           o + 1 < O ? row + R : nullptr);
    }
    res.pruned_weights = total;
    return res;
  }

  PruneMask mask;
  PruneMask* mask_ptr = bits == 1 ? &mask : nullptr;  // only binarization needs the mask
  switch (p.kind) {
    case PruneKind::kNone:
      break;
    case PruneKind::kUnstructured:
      res.pruned_weights = prune_unstructured(w, p.ratio, mask_ptr);
      break;
    case PruneKind::kChannel:
      res.pruned_channels = prune_channels(w, layout, p.ratio, mask_ptr);
      res.pruned_weights = static_cast<int64_t>(res.pruned_channels.size()) * layout.row_length();
      break;
    case PruneKind::kNM:
      res.pruned_weights = prune_n_m(w, layout, p.n, p.m, mask_ptr);
      break;
  }
  if (quant) {
    quantize_weights(w, layout, bits, setting.granularity, setting.w_calibration, out);
  } else if (bits == 1) {
    binarize_weights(w, layout, setting.granularity, &mask, out);
  } else if (bits == 16) {
    round_weights_to_half(w);
  }
  if (out && !quant && bits != 1) {
    out->bits = bits;
    out->granularity = setting.granularity;
    out->q.clear();
    out->scales.clear();
  }
  return res;
}

WeightCompressionResult compress_weights(std::span<const float> src, std::span<float> dst,
                                         const WeightLayout& layout, const LayerSetting& setting,
                                         QuantizedWeights* out) {
  if (src.size() != dst.size())
    throw std::invalid_argument("compress_weights: source has " + std::to_string(src.size()) +
                                " elements but the destination " + std::to_string(dst.size()));
  check_size(dst, layout);
  const PruneSpec& p = setting.prune;
  const int bits = setting.w_bits;
#if COMPSEARCH_AVX2_PATHS
  static const bool avx2 = __builtin_cpu_supports("avx2");
  const int64_t n = static_cast<int64_t>(dst.size());
  if (avx2 && bits >= 2 && bits <= 8 && !layout.transposed &&
      setting.granularity.kind == GranularityKind::kPerChannel &&
      setting.w_calibration == WeightCalibration::kMinMax &&
      (p.kind == PruneKind::kNone || p.kind == PruneKind::kUnstructured) &&
      n >= kOnePassMinWeights) {
    const int64_t k = p.kind == PruneKind::kUnstructured
                          ? static_cast<int64_t>(std::floor(p.ratio * static_cast<double>(n)))
                          : 0;
    std::vector<double> scales;
    int8_t* q = nullptr;
    if (out) {
      out->q.assign(n, 0);
      q = out->q.data();
    }
    if (sweep_prune_quantize(src.data(), dst.data(), layout.out_channels, layout.row_length(), k,
                             qmax_for(bits), q, scales)) {
      if (out) {
        out->bits = bits;
        out->granularity = setting.granularity;
        out->scales = std::move(scales);
      }
      WeightCompressionResult res;
      res.pruned_weights = k;  // the selection zeroes exactly floor(ratio * n) weights
      return res;
    }
  }
#endif
  // Everything else: copy, then the in-place kernels.
  const int64_t chunks = std::max<int64_t>(1, static_cast<int64_t>(dst.size()) / kChunkWeights);
#pragma omp parallel for schedule(static) if (parallel_worth(dst.size()))
  for (int64_t c = 0; c < chunks; ++c) {
    const size_t b = dst.size() * c / chunks, e = dst.size() * (c + 1) / chunks;
    std::memcpy(dst.data() + b, src.data() + b, (e - b) * sizeof(float));
  }
  return compress_weights(dst, layout, setting, out);
}

}  // namespace compsearch::compressors
