// compsearch's exports against real llama.cpp (issue 13, item 10): the llama-tensor-types file of
// a mixed recipe, applied by llama-quantize --tensor-type-file (and the printed --tensor-type
// command line), gives a GGUF whose every tensor has the type compsearch planned, whose weights are
// compsearch's bit for bit and whose file size is the cost model's to the byte; and
// llama-perplexity --kl-divergence of that file against the F16 model agrees with compsearch's KLD
// over the same windows within 10%.
#include <doctest/doctest.h>

#include <algorithm>
#include <fstream>
#include <regex>
#include <sstream>

#include "llm/cost_model.h"
#include "llm/kld.h"
#include "llm/llama_export.h"
#include "llm/llm_recipe.h"
#include "tests/llm/llm_test_util.h"
#include "tests/test_skip.h"

using namespace compsearch::llm;
using compsearch::testing::llm_fixture;
namespace fs = std::filesystem;

namespace {

// A mix of most recipe types: fallbacks (ffn_down rows of 640), a 32-block type, the tied
// embeddings at q5_k.
const nlohmann::json kMixedRecipe = {{"default", {{"type", "q3_k"}}},
                                     {"layers",
                                      {{"token_embd", {{"type", "q5_k"}}},
                                       {"blk.0.attn_v", {{"type", "q6_k"}}},
                                       {"blk.0.attn_output", {{"type", "q8_0"}}},
                                       {"blk.0.ffn_up", {{"type", "iq4_xs"}}},
                                       {"blk.0.ffn_down", {{"type", "q6_k"}}},
                                       {"blk.1.attn_q", {{"type", "q2_k"}}},
                                       {"blk.1.ffn_gate", {{"type", "q4_0"}}},
                                       {"blk.1.ffn_down", {{"type", "q4_k"}}}}}};

std::string read_text(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Runs a command, its output to `log`; fails the test (with the log) when it exits non-zero.
void run(const std::string& cmd, const fs::path& log) {
  const int rc = std::system((cmd + " > " + log.string() + " 2>&1").c_str());
  REQUIRE_MESSAGE(rc == 0, "failed (" << rc << "): " << cmd << "\n" << read_text(log));
}

// Checks `out` (written by llama-quantize from the F16 fixture) against compsearch's plan.
void check_quantized(const fs::path& out, const LlmModel& source, const LlmRecipe& recipe) {
  const AppliedRecipe plan = plan_llm_recipe(source, recipe);
  LlmModel ours = source;
  apply_llm_recipe(ours, recipe);
  compsearch::testing::check_matches_llama_quantize(load_llm(out), ours, plan);
  CHECK(static_cast<int64_t>(fs::file_size(out)) == gguf_file_bytes(source, plan));
}

// The F16 fixture and the mixed recipe's plan for it.
struct Mixed {
  fs::path f16 = llm_fixture("tiny_llama.f16.gguf");
  LlmModel source = load_llm(f16);
  LlmRecipe recipe = parse_llm_recipe(kMixedRecipe, source, "mixed");
  AppliedRecipe plan = plan_llm_recipe(source, recipe);
};

// Writes the tensor-types file to dir/types.txt and runs llama-quantize --tensor-type-file with
// it on the F16 fixture; returns the output file.
fs::path quantize_with_types_file(const Mixed& m, const fs::path& dir) {
  std::ofstream(dir / "types.txt") << llama_tensor_types_text(m.source, m.plan);
  return compsearch::testing::run_llama_quantize(
      "--tensor-type-file " + (dir / "types.txt").string(),
      llama_quantize_file_type(m.source, m.plan), m.f16);
}

}  // namespace

TEST_CASE("llama-quantize --tensor-type-file with compsearch's file stores the planned types") {
  if (!fs::exists(compsearch::testing::llama_quantize())) {
    COMPSEARCH_SKIP_TEST("llama-quantize was not built (see llm/CMakeLists.txt)");
  }
  const Mixed m;
  const fs::path dir = compsearch::testing::fresh_dir("crosscheck_types");
  const std::string text = llama_tensor_types_text(m.source, m.plan);
  CHECK(text.find("^blk\\.0\\.ffn_down\\.weight$=q8_0\n") != std::string::npos);  // fallback
  CHECK(text.find("^token_embd\\.weight$=q5_k\n") != std::string::npos);
  CHECK(text.find("norm") == std::string::npos);
  CHECK(std::count(text.begin(), text.end(), '\n') == 1 + 2 * 7);
  // Most of the recipe's bytes are q8_0 (attn_output and ffn_down of layer 0: 243,712 bytes)
  // ahead of q3_k (557,056 weights, 239,360 bytes): the file type's base type is q8_0.
  CHECK(llama_quantize_file_type(m.source, m.plan) == "Q8_0");

  SUBCASE("as a --tensor-type-file") {
    check_quantized(quantize_with_types_file(m, dir), m.source, m.recipe);
  }
  SUBCASE("as the printed --tensor-type command line") {
    std::string cmd =
        llama_quantize_command(m.source, m.plan, m.f16.string(), (dir / "cmd.gguf").string());
    REQUIRE(cmd.starts_with("llama-quantize --tensor-type '^token_embd\\.weight$=q5_k' "));
    cmd.replace(0, std::string("llama-quantize").size(),
                compsearch::testing::llama_quantize().string());
    run(cmd, dir / "cmd.log");
    check_quantized(dir / "cmd.gguf", m.source, m.recipe);
  }
}

TEST_CASE("llama-perplexity --kl-divergence agrees with compsearch's KLD within 10%") {
  if (!fs::exists(compsearch::testing::llama_quantize()) ||
      !fs::exists(compsearch::testing::llama_perplexity())) {
    COMPSEARCH_SKIP_TEST("llama-quantize or llama-perplexity was not built (llm/CMakeLists.txt)");
  }
  const Mixed m;
  const fs::path dir = compsearch::testing::fresh_dir("crosscheck_kld");
  const fs::path mixed = quantize_with_types_file(m, dir);

  // The held-out bytes as text: the fixture's byte-level vocabulary tokenizes them to themselves.
  const int64_t context = 128, windows = 16;
  const std::vector<int32_t> tokens = load_tokens(llm_fixture("fortunes_heldout.u8.npy"), 256);
  {
    std::ofstream text(dir / "heldout.txt", std::ios::binary);
    for (int32_t t : tokens) text.put(static_cast<char>(t));
  }
  const std::string common = " -c " + std::to_string(context) + " -b " + std::to_string(context) +
                             " --chunks " + std::to_string(windows) +
                             " -t 2 --kl-divergence-base " + (dir / "base.kld").string();
  compsearch::testing::run_llama_perplexity(
      "-m " + m.f16.string() + " -f " + (dir / "heldout.txt").string() + common, "base");
  const std::string log = compsearch::testing::run_llama_perplexity(
      "-m " + mixed.string() + " --kl-divergence" + common, "kld");
  std::smatch match;
  REQUIRE_MESSAGE(std::regex_search(log, match, std::regex(R"(Mean +KLD: +([0-9.]+))")), log);
  const double theirs = std::stod(match[1]);

  const KldReference ref = kld_reference(m.source, tokens, context, windows);
  LlmModel quantized = m.source;
  apply_llm_recipe(quantized, m.recipe);
  const KldResult ours = evaluate_kld(quantized, tokens, ref);
  MESSAGE("KLD over " << ours.tokens_scored << " tokens: llama-perplexity " << theirs
                      << ", compsearch " << ours.mean_kld);
  CHECK(ours.tokens_scored == windows * (context - 1 - context / 2));
  CHECK(ours.mean_kld > 2e-4);  // the test model takes quantization well: about 7e-4 here
  CHECK(ours.mean_kld == doctest::Approx(theirs).epsilon(0.10));
}
