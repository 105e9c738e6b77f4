// Pruning (DESIGN.md rules 2-4): unstructured (the k smallest |w|, threshold from
// weight_kernels_select.cpp), channel (smallest L2 norms) and N:M (the N largest |w| of each run of
// M along a reduction row). Ties always go to the lower index.
#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>
#include <string>

#include "compressors/weight_kernels_internal.h"

namespace compsearch::compressors {

namespace detail {

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

}  // namespace detail

using namespace detail;

namespace {

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

// Unstructured pruning zeroes in at most this many chunks of at least this many weights: enough
// chunks to balance the threads, each long enough to amortise its binary search in the ties.
constexpr int64_t kPruneChunkWeights = 4096, kPruneChunksMax = 4096;

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
    const __m128i neg_rank =
        _mm_add_epi32(_mm_add_epi32(before(_mm_shuffle_ps(a, a, _MM_SHUFFLE(0, 3, 2, 1)), lower1),
                                    before(_mm_shuffle_ps(a, a, _MM_SHUFFLE(1, 0, 3, 2)), lower2)),
                      before(_mm_shuffle_ps(a, a, _MM_SHUFFLE(2, 1, 0, 3)), lower3));
    const __m128i keep = _mm_cmpgt_epi32(neg_rank, minus_n);  // rank < n
    _mm_storeu_ps(w + 4 * g, _mm_and_ps(x, _mm_castsi128_ps(keep)));
  }
}
#endif

}  // namespace

int64_t prune_unstructured(std::span<float> w, double ratio, PruneMask* mask) {
  const int64_t n = static_cast<int64_t>(w.size());
  const int64_t k = static_cast<int64_t>(std::floor(ratio * static_cast<double>(n)));
  if (mask) mask->assign(n, 0);
  if (k <= 0) return 0;
  const Selection s = select_smallest(w.data(), n, k);
  const int64_t rows =
      std::max<int64_t>(1, std::min<int64_t>(n / kPruneChunkWeights, kPruneChunksMax));
  int64_t total = 0;
#pragma omp parallel for schedule(static) reduction(+ : total) if (parallel_worth(w.size()))
  for (int64_t r = 0; r < rows; ++r) {
    total +=
        prune_range(w.data(), n * r / rows, n * (r + 1) / rows, s, mask ? mask->data() : nullptr);
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
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return norm[a] < norm[b]; });
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

int64_t prune_n_m(std::span<float> w, const WeightLayout& layout, int n, int m, PruneMask* mask) {
  check_size(w, layout);
  if (m < 1 || n < 1 || n > m || m > kMaxNmGroup)
    throw std::invalid_argument("N:M pruning needs 1 <= N <= M <= " + std::to_string(kMaxNmGroup) +
                                ", got " + std::to_string(n) + ":" + std::to_string(m));
  if (layout.in_per_group % m != 0)
    throw std::invalid_argument("N:M pruning " + std::to_string(n) + ":" + std::to_string(m) +
                                " needs the input channels per group / input features (" +
                                std::to_string(layout.in_per_group) + ") divisible by " +
                                std::to_string(m));
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
    float a[kMaxNmGroup];
    int order[kMaxNmGroup];
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
          float mag[kMaxNmGroup];
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

}  // namespace compsearch::compressors
