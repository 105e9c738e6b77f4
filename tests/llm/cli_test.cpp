// `compsearch inspect` and `compsearch evaluate` on LLM checkpoints, run as a user runs them.
#include <doctest/doctest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "tests/experiments/cli_runner.h"
#include "tests/llm/llm_test_util.h"

using compsearch::testing::llm_fixture;
using compsearch::testing::run_compsearch;
using compsearch::testing::shell_quote;

TEST_CASE("compsearch inspect lists every tensor of an HF checkpoint with names, roles and MACs") {
  const auto r =
      run_compsearch("inspect " + shell_quote(llm_fixture("tiny_llama").string()) + " --json");
  REQUIRE_MESSAGE(r.rc == 0, r.err);
  const auto j = nlohmann::json::parse(r.out);
  CHECK(j["format"] == "hf");
  CHECK(j["config"]["kv_heads"] == 2);
  REQUIRE(j["tensors"].size() == 20);  // token_embd, 2 x 9 per block, output_norm (tied)
  const auto& q = j["tensors"][2];
  CHECK(q["name"] == "blk.0.attn_q");
  CHECK(q["hf_name"] == "model.layers.0.self_attn.q_proj");
  CHECK(q["role"] == "attn_q");
  CHECK(q["shape"] == nlohmann::json{256, 256});
  CHECK(q["stored_type"] == "bf16");
  // Per block: q 256x256, k and v 128x256, o 256x256, gate/up/down 640x256, two norms of 256.
  const int64_t block = 2 * 65536 + 2 * 32768 + 3 * 163840;
  CHECK(j["total_params"] == 65536 + 2 * (block + 512) + 256);
  CHECK(j["total_macs_per_token"] == 65536 + 2 * block);  // tied: token_embd is the output too
  const auto text = run_compsearch("inspect " + shell_quote(llm_fixture("tiny_llama").string()));
  const size_t at = text.out.find("\nblk.1.ffn_down ");
  REQUIRE(at != std::string::npos);
  const std::string line = text.out.substr(at + 1, text.out.find('\n', at + 1) - at - 1);
  CHECK(line.find(" model.layers.1.mlp.down_proj ") != std::string::npos);
  CHECK(line.find(" [256, 640] ") != std::string::npos);
  CHECK(line.ends_with(" 163840"));
}

TEST_CASE("compsearch inspect --recipe shows llama.cpp's stored types and the size of a GGUF") {
  const auto dir = compsearch::testing::fresh_dir("cli_recipe");
  std::ofstream(dir / "r.json") << R"({"default": {"type": "q4_k"},
      "layers": {"model.layers.0.mlp.down_proj": {"type": "q8_0"}}})";
  const auto r =
      run_compsearch("inspect " + shell_quote(llm_fixture("tiny_llama.f16.gguf").string()) +
                     " --recipe " + shell_quote((dir / "r.json").string()) + " --json");
  REQUIRE_MESSAGE(r.rc == 0, r.err);
  const auto j = nlohmann::json::parse(r.out);
  CHECK(j["format"] == "gguf");
  for (const auto& t : j["tensors"]) {
    CAPTURE(t["name"]);
    CHECK(t["stored_type"] == (t["shape"].size() == 2 ? "f16" : "f32"));
    if (t["name"] == "blk.0.ffn_down") {
      CHECK(t["stored_as"] == "q8_0");
    } else if (t["name"] == "blk.1.ffn_down") {
      CHECK(t["type"] == "q4_k");
      CHECK(t["stored_as"] == "q5_0");  // 640-long rows
      CHECK(t["bytes"] == 256 * 640 / 32 * 22);
    } else if (t["role"] == "attn_norm") {
      CHECK(t["stored_as"] == "f32");
    } else if (t["role"] == "attn_k") {
      CHECK(t["stored_as"] == "q4_k");
      CHECK(t["bytes"] == 128 * 144);
    }
  }
  // Norms f32; q4_k on 256-long rows; blk.0.ffn_down q8_0, blk.1.ffn_down q5_0 (fallback).
  const double bits =
      5 * 256 * 32.0 + 4.5 * (65536 + 2 * 196608 + 4 * 163840) + 8.5 * 163840 + 5.5 * 163840;
  CHECK(j["bits_per_weight"].get<double>() == doctest::Approx(bits / 1443072));
  CHECK(j["tensor_bytes"].get<double>() == doctest::Approx(bits / 8));
  // size_bytes is the whole GGUF file llama-quantize would write from this HF source: the
  // tensors plus the metadata compsearch's export writes (llm/cost_model.h), a few KB here.
  CHECK(j["size_bytes"].get<double>() > bits / 8);
  CHECK(j["size_bytes"].get<double>() < bits / 8 + 65536);
}

TEST_CASE("compsearch evaluate prints perplexity of an LLM, and of it under a recipe") {
  std::ifstream in(llm_fixture("tiny_llama.reference/perplexity.json"));
  const auto ref = nlohmann::json::parse(in);
  const std::string base = "evaluate --model " + shell_quote(llm_fixture("tiny_llama").string()) +
                           " --data " +
                           shell_quote(llm_fixture("fortunes_heldout.u8.npy").string()) +
                           " --context 128 --limit 4 --json";
  const auto r = run_compsearch(base);
  REQUIRE_MESSAGE(r.rc == 0, r.err);
  const auto j = nlohmann::json::parse(r.out);
  CHECK(j["tokens_scored"] == ref["tokens_scored"]);
  CHECK(j["mean_nll"].get<double>() ==
        doctest::Approx(ref["mean_nll"].get<double>()).epsilon(1e-5));
  CHECK(j["perplexity"].get<double>() ==
        doctest::Approx(ref["perplexity"].get<double>()).epsilon(1e-5));
  CHECK(j["tokens_per_second"].get<double>() > 0);
  CHECK(j["recipe"].is_null());

  const auto dir = compsearch::testing::fresh_dir("cli_eval");
  std::ofstream(dir / "q2.json") << R"({"default": {"type": "q2_k"}})";
  const auto q = run_compsearch(base + " --recipe " + shell_quote((dir / "q2.json").string()));
  REQUIRE_MESSAGE(q.rc == 0, q.err);
  const auto jq = nlohmann::json::parse(q.out);
  CHECK(jq["mean_nll"].get<double>() > j["mean_nll"].get<double>() + 0.01);
  CHECK(jq["bits_per_weight"].get<double>() < 3.5);

  std::ofstream(dir / "bad.json") << R"({"default": {"type": "q4_k_m"}})";
  const auto bad = run_compsearch(base + " --recipe " + shell_quote((dir / "bad.json").string()));
  CHECK(bad.rc != 0);
  CHECK(bad.err.find("bad.json: default.type: unknown tensor type 'q4_k_m'") != std::string::npos);
}
