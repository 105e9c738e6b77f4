// Activation fake quantization and calibration observers (DESIGN.md rule 8).
#include "compressors/activation_quant.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

#include "compressors/weight_kernels.h"

namespace compsearch::compressors {

namespace {

// Up to 2^16 values (a 256 KiB activation) fake quantization takes tens of microseconds, about
// what an OpenMP fork-join costs on a busy machine, so it runs on the calling thread.
constexpr int64_t kActivationParallelMin = int64_t{1} << 16;

}  // namespace

ActivationQuantParams activation_quant_params(float lo, float hi, int bits) {
  ActivationQuantParams p;
  p.bits = bits;
  if (bits != 4 && bits != 8 && bits != 16 && bits != 32)
    throw std::invalid_argument("a_bits must be 4, 8, 16 or 32, got " + std::to_string(bits));
  p.lo = std::min(0.0f, lo);
  p.hi = std::max(0.0f, hi);
  if (bits >= 16) return p;
  const double levels = static_cast<double>((1 << bits) - 1);
  const double range = static_cast<double>(p.hi) - static_cast<double>(p.lo);
  p.scale = range == 0.0 ? 1.0 : range / levels;
  const double zp = round_half_even(-static_cast<double>(p.lo) / p.scale);
  p.zero_point = static_cast<int64_t>(std::min(std::max(zp, 0.0), levels));
  return p;
}

void fake_quantize_activations(std::span<float> x, const ActivationQuantParams& p) {
  const int64_t n = static_cast<int64_t>(x.size());
  if (p.bits == 32) return;
  if (p.bits == 16) {
    for (int64_t i = 0; i < n; ++i) x[i] = round_to_half(x[i]);
    return;
  }
  const double levels = static_cast<double>((1 << p.bits) - 1);
  const double zp = static_cast<double>(p.zero_point), scale = p.scale;
#pragma omp parallel for schedule(static) if (n > kActivationParallelMin)
  for (int64_t i = 0; i < n; ++i) {
    double q = round_half_even(static_cast<double>(x[i]) / scale) + zp;
    q = q < 0.0 ? 0.0 : (q > levels ? levels : q);
    x[i] = static_cast<float>((q - zp) * scale);
  }
}

void ActivationObserver::observe(std::span<const float> x) {
  for (float v : x) {
    if (count_ == 0) {
      min_ = max_ = v;
    } else {
      min_ = std::min(min_, v);
      max_ = std::max(max_, v);
    }
    ++count_;
    if (phase_ == 0) samples_.push_back(v);
    if (++phase_ == stride_) phase_ = 0;
    if (static_cast<int64_t>(samples_.size()) >= max_samples_) {
      // Keep every other sample and halve the rate from now on: deterministic and bounded.
      size_t j = 0;
      for (size_t i = 0; i < samples_.size(); i += 2) samples_[j++] = samples_[i];
      samples_.resize(j);
      stride_ *= 2;
      phase_ = 0;
    }
  }
}

namespace {

double quant_error(const std::vector<float>& v, const ActivationQuantParams& p) {
  const double levels = static_cast<double>((1 << p.bits) - 1);
  const double zp = static_cast<double>(p.zero_point);
  double err = 0.0;
  for (float x : v) {
    double q = round_half_even(static_cast<double>(x) / p.scale) + zp;
    q = q < 0.0 ? 0.0 : (q > levels ? levels : q);
    const double d =
        static_cast<double>(x) - static_cast<double>(static_cast<float>((q - zp) * p.scale));
    err += d * d;
  }
  return err;
}

// Value at percentile `pct` (0..100) with linear interpolation between order statistics, as
// numpy.percentile's default does.
float percentile_of(std::vector<float> v, double pct) {
  if (v.empty()) return 0.0f;
  const double pos = pct / 100.0 * static_cast<double>(v.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(pos));
  const size_t hi = std::min(lo + 1, v.size() - 1);
  std::nth_element(v.begin(), v.begin() + lo, v.end());
  const double a = v[lo];
  double b = a;
  if (hi != lo) b = *std::min_element(v.begin() + lo + 1, v.end());
  return static_cast<float>(a + (b - a) * (pos - static_cast<double>(lo)));
}

}  // namespace

ActivationQuantParams ActivationObserver::params(int bits, ActivationCalibration method,
                                                 double percentile) const {
  if (method == ActivationCalibration::kMinMax || bits >= 16)
    return activation_quant_params(min_, max_, bits);
  if (method == ActivationCalibration::kPercentile) {
    return activation_quant_params(percentile_of(samples_, 100.0 - percentile),
                                   percentile_of(samples_, percentile), bits);
  }
  ActivationQuantParams best = activation_quant_params(min_, max_, bits);
  double best_err = std::numeric_limits<double>::infinity();
  for (int i = 0; i < kMseClipSteps; ++i) {
    const float f = static_cast<float>(1.0 - kMseClipStep * i);
    const ActivationQuantParams p = activation_quant_params(min_ * f, max_ * f, bits);
    const double err = quant_error(samples_, p);
    if (err < best_err) best_err = err, best = p;
  }
  return best;
}

}  // namespace compsearch::compressors
