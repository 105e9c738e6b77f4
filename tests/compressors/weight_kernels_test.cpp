// Weight kernels against hand-computed cases and PyTorch goldens (tests/data/compressors, made by
// scripts/make_compressor_goldens.py).
#include "compressors/weight_kernels.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <random>
#include <span>
#include <string>

using namespace compsearch::compressors;
using nlohmann::json;

namespace {

const json& goldens() {
  static const json j = [] {
    std::ifstream in(std::string(COMPSEARCH_TEST_DATA) + "/compressors/goldens.json");
    REQUIRE(in.good());
    return json::parse(in);
  }();
  return j;
}

WeightLayout layout_of(const json& c) {
  const json& l = c.at("layout");
  WeightLayout w;
  w.out_channels = l.at("out_channels");
  w.in_per_group = l.at("in_per_group");
  w.kernel_elements = l.at("kernel_elements");
  w.transposed = l.at("transposed");
  return w;
}

std::vector<float> floats(const json& a) { return a.get<std::vector<float>>(); }

// Exact element-wise equality with the first mismatch in the failure message.
void check_equal(const std::vector<float>& got, const std::vector<float>& want,
                 const std::string& name) {
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    if (got[i] != want[i]) {
      FAIL_CHECK(name << ": element " << i << " is " << got[i] << ", expected " << want[i]);
      return;
    }
  }
}

}  // namespace

TEST_CASE("Quantization rounds exact ties half to even and clamps to the narrow range") {
  // amax = 7 at 4 bits: qmax = 7, scale = 1, so w / scale is w itself.
  std::vector<float> w = {0.5f, 1.5f, 2.5f, -0.5f, -2.5f, 7.0f, 3.5f, -7.0f};
  quantize_weights(w, WeightLayout::dense(1, 8), 4, Granularity{GranularityKind::kPerChannel, 0});
  CHECK(w == std::vector<float>{0.0f, 2.0f, 2.0f, -0.0f, -2.0f, 7.0f, 4.0f, -7.0f});
  // 2 bits: qmax = 1, scale = amax; 0.5 * amax is a tie that goes to 0.
  std::vector<float> v = {4.0f, 2.0f, -2.0f, -3.0f, 1.0f};
  quantize_weights(v, WeightLayout::dense(1, 5), 2, Granularity{GranularityKind::kPerChannel, 0});
  CHECK(v == std::vector<float>{4.0f, 0.0f, -0.0f, -4.0f, 0.0f});
}

TEST_CASE("An all-zero channel keeps scale 1 and stays zero") {
  std::vector<float> w = {0, 0, 0, 0, 1.0f, -0.25f, 0.5f, 0.1f};
  QuantizedWeights q;
  quantize_weights(w, WeightLayout::dense(2, 4), 8, Granularity{}, WeightCalibration::kMinMax, &q);
  CHECK(q.scales[0] == 1.0);
  CHECK(q.scales[1] == doctest::Approx(1.0 / 127));
  CHECK(w[0] == 0.0f);
  CHECK(w[3] == 0.0f);
  // -0.25 * 127 = -31.75 -> -32; 0.1 * 127 = 12.7 -> 13
  CHECK(q.q == std::vector<int8_t>{0, 0, 0, 0, 127, -32, 64, 13});
  CHECK(w[5] == static_cast<float>(-32.0 / 127));
}

TEST_CASE("Group quantization gives the last, shorter group of a row its own scale") {
  // Row of 5 with group:2 -> groups {0,1}, {2,3}, {4}.
  std::vector<float> w = {1.0f, -0.5f, 4.0f, 1.0f, -0.3f};
  QuantizedWeights q;
  quantize_weights(w, WeightLayout::dense(1, 5), 8, Granularity{GranularityKind::kGroup, 2},
                   WeightCalibration::kMinMax, &q);
  REQUIRE(q.scales.size() == 3);
  CHECK(q.scales[0] == doctest::Approx(1.0 / 127));
  CHECK(q.scales[1] == doctest::Approx(4.0 / 127));
  CHECK(q.scales[2] == doctest::Approx(0.3f / 127.0));
  CHECK(q.q == std::vector<int8_t>{127, -64, 127, 32, -127});  // -63.5 -> -64 (even), 31.75 -> 32
}

