// The decoder against PyTorch (scripts/make_llm_reference.py): logits within 1e-4 relative and
// llama-perplexity-protocol NLL; recipes through ggml change the NLL in the order of their bits.
#include "llm/decoder.h"

#include <doctest/doctest.h>

#include <cmath>
#include <fstream>

#include "llm/llm_recipe.h"
#include "model/dataset.h"
#include "tests/llm/llm_test_util.h"

using namespace compsearch::llm;
namespace fs = std::filesystem;
using compsearch::testing::llm_fixture;

namespace {

const LlmModel& tiny_hf() {
  static const LlmModel m = [] {
    REQUIRE_MESSAGE(fs::exists(llm_fixture("tiny_llama/model.safetensors")),
                    "run /usr/bin/python3 scripts/make_tiny_llama.py");
    return load_llm(llm_fixture("tiny_llama"));
  }();
  return m;
}

std::vector<int32_t> heldout() { return load_tokens(llm_fixture("fortunes_heldout.u8.npy"), 256); }

// max over elements of |a - b| / max(1, |b|).
double max_relative(const std::vector<float>& a, const std::vector<float>& b) {
  double worst = 0.0;
  for (size_t i = 0; i < a.size(); ++i) {
    worst = std::max(worst, std::fabs(a[i] - b[i]) / std::max(1.0, std::fabs(double{b[i]})));
  }
  return worst;
}

}  // namespace

TEST_CASE("Decoder logits of the tiny model match PyTorch within 1e-4 relative") {
  const fs::path ref = llm_fixture("tiny_llama.reference");
  REQUIRE_MESSAGE(fs::exists(ref / "logits.npy"),
                  "run /usr/bin/python3 scripts/make_llm_reference.py");
  const auto window = compsearch::model::read_npy(ref / "window.npy");
  const auto expected = compsearch::model::read_npy(ref / "logits.npy");
  std::vector<int32_t> tokens(window.i64.begin(), window.i64.end());
  REQUIRE(tokens.size() == 64u);
  const std::vector<float> logits = decoder_logits(tiny_hf(), tokens);
  REQUIRE(logits.size() == expected.f32.size());
  const double diff = max_relative(logits, expected.f32);
  MESSAGE("decoder vs PyTorch: max relative difference " << diff);
  CHECK(diff <= 1e-4);
  // The reference is not trivially small: logits span several units.
  const auto [lo, hi] = std::minmax_element(expected.f32.begin(), expected.f32.end());
  CHECK(*hi - *lo > 5.0f);
  // The same window read as int32 from the held-out bytes.
  const std::vector<int32_t> bytes = heldout();
  CHECK(std::equal(tokens.begin(), tokens.end(), bytes.begin()));
}

TEST_CASE("Perplexity follows llama-perplexity's protocol and matches PyTorch") {
  std::ifstream in(llm_fixture("tiny_llama.reference/perplexity.json"));
  REQUIRE(in);
  const nlohmann::json ref = nlohmann::json::parse(in);
  const PerplexityResult r = evaluate_perplexity(
      tiny_hf(), heldout(), ref["context"].get<int64_t>(), ref["windows"].get<int64_t>());
  CHECK(r.windows == ref["windows"].get<int64_t>());
  CHECK(r.tokens_scored == ref["tokens_scored"].get<int64_t>());
  CHECK(r.tokens_scored == 4 * (128 - 1 - 64));
  CHECK(r.mean_nll == doctest::Approx(ref["mean_nll"].get<double>()).epsilon(1e-5));
  CHECK(r.perplexity == doctest::Approx(std::exp(r.mean_nll)));
  CHECK(r.mean_nll < std::log(256.0) * 0.6);  // the model learned something: far below uniform
  CHECK(r.tokens_per_second > 0.0);
  // One thread computes the same numbers, up to the summation order of parallel products.
  CHECK(evaluate_perplexity(tiny_hf(), heldout(), 128, 4, /*threads=*/1).mean_nll ==
        doctest::Approx(r.mean_nll).epsilon(1e-6));
  CHECK_THROWS_WITH(evaluate_perplexity(tiny_hf(), std::vector<int32_t>(10, 65), 128),
                    doctest::Contains("needs at least that many, got 10"));
  CHECK_THROWS_WITH(decoder_logits(tiny_hf(), std::vector<int32_t>{1, 256}),
                    doctest::Contains("token 256 at position 1 is outside the vocabulary"));
}

