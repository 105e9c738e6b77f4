// Threshold selection for unstructured pruning (DESIGN.md rule 2): which weights are the k of
// smallest |w|, ties to the lower flat index, without a full sort. A strided sample brackets the
// k-th key; one read pass (AVX2 where the CPU has it) counts the keys below the bracket and
// collects those inside; a histogram over the bracket finds the bucket of the rank, and only that
// bucket is sorted. The fused prune + quantize paths (weight_kernels_compress.cpp) reuse the
// pieces.
#include <omp.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "common/check.h"
#include "compressors/weight_kernels_internal.h"

namespace compsearch::compressors::detail {

void flush_candidates(std::vector<Candidate>& out, const Candidate* staged, int n) {
  out.insert(out.end(), staged, staged + n);
}

KeySample::KeySample(const float* w, int64_t n, int64_t k) : keys(kSize) {
  const int64_t stride = n / kSize;
  for (int64_t i = 0; i < kSize; ++i) keys[i] = abs_key(w[i * stride]);
  const double frac = static_cast<double>(k - 1) / static_cast<double>(n);
  pos = static_cast<int64_t>(frac * kSize);
  sigma4 = 16 + static_cast<int64_t>(4.0 * std::sqrt(kSize * frac * (1.0 - frac)));
}

std::pair<uint32_t, uint32_t> KeySample::bracket(int64_t margin, uint32_t open_hi) {
  uint32_t lo = 0u, hi = open_hi;
  if (pos - margin > 0) {
    std::nth_element(keys.begin(), keys.begin() + (pos - margin), keys.end());
    lo = keys[pos - margin];
  }
  if (pos + margin < kSize) {
    const auto first = pos - margin > 0 ? keys.begin() + (pos - margin) : keys.begin();
    std::nth_element(first, keys.begin() + (pos + margin), keys.end());
    hi = keys[pos + margin];
  }
  return {lo, hi};
}

std::pair<size_t, int64_t> bucket_of_rank(const std::vector<std::vector<uint32_t>>& hists,
                                          int64_t rank) {
  int64_t below = 0;
  size_t bucket = 0;
  for (;; ++bucket) {
    int64_t h = 0;
    for (const auto& hist : hists) h += hist[bucket];
    if (below + h > rank) return {bucket, below};
    below += h;
  }
}

Selection select_in_bucket(const std::vector<std::vector<Candidate>>& found, int64_t rank,
                           int64_t below, std::vector<Candidate>& members) {
  members.clear();
  for (const auto& f : found) members.insert(members.end(), f.begin(), f.end());
  std::sort(members.begin(), members.end(), [](const Candidate& a, const Candidate& b) {
    return a.key != b.key ? a.key < b.key : a.index < b.index;
  });
  Selection s;
  s.t_key = members[static_cast<size_t>(rank - below)].key;
  int64_t less = below;
  for (const Candidate& x : members) {
    less += x.key < s.t_key;
    if (x.key == s.t_key)
      s.ties.push_back(x.index);  // in index order: members are sorted by (key, index)
  }
  s.ties.resize(static_cast<size_t>(rank + 1 - less));
  return s;
}

namespace {

// finish_selection's histogram: 2^16 bins (256 KiB of counts per thread, L2-resident) leave a few
// dozen candidates in the rank's bucket on smooth data, so sorting that bucket is cheap.
constexpr int kSelectionHistogramBits = 16;

// Finds the candidate of 0-based `rank` by key among all of `parts`, whose keys lie in [lo, hi].
// The parts must hold every weight whose key lies between their smallest and largest key, so all
// weights tied with the answer are there. A 2^16-bin histogram of the keys (offset by lo) finds
// the bucket of the rank; only that bucket (a few dozen candidates on smooth data) is sorted.
// Large inputs are histogrammed and scanned one part per thread.
Selection finish_selection(const std::vector<std::vector<Candidate>>& parts, int64_t rank,
                           uint32_t lo, uint32_t hi) {
  const uint32_t span = hi - lo;
  int shift = 0;
  while ((span >> shift) >= (1u << kSelectionHistogramBits)) ++shift;
  const size_t bins = (span >> shift) + 1;
  const int np = static_cast<int>(parts.size());
  size_t total = 0;
  for (const auto& p : parts) total += p.size();
  const bool par = np > 1 && parallel_worth(total);
  std::vector<std::vector<uint32_t>> hists(np);
#pragma omp parallel for schedule(static, 1) num_threads(np) if (par)
  for (int t = 0; t < np; ++t) {
    hists[t].assign(bins, 0);
    for (const Candidate& x : parts[t]) ++hists[t][(x.key - lo) >> shift];
  }
  // Plain variables, not a structured binding: OpenMP regions below read them, and clang 14
  // (the fuzz and TSan builds) cannot capture a binding.
  const auto bucket_and_below = bucket_of_rank(hists, rank);
  const size_t bucket = bucket_and_below.first;
  const int64_t below = bucket_and_below.second;
  std::vector<std::vector<Candidate>> found(np);
#pragma omp parallel for schedule(static, 1) num_threads(np) if (par)
  for (int t = 0; t < np; ++t)
    for (const Candidate& x : parts[t])
      if (((x.key - lo) >> shift) == bucket) found[t].push_back(x);
  std::vector<Candidate> members;
  return select_in_bucket(found, rank, below, members);
}

// count_below_collect_inside (weight_kernels_internal.h), one key at a time.
int64_t count_below_collect_inside_scalar(const float* w, int64_t begin, int64_t end, uint32_t lo,
                                          uint32_t hi, std::vector<Candidate>& inside,
                                          uint32_t* max_key) {
  int64_t cnt = 0;
  uint32_t m = 0;
  for (int64_t i = begin; i < end; ++i) {
    const uint32_t key = abs_key(w[i]);
    cnt += key < lo;
    m = std::max(m, key);
    if (key - lo <= hi - lo) [[unlikely]]
      inside.push_back({key, i});
  }
  *max_key = m;
  return cnt;
}

#if COMPSEARCH_AVX2_PATHS
// AVX2 version: eight keys per step, a compare mask for "below" and a movemask for "inside" (the
// rare inside lanes are appended in index order). Keys are < 2^31, so signed compares suffice.
__attribute__((target("avx2"))) int64_t count_below_collect_inside_avx2(
    const float* w, int64_t begin, int64_t end, uint32_t lo, uint32_t hi,
    std::vector<Candidate>& inside, uint32_t* max_key) {
  if (lo > 0x7fffffffu)
    return count_below_collect_inside_scalar(w, begin, end, lo, hi, inside, max_key);
  const uint32_t hi31 = std::min<uint32_t>(hi, 0x7fffffffu);
  const __m256i abs_mask = _mm256_set1_epi32(0x7fffffff);
  const __m256i vlo = _mm256_set1_epi32(static_cast<int32_t>(lo));
  const __m256i vhi = _mm256_set1_epi32(static_cast<int32_t>(hi31));
  __m256i below = _mm256_setzero_si256();  // per-lane counts (as negative mask sums)
  __m256i vmax = _mm256_setzero_si256();
  int64_t cnt = 0;
  int64_t i = begin;
  int64_t steps = 0;
  Candidate staged[kStage];
  int nstaged = 0;
  for (; i + 8 <= end; i += 8) {
    const __m256i key =
        _mm256_and_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + i)), abs_mask);
    vmax = _mm256_max_epi32(vmax, key);
    const __m256i lt = _mm256_cmpgt_epi32(vlo, key);  // key < lo
    below = _mm256_sub_epi32(below, lt);
    const __m256i out = _mm256_or_si256(lt, _mm256_cmpgt_epi32(key, vhi));  // outside [lo, hi]
    const int in_mask = ~_mm256_movemask_ps(_mm256_castsi256_ps(out)) & 0xff;
    if (in_mask) [[unlikely]] {
      alignas(32) uint32_t k8[8];
      _mm256_store_si256(reinterpret_cast<__m256i*>(k8), key);
      for (int m = in_mask; m; m &= m - 1) {
        const int lane = __builtin_ctz(m);
        staged[nstaged++] = {k8[lane], i + lane};
      }
      if (nstaged > kStage - 8) [[unlikely]] {
        flush_candidates(inside, staged, nstaged);
        nstaged = 0;
      }
    }
    if (++steps == (int64_t{1} << 28)) {  // flush before a 32-bit lane could overflow
      alignas(32) int32_t c8[8];
      _mm256_store_si256(reinterpret_cast<__m256i*>(c8), below);
      for (int l = 0; l < 8; ++l) cnt += c8[l];
      below = _mm256_setzero_si256();
      steps = 0;
    }
  }
  alignas(32) int32_t c8[8];
  _mm256_store_si256(reinterpret_cast<__m256i*>(c8), below);
  for (int l = 0; l < 8; ++l) cnt += c8[l];
  flush_candidates(inside, staged, nstaged);
  alignas(32) uint32_t m8[8];
  _mm256_store_si256(reinterpret_cast<__m256i*>(m8), vmax);
  uint32_t tail_max = 0;
  cnt += count_below_collect_inside_scalar(w, i, end, lo, hi, inside, &tail_max);
  for (int l = 0; l < 8; ++l) tail_max = std::max(tail_max, m8[l]);
  *max_key = tail_max;
  return cnt;
}
#endif

}  // namespace