TEST_CASE("Conv groups follow the reduction row order with the input channel fastest") {
  // [O=1, I=2, kh=1, kw=2]: storage (i0k0, i0k1, i1k0, i1k1); reduction row (k0i0, k0i1, k1i0,
  // k1i1).
  const WeightLayout l = WeightLayout::conv(1, 2, 2);
  CHECK(l.index(0, 0) == 0);
  CHECK(l.index(0, 1) == 2);
  CHECK(l.index(0, 2) == 1);
  CHECK(l.index(0, 3) == 3);
  // group:2 pairs storage elements {0,2} and {1,3}.
  std::vector<float> w = {1.0f, 8.0f, 0.5f, 2.0f};
  QuantizedWeights q;
  quantize_weights(w, l, 8, Granularity{GranularityKind::kGroup, 2}, WeightCalibration::kMinMax,
                   &q);
  CHECK(q.scales[0] == doctest::Approx(1.0 / 127));
  CHECK(q.scales[1] == doctest::Approx(8.0 / 127));
  CHECK(q.q == std::vector<int8_t>{127, 127, 64, 32});  // 63.5 -> 64, 31.75 -> 32
}

TEST_CASE("Binarization maps zero to +alpha and keeps pruned weights at zero") {
  std::vector<float> w = {0.0f, -2.0f, 1.0f, 3.0f};
  SUBCASE("nothing pruned: alpha = mean |w| over all four") {
    binarize_weights(w, WeightLayout::dense(1, 4), Granularity{});
    CHECK(w == std::vector<float>{1.5f, -1.5f, 1.5f, 1.5f});
  }
  SUBCASE("first weight pruned: alpha over the three others") {
    PruneMask m = {1, 0, 0, 0};
    binarize_weights(w, WeightLayout::dense(1, 4), Granularity{}, &m);
    CHECK(w == std::vector<float>{0.0f, -2.0f, 2.0f, 2.0f});
  }
  SUBCASE("all pruned: alpha 0") {
    PruneMask m = {1, 1, 1, 1};
    QuantizedWeights q;
    binarize_weights(w, WeightLayout::dense(1, 4), Granularity{}, &m, &q);
    CHECK(w == std::vector<float>{0, 0, 0, 0});
    CHECK(q.scales[0] == 0.0);
  }
  SUBCASE("negative zero is sgn +1 too") {
    std::vector<float> z = {-0.0f, -1.0f};
    binarize_weights(z, WeightLayout::dense(1, 2), Granularity{});
    CHECK(z == std::vector<float>{0.5f, -0.5f});
  }
}

TEST_CASE("Unstructured pruning breaks ties toward the lower flat index") {
  std::vector<float> w = {0.5f, -0.1f, 0.1f, 0.3f, -0.1f, 0.2f};
  // floor(0.5 * 6) = 3 smallest |w|: the three 0.1s (indices 1, 2, 4).
  CHECK(prune_unstructured(w, 0.5) == 3);
  CHECK(w == std::vector<float>{0.5f, 0.0f, 0.0f, 0.3f, 0.0f, 0.2f});
  std::vector<float> v = {0.1f, -0.1f, 0.1f, 0.9f};
  PruneMask m;
  CHECK(prune_unstructured(v, 0.5, &m) == 2);  // two of three tied 0.1s: indices 0 and 1
  CHECK(v == std::vector<float>{0.0f, 0.0f, 0.1f, 0.9f});
  CHECK(m == PruneMask{1, 1, 0, 0});
  std::vector<float> u = {1.0f, 2.0f, 3.0f};
  CHECK(prune_unstructured(u, 0.3) == 0);  // floor(0.9) = 0
}

