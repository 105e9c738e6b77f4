// Weight kernels (DESIGN.md rules 1-7) on flat float buffers. See weight_kernels.h.
//
// Speed matters here: the search applies a recipe to every candidate, and the benchmark goal is
// quantize + prune at >= 0.5 x memcpy on 100 M weights. Unstructured pruning therefore selects
// its threshold from a sampled bracket (one read pass, which also records each row's max), and
// prune + quantize of one row is one AVX2 sweep while the row is in cache, in float with an exact
// double redo next to rounding ties. The out-of-place compress_weights skips the separate read
// pass: it sweeps at once and fixes the few weights inside the bracket afterwards.
// Every fast path equals the plain rule bit for bit (tests/compressors/weight_kernels_test.cpp
// checks them against a stable-sort / std::nearbyint reference).
#include "compressors/weight_kernels.h"

#include <omp.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <stdexcept>
#include <string>
#include <tuple>
#include <utility>

#include "model/layer_table.h"

namespace compsearch::compressors {

namespace {

// Hot loops get an AVX2 clone chosen at load time (the build itself targets baseline x86-64).
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define COMPSEARCH_HOT __attribute__((target_clones("avx2", "default"), noinline))
#else
#define COMPSEARCH_HOT
#endif

// Below this many weights a parallel region costs more than it saves (and on a loaded machine a
// fork can cost milliseconds), so small layers run on the calling thread.
constexpr size_t kParallelMin = size_t{1} << 20;
inline bool parallel_worth(size_t n) { return n >= kParallelMin; }

inline uint32_t abs_key(float x) {
  uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  return u & 0x7fffffffu;  // non-negative IEEE floats order like their bit patterns
}

// Threshold of the k smallest |w|: every weight with key < t_key is pruned, plus the weights with
// key == t_key listed in `ties` (the first ones in flat order, as many as the count needs).
struct Selection {
  uint32_t t_key = 0;
  std::vector<int64_t> ties;  // sorted flat indices
};

struct Candidate {
  uint32_t key;
  int64_t index;
};

// The vector loops below stage candidates in a small stack buffer: a push_back there may call
// the allocator, and around a possible call GCC saves every live ymm register on each (frequent)
// entry to the candidate branch. The flush is out of line and rare.
constexpr int kStage = 64;
__attribute__((noinline, cold)) void flush_candidates(std::vector<Candidate>& out, const Candidate* staged, int n) {
  out.insert(out.end(), staged, staged + n);
}

// A strided sample of 2^17 magnitude keys of w[0, n) and where the k-th smallest key falls in it,
// for bracketing the pruning threshold before one pass over all weights.
struct KeySample {
  static constexpr int64_t kSize = 1 << 17;
  std::vector<uint32_t> keys;
  int64_t pos = 0;     // the k-th smallest key's expected position in the sorted sample
  int64_t sigma4 = 0;  // 4 standard deviations of that position (+16)

  KeySample(const float* w, int64_t n, int64_t k) : keys(kSize) {
    const int64_t stride = n / kSize;
    for (int64_t i = 0; i < kSize; ++i) keys[i] = abs_key(w[i * stride]);
    const double frac = static_cast<double>(k - 1) / static_cast<double>(n);
    pos = static_cast<int64_t>(frac * kSize);
    sigma4 = 16 + static_cast<int64_t>(4.0 * std::sqrt(kSize * frac * (1.0 - frac)));
  }

