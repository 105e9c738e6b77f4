// Quantization (DESIGN.md rule 5), binarization (rule 6) and half rounding (rule 7) of a weight
// tensor, and the row kernels the fused prune + quantize paths share: max |w| of a row, and one
// sweep that zeroes the keys below a limit and quantizes the rest (AVX2 where the CPU has it, in
// float with an exact double redo next to rounding ties).
#include <omp.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <stdexcept>
#include <string>

#include "compressors/weight_kernels_internal.h"

namespace compsearch::compressors {

namespace detail {

namespace {

// Fast path for a contiguous group: plain loops the compiler vectorises.
COMPSEARCH_HOT void quantize_contiguous(float* w, int64_t len, double scale, int qmax, int8_t* q) {
  // DESIGN.md divides in double. Multiplying by the reciprocal is faster and differs from the
  // quotient by a few ulps, which changes round-half-even only next to an exact .5: a block with
  // a value within 1e-9 of a tie is redone from its saved copy with the division.
  const double lo = -static_cast<double>(qmax), hi = static_cast<double>(qmax);
  const double inv = 1.0 / scale;
  constexpr int64_t kBlock = 512;  // 2 KiB saved copy on the stack: an L1-resident redo
  float orig[kBlock];
  for (int64_t b = 0; b < len; b += kBlock) {
    const int64_t n = std::min(len - b, kBlock);
    float* x = w + b;
    std::memcpy(orig, x, static_cast<size_t>(n) * sizeof(float));
    int64_t near_tie = 0;
    for (int64_t j = 0; j < n; ++j) {
      const double t0 = static_cast<double>(orig[j]) * inv;
      const double r = round_half_even(t0);
      const double d = std::fabs(t0 - r);
      near_tie += (d > 0.5 - 1e-9) & (d < 0.5 + 1e-9);
      const double t = r < lo ? lo : (r > hi ? hi : r);
      x[j] = static_cast<float>(t * scale);
      if (q) q[b + j] = static_cast<int8_t>(t);
    }
    if (near_tie != 0) [[unlikely]] {
      for (int64_t j = 0; j < n; ++j) {
        double t = round_half_even(static_cast<double>(orig[j]) / scale);
        t = t < lo ? lo : (t > hi ? hi : t);
        x[j] = static_cast<float>(t * scale);
        if (q) q[b + j] = static_cast<int8_t>(t);
      }
    }
  }
}

// prune_quantize_row without AVX2.
int64_t prune_quantize_row_scalar(float* w, int64_t len, uint32_t limit, double scale, int qmax,
                                  int8_t* q) {
  const int64_t pruned = limit ? zero_below(w, len, limit) : 0;
  quantize_contiguous(w, len, scale, qmax, q);
  return pruned;
}

}  // namespace

// max |w| through the integer order of the bit patterns, which vectorises without fast-math.
COMPSEARCH_HOT float amax_contiguous(const float* w, int64_t len) {
  uint32_t m = 0;
  for (int64_t j = 0; j < len; ++j) {
    const uint32_t a = abs_key(w[j]);
    m = a > m ? a : m;
  }
  float f;
  std::memcpy(&f, &m, sizeof f);
  return f;
}

#if COMPSEARCH_AVX2_PATHS
// sweep_row_avx2 (weight_kernels_internal.h).
//
// Quantization runs mostly in float. t = w * float(1/scale) lies within |t| * 2^-22.9 of the
// exact quotient, i.e. within 2e-5 for |t| < 128 (larger |t| clamp to qmax whichever way they
// round). So where t is more than 1e-4 away from a .5 tie, rounding t to nearest gives the same
// integer as round_half_even(w / scale) in double; eight lanes with a lane nearer a tie (or a
// NaN) are redone by quantize_one. The product q * scale and its rounding to float stay in double,
// as the rule says. Compiled without FMA so no multiply-add is contracted.
//
// `next` (optional) is the row that comes next: prefetching it to L2 while this row computes
// overlaps the memory stream with the arithmetic (rows are swept from L2 after a max pass).
__attribute__((target("avx2"))) int64_t sweep_row_avx2(const float* src, float* dst, int64_t len,
                                                       int64_t base, uint32_t lo, uint32_t hi,
                                                       double scale, int qmax, int8_t* q,
                                                       std::vector<Candidate>* cand, uint32_t* hist,
                                                       int shift, const float* next) {
  const double inv = 1.0 / scale;
  const bool fast = inv >= 0x1p-100 && inv <= 0x1p100;
  auto one = [&](int64_t j) {
    const float x = src[j];
    const uint32_t key = abs_key(x);
    if (key < lo) {
      dst[j] = 0.0f;
      if (q) q[j] = 0;
      return int64_t{1};
    }
    if (cand && key <= hi) {
      cand->push_back({key, base + j});
      ++hist[(key - lo) >> shift];
    }
    dst[j] = quantize_one(x, scale, qmax, q ? q + j : nullptr);
    return int64_t{0};
  };
  int64_t pruned = 0;
  int64_t j = 0;
  if (!fast) {
    for (; j < len; ++j) pruned += one(j);
    return pruned;
  }
  const __m256 vinv = _mm256_set1_ps(static_cast<float>(inv));
  const __m256 vqmax = _mm256_set1_ps(static_cast<float>(qmax));
  const __m256 vnqmax = _mm256_set1_ps(-static_cast<float>(qmax));
  const __m256 vtie = _mm256_set1_ps(0.5f - 1e-4f);
  const __m256 sign = _mm256_set1_ps(-0.0f);
  const __m256 zero = _mm256_setzero_ps();
  const __m256d vscale = _mm256_set1_pd(scale);
  const __m256i abs_mask = _mm256_set1_epi32(0x7fffffff);
  const __m256i vlo = _mm256_set1_epi32(static_cast<int32_t>(std::min<uint32_t>(lo, 0x7fffffffu)));
  const __m256i vhi = _mm256_set1_epi32(static_cast<int32_t>(std::min<uint32_t>(hi, 0x7fffffffu)));
  const bool lo_all = lo > 0x7fffffffu;  // every key is below lo
  // Up to 4 bits (qmax <= 7) the 15 possible results float(q * scale) fit two 8-float tables, so
  // two in-register lookups replace the trip through double (same values: the tables are made by
  // the same double product and rounding).
  const bool lut = qmax <= 7;
  alignas(32) float tab[16] = {};
  if (lut)
    for (int v = -qmax; v <= qmax; ++v)
      tab[v + 7] = static_cast<float>(static_cast<double>(v) * scale);
  const __m256 tab_lo = _mm256_load_ps(tab), tab_hi = _mm256_load_ps(tab + 8);
  const __m256i seven = _mm256_set1_epi32(7);
  Candidate staged[kStage];
  int nstaged = 0;
  for (; j + 8 <= len; j += 8) {
    if (next && (j & 15) == 0) _mm_prefetch(reinterpret_cast<const char*>(next + j), _MM_HINT_T1);
    __m256 x = _mm256_loadu_ps(src + j);
    const __m256i key = _mm256_and_si256(_mm256_castps_si256(x), abs_mask);
    __m256 p = _mm256_castsi256_ps(_mm256_cmpgt_epi32(vlo, key));  // key < lo
    if (lo_all) p = _mm256_castsi256_ps(_mm256_set1_epi32(-1));
    pruned += __builtin_popcount(static_cast<unsigned>(_mm256_movemask_ps(p)));
    if (cand) {
      const __m256 above = _mm256_castsi256_ps(_mm256_cmpgt_epi32(key, vhi));
      const int in_mask = ~_mm256_movemask_ps(_mm256_or_ps(p, above)) & 0xff;
      if (in_mask) [[unlikely]] {
        alignas(32) uint32_t k8[8];
        _mm256_store_si256(reinterpret_cast<__m256i*>(k8), key);
        for (int m = in_mask; m; m &= m - 1) {
          const int lane = __builtin_ctz(m);
          staged[nstaged++] = {k8[lane], base + j + lane};
          ++hist[(k8[lane] - lo) >> shift];
        }
        if (nstaged > kStage - 8) [[unlikely]] {
          flush_candidates(*cand, staged, nstaged);
          nstaged = 0;
        }
      }
    }
    x = _mm256_andnot_ps(p, x);  // pruned weights become +0, which quantizes to +0
    const __m256 t = _mm256_mul_ps(x, vinv);
    __m256 r = _mm256_round_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m256 d = _mm256_andnot_ps(sign, _mm256_sub_ps(t, r));
    __m256 y;
    if (_mm256_movemask_ps(_mm256_cmp_ps(d, vtie, _CMP_NLE_UQ))) [[unlikely]] {
      alignas(32) float x8[8];
      _mm256_store_ps(x8, x);
      for (int l = 0; l < 8; ++l) x8[l] = quantize_one(x8[l], scale, qmax, q ? q + j + l : nullptr);
      y = _mm256_load_ps(x8);
    } else {
      // Clamp, and + 0 turns a -0 result into +0 as round_half_even does.
      r = _mm256_add_ps(_mm256_min_ps(_mm256_max_ps(r, vnqmax), vqmax), zero);
      if (lut) {
        const __m256i idx = _mm256_add_epi32(_mm256_cvtps_epi32(r), seven);  // 0..14
        y = _mm256_blendv_ps(_mm256_permutevar8x32_ps(tab_lo, idx),
                             _mm256_permutevar8x32_ps(tab_hi, idx),
                             _mm256_castsi256_ps(_mm256_cmpgt_epi32(idx, seven)));
      } else {
        const __m256d ylo = _mm256_mul_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(r)), vscale);
        const __m256d yhi = _mm256_mul_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(r, 1)), vscale);
        y = _mm256_set_m128(_mm256_cvtpd_ps(yhi), _mm256_cvtpd_ps(ylo));
      }
      if (q) {
        const __m256i qi = _mm256_cvtps_epi32(r);
        const __m128i q16 =
            _mm_packs_epi32(_mm256_castsi256_si128(qi), _mm256_extracti128_si256(qi, 1));
        _mm_storel_epi64(reinterpret_cast<__m128i*>(q + j), _mm_packs_epi16(q16, q16));
      }
    }
    _mm256_storeu_ps(dst + j, y);
  }
  if (cand)
    flush_candidates(*cand, staged, nstaged);  // before the tail appends, to keep index order
  for (; j < len; ++j) pruned += one(j);
  return pruned;
}
#endif