TEST_CASE("Unstructured pruning of a large tensor with many ties matches a stable sort") {
  // Above the sampled-bracket threshold (2^20) with a value grid that forces ties at the cut.
  const int64_t n = (int64_t{1} << 20) + 777;
  std::vector<float> w(n);
  std::mt19937 rng(7);
  std::uniform_int_distribution<int> d(-50, 50);
  for (auto& x : w) x = static_cast<float>(d(rng)) * 0.01f;
  std::vector<float> ref = w;
  const double ratio = 0.37;
  const int64_t k = static_cast<int64_t>(std::floor(ratio * n));
  std::vector<int64_t> order(n);
  for (int64_t i = 0; i < n; ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return std::fabs(ref[a]) < std::fabs(ref[b]); });
  for (int64_t i = 0; i < k; ++i) ref[order[i]] = 0.0f;
  CHECK(prune_unstructured(w, ratio) == k);
  int64_t mismatches = 0;
  for (int64_t i = 0; i < n; ++i) mismatches += w[i] != ref[i];
  CHECK(mismatches == 0);
}

TEST_CASE(
    "Fused unstructured pruning and per-channel quantization equal the two steps in sequence") {
  const int64_t O = 300, R = 4000;  // 1.2 M weights: takes the sampled-selection path
  std::vector<float> w(O * R);
  std::mt19937 rng(3);
  std::normal_distribution<float> d(0.0f, 1.0f);
  for (auto& x : w) x = std::round(d(rng) * 64.0f) / 64.0f;  // ties at the threshold
  std::vector<float> two = w;
  LayerSetting s;
  s.w_bits = 4;
  s.prune = PruneSpec{PruneKind::kUnstructured, 0.5, 0, 0};
  const auto res = compress_weights(w, WeightLayout::dense(O, R), s);
  const int64_t pruned = prune_unstructured(two, 0.5);
  quantize_weights(two, WeightLayout::dense(O, R), 4, Granularity{});
  CHECK(res.pruned_weights == pruned);
  CHECK(pruned == O * R / 2);
  CHECK(w == two);
}

TEST_CASE("Channel pruning removes the smallest L2 norms, lower index first on ties") {
  // Norms: ch0 = 5, ch1 = 1, ch2 = 1, ch3 = 2 (dense [4, 2]).
  std::vector<float> w = {3, 4, 1, 0, 0, 1, 2, 0};
  auto ch = prune_channels(w, WeightLayout::dense(4, 2), 0.5);
  CHECK(ch == std::vector<int64_t>{1, 2});
  CHECK(w == std::vector<float>{3, 4, 0, 0, 0, 0, 2, 0});
  std::vector<float> v = {3, 4, 1, 0, 0, 1, 2, 0};
  CHECK(prune_channels(v, WeightLayout::dense(4, 2), 0.3) ==
        std::vector<int64_t>{1});  // floor(1.2)
}

TEST_CASE("N:M pruning keeps the largest per run and rejects ineligible layouts") {
  std::vector<float> w = {0.1f, -0.4f, 0.4f, 0.2f, 1, 1, 1, 1};
  CHECK(prune_n_m(w, WeightLayout::dense(1, 8), 2, 4) == 4);
  CHECK(w == std::vector<float>{0.0f, -0.4f, 0.4f, 0.0f, 1, 1, 0, 0});
  std::vector<float> c(1 * 3 * 2 * 2, 1.0f);  // Conv with 3 input channels: 2:4 runs would straddle
  CHECK_THROWS_WITH_AS(
      prune_n_m(c, WeightLayout::conv(1, 3, 4), 2, 4),
      "N:M pruning 2:4 needs the input channels per group / input features (3) divisible by 4",
      std::invalid_argument);
}

TEST_CASE("Half rounding handles ties, subnormals and overflow like IEEE binary16") {
  CHECK(round_to_half(1.0f + 1.0f / 2048) == 1.0f);                // tie -> even (1.0)
  CHECK(round_to_half(1.0f + 3.0f / 2048) == 1.0f + 2.0f / 1024);  // tie -> even (odd below)
  CHECK(round_to_half(65519.0f) == 65504.0f);
  CHECK(std::isinf(round_to_half(65520.0f)));
  CHECK(round_to_half(std::ldexp(1.0f, -24)) == std::ldexp(1.0f, -24));  // smallest subnormal
  CHECK(round_to_half(std::ldexp(1.0f, -25)) == 0.0f);                   // tie -> 0 (even)
  CHECK(round_to_half(std::ldexp(1.5f, -25)) == std::ldexp(1.0f, -24));
  CHECK(std::signbit(round_to_half(-0.0f)));
}