int64_t count_below_collect_inside(const float* w, int64_t begin, int64_t end, uint32_t lo,
                                   uint32_t hi, std::vector<Candidate>& inside, uint32_t* max_key) {
#if COMPSEARCH_AVX2_PATHS
  static const bool avx2 = __builtin_cpu_supports("avx2");
  if (avx2) return count_below_collect_inside_avx2(w, begin, end, lo, hi, inside, max_key);
#endif
  return count_below_collect_inside_scalar(w, begin, end, lo, hi, inside, max_key);
}

Selection select_smallest(const float* w, int64_t n, int64_t k, int64_t row_len,
                          std::vector<uint32_t>* row_max) {
  const int64_t rows = row_max ? n / row_len : 0;
  if (row_max) row_max->assign(static_cast<size_t>(rows), 0);
  if (n < kSampledSelectionMinWeights) {
    std::vector<std::vector<Candidate>> all(1);
    all[0].resize(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) all[0][i] = {abs_key(w[i]), i};
    for (int64_t o = 0; o < rows; ++o) {
      uint32_t m = 0;
      for (int64_t r = 0; r < row_len; ++r) m = std::max(m, all[0][o * row_len + r].key);
      (*row_max)[o] = m;
    }
    uint32_t mn = 0xffffffffu, mx = 0;
    for (const Candidate& x : all[0]) mn = std::min(mn, x.key), mx = std::max(mx, x.key);
    return finish_selection(all, k - 1, mn, mx);
  }
  // A strided sample brackets the k-th key; one parallel pass counts what lies below the bracket
  // and collects what lies inside. +-4 standard deviations of the sample quantile (2^17 samples:
  // about 1% of the weights fall inside at ratio 0.5); a miss widens the bracket 16-fold, then
  // takes everything.
  KeySample sample(w, n, k);
  for (int64_t margin : {sample.sigma4, 16 * sample.sigma4, KeySample::kSize}) {
    const auto bracket = sample.bracket(margin, 0xffffffffu);  // no binding: read in OpenMP
    const auto lo = bracket.first;
    const auto hi = bracket.second;
    const int threads = omp_get_max_threads();
    std::vector<std::vector<Candidate>> parts(threads);
    std::vector<int64_t> part_below(threads, 0);
#pragma omp parallel num_threads(threads)
    {
      const int t = omp_get_thread_num();
      const int nt = omp_get_num_threads();
      int64_t below = 0;
      uint32_t m = 0;
      if (row_max) {
        const int64_t r0 = rows * t / nt, r1 = rows * (t + 1) / nt;
        parts[t].reserve(
            static_cast<size_t>((r1 - r0) * row_len / KeySample::kSize * (2 * margin + 8)));
        for (int64_t o = r0; o < r1; ++o) {
          below +=
              count_below_collect_inside(w, o * row_len, (o + 1) * row_len, lo, hi, parts[t], &m);
          (*row_max)[o] = m;
        }
      } else {
        const int64_t begin = n * t / nt, end = n * (t + 1) / nt;
        parts[t].reserve(static_cast<size_t>((end - begin) / KeySample::kSize * (2 * margin + 8)));
        below = count_below_collect_inside(w, begin, end, lo, hi, parts[t], &m);
      }
      part_below[t] = below;
    }
    int64_t below = 0;
    size_t total_inside = 0;
    for (int t = 0; t < threads; ++t) {
      below += part_below[t];
      total_inside += parts[t].size();
    }
    if (k - 1 >= below && k - 1 < below + static_cast<int64_t>(total_inside))
      return finish_selection(parts, k - 1 - below, lo, std::min<uint32_t>(hi, 0x7fffffffu));
  }
  // The last bracket takes every key, so rank k cannot miss it.
  COMPSEARCH_CHECK(false, "select_smallest: the full bracket missed rank " + std::to_string(k));
}

}  // namespace compsearch::compressors::detail
