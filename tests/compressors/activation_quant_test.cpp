// Activation quantization (DESIGN.md rule 8) against hand computations and PyTorch goldens, and the
// calibration observers.
#include "compressors/activation_quant.h"

#include <doctest/doctest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

using namespace compsearch::compressors;

TEST_CASE("Activation parameters widen the range to contain zero") {
  // [0.5, 2.55] -> [0, 2.55], scale 0.01, zero point 0.
  auto p = activation_quant_params(0.5f, 2.55f, 8);
  CHECK(p.lo == 0.0f);
  CHECK(p.scale == doctest::Approx(2.55f / 255.0));
  CHECK(p.zero_point == 0);
  // [-1, 2] at 4 bits: scale 0.2, zero point round(5) = 5.
  p = activation_quant_params(-1.0f, 2.0f, 4);
  CHECK(p.scale == doctest::Approx(0.2));
  CHECK(p.zero_point == 5);
  // hi = lo = 0: scale 1.
  p = activation_quant_params(0.0f, 0.0f, 8);
  CHECK(p.scale == 1.0);
  CHECK(p.zero_point == 0);
  CHECK_THROWS_WITH_AS(activation_quant_params(0, 1, 3), "a_bits must be 4, 8, 16 or 32, got 3",
                       std::invalid_argument);
}

TEST_CASE("Activation fake quantization clamps to the unsigned range and rounds ties to even") {
  // [-1, 2] at 4 bits: scale 0.2, zp 5: q = clamp(round(x / 0.2) + 5, 0, 15).
  const auto p = activation_quant_params(-1.0f, 2.0f, 4);
  std::vector<float> x = {-3.0f, 2.9f, 0.1f, 0.3f, 0.0f};
  fake_quantize_activations(x, p);
  CHECK(x[0] == static_cast<float>(-5 * p.scale));  // clamped at q = 0
  CHECK(x[1] == static_cast<float>(10 * p.scale));  // clamped at q = 15
  CHECK(x[4] == 0.0f);
  // 0.1 / 0.2 and 0.3 / 0.2 land within an ulp of .5 ties; the result is one of the two neighbours.
  CHECK((x[2] == 0.0f || x[2] == static_cast<float>(p.scale)));
  CHECK((x[3] == static_cast<float>(p.scale) || x[3] == static_cast<float>(2 * p.scale)));
  std::vector<float> h = {1.0f + 1.0f / 2048, 3.14159f};
  fake_quantize_activations(h, activation_quant_params(0, 0, 16));
  CHECK(h[0] == 1.0f);
  CHECK(h[1] == 3.140625f);
}

TEST_CASE("Activation fake quantization reproduces the PyTorch goldens") {
  std::ifstream in(std::string(COMPSEARCH_TEST_DATA) + "/compressors/goldens.json");
  REQUIRE(in.good());
  const auto j = nlohmann::json::parse(in);
  int checked = 0;
  for (const auto& c : j.at("cases")) {
    if (c.at("kind") != "activation") continue;
    CAPTURE(c.at("name").get<std::string>());
    auto x = c.at("input").get<std::vector<float>>();
    const auto p =
        activation_quant_params(c.at("lo").get<float>(), c.at("hi").get<float>(), c.at("bits"));
    CHECK(p.scale == doctest::Approx(c.at("expected_scale").get<double>()).epsilon(1e-6));
    CHECK(p.zero_point == c.at("expected_zero_point").get<int64_t>());
    fake_quantize_activations(x, p);
    const auto want = c.at("expected").get<std::vector<float>>();
    const auto torch_fq = c.at("torch_fake_quantize").get<std::vector<float>>();
    int exact = 0, torch_equal = 0;
    for (size_t i = 0; i < x.size(); ++i) {
      // lo/hi went through float in JSON, so scales agree to ~1e-7: allow a tiny difference.
      CHECK(std::fabs(x[i] - want[i]) <= 1e-5f * (1.0f + std::fabs(want[i])));
      exact += x[i] == want[i];
      torch_equal += std::fabs(x[i] - torch_fq[i]) <= 1e-5f * (1.0f + std::fabs(want[i]));
    }
    CHECK(exact >= static_cast<int>(x.size()) * 95 / 100);
    CHECK(torch_equal >= static_cast<int>(x.size()) * 99 / 100);
    ++checked;
  }
  CHECK(checked == 3);
}

TEST_CASE("Calibration observers give min/max, percentile and MSE ranges") {
  std::vector<float> v(10001);
  for (int i = 0; i <= 10000; ++i) v[i] = static_cast<float>(i) / 100.0f - 20.0f;  // -20 .. 80
  v[5000] = 1000.0f;                                                               // one outlier
  ActivationObserver obs(1 << 20);
  obs.observe(std::span<const float>(v.data(), 4000));
  obs.observe(std::span<const float>(v.data() + 4000, v.size() - 4000));
  CHECK(obs.min() == -20.0f);
  CHECK(obs.max() == 1000.0f);
  auto mm = obs.params(8, ActivationCalibration::kMinMax);
  CHECK(mm.hi == 1000.0f);
  CHECK(mm.lo == -20.0f);
  // 99th percentile of 10001 sorted values: position 9900, which is 79.01 because the outlier
  // replaced 10.0 and shifted the values above it down one place.
  auto pc = obs.params(8, ActivationCalibration::kPercentile, 99.0);
  CHECK(pc.hi == doctest::Approx(79.01).epsilon(1e-5));
  CHECK(pc.lo == doctest::Approx(-19.0).epsilon(1e-4));
}

TEST_CASE("MSE calibration clips a lone outlier when that lowers the error") {
  // 10000 values uniform in [0, 1) and one at 1.3: at 4 bits the finer steps are worth the clip.
  std::vector<float> v(10001);
  for (int i = 0; i < 10000; ++i) v[i] = static_cast<float>(i) / 10000.0f;
  v[10000] = 1.3f;
  ActivationObserver obs;
  obs.observe(v);
  const auto ms = obs.params(4, ActivationCalibration::kMse);
  CHECK(ms.hi < 1.2f);
  CHECK(ms.hi > 0.9f);
  CHECK(ms.lo == 0.0f);
}

TEST_CASE("An observer subsamples deterministically once its buffer is full") {
  ActivationObserver a(1000), b(1000);
  std::vector<float> v(50000);
  for (size_t i = 0; i < v.size(); ++i) v[i] = std::sin(static_cast<float>(i));
  a.observe(v);
  for (size_t i = 0; i < v.size(); i += 1000) b.observe(std::span<const float>(v.data() + i, 1000));
  const auto pa = a.params(8, ActivationCalibration::kPercentile, 99.0);
  const auto pb = b.params(8, ActivationCalibration::kPercentile, 99.0);
  CHECK(pa.hi == pb.hi);
  CHECK(pa.hi == doctest::Approx(0.9995).epsilon(0.01));
}