TEST_CASE("Weight kernels reproduce the PyTorch goldens exactly") {
  int checked = 0;
  for (const json& c : goldens().at("cases")) {
    const std::string name = c.at("name");
    const std::string kind = c.at("kind");
    std::vector<float> w = floats(c.at("input"));
    CAPTURE(name);
    if (kind == "quantize") {
      QuantizedWeights q;
      quantize_weights(w, layout_of(c), c.at("bits"), granularity_from_string(c.at("granularity")),
                       WeightCalibration::kMinMax, &q);
      check_equal(w, floats(c.at("expected")), name);
      const auto eq = floats(c.at("expected_q"));
      for (size_t i = 0; i < eq.size(); ++i) REQUIRE(static_cast<float>(q.q[i]) == eq[i]);
      const auto es = c.at("expected_scales").get<std::vector<double>>();
      REQUIRE(q.scales.size() == es.size());
      for (size_t i = 0; i < es.size(); ++i)
        CHECK(q.scales[i] == doctest::Approx(es[i]).epsilon(1e-15));
      if (c.contains("torch_fake_quantize")) {
        // PyTorch's float32 kernel multiplies by a float inverse scale and a float scale: values
        // may differ in the last bit everywhere, and by one step only where w / scale is within
        // float error of a .5 tie.
        const auto fq = floats(c.at("torch_fake_quantize"));
        int differ = 0;
        const double step = *std::max_element(q.scales.begin(), q.scales.end());
        for (size_t i = 0; i < fq.size(); ++i) {
          const double d = std::fabs(static_cast<double>(fq[i]) - w[i]);
          differ += d > 1e-6 * std::fabs(w[i]) + 1e-12;
          CHECK(d <= step * 1.0001);
        }
        CHECK(differ <= static_cast<int>(fq.size() / 100));
      }
    } else if (kind == "quantize_mse") {
      quantize_weights(w, layout_of(c), c.at("bits"), Granularity{}, WeightCalibration::kMse);
      check_equal(w, floats(c.at("expected")), name);
    } else if (kind == "unstructured") {
      prune_unstructured(w, c.at("ratio"));
      check_equal(w, floats(c.at("expected")), name);
    } else if (kind == "channel") {
      auto ch = prune_channels(w, layout_of(c), c.at("ratio"));
      CHECK(ch == c.at("expected_channels").get<std::vector<int64_t>>());
      check_equal(w, floats(c.at("expected")), name);
    } else if (kind == "nm") {
      prune_n_m(w, layout_of(c), c.at("n"), c.at("m"));
      check_equal(w, floats(c.at("expected")), name);
    } else if (kind == "binarize") {
      LayerSetting s;
      s.w_bits = 1;
      s.granularity = granularity_from_string(c.at("granularity"));
      const double ratio = c.at("prune_ratio");
      if (ratio > 0) s.prune = PruneSpec{PruneKind::kUnstructured, ratio, 0, 0};
      QuantizedWeights q;
      compress_weights(w, layout_of(c), s, &q);
      check_equal(w, floats(c.at("expected")), name);
      const auto ea = c.at("expected_alphas").get<std::vector<double>>();
      REQUIRE(q.scales.size() == ea.size());
      for (size_t i = 0; i < ea.size(); ++i)
        CHECK(q.scales[i] == doctest::Approx(ea[i]).epsilon(1e-12));
    } else if (kind == "half") {
      round_weights_to_half(w);
      check_equal(w, floats(c.at("expected")), name);
    } else {
      continue;  // activation cases live in activation_quant_test.cpp
    }
    ++checked;
  }
  CHECK(checked >= 20);
}

