// Internal to the weight kernels (weight_kernels*.cpp); not part of the compressors library's face.
// What the topic files share: the magnitude key, the threshold selection (weight_kernels_select),
// the row kernels that prune and quantize one contiguous row (weight_kernels_quantize,
// weight_kernels_prune), the size check, and the constants that tune them.
//
//   weight_kernels.cpp           WeightLayout, group_count, check_size
//   weight_kernels_select.cpp    the k smallest |w|: sampled bracket, histogram, ties (rule 2)
//   weight_kernels_prune.cpp     unstructured, channel and N:M pruning (rules 2-4)
//   weight_kernels_quantize.cpp  row kernels; quantize (rule 5), binarize (6), half (7)
//   weight_kernels_compress.cpp  compress_weights in place (fused prune + quantize) and out of
//   place
#pragma once

#include <cstdint>
#include <cstring>
#include <span>
#include <utility>
#include <vector>

#include "compressors/weight_kernels.h"

// Hot loops get an AVX2 clone chosen at load time (the build itself targets baseline x86-64).
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define COMPSEARCH_HOT __attribute__((target_clones("avx2", "default"), noinline))
#define COMPSEARCH_AVX2_PATHS 1  // the hand-written AVX2 kernels (GCC's target attribute)
#else
#define COMPSEARCH_HOT
#define COMPSEARCH_AVX2_PATHS 0
#endif

namespace compsearch::compressors::detail {

// Below this many weights a parallel region costs more than it saves (and on a loaded machine a
// fork can cost milliseconds), so small layers run on the calling thread.
constexpr size_t kParallelMinWeights = size_t{1} << 20;
inline bool parallel_worth(size_t n) { return n >= kParallelMinWeights; }

// Below this many weights the threshold selection histograms every key: the 2^17-key sample of
// the bracketed path would be an eighth of the tensor or more, and the tensor sits in cache.
constexpr int64_t kSampledSelectionMinWeights = int64_t{1} << 20;

// The out-of-place one-pass path starts here: below it the tensor sits in L2/L3, where the copy
// plus the in-place path (a second read pass) costs no more than the sampled one-pass sweep.
constexpr int64_t kOnePassMinWeights = int64_t{1} << 20;

// Work unit of the chunked parallel loops (copy, per-tensor quantization): 64 Ki floats = 256 KiB,
// an L2's worth per step.
constexpr int64_t kChunkWeights = 65536;

// Widest N:M group the pruning kernel takes: its per-group scratch lives on the stack.
constexpr int kMaxNmGroup = 64;

inline uint32_t abs_key(float x) {
  uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  return u & 0x7fffffffu;  // non-negative IEEE floats order like their bit patterns
}

inline int qmax_for(int bits) { return (1 << (bits - 1)) - 1; }
inline double scale_from_amax(double amax, int qmax) { return amax == 0.0 ? 1.0 : amax / qmax; }

// Rule 5 for one weight, exactly as DESIGN.md states it (division in double): the reference every
// fast path must equal bit for bit. round_half_even gives +0 for every zero result.
inline float quantize_one(float x, double scale, int qmax, int8_t* q) {
  const double lo = -static_cast<double>(qmax), hi = static_cast<double>(qmax);
  double t = round_half_even(static_cast<double>(x) / scale);
  t = t < lo ? lo : (t > hi ? hi : t);
  if (q) *q = static_cast<int8_t>(t);
  return static_cast<float>(t * scale);
}

// Throws std::invalid_argument when the buffer's size is not the layout's.
void check_size(std::span<const float> w, const WeightLayout& l);

// ---- Threshold selection (weight_kernels_select.cpp) ----

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

// The vector loops stage candidates in a small stack buffer: a push_back there may call the
// allocator, and around a possible call GCC saves every live ymm register on each (frequent)
// entry to the candidate branch. The flush is out of line and rare.
constexpr int kStage = 64;
__attribute__((noinline, cold)) void flush_candidates(std::vector<Candidate>& out,
                                                      const Candidate* staged, int n);

// A strided sample of kSize magnitude keys of w[0, n) and where the k-th smallest key falls in
// it, for bracketing the pruning threshold before one pass over all weights.
struct KeySample {
  // 2^17 keys: +-4 standard deviations of the sample quantile then hold about 1% of the weights
  // at ratio 0.5, and sampling costs 0.1% of a 10^8-weight pass.
  static constexpr int64_t kSize = 1 << 17;
  std::vector<uint32_t> keys;
  int64_t pos = 0;     // the k-th smallest key's expected position in the sorted sample
  int64_t sigma4 = 0;  // 4 standard deviations of that position (+16)