  // The sample's keys at pos -+ margin: 0 below the sample, `open_hi` above it. Two partial
  // selections instead of a sort, since only the bracket ends are needed; callable again with
  // another margin (nth_element takes the keys in any order).
  std::pair<uint32_t, uint32_t> bracket(int64_t margin, uint32_t open_hi) {
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
};

// The histogram bucket holding the candidate of 0-based `rank`, and how many candidates lie in
// lower buckets, summed over per-thread histograms.
std::pair<size_t, int64_t> bucket_of_rank(const std::vector<std::vector<uint32_t>>& hists, int64_t rank) {
  int64_t below = 0;
  size_t bucket = 0;
  for (;; ++bucket) {
    int64_t h = 0;
    for (const auto& hist : hists) h += hist[bucket];
    if (below + h > rank) return {bucket, below};
    below += h;
  }
}

// The selection among the candidates of the rank's bucket (`found`, per thread; `below` of all
// candidates lie in lower buckets). Leaves the bucket's candidates in `members`, sorted by
// (key, index), for callers that must visit them.
Selection select_in_bucket(const std::vector<std::vector<Candidate>>& found, int64_t rank, int64_t below,
                           std::vector<Candidate>& members) {
  members.clear();
  for (const auto& f : found) members.insert(members.end(), f.begin(), f.end());
  std::sort(members.begin(), members.end(),
            [](const Candidate& a, const Candidate& b) { return a.key != b.key ? a.key < b.key : a.index < b.index; });
  Selection s;
  s.t_key = members[static_cast<size_t>(rank - below)].key;
  int64_t less = below;
  for (const Candidate& x : members) {
    less += x.key < s.t_key;
    if (x.key == s.t_key) s.ties.push_back(x.index);  // in index order: members are sorted by (key, index)
  }
  s.ties.resize(static_cast<size_t>(rank + 1 - less));
  return s;
}

// Finds the candidate of 0-based `rank` by key among all of `parts`, whose keys lie in [lo, hi].
// The parts must hold every weight whose key lies between their smallest and largest key, so all
// weights tied with the answer are there. A 2^16-bin histogram of the keys (offset by lo) finds
// the bucket of the rank; only that bucket (a few dozen candidates on smooth data) is sorted.
// Large inputs are histogrammed and scanned one part per thread.
Selection finish_selection(const std::vector<std::vector<Candidate>>& parts, int64_t rank, uint32_t lo, uint32_t hi) {
  const uint32_t span = hi - lo;
  int shift = 0;
  while ((span >> shift) >= (1u << 16)) ++shift;
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
  const auto [bucket, below] = bucket_of_rank(hists, rank);
  std::vector<std::vector<Candidate>> found(np);
#pragma omp parallel for schedule(static, 1) num_threads(np) if (par)
  for (int t = 0; t < np; ++t)
    for (const Candidate& x : parts[t])
      if (((x.key - lo) >> shift) == bucket) found[t].push_back(x);
  std::vector<Candidate> members;
  return select_in_bucket(found, rank, below, members);
}

// Counts keys below `lo`, appends the weights with keys in [lo, hi] to `inside` and returns the
// largest key in `max_key` (the row's max |w| for the fused prune + quantize path).
int64_t count_below_collect_inside_scalar(const float* w, int64_t begin, int64_t end, uint32_t lo, uint32_t hi,
                                          std::vector<Candidate>& inside, uint32_t* max_key) {
  int64_t cnt = 0;
  uint32_t m = 0;
  for (int64_t i = begin; i < end; ++i) {
    const uint32_t key = abs_key(w[i]);
    cnt += key < lo;
    m = std::max(m, key);
    if (key - lo <= hi - lo) [[unlikely]] inside.push_back({key, i});
  }
  *max_key = m;
  return cnt;
}

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
// AVX2 version: eight keys per step, a compare mask for "below" and a movemask for "inside" (the
// rare inside lanes are appended in index order). Keys are < 2^31, so signed compares suffice.
__attribute__((target("avx2"))) int64_t count_below_collect_inside_avx2(const float* w, int64_t begin, int64_t end,
                                                                       uint32_t lo, uint32_t hi,
                                                                       std::vector<Candidate>& inside,
                                                                       uint32_t* max_key) {
  if (lo > 0x7fffffffu) return count_below_collect_inside_scalar(w, begin, end, lo, hi, inside, max_key);
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
    const __m256i key = _mm256_and_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + i)), abs_mask);
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

int64_t count_below_collect_inside(const float* w, int64_t begin, int64_t end, uint32_t lo, uint32_t hi,
                                   std::vector<Candidate>& inside, uint32_t* max_key) {
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
  static const bool avx2 = __builtin_cpu_supports("avx2");
  if (avx2) return count_below_collect_inside_avx2(w, begin, end, lo, hi, inside, max_key);
#endif
  return count_below_collect_inside_scalar(w, begin, end, lo, hi, inside, max_key);
}

// Selects the k smallest keys (1 <= k <= n). If `row_max` is given, the buffer is read as rows of
// `row_len` weights and row_max[o] receives the largest key of row o, from the same read pass.
Selection select_smallest(const float* w, int64_t n, int64_t k, int64_t row_len = 0,
                          std::vector<uint32_t>* row_max = nullptr) {
  const int64_t rows = row_max ? n / row_len : 0;
  if (row_max) row_max->assign(static_cast<size_t>(rows), 0);
  if (n < (int64_t{1} << 20)) {
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
    const auto [lo, hi] = sample.bracket(margin, 0xffffffffu);
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
        parts[t].reserve(static_cast<size_t>((r1 - r0) * row_len / KeySample::kSize * (2 * margin + 8)));
        for (int64_t o = r0; o < r1; ++o) {
          below += count_below_collect_inside(w, o * row_len, (o + 1) * row_len, lo, hi, parts[t], &m);
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
  throw std::logic_error("select_smallest: the full bracket missed rank " + std::to_string(k));
}

// Zeroes the weights whose key is below `limit`; returns how many.
COMPSEARCH_HOT int64_t zero_below(float* w, int64_t len, uint32_t limit) {
  int64_t pruned = 0;
  for (int64_t i = 0; i < len; ++i) {
    const uint32_t key = abs_key(w[i]);
    const bool p = key < limit;
    w[i] = p ? 0.0f : w[i];
    pruned += p;
  }
  return pruned;
}

// Prunes flat range [begin, end) of `w` by the selection; `mask` (if any) is indexed like `w`.
int64_t prune_range(float* w, int64_t begin, int64_t end, const Selection& s, uint8_t* mask) {
  int64_t pruned = 0;
  if (mask) {
    for (int64_t i = begin; i < end; ++i) {
      const bool p = abs_key(w[i]) < s.t_key;
      w[i] = p ? 0.0f : w[i];
      pruned += p;
      mask[i] = p;
    }
  } else {
    pruned = zero_below(w + begin, end - begin, s.t_key);
  }
  auto it = std::lower_bound(s.ties.begin(), s.ties.end(), begin);
  for (; it != s.ties.end() && *it < end; ++it) {
    w[*it] = 0.0f;
    if (mask) mask[*it] = 1;
    ++pruned;
  }
  return pruned;
}

inline int qmax_for(int bits) { return (1 << (bits - 1)) - 1; }

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

// Fast path for a contiguous group: plain loops the compiler vectorises.
COMPSEARCH_HOT void quantize_contiguous(float* w, int64_t len, double scale, int qmax, int8_t* q) {
  // DESIGN.md divides in double. Multiplying by the reciprocal is faster and differs from the
  // quotient by a few ulps, which changes round-half-even only next to an exact .5: a block with
  // a value within 1e-9 of a tie is redone from its saved copy with the division.
  const double lo = -static_cast<double>(qmax), hi = static_cast<double>(qmax);
  const double inv = 1.0 / scale;
  constexpr int64_t kBlock = 512;
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

double scale_from_amax(double amax, int qmax) { return amax == 0.0 ? 1.0 : amax / qmax; }

// Rule 5 for one weight, exactly as DESIGN.md states it (division in double): the reference every
// fast path must equal bit for bit. round_half_even gives +0 for every zero result.
inline float quantize_one(float x, double scale, int qmax, int8_t* q) {
  const double lo = -static_cast<double>(qmax), hi = static_cast<double>(qmax);
  double t = round_half_even(static_cast<double>(x) / scale);
  t = t < lo ? lo : (t > hi ? hi : t);
  if (q) *q = static_cast<int8_t>(t);
  return static_cast<float>(t * scale);
}

// Zeroes the weights of one contiguous row whose key is below `limit` (0: none), then quantizes
// the row with one scale. Returns how many it zeroed.
int64_t prune_quantize_row_scalar(float* w, int64_t len, uint32_t limit, double scale, int qmax, int8_t* q) {
  const int64_t pruned = limit ? zero_below(w, len, limit) : 0;
  quantize_contiguous(w, len, scale, qmax, q);
  return pruned;
}

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
// AVX2 sweep of one contiguous row from `src` to `dst` (equal for in-place work): weights with
// key < lo become 0 and are counted; all others are quantized with `scale`, and with `cand` those
// with lo <= key <= hi are also appended to it (flat index base + j) and counted in hist[(key -
// lo) >> shift]: the caller zeroes the ones the threshold prunes once it is known.
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
__attribute__((target("avx2"))) int64_t sweep_row_avx2(const float* src, float* dst, int64_t len, int64_t base,
                                                      uint32_t lo, uint32_t hi, double scale, int qmax, int8_t* q,
                                                      std::vector<Candidate>* cand, uint32_t* hist, int shift,
                                                      const float* next = nullptr) {
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
    for (int v = -qmax; v <= qmax; ++v) tab[v + 7] = static_cast<float>(static_cast<double>(v) * scale);
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
        y = _mm256_blendv_ps(_mm256_permutevar8x32_ps(tab_lo, idx), _mm256_permutevar8x32_ps(tab_hi, idx),
                             _mm256_castsi256_ps(_mm256_cmpgt_epi32(idx, seven)));
      } else {
        const __m256d ylo = _mm256_mul_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(r)), vscale);
        const __m256d yhi = _mm256_mul_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(r, 1)), vscale);
        y = _mm256_set_m128(_mm256_cvtpd_ps(yhi), _mm256_cvtpd_ps(ylo));
      }
      if (q) {
        const __m256i qi = _mm256_cvtps_epi32(r);
        const __m128i q16 = _mm_packs_epi32(_mm256_castsi256_si128(qi), _mm256_extracti128_si256(qi, 1));
        _mm_storel_epi64(reinterpret_cast<__m128i*>(q + j), _mm_packs_epi16(q16, q16));
      }
    }
    _mm256_storeu_ps(dst + j, y);
  }
  if (cand) flush_candidates(*cand, staged, nstaged);  // before the tail appends, to keep index order
  for (; j < len; ++j) pruned += one(j);
  return pruned;
}
#endif

