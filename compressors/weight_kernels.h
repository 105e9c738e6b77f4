// Weight kernels: prune, quantize, binarize and half-round one weight tensor held as a flat float
// buffer in ONNX storage order, described by its layout (DESIGN.md "Compression semantics",
// rules 1-7). Nothing here needs a graph, so every rule is testable on hand-made tensors.
//
// All kernels work in place and are parallel (OpenMP) over output channels or chunks; results do
// not depend on the thread count.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "compressors/recipe.h"
#include "model/half.h"

namespace compsearch::model {
struct LayerInfo;
}

namespace compsearch::compressors {

// Where the weights of output channel `o` sit in storage, and in which order its reduction row
// runs. Conv weights are stored [O, I/g, kh, kw] but the reduction row is ordered [kh][kw][I/g]
// (input channel fastest, DESIGN.md); Gemm with transB=1 stores [O, K]; Gemm with transB=0 and
// MatMul store [K, O] (`transposed`).
struct WeightLayout {
  int64_t out_channels = 1;
  int64_t in_per_group = 1;     // Conv: I/groups; Gemm/MatMul: input features K
  int64_t kernel_elements = 1;  // Conv: kh*kw; 1 otherwise
  bool transposed = false;      // storage [K, O]

  int64_t row_length() const { return in_per_group * kernel_elements; }
  int64_t numel() const { return out_channels * row_length(); }
  // Flat storage index of position r (0 <= r < row_length) of output channel o's reduction row.
  int64_t index(int64_t o, int64_t r) const {
    if (transposed) return r * out_channels + o;
    const int64_t k = r / in_per_group, i = r % in_per_group;
    return o * row_length() + i * kernel_elements + k;
  }

  static WeightLayout dense(int64_t out_features, int64_t in_features, bool transposed = false);
  static WeightLayout conv(int64_t out_channels, int64_t in_per_group, int64_t kernel_elements);
  // From a layer-table row (Conv, Gemm honouring transB, MatMul).
  static WeightLayout from_layer(const model::LayerInfo& layer);
};

// One byte per weight, 1 = pruned. Empty means "nothing pruned".
using PruneMask = std::vector<uint8_t>;

// Rule 2: zeroes the floor(ratio * n) weights of smallest |w|; among equal |w| the lower flat index
// goes first. Uses a sampled bracket and selection, never a full sort. Returns the count zeroed.
// `mask`, if given, is resized to n and marks the pruned weights.
int64_t prune_unstructured(std::span<float> w, double ratio, PruneMask* mask = nullptr);

// Rule 3: zeroes the floor(ratio * O) output channels of smallest L2 norm (ties: lower index).
// Returns the pruned channel indices in increasing order (the caller zeroes the bias).
std::vector<int64_t> prune_channels(std::span<float> w, const WeightLayout& layout, double ratio,
                                    PruneMask* mask = nullptr);

// Rule 4: in each run of m consecutive weights of every reduction row, keeps the n of largest |w|
// (ties: lower index). Throws std::invalid_argument if in_per_group is not divisible by m.
// Returns the count zeroed.
int64_t prune_n_m(std::span<float> w, const WeightLayout& layout, int n, int m,
                  PruneMask* mask = nullptr);

// Integer form of a quantized or binarized tensor, for export: q in storage order and one scale per
// group. Groups: 1 (per_tensor), O (per_channel) or O * ceil(R / G) ordered [o][g] (group:G).
// For binary layers q is -1/0/+1 and the scale is alpha.
struct QuantizedWeights {
  int bits = 32;
  Granularity granularity;
  std::vector<int8_t> q;
  std::vector<double> scales;
};

int64_t group_count(const WeightLayout& layout, const Granularity& g);

// The grid of the MSE calibration (weights here, activations in activation_quant.h): clipping
// ranges amax * (1 - kMseClipStep * i), i = 0 .. kMseClipSteps - 1. Steps of 1% are about one
// 8-bit quantization step (1/127 of amax); the grid ends at 21% of amax, below the MSE-optimal
// 2-bit clip of Gaussian weights (1.71 sigma, Banner et al. 2019, against a max of ~4-5 sigma).
constexpr int kMseClipSteps = 80;
constexpr double kMseClipStep = 0.01;

// Rule 5 (2..8 bits): symmetric narrow-range fake quantization in place, computed in double and
// stored as float. kMse chooses, per group, the clipping amax on the grid above with the smallest
// squared error (first on ties).
void quantize_weights(std::span<float> w, const WeightLayout& layout, int bits,
                      const Granularity& g,
                      WeightCalibration calibration = WeightCalibration::kMinMax,
                      QuantizedWeights* out = nullptr);

// Rule 6 (1 bit): w = alpha * sgn(w) with sgn(0) = +1 and alpha = mean |w| over the group's
// non-pruned weights; pruned weights (mask) stay 0; alpha = 0 when a group is all pruned.
void binarize_weights(std::span<float> w, const WeightLayout& layout, const Granularity& g,
                      const PruneMask* pruned = nullptr, QuantizedWeights* out = nullptr);

// Rule 7: IEEE binary16 with round-to-nearest-even (overflow to inf, subnormals kept); the one
// conversion of the project, model/half.h.
using model::float_to_half_bits;
using model::half_bits_to_float;
using model::round_to_half;
void round_weights_to_half(std::span<float> w);

// What compress_weights did, for size accounting and channel propagation.
struct WeightCompressionResult {
  int64_t pruned_weights = 0;
  std::vector<int64_t> pruned_channels;  // channel pruning only
};

// Rules 1-7 for one tensor: prune, then quantize / binarize / half-round. Unstructured pruning
// with per-channel quantization of a non-transposed tensor runs fused, one pass per row.
WeightCompressionResult compress_weights(std::span<float> w, const WeightLayout& layout,
                                         const LayerSetting& setting,
                                         QuantizedWeights* out = nullptr);

// The same, out of place: dst receives the compressed `src` (same size; src is left intact), bit
// for bit what the in-place call gives. For large tensors (>= 2^20 weights, AVX2) with unstructured
// or no pruning and per-channel minmax quantization of a non-transposed layout, this reads src
// once and writes dst once, as a copy would (the in-place path needs a read pass for the pruning
// threshold first); everything else copies, then runs in place. Throws std::invalid_argument when
// the sizes differ.
WeightCompressionResult compress_weights(std::span<const float> src, std::span<float> dst,
                                         const WeightLayout& layout, const LayerSetting& setting,
                                         QuantizedWeights* out = nullptr);

// Round half to even of a double whose magnitude is below 2^51 (the FPU's default rounding).
inline double round_half_even(double x) {
  constexpr double kMagic = 6755399441055744.0;  // 1.5 * 2^52: adding it leaves integer ulps
  return (x + kMagic) - kMagic;
}

}  // namespace compsearch::compressors
