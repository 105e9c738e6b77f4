// The llama-tensor-types, recipe and safetensors exports (llm/llama_export.h) and `compsearch
// compress` writing them. Applying the tensor-types file with the real llama-quantize is
// llama_crosscheck_test.cpp.
#include "llm/llama_export.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <fstream>
#include <sstream>

#include "llm/llama_mixes.h"
#include "llm/safetensors.h"
#include "tests/experiments/cli_runner.h"
#include "tests/llm/llm_test_util.h"

using namespace compsearch::llm;
using compsearch::testing::llm_fixture;
using compsearch::testing::run_compsearch;
using compsearch::testing::shell_quote;
namespace fs = std::filesystem;

TEST_CASE("the tensor-types file names every matrix once, anchored, with its stored type") {
  const LlmModel m = load_llm(llm_fixture("tiny_llama.f16.gguf"), false);
  const AppliedRecipe plan = plan_llm_recipe(
      m, parse_llm_recipe({{"default", {{"type", "q4_k"}}},
                           {"layers",
                            {{"blk.1.attn_v", {{"type", "Q8_0"}}},
                             {"model.layers.0.mlp.down_proj", {{"type", "q6_k"}}}}}},
                          m, "r"));
  const std::string text = llama_tensor_types_text(m, plan);
  // Model order: token_embd, then per block q, k, v, output, gate, up, down. ffn_down's rows of
  // 640 do not fit 256-blocks: q6_k is stored as q8_0, q4_k as q5_0 (llama.cpp's fallback).
  const std::string block0 =
      "^token_embd\\.weight$=q4_k\n"
      "^blk\\.0\\.attn_q\\.weight$=q4_k\n"
      "^blk\\.0\\.attn_k\\.weight$=q4_k\n"
      "^blk\\.0\\.attn_v\\.weight$=q4_k\n"
      "^blk\\.0\\.attn_output\\.weight$=q4_k\n"
      "^blk\\.0\\.ffn_gate\\.weight$=q4_k\n"
      "^blk\\.0\\.ffn_up\\.weight$=q4_k\n"
      "^blk\\.0\\.ffn_down\\.weight$=q8_0\n";
  CHECK(text.starts_with(block0));
  CHECK(text.find("^blk\\.1\\.attn_v\\.weight$=q8_0\n") != std::string::npos);
  CHECK(text.ends_with("^blk\\.1\\.ffn_down\\.weight$=q5_0\n"));
  CHECK(std::count(text.begin(), text.end(), '\n') == 15);
  CHECK(text.find('#') == std::string::npos);
  CHECK(llama_quantize_file_type(m, plan) == "Q4_K_M");
  const std::string cmd = llama_quantize_command(m, plan, "in.gguf", "out.gguf");
  CHECK(
      cmd.starts_with("llama-quantize --tensor-type '^token_embd\\.weight$=q4_k' --tensor-type "
                      "'^blk\\.0\\.attn_q\\.weight$=q4_k' "));
  CHECK(
      cmd.ends_with("--tensor-type '^blk\\.1\\.ffn_down\\.weight$=q5_0' in.gguf out.gguf "
                    "Q4_K_M"));
}

TEST_CASE("the recipe export names every matrix and parses back to the same plan") {
  const LlmModel m = load_llm(llm_fixture("tiny_llama"), false);
  const AppliedRecipe mix = plan_llm_recipe(m, llama_mix_recipe(m, "q3_k_m"));
  const nlohmann::json j = llm_recipe_json(m, mix);
  CHECK(j["format"] == "compsearch.recipe/1");
  CHECK(j["layers"].size() == 15);
  CHECK(j["layers"]["blk.0.attn_v"]["type"] == "q5_k");  // Q3_K_M: attn_v of layers 0-1
  CHECK(j["layers"]["blk.1.attn_output"]["type"] == "q4_k");
  // ffn_down: q5_k only in the first 2 / 16 = 0 layers, so q4_k (the asked type; stored as q5_0).
  CHECK(j["layers"]["blk.1.ffn_down"]["type"] == "q4_k");
  const AppliedRecipe back = plan_llm_recipe(m, parse_llm_recipe(j, m, "back"));
  REQUIRE(back.tensors.size() == mix.tensors.size());
  for (size_t i = 0; i < mix.tensors.size(); ++i) {
    CHECK(back.tensors[i].stored == mix.tensors[i].stored);
  }
  CHECK(back.total_bytes == mix.total_bytes);
}