namespace {

// Independent reference for rules 1, 2 and 5 (unstructured pruning, then per-channel minmax
// quantization of a dense [O, R] tensor): a stable sort for the selection and std::nearbyint
// (round to nearest even in the default mode) on the quotient computed in double.
struct Reference {
  std::vector<float> w;
  std::vector<int8_t> q;
  std::vector<double> scales;
};

Reference reference_prune_quantize(std::vector<float> w, int64_t O, int64_t R, double ratio,
                                   int bits) {
  const int64_t n = O * R;
  const int64_t k = static_cast<int64_t>(std::floor(ratio * static_cast<double>(n)));
  std::vector<int64_t> order(n);
  for (int64_t i = 0; i < n; ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return std::fabs(w[a]) < std::fabs(w[b]); });
  for (int64_t i = 0; i < k; ++i) w[order[i]] = 0.0f;
  const double qmax = (1 << (bits - 1)) - 1;
  Reference r;
  r.q.assign(n, 0);
  r.scales.assign(O, 1.0);
  for (int64_t o = 0; o < O; ++o) {
    double amax = 0.0;
    for (int64_t j = 0; j < R; ++j)
      amax = std::max(amax, static_cast<double>(std::fabs(w[o * R + j])));
    const double scale = amax == 0.0 ? 1.0 : amax / qmax;
    r.scales[o] = scale;
    for (int64_t j = 0; j < R; ++j) {
      const double t =
          std::clamp(std::nearbyint(static_cast<double>(w[o * R + j]) / scale), -qmax, qmax);
      r.q[o * R + j] = static_cast<int8_t>(t);
      w[o * R + j] = static_cast<float>(t * scale);
    }
  }
  r.w = std::move(w);
  return r;
}

int64_t count_value_mismatches(const std::vector<float>& a, const std::vector<float>& b) {
  int64_t m = 0;
  for (size_t i = 0; i < a.size(); ++i) m += !(a[i] == b[i]);
  return m;
}

}  // namespace

TEST_CASE("Quantization next to rounding ties equals the rule computed in double") {
  // Rows of 1000 weights take the vector sweep; each row mixes exact ties, their float neighbours
  // and random values, for a scale of 1 (amax 7 at 4 bits) and an inexact one (amax 0.7).
  for (const double amax : {7.0, 0.7}) {
    CAPTURE(amax);
    const int64_t O = 6, R = 1000;
    const double scale = amax / 7.0;
    std::vector<float> w(O * R);
    std::mt19937 rng(11);
    std::uniform_real_distribution<double> u(-amax, amax);
    std::uniform_int_distribution<int> half(-7, 6);
    for (int64_t i = 0; i < O * R; ++i) {
      const float tie = static_cast<float>((half(rng) + 0.5) * scale);
      switch (i % 4) {
        case 0:
          w[i] = tie;
          break;
        case 1:
          w[i] = std::nextafter(tie, 1e9f);
          break;
        case 2:
          w[i] = std::nextafter(tie, -1e9f);
          break;
        default:
          w[i] = static_cast<float>(u(rng));
          break;
      }
    }
    for (int64_t o = 0; o < O; ++o) w[o * R + 7] = static_cast<float>(amax);  // each row's amax
    const Reference ref = reference_prune_quantize(w, O, R, 0.0, 4);
    std::vector<float> got = w;
    QuantizedWeights q;
    quantize_weights(got, WeightLayout::dense(O, R), 4, Granularity{}, WeightCalibration::kMinMax,
                     &q);
    CHECK(count_value_mismatches(got, ref.w) == 0);
    CHECK(q.q == ref.q);
    CHECK(q.scales == ref.scales);
    std::vector<float> tensor = w;  // per_tensor: one scale, chunked sweep
    quantize_weights(tensor, WeightLayout::dense(O, R), 4,
                     Granularity{GranularityKind::kPerTensor, 0});
    CHECK(count_value_mismatches(tensor, ref.w) == 0);
  }
  // Small negative weights round to zero: +0 as before (round_half_even's sign), in the vector
  // lanes and in the scalar tail alike.
  std::vector<float> z(16, -0.1f);
  z[3] = 7.0f;
  quantize_weights(z, WeightLayout::dense(1, 16), 4, Granularity{});
  CHECK(!std::signbit(z[0]));
  CHECK(!std::signbit(z[15]));
}

