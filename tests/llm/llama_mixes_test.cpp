// llama.cpp's mixes (llm/llama_mixes.h): the rules by hand on a 32-layer inventory, and every
// tensor's type (and the file's size) against the real llama-quantize on the 2-layer test model
// (tied embeddings, GQA 2) and on a random 32-layer model (separate output, GQA 4) written as F16
// GGUF.
#include "llm/llama_mixes.h"

#include <doctest/doctest.h>

#include <random>
#include <set>

#include "llm/cost_model.h"
#include "llm/gguf_export.h"
#include "tests/llm/llm_test_util.h"
#include "tests/test_skip.h"

using namespace compsearch::llm;
namespace fs = std::filesystem;

namespace {

// A Llama with `layers` blocks of hidden 256 (so K-quant super-blocks fit), feed-forward 256,
// 4 query heads of 64 and `kv_heads` key/value heads, vocabulary 256, separate output; weights
// uniform in [-0.1, 0.1) (seed 7) when `with_data`.
LlmModel synthetic_model(int64_t layers, int64_t kv_heads, bool with_data) {
  LlmModel m;
  m.path = "synthetic_" + std::to_string(layers);
  m.format = "hf";
  m.config = {.hidden = 256,
              .intermediate = 256,
              .layers = layers,
              .heads = 4,
              .kv_heads = kv_heads,
              .head_dim = 64,
              .vocab = 256,
              .context = 256};
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(-0.1f, 0.1f);
  auto add = [&](const std::string& name, TensorRole role, int64_t layer,
                 std::vector<int64_t> shape) {
    LlmTensor t;
    t.name = name;
    t.hf_name = hf_name_of(name).value();
    t.role = role;
    t.layer = layer;
    t.shape = shape;
    if (with_data) {
      t.data.resize(t.params());
      for (float& x : t.data) x = shape.size() == 1 ? 1.0f : u(rng);
    }
    m.tensors.push_back(std::move(t));
  };
  const int64_t h = 256, kv = kv_heads * 64;
  add("token_embd", TensorRole::kTokenEmbd, -1, {256, h});
  for (int64_t i = 0; i < layers; ++i) {
    const std::string b = "blk." + std::to_string(i) + ".";
    add(b + "attn_norm", TensorRole::kAttnNorm, i, {h});
    add(b + "attn_q", TensorRole::kAttnQ, i, {h, h});
    add(b + "attn_k", TensorRole::kAttnK, i, {kv, h});
    add(b + "attn_v", TensorRole::kAttnV, i, {kv, h});
    add(b + "attn_output", TensorRole::kAttnOutput, i, {h, h});
    add(b + "ffn_norm", TensorRole::kFfnNorm, i, {h});
    add(b + "ffn_gate", TensorRole::kFfnGate, i, {256, h});
    add(b + "ffn_up", TensorRole::kFfnUp, i, {256, h});
    add(b + "ffn_down", TensorRole::kFfnDown, i, {h, 256});
  }
  add("output_norm", TensorRole::kOutputNorm, -1, {h});
  add("output", TensorRole::kOutput, -1, {256, h});
  return m;
}

std::set<int64_t> layers_with(const LlmModel& m, const AppliedRecipe& plan, TensorRole role,
                              TensorType type) {
  std::set<int64_t> out;
  for (size_t i = 0; i < m.tensors.size(); ++i) {
    if (m.tensors[i].role == role && plan.tensors[i].stored == type) out.insert(m.tensors[i].layer);
  }
  return out;
}

// Every tensor of llama-quantize's output for `mix` has the type our recipe plans.
void check_against_llama_quantize(const LlmModel& source, const fs::path& gguf,
                                  const std::string& mix) {
  CAPTURE(mix);
  std::string upper = mix;
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  const LlmModel theirs =
      load_llm(compsearch::testing::run_llama_quantize("", upper, gguf), /*with_data=*/false);
  const AppliedRecipe ours = plan_llm_recipe(source, llama_mix_recipe(source, mix));
  REQUIRE(theirs.tensors.size() == source.tensors.size());
  for (size_t i = 0; i < source.tensors.size(); ++i) {
    CAPTURE(source.tensors[i].name);
    CHECK(tensor_type_name(theirs.at(source.tensors[i].name).stored_type) ==
          tensor_type_name(ours.tensors[i].stored));
  }
  // The file llama-quantize wrote is the size the cost model predicts, to the byte.
  CHECK(static_cast<int64_t>(fs::file_size(theirs.path)) == gguf_file_bytes(source, ours));
}

}  // namespace