int64_t prune_quantize_row(float* w, int64_t len, uint32_t limit, double scale, int qmax, int8_t* q,
                           const float* next = nullptr) {
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
  static const bool avx2 = __builtin_cpu_supports("avx2");
  if (avx2) return sweep_row_avx2(w, w, len, 0, limit, 0, scale, qmax, q, nullptr, nullptr, 0, next);
#endif
  return prune_quantize_row_scalar(w, len, limit, scale, qmax, q);
}


// Per-group clipping search for WeightCalibration::kMse over values `v` (a copy).
double mse_amax(const std::vector<float>& v, double amax, int qmax) {
  if (amax == 0.0) return 0.0;
  double best_amax = amax, best_err = std::numeric_limits<double>::infinity();
  for (int i = 0; i < 80; ++i) {
    const double a = amax * (1.0 - 0.01 * i);
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
void group_indices(const WeightLayout& l, const Granularity& g, int64_t gi, std::vector<int64_t>& idx) {
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

void check_size(std::span<float> w, const WeightLayout& l) {
  if (static_cast<int64_t>(w.size()) != l.numel())
    throw std::invalid_argument("weight buffer has " + std::to_string(w.size()) +
                                " elements but its layout describes " + std::to_string(l.numel()));
}

}  // namespace

WeightLayout WeightLayout::dense(int64_t out_features, int64_t in_features, bool transposed) {
  WeightLayout l;
  l.out_channels = out_features;
  l.in_per_group = in_features;
  l.transposed = transposed;
  return l;
}

WeightLayout WeightLayout::conv(int64_t out_channels, int64_t in_per_group, int64_t kernel_elements) {
  WeightLayout l;
  l.out_channels = out_channels;
  l.in_per_group = in_per_group;
  l.kernel_elements = kernel_elements;
  return l;
}

WeightLayout WeightLayout::from_layer(const model::LayerInfo& layer) {
  if (layer.op == "Conv") {
    int64_t k = 1;
    for (size_t i = 2; i < layer.weight_shape.size(); ++i) k *= layer.weight_shape[i];
    return conv(layer.weight_shape.at(0), layer.weight_shape.at(1), k);
  }
  if (layer.weight_shape.size() != 2)
    throw std::invalid_argument("layer " + layer.name + ": expected a 2-D weight for " + layer.op);
  if (layer.weight_transposed) return dense(layer.weight_shape[1], layer.weight_shape[0], true);
  return dense(layer.weight_shape[0], layer.weight_shape[1], false);
}

int64_t group_count(const WeightLayout& layout, const Granularity& g) {
  switch (g.kind) {
    case GranularityKind::kPerTensor: return 1;
    case GranularityKind::kPerChannel: return layout.out_channels;
    case GranularityKind::kGroup:
      return layout.out_channels * ((layout.row_length() + g.group_size - 1) / g.group_size);
  }
  return 1;
}

int64_t prune_unstructured(std::span<float> w, double ratio, PruneMask* mask) {
  const int64_t n = static_cast<int64_t>(w.size());
  const int64_t k = static_cast<int64_t>(std::floor(ratio * static_cast<double>(n)));
  if (mask) mask->assign(n, 0);
  if (k <= 0) return 0;
  const Selection s = select_smallest(w.data(), n, k);
  const int64_t rows = std::max<int64_t>(1, std::min<int64_t>(n / 4096, 4096));
  int64_t total = 0;
#pragma omp parallel for schedule(static) reduction(+ : total) if (parallel_worth(w.size()))
  for (int64_t r = 0; r < rows; ++r) {
    total += prune_range(w.data(), n * r / rows, n * (r + 1) / rows, s, mask ? mask->data() : nullptr);
  }
  return total;
}

std::vector<int64_t> prune_channels(std::span<float> w, const WeightLayout& layout, double ratio,
                                    PruneMask* mask) {
  check_size(w, layout);
  const int64_t O = layout.out_channels, R = layout.row_length();
  const int64_t k = static_cast<int64_t>(std::floor(ratio * static_cast<double>(O)));
  if (mask) mask->assign(w.size(), 0);
  if (k <= 0) return {};
  std::vector<double> norm(O, 0.0);
  // Sum of squares in double, in reduction-row order, so equal channels tie exactly.
  // Sum of squares in double over the reduction row, position r into accumulator r mod 4, then
  // (a0 + a1) + (a2 + a3): four independent chains instead of one add latency per weight, and the
  // same order whatever the storage layout, so equal channels still tie exactly. Row position
  // r = k * I + i sits at o*R + i*K + k (or r*O + o transposed); walking k, then i, avoids
  // layout.index's divisions.
  const int64_t I = layout.in_per_group, K = layout.kernel_elements;
#pragma omp parallel for schedule(static) if (parallel_worth(w.size()))
  for (int64_t o = 0; o < O; ++o) {
    double acc[4] = {0.0, 0.0, 0.0, 0.0};
    if (!layout.transposed && K == 1) {
      const float* row = w.data() + o * R;
      int64_t r = 0;
      for (; r + 4 <= R; r += 4) {
        for (int j = 0; j < 4; ++j) acc[j] += double(row[r + j]) * double(row[r + j]);
      }
      for (; r < R; ++r) acc[r & 3] += double(row[r]) * double(row[r]);
    } else if (layout.transposed) {
      for (int64_t r = 0; r < R; ++r) {
        const double x = w[r * O + o];
        acc[r & 3] += x * x;
      }
    } else {
      const float* row = w.data() + o * R;
      int64_t r = 0;
      for (int64_t k = 0; k < K; ++k) {
        for (int64_t i = 0; i < I; ++i, ++r) {
          const double x = row[i * K + k];
          acc[r & 3] += x * x;
        }
      }
    }
    norm[o] = (acc[0] + acc[1]) + (acc[2] + acc[3]);
  }
  std::vector<int64_t> order(O);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return norm[a] < norm[b]; });
  std::vector<int64_t> pruned(order.begin(), order.begin() + k);
  std::sort(pruned.begin(), pruned.end());
  for (int64_t o : pruned) {
    // The same set of positions as layout.index(o, r) over r: one contiguous row, or a column.
    const int64_t first = layout.transposed ? o : o * R, stride = layout.transposed ? O : 1;
    for (int64_t r = 0; r < R; ++r) {
      const int64_t i = first + r * stride;
      w[i] = 0.0f;
      if (mask) (*mask)[i] = 1;
    }
  }
  return pruned;
}