TEST_CASE(
    "Unstructured pruning with per-channel quantization equals a stable-sort reference in place "
    "and out of place") {
  // 2^20 weights: the sampled selection (in place) and the one-pass sweep (out of place) both
  // run. Each tensor is built to break one assumption of the fast paths.
  const int64_t O = 512, R = 2048, n = O * R;
  std::mt19937 rng(5);
  std::normal_distribution<float> g(0.0f, 1.0f);
  struct Case {
    std::string name;
    std::vector<double> ratios;
    std::function<float(int64_t)> value;
  };
  const std::vector<Case> cases = {
      {"gaussian", {0.5, 0.9}, [&](int64_t) { return g(rng); }},
      {"grid with many ties at the threshold",
       {0.5, 0.37},
       [&](int64_t) { return std::round(g(rng) * 8.0f) / 8.0f; }},
      {"all magnitudes equal (every row max is the threshold)",
       {0.5},
       [&](int64_t i) { return i % 3 ? 0.25f : -0.25f; }},
      {"mostly zeros, both signs (threshold key 0)",
       {0.5},
       [&](int64_t i) { return i % 10 < 7 ? (i % 2 ? 0.0f : -0.0f) : g(rng); }},
      {"rows of tiny weights (whole rows pruned, row max near the threshold)",
       {0.5},
       [&](int64_t i) {
         return (i / R) % 5 == 0 ? g(rng) * 1e-3f : ((i / R) % 5 == 1 ? g(rng) * 0.3f : g(rng));
       }},
      {"sample positions misleading (the sampled bracket misses)",
       {0.5},
       [&](int64_t i) { return i % 8 == 0 ? 1.0f + 1e-3f * g(rng) : 1e-3f * g(rng); }},
  };
  for (const Case& c : cases) {
    std::vector<float> w(n);
    for (int64_t i = 0; i < n; ++i) w[i] = c.value(i);
    for (const double ratio : c.ratios) {
      for (const int bits : {8, 3}) {
        CAPTURE(c.name);
        CAPTURE(ratio);
        CAPTURE(bits);
        const Reference ref = reference_prune_quantize(w, O, R, ratio, bits);
        LayerSetting s;
        s.w_bits = bits;
        s.prune = PruneSpec{PruneKind::kUnstructured, ratio, 0, 0};
        std::vector<float> in_place = w;
        QuantizedWeights qi;
        const auto ri = compress_weights(in_place, WeightLayout::dense(O, R), s, &qi);
        std::vector<float> out(n, 123.0f);
        QuantizedWeights qo;
        const auto ro = compress_weights(std::span<const float>(w), std::span<float>(out),
                                         WeightLayout::dense(O, R), s, &qo);
        const int64_t k = static_cast<int64_t>(std::floor(ratio * n));
        CHECK(ri.pruned_weights == k);
        CHECK(ro.pruned_weights == k);
        CHECK(count_value_mismatches(in_place, ref.w) == 0);
        CHECK(count_value_mismatches(out, ref.w) == 0);
        CHECK(std::memcmp(in_place.data(), out.data(), n * sizeof(float)) ==
              0);  // same bits, zero signs too
        CHECK(qi.q == ref.q);
        CHECK(qo.q == ref.q);
        CHECK(qi.scales == ref.scales);
        CHECK(qo.scales == ref.scales);
      }
    }
  }
}

TEST_CASE(
    "Out-of-place compression leaves the source intact and matches in place for other settings") {
  const int64_t O = 64, R = 96;
  std::vector<float> w(O * R);
  std::mt19937 rng(9);
  std::normal_distribution<float> g(0.0f, 1.0f);
  for (auto& x : w) x = g(rng);
  const std::vector<float> original = w;
  LayerSetting s;
  s.w_bits = 4;
  s.granularity = Granularity{GranularityKind::kGroup, 16};
  s.prune = PruneSpec{PruneKind::kNM, 0.5, 2, 4};
  std::vector<float> in_place = w, out(w.size());
  compress_weights(in_place, WeightLayout::dense(O, R), s);
  compress_weights(std::span<const float>(w), std::span<float>(out), WeightLayout::dense(O, R), s);
  CHECK(w == original);
  CHECK(out == in_place);
  std::vector<float> small(10);
  CHECK_THROWS_WITH_AS(compress_weights(std::span<const float>(w), std::span<float>(small),
                                        WeightLayout::dense(O, R), s),
                       "compress_weights: source has 6144 elements but the destination 10",
                       std::invalid_argument);
}