TEST_CASE("llama.cpp mixes follow llama-quant.cpp's rules on a 32-layer model (by hand)") {
  const LlmModel m = synthetic_model(32, 1, /*with_data=*/false);
  // use_more_bits(i, 32): i < 4, i >= 28, or (i - 4) % 3 == 2.
  const std::set<int64_t> more = {0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31};
  const AppliedRecipe q4km = plan_llm_recipe(m, llama_mix_recipe(m, "Q4_K_M"));
  CHECK(layers_with(m, q4km, TensorRole::kAttnV, TensorType::kQ6_K) == more);
  CHECK(layers_with(m, q4km, TensorRole::kFfnDown, TensorType::kQ6_K) == more);
  CHECK(layers_with(m, q4km, TensorRole::kAttnQ, TensorType::kQ4_K).size() == 32);
  CHECK(q4km.tensors.back().stored == TensorType::kQ6_K);   // output
  CHECK(q4km.tensors.front().stored == TensorType::kQ4_K);  // an untied token_embd: base type
  CHECK(q4km.tensors[1].stored == TensorType::kF32);        // blk.0.attn_norm

  const AppliedRecipe q3km = plan_llm_recipe(m, llama_mix_recipe(m, "q3_k_m"));
  CHECK(layers_with(m, q3km, TensorRole::kAttnV, TensorType::kQ5_K) == std::set<int64_t>{0, 1});
  CHECK(layers_with(m, q3km, TensorRole::kFfnDown, TensorType::kQ5_K) == std::set<int64_t>{0, 1});
  CHECK(layers_with(m, q3km, TensorRole::kAttnOutput, TensorType::kQ4_K).size() == 32);
  CHECK(layers_with(m, q3km, TensorRole::kFfnUp, TensorType::kQ3_K).size() == 32);

  const AppliedRecipe q2k = plan_llm_recipe(m, llama_mix_recipe(m, "q2_k"));
  // GQA 4 (4 heads, 1 key/value head): attn_v q4_k instead of q3_k.
  CHECK(layers_with(m, q2k, TensorRole::kAttnV, TensorType::kQ4_K).size() == 32);
  CHECK(layers_with(m, q2k, TensorRole::kFfnDown, TensorType::kQ3_K).size() == 32);
  CHECK(layers_with(m, q2k, TensorRole::kAttnK, TensorType::kQ2_K).size() == 32);

  // Sizes by hand for q6_k: every matrix q6_k (210 bytes per 256 weights), norms f32.
  const AppliedRecipe q6k = plan_llm_recipe(m, llama_mix_recipe(m, "q6_k"));
  const int64_t per_layer = (256 * 256 * 5 + 2 * 64 * 256) / 256 * 210 + 2 * 256 * 4;
  CHECK(q6k.total_bytes == 32 * per_layer + 2 * (256 * 256 / 256 * 210) + 256 * 4);

  CHECK_THROWS_WITH(llama_mix_recipe(m, "q4_k_x"),
                    doctest::Contains("unknown llama.cpp mix 'q4_k_x', expected one of q2_k"));
}

TEST_CASE("a mix name is accepted wherever a recipe file is, unless such a file exists") {
  const LlmModel m = load_llm(compsearch::testing::llm_fixture("tiny_llama"), false);
  const AppliedRecipe a = plan_llm_recipe(m, load_llm_recipe("q4_k_m", m));
  const AppliedRecipe b = plan_llm_recipe(m, llama_mix_recipe(m, "q4_k_m"));
  CHECK(a.total_bytes == b.total_bytes);
  CHECK_THROWS_WITH(load_llm_recipe("q4_k_q", m),
                    doctest::Contains("q4_k_q: cannot open the recipe (expected a "
                                      "compsearch.recipe/1 file or a llama.cpp mix: q2_k"));
}

TEST_CASE("llama.cpp mixes give every tensor the type real llama-quantize stores") {
  if (!fs::exists(compsearch::testing::llama_quantize())) {
    COMPSEARCH_SKIP_TEST("llama-quantize was not built (see llm/CMakeLists.txt)");
  }
  SUBCASE("the 2-layer test model (tied embeddings, GQA 2, ffn_down rows of 640)") {
    const fs::path gguf = compsearch::testing::llm_fixture("tiny_llama.f16.gguf");
    const LlmModel source = load_llm(gguf, /*with_data=*/false);
    // The five (each llama-quantize run costs ~1.5 s of wall time, mostly start-up); the
    // 32-layer model below takes all ten.
    for (const char* mix : {"q2_k", "q3_k_m", "q4_k_m", "q5_k_m", "q6_k"}) {
      check_against_llama_quantize(source, gguf, mix);
    }
  }
  SUBCASE("a random 32-layer model (separate output, GQA 4)") {
    const LlmModel source = synthetic_model(32, 1, /*with_data=*/true);
    const fs::path gguf = compsearch::testing::fresh_dir("mixes32") / "synthetic32.f16.gguf";
    write_gguf(
        source,
        plan_llm_recipe(source, parse_llm_recipe({{"default", {{"type", "f16"}}}}, source, "f16")),
        gguf);
    for (const std::string& mix : llama_mix_names())
      check_against_llama_quantize(source, gguf, mix);
  }
}