int64_t prune_quantize_row(float* w, int64_t len, uint32_t limit, double scale, int qmax, int8_t* q,
                           const float* next) {
#if COMPSEARCH_AVX2_PATHS
  static const bool avx2 = __builtin_cpu_supports("avx2");
  if (avx2)
    return sweep_row_avx2(w, w, len, 0, limit, 0, scale, qmax, q, nullptr, nullptr, 0, next);
#endif
  return prune_quantize_row_scalar(w, len, limit, scale, qmax, q);
}

}  // namespace detail

using namespace detail;

namespace {

// Quantizes values reached through `at(j)` (j < len) with one scale. Writes ints if q != nullptr.
template <typename At, typename QAt>
inline void quantize_group(int64_t len, At at, QAt qat, double scale, int qmax, bool want_q) {
  for (int64_t j = 0; j < len; ++j) {
    float& x = at(j);
    double t = round_half_even(static_cast<double>(x) / scale);
    t = std::min(std::max(t, -static_cast<double>(qmax)), static_cast<double>(qmax));
    x = static_cast<float>(t * scale);
    if (want_q) qat(j) = static_cast<int8_t>(t);
  }
}

// Per-group clipping search for WeightCalibration::kMse over values `v` (a copy).
double mse_amax(const std::vector<float>& v, double amax, int qmax) {
  if (amax == 0.0) return 0.0;
  double best_amax = amax, best_err = std::numeric_limits<double>::infinity();
  for (int i = 0; i < kMseClipSteps; ++i) {
    const double a = amax * (1.0 - kMseClipStep * i);
    const double scale = a / qmax;
    double err = 0.0;
    for (float x : v) {
      double t = round_half_even(static_cast<double>(x) / scale);
      t = std::min(std::max(t, -static_cast<double>(qmax)), static_cast<double>(qmax));
      const double d = static_cast<double>(x) - static_cast<double>(static_cast<float>(t * scale));
      err += d * d;
    }
    if (err < best_err) best_err = err, best_amax = a;
  }
  return best_amax;
}

// Flat indices of group `gi` (per_channel or group:G) in reduction-row order.
void group_indices(const WeightLayout& l, const Granularity& g, int64_t gi,
                   std::vector<int64_t>& idx) {
  idx.clear();
  const int64_t R = l.row_length();
  if (g.kind == GranularityKind::kPerChannel) {
    for (int64_t r = 0; r < R; ++r) idx.push_back(l.index(gi, r));
    return;
  }
  const int64_t per_row = (R + g.group_size - 1) / g.group_size;
  const int64_t o = gi / per_row, b = gi % per_row;
  const int64_t end = std::min(R, (b + 1) * g.group_size);
  for (int64_t r = b * g.group_size; r < end; ++r) idx.push_back(l.index(o, r));
}

}  // namespace

