// llama.cpp tensor types through ggml: geometry against llama.cpp's documented numbers, the
// fallback rule, a hand-computed Q8_0 block and the error ordering of the round trip.
#include "llm/tensor_types.h"

#include <doctest/doctest.h>

#include <cmath>
#include <random>
#include <vector>

#include "model/half.h"

using namespace compsearch::llm;

namespace {

std::vector<float> gaussian(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 0.02f);
  std::vector<float> w(static_cast<size_t>(n));
  for (float& x : w) x = normal(rng);
  return w;
}

double rmse(const std::vector<float>& a, const std::vector<float>& b) {
  double s = 0.0;
  for (size_t i = 0; i < a.size(); ++i) s += (a[i] - b[i]) * static_cast<double>(a[i] - b[i]);
  return std::sqrt(s / static_cast<double>(a.size()));
}

}  // namespace

TEST_CASE("Tensor types have llama.cpp's block sizes and bits per weight") {
  // Bits per weight as llama.cpp documents them (tools/quantize/README.md, ggml-common.h block
  // structs): bytes per block * 8 / weights per block.
  struct Expect {
    const char* name;
    int64_t block;
    int64_t bytes;
    double bpw;
  };
  const Expect expected[] = {
      {"f32", 1, 4, 32.0},        {"f16", 1, 2, 16.0},        {"bf16", 1, 2, 16.0},
      {"q8_0", 32, 34, 8.5},      {"q6_k", 256, 210, 6.5625}, {"q5_1", 32, 24, 6.0},
      {"q5_k", 256, 176, 5.5},    {"q5_0", 32, 22, 5.5},      {"q4_1", 32, 20, 5.0},
      {"q4_k", 256, 144, 4.5},    {"q4_0", 32, 18, 4.5},      {"iq4_nl", 32, 18, 4.5},
      {"iq4_xs", 256, 136, 4.25}, {"q3_k", 256, 110, 3.4375}, {"q2_k", 256, 84, 2.625},
  };
  CHECK(recipe_tensor_types().size() == std::size(expected));
  for (const auto& e : expected) {
    CAPTURE(e.name);
    const TensorType t = parse_tensor_type(e.name, "test");
    CHECK(tensor_type_name(t) == e.name);
    CHECK(block_weights(t) == e.block);
    CHECK(block_bytes(t) == e.bytes);
    CHECK(bits_per_weight(t) == doctest::Approx(e.bpw).epsilon(1e-12));
    CHECK(row_bytes(t, 512) == 512 / e.block * e.bytes);
  }
}

TEST_CASE("Tensor type names parse case-insensitively and unknown names list the allowed ones") {
  CHECK(parse_tensor_type("Q4_K", "x") == TensorType::kQ4_K);
  CHECK(parse_tensor_type("IQ4_XS", "x") == TensorType::kIQ4_XS);
  CHECK_THROWS_WITH(parse_tensor_type("q4_k_m", "recipe.json: default.type"),
                    doctest::Contains("recipe.json: default.type: unknown tensor type 'q4_k_m', "
                                      "expected one of f32, f16, bf16, q8_0"));
  // A ggml type that is not a recipe setting still has its name (read from GGUF files).
  CHECK(tensor_type_name(static_cast<TensorType>(16)) == "iq2_xxs");
  CHECK_FALSE(is_known_ggml_type(4));  // Q4_2, removed from ggml
  CHECK_FALSE(is_known_ggml_type(1000));
}

