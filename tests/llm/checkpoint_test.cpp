// Checkpoint loading: the q/k row permutation (by hand), names and roles, sharded HF checkpoints,
// and the committed tiny model read from HF safetensors and from GGUF (written by llama.cpp's
// gguf-py with llama.cpp's converter permutation) giving the same weights.
#include "llm/checkpoint.h"

#include <doctest/doctest.h>

#include <cmath>
#include <fstream>

#include "tests/llm/llm_test_util.h"

using namespace compsearch::llm;
namespace fs = std::filesystem;
using compsearch::testing::f32_bytes;

TEST_CASE("HF q/k rows are permuted to llama.cpp's adjacent-pair order (hand computation)") {
  // head_dim 8: llama.cpp's pair i is (HF row i, HF row i + 4), interleaved.
  std::vector<int64_t> rows;
  for (int64_t r = 0; r < 16; ++r) rows.push_back(hf_row_of_gguf_row(r, 8));
  CHECK(rows == std::vector<int64_t>{0, 4, 1, 5, 2, 6, 3, 7, 8, 12, 9, 13, 10, 14, 11, 15});
  // A [2 heads * 4, 2] matrix whose entries name their HF row and column.
  std::vector<float> hf;
  for (int r = 0; r < 8; ++r) {
    for (int c = 0; c < 2; ++c) hf.push_back(static_cast<float>(10 * r + c));
  }
  const std::vector<float> gguf = permute_hf_to_gguf(hf, 2, 4, 2);
  CHECK(gguf == std::vector<float>{0, 1, 20, 21, 10, 11, 30, 31, 40, 41, 60, 61, 50, 51, 70, 71});
}

TEST_CASE("GGUF names and Hugging Face names map both ways") {
  CHECK(hf_name_of("blk.3.ffn_down") == "model.layers.3.mlp.down_proj");
  CHECK(hf_name_of("blk.12.attn_output") == "model.layers.12.self_attn.o_proj");
  CHECK(hf_name_of("token_embd") == "model.embed_tokens");
  CHECK(hf_name_of("output") == "lm_head");
  CHECK(gguf_name_of("model.layers.0.input_layernorm") == "blk.0.attn_norm");
  CHECK(gguf_name_of("model.norm") == "output_norm");
  CHECK_FALSE(hf_name_of("blk.0.ffn_gate_exps").has_value());
  CHECK_FALSE(gguf_name_of("model.layers.0.mlp.experts").has_value());
}