// One N:M group of `m` weights `stride` apart (M > 0 fixes m at compile time): zeroes all but the
// n largest |w|, ties to the lower index. Each weight's rank in that stable largest-first order
// comes from m^2 branch-free compares, and keep/zero is a select, not a branch (a branch would be
// mispredicted on most groups).
template <int M>
inline void nm_group(float* w, int64_t stride, int n, uint8_t* mask, int m = M) {
  if constexpr (M > 0) m = M;
  float a[M > 0 ? M : 8];
  for (int j = 0; j < m; ++j) a[j] = std::fabs(w[j * stride]);
  for (int j = 0; j < m; ++j) {
    int rank = 0;
    for (int i = 0; i < m; ++i) rank += (a[i] > a[j]) | ((a[i] == a[j]) & (i < j));
    float& x = w[j * stride];
    x = rank < n ? x : 0.0f;
    if (mask) mask[j * stride] = rank >= n;
  }
}

#if defined(__x86_64__)
// 2:4 / 1:4 / 3:4 on `groups` contiguous groups of 4 (SSE2, baseline x86-64): nm_group<4>'s rule,
// four lanes at a time. Lane j compares its |w| with the group's others by rotating the group
// (rotation s puts weight (j + s) mod 4 in lane j, which has the lower index exactly when
// j >= 4 - s); its rank is the count of weights that go before it, and it is kept when rank < n.
// Kept weights keep their bits; pruned ones become +0, as in the scalar path.
void nm4_contiguous_sse(float* w, int64_t groups, int n) {
  const __m128 abs_mask = _mm_castsi128_ps(_mm_set1_epi32(0x7fffffff));
  const __m128i lower1 = _mm_setr_epi32(0, 0, 0, -1), lower2 = _mm_setr_epi32(0, 0, -1, -1),
                lower3 = _mm_setr_epi32(0, -1, -1, -1);
  const __m128i minus_n = _mm_set1_epi32(-n);
  for (int64_t g = 0; g < groups; ++g) {
    const __m128 x = _mm_loadu_ps(w + 4 * g);
    const __m128 a = _mm_and_ps(x, abs_mask);
    auto before = [&](__m128 p, __m128i lower) {  // -1 where the rotated weight goes first
      return _mm_or_si128(_mm_castps_si128(_mm_cmpgt_ps(p, a)),
                          _mm_and_si128(_mm_castps_si128(_mm_cmpeq_ps(p, a)), lower));
    };
    const __m128i neg_rank = _mm_add_epi32(
        _mm_add_epi32(before(_mm_shuffle_ps(a, a, _MM_SHUFFLE(0, 3, 2, 1)), lower1),
                      before(_mm_shuffle_ps(a, a, _MM_SHUFFLE(1, 0, 3, 2)), lower2)),
        before(_mm_shuffle_ps(a, a, _MM_SHUFFLE(2, 1, 0, 3)), lower3));
    const __m128i keep = _mm_cmpgt_epi32(neg_rank, minus_n);  // rank < n
    _mm_storeu_ps(w + 4 * g, _mm_and_ps(x, _mm_castsi128_ps(keep)));
  }
}
#endif

