// Activation quantization (DESIGN.md rule 8): per-tensor asymmetric unsigned fake quantization at
// a layer's input, with its range from a calibration pass (minmax, percentile or MSE).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "compressors/recipe.h"

namespace compsearch::compressors {

struct ActivationQuantParams {
  int bits = 32;               // 4, 8, 16 or 32
  float lo = 0.0f, hi = 0.0f;  // calibrated range, already widened to contain 0
  double scale = 1.0;
  int64_t zero_point = 0;
};

// Rule 8 for 4 and 8 bits: range [min(0, lo), max(0, hi)], scale = (hi - lo) / (2^b - 1) (1 if
// hi = lo), zero_point = clamp(round_half_even(-lo / scale), 0, 2^b - 1). For 16 and 32 bits only
// `bits` is meaningful.
ActivationQuantParams activation_quant_params(float lo, float hi, int bits);

// x = (clamp(round_half_even(x / scale) + zero_point, 0, 2^b - 1) - zero_point) * scale, computed
// in double; 16 bits rounds to IEEE half; 32 leaves x unchanged.
void fake_quantize_activations(std::span<float> x, const ActivationQuantParams& p);

// Collects the values seen at one layer input during calibration. Min/max are exact over every
// value; percentile and MSE work on a deterministic subsample of at most `max_samples` values
// (every 2^j-th value once the buffer fills), which keeps memory bounded on big calibration sets.
class ActivationObserver {
 public:
  explicit ActivationObserver(int64_t max_samples = int64_t{1} << 22) : max_samples_(max_samples) {}

  void observe(std::span<const float> x);
  bool empty() const { return count_ == 0; }
  float min() const { return min_; }
  float max() const { return max_; }

  // The calibrated parameters for `bits`. kPercentile takes lo / hi at the (100 - p)-th and p-th
  // percentiles; kMse picks, among ranges (lo, hi) * (1 - kMseClipStep i), i < kMseClipSteps
  // (weight_kernels.h), the one with the smallest squared fake-quantization error on the samples
  // (first on ties).
  ActivationQuantParams params(int bits, ActivationCalibration method,
                               double percentile = kDefaultActivationPercentile) const;

 private:
  int64_t max_samples_;
  int64_t count_ = 0;
  int64_t stride_ = 1;  // keep one value in stride_
  int64_t phase_ = 0;
  float min_ = 0.0f, max_ = 0.0f;
  std::vector<float> samples_;
};

}  // namespace compsearch::compressors