namespace {

// A 1-layer model (hidden 8, 2 query heads and 1 key/value head of 4, ffn 16, vocab 10), sharded
// over two files, with distinct values per tensor so a mix-up shows.
fs::path write_tiny_hf(bool tied) {
  const fs::path dir = compsearch::testing::fresh_dir(tied ? "hf_tied" : "hf_untied");
  nlohmann::json config = {{"model_type", "llama"},    {"hidden_size", 8},
                           {"intermediate_size", 16},  {"num_hidden_layers", 1},
                           {"num_attention_heads", 2}, {"num_key_value_heads", 1},
                           {"vocab_size", 10},         {"max_position_embeddings", 64},
                           {"rms_norm_eps", 1e-5},     {"tie_word_embeddings", tied}};
  std::ofstream(dir / "config.json") << config.dump();
  auto values = [](int64_t n, float base) {
    std::vector<float> v;
    for (int64_t i = 0; i < n; ++i) v.push_back(base + static_cast<float>(i));
    return v;
  };
  std::vector<compsearch::testing::RawTensor> a = {
      {"model.embed_tokens.weight", "F32", {10, 8}, f32_bytes(values(80, 0))},
      {"model.layers.0.self_attn.q_proj.weight", "F32", {8, 8}, f32_bytes(values(64, 1000))},
      {"model.layers.0.self_attn.k_proj.weight", "F32", {4, 8}, f32_bytes(values(32, 2000))},
      {"model.layers.0.self_attn.v_proj.weight", "F32", {4, 8}, f32_bytes(values(32, 3000))},
      {"model.layers.0.self_attn.o_proj.weight", "F32", {8, 8}, f32_bytes(values(64, 4000))},
      {"model.layers.0.input_layernorm.weight", "F32", {8}, f32_bytes(values(8, 5000))}};
  std::vector<compsearch::testing::RawTensor> b = {
      {"model.layers.0.post_attention_layernorm.weight", "F32", {8}, f32_bytes(values(8, 6000))},
      {"model.layers.0.mlp.gate_proj.weight", "F32", {16, 8}, f32_bytes(values(128, 7000))},
      {"model.layers.0.mlp.up_proj.weight", "F32", {16, 8}, f32_bytes(values(128, 8000))},
      {"model.layers.0.mlp.down_proj.weight", "F32", {8, 16}, f32_bytes(values(128, 9000))},
      {"model.norm.weight", "F32", {8}, f32_bytes(values(8, 10000))}};
  if (!tied) b.push_back({"lm_head.weight", "F32", {10, 8}, f32_bytes(values(80, 11000))});
  compsearch::testing::write_safetensors(dir / "model-00001-of-00002.safetensors", a);
  compsearch::testing::write_safetensors(dir / "model-00002-of-00002.safetensors", b);
  nlohmann::json map;
  for (const auto& t : a) map[t.name] = "model-00001-of-00002.safetensors";
  for (const auto& t : b) map[t.name] = "model-00002-of-00002.safetensors";
  std::ofstream(dir / "model.safetensors.index.json") << nlohmann::json{{"weight_map", map}}.dump();
  return dir;
}

}  // namespace

TEST_CASE("A sharded HF checkpoint loads with GGUF names, roles, MACs and permuted q/k") {
  for (const bool tied : {true, false}) {
    CAPTURE(tied);
    const fs::path dir = write_tiny_hf(tied);
    REQUIRE(is_llm_checkpoint(dir));
    const LlmModel m = load_llm(dir);
    CHECK(m.format == "hf");
    CHECK(m.config.head_dim == 4);
    CHECK(m.config.kv_heads == 1);
    CHECK(m.config.tied_embeddings == tied);
    CHECK(m.tensors.size() == (tied ? 11u : 12u));
    const LlmTensor& q = m.at("blk.0.attn_q");
    CHECK(q.hf_name == "model.layers.0.self_attn.q_proj");
    CHECK(role_name(q.role) == "attn_q");
    CHECK(q.macs_per_token == 64);
    // GGUF row 1 of head 0 is HF row 2 (head_dim 4: rows 0, 2, 1, 3); row 5 is HF row 6.
    CHECK(q.data[1 * 8] == 1000.0f + 2 * 8);
    CHECK(q.data[5 * 8 + 3] == 1000.0f + 6 * 8 + 3);
    const LlmTensor& k = m.at("model.layers.0.self_attn.k_proj.weight");  // HF alias
    CHECK(k.data[1 * 8] == 2000.0f + 2 * 8);
    CHECK(m.at("blk.0.attn_v").data[8] == 3008.0f);  // v is not permuted
    CHECK(m.at("token_embd").macs_per_token == (tied ? 80 : 0));
    CHECK(m.at("blk.0.attn_norm").macs_per_token == 0);
    CHECK(m.find("output") == (tied ? nullptr : m.find("lm_head")));
  }
}