TEST_CASE("the safetensors export is a Hugging Face checkpoint of the dequantized weights") {
  const fs::path hf = llm_fixture("tiny_llama");
  const fs::path dir = compsearch::testing::fresh_dir("export_safetensors");
  SUBCASE("without a recipe the tensors equal the original HF file's, q/k rows in HF order") {
    LlmModel m = load_llm(hf);
    write_hf_checkpoint(m, dir / "ckpt");
    const SafetensorsFile original = read_safetensors_header(hf / "model.safetensors");
    const SafetensorsFile exported = read_safetensors_header(dir / "ckpt" / "model.safetensors");
    CHECK(exported.tensors.size() == original.tensors.size());  // no lm_head: tied
    for (const auto& e : original.tensors) {
      CAPTURE(e.name);
      const auto it = std::find_if(exported.tensors.begin(), exported.tensors.end(),
                                   [&](const SafetensorsEntry& x) { return x.name == e.name; });
      REQUIRE(it != exported.tensors.end());
      CHECK(it->dtype == "F32");
      CHECK(it->shape == e.shape);
      CHECK(read_safetensors_tensor(exported, *it) == read_safetensors_tensor(original, e));
    }
  }
  SUBCASE("with a recipe it loads back as the recipe's weights") {
    LlmModel m = load_llm(llm_fixture("tiny_llama.f16.gguf"));
    apply_llm_recipe(m, llama_mix_recipe(m, "q2_k"));
    write_hf_checkpoint(m, dir / "q2k");
    const LlmModel back = load_llm(dir / "q2k");
    CHECK(back.config.kv_heads == 2);
    CHECK(back.config.tied_embeddings);
    REQUIRE(back.tensors.size() == m.tensors.size());
    for (size_t i = 0; i < m.tensors.size(); ++i) {
      CAPTURE(m.tensors[i].name);
      CHECK(back.tensors[i].name == m.tensors[i].name);
      CHECK(back.tensors[i].data == m.tensors[i].data);
    }
  }
}

TEST_CASE(
    "compsearch compress writes the llama-tensor-types file and prints llama-quantize's line") {
  const fs::path dir = compsearch::testing::fresh_dir("export_cli");
  const std::string base = "compress --model " +
                           shell_quote(llm_fixture("tiny_llama.f16.gguf").string()) +
                           " --recipe q4_k_m --out ";
  const auto r =
      run_compsearch(base + shell_quote((dir / "t.txt").string()) + " --format llama-tensor-types");
  REQUIRE_MESSAGE(r.rc == 0, r.err);
  CHECK(r.out.find("apply it with: llama-quantize --tensor-type-file ") != std::string::npos);
  CHECK(r.out.find("IN.gguf OUT.gguf Q4_K_M") != std::string::npos);
  std::ifstream in(dir / "t.txt");
  std::stringstream ss;
  ss << in.rdbuf();
  // Q4_K_M on 2 layers: use_more_bits(1, 2) holds, so layer 1's attn_v and ffn_down get q6_k
  // (ffn_down stored as q8_0); tied token_embd takes the output's q6_k.
  CHECK(ss.str().starts_with("^token_embd\\.weight$=q6_k\n^blk\\.0\\.attn_q\\.weight$=q4_k\n"));
  CHECK(ss.str().find("^blk\\.1\\.attn_v\\.weight$=q6_k\n") != std::string::npos);
  CHECK(ss.str().find("^blk\\.0\\.attn_v\\.weight$=q4_k\n") != std::string::npos);
  CHECK(ss.str().find("^blk\\.1\\.ffn_down\\.weight$=q8_0\n") != std::string::npos);

  const auto j =
      run_compsearch(base + shell_quote((dir / "r.json").string()) + " --format recipe --json");
  REQUIRE_MESSAGE(j.rc == 0, j.err);
  CHECK(nlohmann::json::parse(j.out)["format"] == "recipe");
  const auto bad = run_compsearch(base + shell_quote((dir / "x").string()) + " --format onnx");
  CHECK(bad.rc != 0);
  CHECK(bad.err.find("--format for an LLM checkpoint must be gguf, llama-tensor-types, recipe or "
                     "safetensors, got 'onnx'") != std::string::npos);
}