void quantize_weights(std::span<float> w, const WeightLayout& layout, int bits,
                      const Granularity& g, WeightCalibration calibration, QuantizedWeights* out) {
  check_size(w, layout);
  if (bits < 2 || bits > 8)
    throw std::invalid_argument("quantize_weights: bits must be in 2..8, got " +
                                std::to_string(bits));
  if (g.kind == GranularityKind::kGroup && g.group_size < 1)
    throw std::invalid_argument("quantize_weights: group size must be >= 1");
  const int qmax = qmax_for(bits);
  const int64_t n = static_cast<int64_t>(w.size());
  int8_t* q = nullptr;
  if (out) {
    out->bits = bits;
    out->granularity = g;
    out->q.assign(n, 0);
    out->scales.assign(group_count(layout, g), 1.0);
    q = out->q.data();
  }
  float* data = w.data();
  if (g.kind == GranularityKind::kPerTensor) {
    float amax = 0.0f;
#pragma omp parallel for schedule(static) reduction(max : amax) if (parallel_worth(w.size()))
    for (int64_t i = 0; i < n; ++i) amax = std::max(amax, std::fabs(data[i]));
    double a = amax;
    if (calibration == WeightCalibration::kMse)
      a = mse_amax(std::vector<float>(w.begin(), w.end()), a, qmax);
    const double scale = scale_from_amax(a, qmax);
    if (out) out->scales[0] = scale;
    const int64_t chunks = std::max<int64_t>(1, n / kChunkWeights);
#pragma omp parallel for schedule(static) if (parallel_worth(w.size()))
    for (int64_t c = 0; c < chunks; ++c) {
      const int64_t b = n * c / chunks, e = n * (c + 1) / chunks;
      prune_quantize_row(data + b, e - b, 0, scale, qmax, q ? q + b : nullptr);
    }
    return;
  }
  const int64_t groups = group_count(layout, g);
  const int64_t R = layout.row_length();
  if (g.kind == GranularityKind::kPerChannel && !layout.transposed) {
    // A channel is a contiguous block; order inside it does not matter for one scale.
#pragma omp parallel for schedule(static) if (parallel_worth(w.size()))
    for (int64_t o = 0; o < layout.out_channels; ++o) {
      float* row = data + o * R;
      double a = amax_contiguous(row, R);
      if (calibration == WeightCalibration::kMse)
        a = mse_amax(std::vector<float>(row, row + R), a, qmax);
      const double scale = scale_from_amax(a, qmax);
      if (out) out->scales[o] = scale;
      prune_quantize_row(row, R, 0, scale, qmax, q ? q + o * R : nullptr,
                         o + 1 < layout.out_channels ? row + R : nullptr);
    }
    return;
  }
  if (g.kind == GranularityKind::kPerChannel && layout.transposed &&
      calibration == WeightCalibration::kMinMax) {
    // [K, O] storage: column maxima row by row keep the memory access sequential.
    const int64_t O = layout.out_channels;
    std::vector<float> amax(O, 0.0f);
    for (int64_t r = 0; r < R; ++r) {
      const float* row = data + r * O;
      for (int64_t o = 0; o < O; ++o) amax[o] = std::max(amax[o], std::fabs(row[o]));
    }
    std::vector<double> scale(O);
    for (int64_t o = 0; o < O; ++o) scale[o] = scale_from_amax(amax[o], qmax);
    if (out) out->scales = scale;
#pragma omp parallel for schedule(static) if (parallel_worth(w.size()))
    for (int64_t r = 0; r < R; ++r) {
      float* row = data + r * O;
      for (int64_t o = 0; o < O; ++o) {
        double t = round_half_even(static_cast<double>(row[o]) / scale[o]);
        t = std::min(std::max(t, -static_cast<double>(qmax)), static_cast<double>(qmax));
        row[o] = static_cast<float>(t * scale[o]);
        if (q) q[r * O + o] = static_cast<int8_t>(t);
      }
    }
    return;
  }
  // General path: gather each group's indices (group:G, or a transposed layout with mse).
#pragma omp parallel if (parallel_worth(w.size()))
  {
    std::vector<int64_t> idx;
    std::vector<float> vals;
#pragma omp for schedule(static)
    for (int64_t gi = 0; gi < groups; ++gi) {
      group_indices(layout, g, gi, idx);
      float amax = 0.0f;
      for (int64_t i : idx) amax = std::max(amax, std::fabs(data[i]));
      double a = amax;
      if (calibration == WeightCalibration::kMse) {
        vals.clear();
        for (int64_t i : idx) vals.push_back(data[i]);
        a = mse_amax(vals, a, qmax);
      }
      const double scale = scale_from_amax(a, qmax);
      if (out) out->scales[gi] = scale;
      quantize_group(
          static_cast<int64_t>(idx.size()), [&](int64_t j) -> float& { return data[idx[j]]; },
          [&](int64_t j) -> int8_t& { return q[idx[j]]; }, scale, qmax, q != nullptr);
    }
  }
}