  KeySample(const float* w, int64_t n, int64_t k);

  // The sample's keys at pos -+ margin: 0 below the sample, `open_hi` above it. Two partial
  // selections instead of a sort, since only the bracket ends are needed; callable again with
  // another margin (nth_element takes the keys in any order).
  std::pair<uint32_t, uint32_t> bracket(int64_t margin, uint32_t open_hi);
};

// The histogram bucket holding the candidate of 0-based `rank`, and how many candidates lie in
// lower buckets, summed over per-thread histograms.
std::pair<size_t, int64_t> bucket_of_rank(const std::vector<std::vector<uint32_t>>& hists,
                                          int64_t rank);

// The selection among the candidates of the rank's bucket (`found`, per thread; `below` of all
// candidates lie in lower buckets). Leaves the bucket's candidates in `members`, sorted by
// (key, index), for callers that must visit them.
Selection select_in_bucket(const std::vector<std::vector<Candidate>>& found, int64_t rank,
                           int64_t below, std::vector<Candidate>& members);

// Counts keys below `lo`, appends the weights of w[begin, end) with keys in [lo, hi] to `inside`
// (in index order) and returns the largest key in `max_key` (the row's max |w| for the fused
// prune + quantize path). AVX2 where the CPU has it.
int64_t count_below_collect_inside(const float* w, int64_t begin, int64_t end, uint32_t lo,
                                   uint32_t hi, std::vector<Candidate>& inside, uint32_t* max_key);

// Selects the k smallest keys (1 <= k <= n). If `row_max` is given, the buffer is read as rows of
// `row_len` weights and row_max[o] receives the largest key of row o, from the same read pass.
Selection select_smallest(const float* w, int64_t n, int64_t k, int64_t row_len = 0,
                          std::vector<uint32_t>* row_max = nullptr);

// ---- Row kernels (weight_kernels_prune.cpp, weight_kernels_quantize.cpp) ----

// Zeroes the weights whose key is below `limit`; returns how many.
int64_t zero_below(float* w, int64_t len, uint32_t limit);

// max |w| of a contiguous run.
float amax_contiguous(const float* w, int64_t len);

// Zeroes the weights of one contiguous row whose key is below `limit` (0: none), then quantizes
// the row with one scale (q, if given, receives the integers). `next` (optional) is the row that
// comes next, prefetched while this one computes. Returns how many it zeroed.
int64_t prune_quantize_row(float* w, int64_t len, uint32_t limit, double scale, int qmax, int8_t* q,
                           const float* next = nullptr);

#if COMPSEARCH_AVX2_PATHS
// AVX2 sweep of one contiguous row from `src` to `dst` (equal for in-place work): weights with
// key < lo become 0 and are counted; all others are quantized with `scale`, and with `cand` those
// with lo <= key <= hi are also appended to it (flat index base + j) and counted in hist[(key -
// lo) >> shift]: the caller zeroes the ones the threshold prunes once it is known. Call only
// where the CPU has AVX2.
__attribute__((target("avx2"))) int64_t sweep_row_avx2(const float* src, float* dst, int64_t len,
                                                       int64_t base, uint32_t lo, uint32_t hi,
                                                       double scale, int qmax, int8_t* q,
                                                       std::vector<Candidate>* cand, uint32_t* hist,
                                                       int shift, const float* next = nullptr);
#endif

}  // namespace compsearch::compressors::detail
