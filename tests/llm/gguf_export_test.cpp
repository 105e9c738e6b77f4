// GGUF export: the written file reads back with the planned types, its weights are bit for bit the
// recipe's ggml round trip, and a GGUF source keeps its metadata (vocabulary included).
#include "llm/gguf_export.h"

#include <doctest/doctest.h>
#include <gguf.h>

#include "tests/llm/llm_test_util.h"

using namespace compsearch::llm;
using compsearch::testing::llm_fixture;

namespace {

void check_export(const std::filesystem::path& source, const std::string& name) {
  const LlmModel m = load_llm(source);
  const LlmRecipe recipe = parse_llm_recipe(
      {{"default", {{"type", "q4_k"}}},
       {"layers", {{"blk.0.attn_v", {{"type", "q8_0"}}}, {"output_norm", {{"type", "f32"}}}}}},
      m, "r.json");
  const AppliedRecipe plan = plan_llm_recipe(m, recipe);
  const auto out = compsearch::testing::fresh_dir(name) / "out.gguf";
  write_gguf(m, plan, out);
  const LlmModel back = load_llm(out);
  LlmModel expected = m;
  apply_llm_recipe(expected, recipe);
  REQUIRE(back.tensors.size() == m.tensors.size());
  CHECK(back.config.heads == m.config.heads);
  CHECK(back.config.kv_heads == m.config.kv_heads);
  CHECK(back.config.rms_eps == doctest::Approx(m.config.rms_eps).epsilon(1e-6));
  int64_t bytes = 0;
  for (size_t i = 0; i < m.tensors.size(); ++i) {
    CAPTURE(m.tensors[i].name);
    CHECK(back.tensors[i].stored_type == plan.tensors[i].stored);
    CHECK(back.tensors[i].data == expected.tensors[i].data);  // exactly the round trip
    bytes += plan.tensors[i].bytes;
  }
  CHECK(back.at("blk.0.attn_v").stored_type == TensorType::kQ8_0);
  CHECK(back.at("blk.1.attn_q").stored_type == TensorType::kQ4_K);
  CHECK(back.at("blk.1.ffn_down").stored_type == TensorType::kQ5_0);
  CHECK(back.at("blk.1.ffn_norm").stored_type == TensorType::kF32);
  // The file is the tensors plus metadata and alignment padding.
  CHECK(static_cast<int64_t>(std::filesystem::file_size(out)) > bytes);
  CHECK(static_cast<int64_t>(std::filesystem::file_size(out)) < bytes + 16384);
}

std::string gguf_string(const std::filesystem::path& path, const char* key) {
  gguf_init_params p{true, nullptr};
  gguf_context* ctx = gguf_init_from_file(path.c_str(), p);
  REQUIRE(ctx != nullptr);
  const int64_t id = gguf_find_key(ctx, key);
  std::string v = id >= 0 ? gguf_get_val_str(ctx, id) : "";
  gguf_free(ctx);
  return v;
}

}  // namespace

TEST_CASE(
    "GGUF export of an HF checkpoint stores the recipe's types, weights equal the round trip") {
  check_export(llm_fixture("tiny_llama"), "export_hf");
}

TEST_CASE("GGUF export of a GGUF keeps its metadata and vocabulary") {
  check_export(llm_fixture("tiny_llama.f16.gguf"), "export_gguf");
  const auto out = compsearch::testing::fresh_dir("export_gguf") / "meta.gguf";
  const LlmModel m = load_llm(llm_fixture("tiny_llama.f16.gguf"));
  write_gguf(m, plan_llm_recipe(m, parse_llm_recipe({{"default", {{"type", "q6_k"}}}}, m, "r")),
             out);
  CHECK(gguf_string(out, "tokenizer.ggml.model") == "gpt2");
  CHECK(gguf_string(out, "general.name") == "tiny-llama-fortunes");
}