TEST_CASE("The GGUF copy of the tiny model gives the same logits up to f16 rounding") {
  const LlmModel gguf = load_llm(llm_fixture("tiny_llama.f16.gguf"));
  const std::vector<int32_t> all = heldout();
  const std::vector<int32_t> tokens(all.begin(), all.begin() + 64);
  const std::vector<float> a = decoder_logits(tiny_hf(), tokens);
  const std::vector<float> b = decoder_logits(gguf, tokens);
  CHECK(max_relative(b, a) <= 2e-3);
}

TEST_CASE("Recipes quantize through ggml: NLL and size follow the bits") {
  const std::vector<int32_t> tokens = heldout();
  const double base = evaluate_perplexity(tiny_hf(), tokens, 128, 4).mean_nll;
  auto run = [&](const std::string& type, double* bpw) {
    LlmModel m = tiny_hf();
    const LlmRecipe recipe =
        parse_llm_recipe({{"default", {{"type", type}}}}, m, "recipe(" + type + ")");
    const AppliedRecipe applied = apply_llm_recipe(m, recipe);
    *bpw = applied.bits_per_weight();
    return evaluate_perplexity(m, tokens, 128, 4).mean_nll;
  };
  double bpw8, bpw4, bpw2;
  const double q8 = run("q8_0", &bpw8), q4 = run("q4_k", &bpw4), q2 = run("q2_k", &bpw2);
  MESSAGE("NLL base " << base << ", q8_0 " << q8 << ", q4_k " << q4 << ", q2_k " << q2);
  CHECK(std::fabs(q8 - base) < 0.01);
  CHECK(q4 > q8 - 0.005);
  CHECK(q2 > q4);
  CHECK(q2 > base + 0.02);
  // Sizes: norms F32 (5 x 256 weights); ffn_down's 640-long rows fall back (q4_k -> q5_0,
  // q2_k -> q4_0); everything else at the asked type.
  const double norms = 5 * 256 * 32.0, embd = 256 * 256.0,
               attn = 2 * (2 * 256 * 256 + 2 * 128 * 256.0);
  const double gate_up = 2 * 2 * 640 * 256.0, down = 2 * 256 * 640.0;
  const double params = norms / 32 + embd + attn + gate_up + down;
  CHECK(bpw8 == doctest::Approx((norms + 8.5 * (params - norms / 32)) / params));
  CHECK(bpw4 == doctest::Approx((norms + 4.5 * (embd + attn + gate_up) + 5.5 * down) / params));
  CHECK(bpw2 == doctest::Approx((norms + 2.625 * (embd + attn + gate_up) + 4.5 * down) / params));
}

TEST_CASE("LLM recipe errors name the recipe, the key and the allowed values") {
  const LlmModel& m = tiny_hf();
  CHECK_THROWS_WITH(
      parse_llm_recipe({{"layers", {{"blk.9.attn_q", {{"type", "q4_k"}}}}}}, m, "r.json"),
      doctest::Contains("r.json: layers.blk.9.attn_q: no such tensor"));
  CHECK_THROWS_WITH(
      parse_llm_recipe({{"layers", {{"blk.0.attn_norm", {{"type", "q8_0"}}}}}}, m, "r.json"),
      doctest::Contains("norm weights stay f32, got q8_0"));
  CHECK_THROWS_WITH(parse_llm_recipe({{"default", {{"w_bits", 4}}}}, m, "r.json"),
                    doctest::Contains("r.json: default: unknown key 'w_bits', expected type"));
  CHECK_THROWS_WITH(parse_llm_recipe({{"layer", {}}}, m, "r.json"),
                    doctest::Contains("unknown key 'layer', expected format, default or layers"));
  // HF aliases resolve to the GGUF name.
  const LlmRecipe r = parse_llm_recipe(
      {{"layers", {{"model.layers.1.mlp.down_proj", {{"type", "Q6_K"}}}}}}, m, "r.json");
  REQUIRE(r.types.size() == 1);
  CHECK(r.types.begin()->first == "blk.1.ffn_down");
  const AppliedRecipe plan = plan_llm_recipe(m, r);
  for (const auto& t : plan.tensors) {
    if (t.name == "blk.1.ffn_down") {
      CHECK(t.asked == TensorType::kQ6_K);
      CHECK(t.stored == TensorType::kQ8_0);  // 640-long rows
      CHECK(t.bytes == 256 * 640 / 32 * 34);
    } else if (t.name == "blk.0.ffn_down") {
      CHECK(t.stored == TensorType::kBF16);  // unlisted, no default: as loaded
    }
  }
}