namespace {

// Rules 3 and 4 written as plainly as DESIGN.md states them, through WeightLayout::index: the
// reference for the strided fast paths of prune_channels and prune_n_m.
std::vector<float> reference_n_m(std::vector<float> w, const WeightLayout& l, int n, int m) {
  for (int64_t o = 0; o < l.out_channels; ++o) {
    for (int64_t r0 = 0; r0 < l.row_length(); r0 += m) {
      std::vector<int> order(m);
      for (int j = 0; j < m; ++j) order[j] = j;
      std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
        return std::fabs(w[l.index(o, r0 + a)]) > std::fabs(w[l.index(o, r0 + b)]);
      });
      for (int j = n; j < m; ++j) w[l.index(o, r0 + order[j])] = 0.0f;
    }
  }
  return w;
}

std::vector<float> reference_channels(std::vector<float> w, const WeightLayout& l, double ratio) {
  // Weights here are multiples of 0.5, so every summation order gives the same exact norms.
  std::vector<double> norm(l.out_channels, 0.0);
  for (int64_t o = 0; o < l.out_channels; ++o)
    for (int64_t r = 0; r < l.row_length(); ++r)
      norm[o] += double(w[l.index(o, r)]) * w[l.index(o, r)];
  std::vector<int64_t> order(l.out_channels);
  for (int64_t o = 0; o < l.out_channels; ++o) order[o] = o;
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return norm[a] < norm[b]; });
  const auto k = static_cast<int64_t>(std::floor(ratio * l.out_channels));
  for (int64_t j = 0; j < k; ++j)
    for (int64_t r = 0; r < l.row_length(); ++r) w[l.index(order[j], r)] = 0.0f;
  return w;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

}  // namespace

TEST_CASE(
    "N:M and channel pruning match the plain rule on Conv, dense and transposed layouts with "
    "ties") {
  std::mt19937 rng(7);
  // Few distinct magnitudes of both signs, so ties inside N:M groups and equal channel norms occur.
  std::uniform_int_distribution<int> level(-3, 3);
  const WeightLayout layouts[] = {WeightLayout::conv(5, 8, 9), WeightLayout::conv(4, 4, 1),
                                  WeightLayout::dense(6, 16, false),
                                  WeightLayout::dense(7, 12, true), WeightLayout::conv(3, 16, 4)};
  for (const WeightLayout& l : layouts) {
    CAPTURE(l.out_channels);
    CAPTURE(l.in_per_group);
    CAPTURE(l.kernel_elements);
    CAPTURE(l.transposed);
    std::vector<float> w(l.numel());
    for (float& x : w) x = 0.5f * level(rng);
    // Two identical channels: equal norms, the lower index goes first.
    for (int64_t r = 0; r < l.row_length(); ++r) w[l.index(1, r)] = w[l.index(0, r)];
    // m <= 8 takes the rank path, larger m the insertion sort.
    for (const auto nm :
         {std::pair{2, 4}, std::pair{1, 4}, std::pair{3, 4}, std::pair{2, 8}, std::pair{5, 16}}) {
      const int n = nm.first, m = nm.second;  // not a structured binding: clang 14's CAPTURE
      if (l.in_per_group % m != 0) continue;
      CAPTURE(m);
      std::vector<float> got = w;
      CHECK(prune_n_m(got, l, n, m) == l.numel() / m * (m - n));
      CHECK(same_bits(got, reference_n_m(w, l, n, m)));
    }
    for (double ratio : {0.2, 0.5, 0.8}) {
      std::vector<float> got = w;
      prune_channels(got, l, ratio);
      CHECK(same_bits(got, reference_channels(w, l, ratio)));
    }
  }
}