TEST_CASE("HF checkpoint errors name the file and the problem") {
  const fs::path dir = write_tiny_hf(false);
  SUBCASE("a tensor missing from its shard") {
    fs::remove(dir / "model-00002-of-00002.safetensors");
    compsearch::testing::write_safetensors(dir / "model-00002-of-00002.safetensors", {});
    CHECK_THROWS_WITH(load_llm(dir), doctest::Contains("listed in model.safetensors.index.json is "
                                                       "not in the file"));
  }
  SUBCASE("an unsupported architecture") {
    std::ofstream(dir / "config.json") << R"({"model_type": "gpt2"})";
    CHECK_THROWS_WITH(load_llm(dir), doctest::Contains("config.json: model_type 'gpt2' is not "
                                                       "supported, expected llama or mistral"));
  }
  SUBCASE("rope scaling") {
    std::ofstream(dir / "config.json")
        << R"({"model_type": "llama", "rope_scaling": {"type": "llama3"}})";
    CHECK_THROWS_WITH(load_llm(dir), doctest::Contains("'rope_scaling' is not supported"));
  }
  SUBCASE("a shape the config does not imply") {
    std::ifstream in(dir / "config.json");
    nlohmann::json config = nlohmann::json::parse(in);
    config["intermediate_size"] = 12;
    std::ofstream(dir / "config.json") << config.dump();
    CHECK_THROWS_WITH(load_llm(dir), doctest::Contains("tensor blk.0.ffn_gate has shape [16, 8], "
                                                       "the config implies [12, 8]"));
  }
}

TEST_CASE("The tiny model reads the same from HF safetensors and from llama.cpp's GGUF") {
  const fs::path hf_dir = compsearch::testing::llm_fixture("tiny_llama");
  const fs::path gguf = compsearch::testing::llm_fixture("tiny_llama.f16.gguf");
  REQUIRE_MESSAGE(fs::exists(hf_dir / "model.safetensors"),
                  "run /usr/bin/python3 scripts/make_tiny_llama.py");
  const LlmModel a = load_llm(hf_dir);
  const LlmModel b = load_llm(gguf);
  CHECK(a.config.hidden == 256);
  CHECK(b.config.hidden == 256);
  CHECK(b.config.heads == 4);
  CHECK(b.config.kv_heads == 2);
  CHECK(b.config.head_dim == 64);
  CHECK(b.config.intermediate == 640);
  CHECK(b.config.rms_eps == doctest::Approx(a.config.rms_eps));
  CHECK(a.config.tied_embeddings);
  CHECK(b.config.tied_embeddings);
  REQUIRE(a.tensors.size() == b.tensors.size());
  for (size_t i = 0; i < a.tensors.size(); ++i) {
    const LlmTensor &x = a.tensors[i], &y = b.tensors[i];
    CAPTURE(x.name);
    CHECK(x.name == y.name);
    CHECK(x.shape == y.shape);
    CHECK(x.stored_type == TensorType::kBF16);
    CHECK(y.stored_type == (x.is_matrix() ? TensorType::kF16 : TensorType::kF32));
    // bf16 values stored as f16: equal up to f16's rounding (relative 2^-11) for normal values,
    // and within f16's subnormal spacing (2^-24) for tiny ones. A wrong q/k permutation would
    // move whole rows.
    double worst = 0.0;
    for (size_t j = 0; j < x.data.size(); ++j) {
      const double tol = std::max(std::fabs(x.data[j]) * 0x1p-11, 0x1p-24);
      worst = std::max(worst, std::fabs(x.data[j] - y.data[j]) / tol);
    }
    CHECK(worst <= 1.0);
  }
}

TEST_CASE("Bad GGUF files are errors naming the file") {
  const fs::path dir = compsearch::testing::fresh_dir("gguf_bad");
  std::ofstream(dir / "junk.gguf") << "GGUF but not really";
  CHECK_THROWS_WITH(load_llm(dir / "junk.gguf"),
                    doctest::Contains("junk.gguf: not a readable GGUF file"));
  CHECK_THROWS_WITH(load_llm(dir / "missing.gguf"), doctest::Contains("missing.gguf"));
  CHECK_FALSE(is_llm_checkpoint(dir / "model.onnx"));
  CHECK_FALSE(is_llm_checkpoint(dir));  // a directory without config.json
}