TEST_CASE("Rows that are not a multiple of the block size take llama.cpp's fallback types") {
  // 640 = 2.5 * 256 (a multiple of 32): 256-block types fall back to 32-block ones.
  CHECK(fallback_type(TensorType::kQ2_K, 640) == TensorType::kQ4_0);
  CHECK(fallback_type(TensorType::kQ3_K, 640) == TensorType::kQ4_0);
  CHECK(fallback_type(TensorType::kQ4_K, 640) == TensorType::kQ5_0);
  CHECK(fallback_type(TensorType::kQ5_K, 640) == TensorType::kQ5_1);
  CHECK(fallback_type(TensorType::kQ6_K, 640) == TensorType::kQ8_0);
  CHECK(fallback_type(TensorType::kIQ4_XS, 640) == TensorType::kIQ4_NL);
  CHECK(fallback_type(TensorType::kQ4_0, 640) == TensorType::kQ4_0);
  CHECK(fallback_type(TensorType::kQ4_K, 768) == TensorType::kQ4_K);
  // 100 is not a multiple of 32 either: F16, for 256- and 32-block types alike.
  CHECK(fallback_type(TensorType::kQ4_K, 100) == TensorType::kF16);
  CHECK(fallback_type(TensorType::kQ8_0, 100) == TensorType::kF16);
  CHECK(fallback_type(TensorType::kIQ4_XS, 100) == TensorType::kF16);
  CHECK(fallback_type(TensorType::kBF16, 100) == TensorType::kBF16);
  CHECK(fallback_type(TensorType::kF32, 7) == TensorType::kF32);
  CHECK_THROWS_WITH(quantize_rows(TensorType::kQ4_K, std::vector<float>(640), 1, 640),
                    doctest::Contains("q4_k needs rows of a multiple of 256 weights, got 640"));
}

TEST_CASE("Q8_0 through ggml equals the hand computation of one block") {
  // ggml's reference rule: d = amax / 127 stored as fp16, q = round(x / d) (x * (1/d), ties away
  // from zero), x^ = q * fp16(d).
  std::vector<float> w = gaussian(32, 3);
  w[5] = -0.07f;  // the largest magnitude, negative
  float amax = 0.0f;
  for (float x : w) amax = std::max(amax, std::fabs(x));
  const float d = amax / 127.0f, id = 1.0f / d;
  const float d16 = compsearch::model::round_to_half(d);
  const std::vector<uint8_t> q = quantize_rows(TensorType::kQ8_0, w, 1, 32);
  REQUIRE(q.size() == 34u);
  CHECK(static_cast<uint16_t>(q[0] | (q[1] << 8)) == compsearch::model::float_to_half_bits(d));
  const std::vector<float> back = quantize_round_trip(TensorType::kQ8_0, w, 1, 32);
  for (int i = 0; i < 32; ++i) {
    CAPTURE(i);
    const float qi = std::round(w[i] * id);
    CHECK(static_cast<int8_t>(q[2 + i]) == static_cast<int8_t>(qi));
    CHECK(back[i] == qi * d16);
  }
  CHECK(static_cast<int8_t>(q[2 + 5]) == -127);
}

TEST_CASE("Quantization error grows as bits per weight shrink") {
  const int64_t rows = 64, cols = 512;
  const std::vector<float> w = gaussian(rows * cols, 11);
  auto err = [&](TensorType t) { return rmse(w, quantize_round_trip(t, w, rows, cols)); };
  const double f16 = err(TensorType::kF16), q8 = err(TensorType::kQ8_0),
               q6 = err(TensorType::kQ6_K), q5 = err(TensorType::kQ5_K),
               q4 = err(TensorType::kQ4_K), q3 = err(TensorType::kQ3_K),
               q2 = err(TensorType::kQ2_K);
  CHECK(err(TensorType::kF32) == 0.0);
  CHECK(f16 < q8);
  CHECK(q8 < q6);
  CHECK(q6 < q5);
  CHECK(q5 < q4);
  CHECK(q4 < q3);
  CHECK(q3 < q2);
  CHECK(err(TensorType::kQ5_0) < err(TensorType::kQ4_0));
  CHECK(err(TensorType::kQ4_1) < err(TensorType::kQ4_0));  // an offset helps a little
  CHECK(err(TensorType::kIQ4_XS) < err(TensorType::kQ4_0));
  // Scale of the error: 4-bit codes over a block's range leave roughly amax/16.
  CHECK(q4 < 0.1 * 0.02);
  CHECK(q2 > 0.2 * 0.02);
}