int64_t prune_n_m(std::span<float> w, const WeightLayout& layout, int n, int m, PruneMask* mask) {
  check_size(w, layout);
  if (m < 1 || n < 1 || n > m || m > 64)
    throw std::invalid_argument("N:M pruning needs 1 <= N <= M <= 64, got " + std::to_string(n) + ":" +
                                std::to_string(m));
  if (layout.in_per_group % m != 0)
    throw std::invalid_argument("N:M pruning " + std::to_string(n) + ":" + std::to_string(m) +
                                " needs the input channels per group / input features (" +
                                std::to_string(layout.in_per_group) + ") divisible by " + std::to_string(m));
  if (mask) mask->assign(w.size(), 0);
  const int64_t O = layout.out_channels, R = layout.row_length();
  int64_t total = 0;
#pragma omp parallel for schedule(static) reduction(+ : total) if (parallel_worth(w.size()))
  for (int64_t o = 0; o < O; ++o) {
    const int64_t I = layout.in_per_group, K = layout.kernel_elements;
    // A group (m consecutive row positions r0 = k*I + i0 ...) never straddles a kernel position
    // (I % m == 0), so its weights lie at a fixed stride: K apart (Conv / [O, K]) or O apart
    // (transposed). Walking k, then i0, avoids layout.index's divisions.
    const int64_t stride = layout.transposed ? O : K;
    float a[64];
    int order[64];
#if defined(__x86_64__)
    if (m == 4 && stride == 1 && !layout.transposed && !mask) {  // [O, K] Gemm rows, 1x1 Conv
      nm4_contiguous_sse(w.data() + o * R, I / 4, n);
      total += I / 4 * (m - n);
      continue;
    }
#endif
    for (int64_t k = 0; k < K; ++k) {
      for (int64_t i0 = 0; i0 < I; i0 += m) {
        const int64_t base = layout.transposed ? (k * I + i0) * O + o : o * R + i0 * K + k;
        uint8_t* group_mask = mask ? mask->data() + base : nullptr;
        if (m == 4) {  // the common 2:4 / 1:4: fully unrolled
          nm_group<4>(w.data() + base, stride, n, group_mask);
        } else if (m <= 8) {
          nm_group<0>(w.data() + base, stride, n, group_mask, m);
        } else {
          // Stable largest-first insertion sort (std::stable_sort would allocate per group).
          for (int j = 0; j < m; ++j) a[j] = std::fabs(w[base + j * stride]);
          float mag[64];
          for (int j = 0; j < m; ++j) {
            int at = j;
            while (at > 0 && mag[at - 1] < a[j]) {
              mag[at] = mag[at - 1];
              order[at] = order[at - 1];
              --at;
            }
            mag[at] = a[j];
            order[at] = j;
          }
          for (int j = n; j < m; ++j) {
            w[base + order[j] * stride] = 0.0f;
            if (mask) (*mask)[base + order[j] * stride] = 1;
          }
        }
        total += m - n;
      }
    }
  }
  return total;
}