void binarize_weights(std::span<float> w, const WeightLayout& layout, const Granularity& g,
                      const PruneMask* pruned, QuantizedWeights* out) {
  check_size(w, layout);
  const int64_t n = static_cast<int64_t>(w.size());
  if (pruned && !pruned->empty() && static_cast<int64_t>(pruned->size()) != n)
    throw std::invalid_argument("binarize_weights: mask size does not match the weights");
  const uint8_t* mask = pruned && !pruned->empty() ? pruned->data() : nullptr;
  const int64_t groups = group_count(layout, g);
  if (out) {
    out->bits = 1;
    out->granularity = g;
    out->q.assign(n, 0);
    out->scales.assign(groups, 0.0);
  }
  float* data = w.data();
  auto binarize = [&](const std::vector<int64_t>& idx, int64_t gi) {
    double sum = 0.0;
    int64_t kept = 0;
    for (int64_t i : idx) {
      if (mask && mask[i]) continue;
      sum += std::fabs(static_cast<double>(data[i]));
      ++kept;
    }
    const double alpha = kept ? sum / kept : 0.0;
    const float a = static_cast<float>(alpha);
    if (out) out->scales[gi] = alpha;
    for (int64_t i : idx) {
      const bool p = mask && mask[i];
      const int8_t s = p ? 0 : (std::signbit(data[i]) && data[i] != 0.0f ? -1 : 1);
      data[i] = s * a;
      if (out) out->q[i] = s;
    }
  };
  if (g.kind == GranularityKind::kPerTensor) {
    std::vector<int64_t> idx(n);
    std::iota(idx.begin(), idx.end(), 0);
    binarize(idx, 0);
    return;
  }
#pragma omp parallel if (parallel_worth(w.size()))
  {
    std::vector<int64_t> idx;
#pragma omp for schedule(static)
    for (int64_t gi = 0; gi < groups; ++gi) {
      group_indices(layout, g, gi, idx);
      binarize(idx, gi);
    }
  }
}

void round_weights_to_half(std::span<float> w) {
  const int64_t n = static_cast<int64_t>(w.size());
#pragma omp parallel for schedule(static) if (parallel_worth(w.size()))
  for (int64_t i = 0; i < n; ++i) w[i] = round_to_half(w[i]);
}

}  // namespace compsearch::compressors