void quantize_weights(std::span<float> w, const WeightLayout& layout, int bits, const Granularity& g,
                      WeightCalibration calibration, QuantizedWeights* out) {
  check_size(w, layout);
  if (bits < 2 || bits > 8)
    throw std::invalid_argument("quantize_weights: bits must be in 2..8, got " + std::to_string(bits));
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
    if (calibration == WeightCalibration::kMse) a = mse_amax(std::vector<float>(w.begin(), w.end()), a, qmax);
    const double scale = scale_from_amax(a, qmax);
    if (out) out->scales[0] = scale;
    const int64_t chunks = std::max<int64_t>(1, n / 65536);
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
      if (calibration == WeightCalibration::kMse) a = mse_amax(std::vector<float>(row, row + R), a, qmax);
      const double scale = scale_from_amax(a, qmax);
      if (out) out->scales[o] = scale;
      prune_quantize_row(row, R, 0, scale, qmax, q ? q + o * R : nullptr, o + 1 < layout.out_channels ? row + R : nullptr);
    }
    return;
  }
  if (g.kind == GranularityKind::kPerChannel && layout.transposed && calibration == WeightCalibration::kMinMax) {
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

uint16_t float_to_half_bits(float x) {
  uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  const uint32_t sign = (u >> 16) & 0x8000u;
  const uint32_t abs = u & 0x7fffffffu;
  if (abs >= 0x7f800000u) {  // inf or NaN (keep NaN quiet and non-zero)
    return static_cast<uint16_t>(sign | 0x7c00u | (abs > 0x7f800000u ? 0x200u | (abs >> 13) : 0u));
  }
  if (abs >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // rounds to >= 65520: inf
  if (abs < 0x38800000u) {
    // Result is subnormal (or zero) in half: value = m * 2^-24 with m rounded to nearest even.
    if (abs < 0x33000000u) return static_cast<uint16_t>(sign);  // < 2^-25: rounds to 0
    const uint32_t exp = abs >> 23;
    const uint32_t mant = (abs & 0x7fffffu) | 0x800000u;
    const uint32_t shift = 126 - exp;  // 14..24 bits to drop (value = mant * 2^(exp-150))
    const uint32_t kept = mant >> shift;
    const uint32_t rem = mant & ((1u << shift) - 1);
    const uint32_t half = 1u << (shift - 1);
    uint32_t r = kept + (rem > half || (rem == half && (kept & 1u)));
    return static_cast<uint16_t>(sign | r);
  }
  // Normal: rebias the exponent and round the 13 dropped mantissa bits to nearest even; a carry
  // into the exponent is the correct next binade.
  uint32_t h = ((abs - 0x38000000u) >> 13);
  const uint32_t rem = abs & 0x1fffu;
  h += (rem > 0x1000u || (rem == 0x1000u && (h & 1u)));
  return static_cast<uint16_t>(sign | h);
}

float half_bits_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  const uint32_t mant = h & 0x3ffu;
  uint32_t u;
  if (exp == 0) {
    if (mant == 0) {
      u = sign;
    } else {
      const float v = std::ldexp(static_cast<float>(mant), -24);
      std::memcpy(&u, &v, sizeof u);
      u |= sign;
    }
  } else if (exp == 31) {
    u = sign | 0x7f800000u | (mant << 13);
  } else {
    u = sign | ((exp + 112) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

void round_weights_to_half(std::span<float> w) {
  const int64_t n = static_cast<int64_t>(w.size());
#pragma omp parallel for schedule(static) if (parallel_worth(w.size()))
  for (int64_t i = 0; i < n; ++i) w[i] = round_to_half(w[i]);
}

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
      for (auto it = std::lower_bound(s.ties.begin(), s.ties.end(), o * R); it != s.ties.end() && *it < (o + 1) * R;
           ++it, ++ties_here)
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
      total += pruned + prune_quantize_row(row, R, limit, scale, qmax, q ? q + o * R : nullptr, o + 1 < O ? row + R : nullptr);
    }
    res.pruned_weights = total;
    return res;
  }

  PruneMask mask;
  PruneMask* mask_ptr = bits == 1 ? &mask : nullptr;  // only binarization needs the mask
  switch (p.kind) {
    case PruneKind::kNone: break;
    case PruneKind::kUnstructured: res.pruned_weights = prune_unstructured(w, p.ratio, mask_ptr); break;
    case PruneKind::kChannel:
      res.pruned_channels = prune_channels(w, layout, p.ratio, mask_ptr);
      res.pruned_weights = static_cast<int64_t>(res.pruned_channels.size()) * layout.row_length();
      break;
    case PruneKind::kNM: res.pruned_weights = prune_n_m(w, layout, p.n, p.m, mask_ptr); break;
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

}  // namespace compsearch::compressors

namespace compsearch::compressors {

namespace {

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
// Out-of-place unstructured pruning (k > 0 weights, or none for k = 0) + per-channel minmax
// quantization of contiguous rows in ONE read pass over `src`: a strided sample brackets the
// threshold key in [lo, hi]; each row's max is taken (the row then sits in L2) and the row is
// swept to `dst`, zeroing keys below lo, quantizing the others and setting aside the few inside
// the bracket. The selection then finishes on those candidates alone and only the ones it prunes
// are rewritten (as 0). A row whose max lies inside the bracket (its amax depends on the threshold) is
// redone whole at the end. Returns false, having written garbage to dst, when the bracket misses
// the threshold; the caller then takes the exact two-pass path.
bool sweep_prune_quantize(const float* src, float* dst, int64_t O, int64_t R, int64_t k, int qmax, int8_t* q,
                          std::vector<double>& scales) {
  const int64_t n = O * R;
  uint32_t lo = 0, hi = 0;
  if (k > 0) {
    // A larger sample than select_smallest's: every pruned candidate costs a second touch here,
    // so a bracket of +-4 standard deviations of the sample quantile at 2^17 samples (0.7 times
    // as wide as at 2^16) pays for the extra sampling.
    KeySample sample(src, n, k);
    std::tie(lo, hi) = sample.bracket(sample.sigma4, 0x7fffffffu);
  }
  // Candidate keys are histogrammed as they are found (2^14 bins over [lo, hi]), so the bucket
  // of the threshold is known without another look at them.
  int shift = 0;
  while (((hi - lo) >> shift) >= (1u << 14)) ++shift;
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
        for (size_t c = first; c < parts[t].size(); ++c) ++hists[t][(parts[t][c].key - lo) >> shift];
        continue;
      }
      scales[o] = scale_from_amax(amax, qmax);
      below += sweep_row_avx2(s, dst + o * R, R, o * R, lo, hi, scales[o], qmax, q ? q + o * R : nullptr,
                              k > 0 ? &parts[t] : nullptr, k > 0 ? hists[t].data() : nullptr, shift,
                              o + 1 < r1 ? s + R : nullptr);
    }
    part_below[t] = below;
  }
  if (k == 0) return true;
  const bool any_redo = std::find(part_redo.begin(), part_redo.end(), 1) != part_redo.end();
  int64_t below = 0, inside = 0;
  for (int t = 0; t < threads; ++t) below += part_below[t], inside += static_cast<int64_t>(parts[t].size());
  if (k - 1 < below || k - 1 >= below + inside) return false;
  const int64_t rank = k - 1 - below;  // among the candidates
  const auto [bucket, before] = bucket_of_rank(hists, rank);  // lower buckets: all pruned
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
    const bool pruned = c.key < sel.t_key || std::binary_search(sel.ties.begin(), sel.ties.end(), c.index);
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
    for (auto it = std::lower_bound(sel.ties.begin(), sel.ties.end(), o * R); it != sel.ties.end() && *it < (o + 1) * R;
         ++it)
      dst[*it] = 0.0f;
    zero_below(d, R, sel.t_key);
    scales[o] = scale_from_amax(amax_contiguous(d, R), qmax);
    prune_quantize_row(d, R, 0, scales[o], qmax, q ? q + o * R : nullptr);
  }
  return true;
}
#endif

}  // namespace

WeightCompressionResult compress_weights(std::span<const float> src, std::span<float> dst, const WeightLayout& layout,
                                         const LayerSetting& setting, QuantizedWeights* out) {
  if (src.size() != dst.size())
    throw std::invalid_argument("compress_weights: source has " + std::to_string(src.size()) +
                                " elements but the destination " + std::to_string(dst.size()));
  check_size(dst, layout);
  const PruneSpec& p = setting.prune;
  const int bits = setting.w_bits;
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
  static const bool avx2 = __builtin_cpu_supports("avx2");
  const int64_t n = static_cast<int64_t>(dst.size());
  if (avx2 && bits >= 2 && bits <= 8 && !layout.transposed && setting.granularity.kind == GranularityKind::kPerChannel &&
      setting.w_calibration == WeightCalibration::kMinMax &&
      (p.kind == PruneKind::kNone || p.kind == PruneKind::kUnstructured) && n >= (int64_t{1} << 20)) {
    const int64_t k =
        p.kind == PruneKind::kUnstructured ? static_cast<int64_t>(std::floor(p.ratio * static_cast<double>(n))) : 0;
    std::vector<double> scales;
    int8_t* q = nullptr;
    if (out) {
      out->q.assign(n, 0);
      q = out->q.data();
    }
    if (sweep_prune_quantize(src.data(), dst.data(), layout.out_channels, layout.row_length(), k, qmax_for(bits), q,
                             scales)) {
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
  const int64_t chunks = std::max<int64_t>(1, static_cast<int64_t>(dst.size()) / 65536);
#pragma omp parallel for schedule(static) if (parallel_worth(dst.size()))
  for (int64_t c = 0; c < chunks; ++c) {
    const size_t b = dst.size() * c / chunks, e = dst.size() * (c + 1) / chunks;
    std::memcpy(dst.data() + b, src.data() + b, (e - b) * sizeof(float));
  }
  return compress_weights(dst, layout, setting, out);
}

}  // namespace compsearch::compressors
