// compsearch against llama.cpp's own tools (built by llm/CMakeLists.txt from the pinned llama.cpp
// tree): llama-quantize gives the same stored type for every tensor, fallbacks included, and
// bit-identical dequantized weights; llama-perplexity gives the same perplexity.
#include <doctest/doctest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>

#include "llm/checkpoint.h"
#include "llm/decoder.h"
#include "llm/llm_recipe.h"
#include "tests/llm/llm_test_util.h"
#include "tests/test_skip.h"

using namespace compsearch::llm;
using compsearch::testing::llama_quantize;
using compsearch::testing::run_llama_quantize;
namespace fs = std::filesystem;

TEST_CASE("llama-quantize --pure stores the types compsearch plans, fallbacks included") {
  if (!fs::exists(llama_quantize())) {
    COMPSEARCH_SKIP_TEST("llama-quantize was not built (see llm/CMakeLists.txt)");
  }
  const LlmModel source = load_llm(compsearch::testing::llm_fixture("tiny_llama.f16.gguf"));
  for (const char* type : {"Q4_K", "Q2_K", "Q6_K", "IQ4_XS", "Q5_1"}) {
    CAPTURE(type);
    const LlmModel theirs = load_llm(run_llama_quantize("--pure", type));
    LlmModel ours = source;
    const AppliedRecipe plan =
        apply_llm_recipe(ours, parse_llm_recipe({{"default", {{"type", type}}}}, ours, "r"));
    compsearch::testing::check_matches_llama_quantize(theirs, ours, plan);
  }
}

TEST_CASE("llama-quantize's Q4_K_M mix is reproduced tensor by tensor from its types") {
  if (!fs::exists(llama_quantize())) {
    COMPSEARCH_SKIP_TEST("llama-quantize was not built (see llm/CMakeLists.txt)");
  }
  const LlmModel source = load_llm(compsearch::testing::llm_fixture("tiny_llama.f16.gguf"));
  const LlmModel theirs = load_llm(run_llama_quantize("", "Q4_K_M"));
  // A recipe naming, per tensor, the type llama.cpp chose gives the same weights.
  nlohmann::json layers = nlohmann::json::object();
  for (const auto& t : theirs.tensors) {
    if (t.is_matrix()) layers[t.name] = {{"type", tensor_type_name(t.stored_type)}};
  }
  LlmModel ours = source;
  apply_llm_recipe(ours, parse_llm_recipe({{"layers", layers}}, ours, "mix"));
  int mixed = 0;
  for (size_t i = 0; i < ours.tensors.size(); ++i) {
    CAPTURE(ours.tensors[i].name);
    CHECK(theirs.tensors[i].data == ours.tensors[i].data);
    mixed += theirs.tensors[i].stored_type != TensorType::kQ4_K;
  }
  CHECK(mixed > 5);  // norms, and the mix's q6_k / fallback tensors: not a pure file
}

TEST_CASE("llama-perplexity on the F16 GGUF gives compsearch's perplexity") {
  if (!fs::exists(compsearch::testing::llama_perplexity())) {
    COMPSEARCH_SKIP_TEST("llama-perplexity was not built (see llm/CMakeLists.txt)");
  }
  const fs::path gguf = compsearch::testing::llm_fixture("tiny_llama.f16.gguf");
  const std::vector<int32_t> tokens =
      load_tokens(compsearch::testing::llm_fixture("fortunes_heldout.u8.npy"), 256);
  const fs::path dir = compsearch::testing::fresh_dir("llama_perplexity_text");
  {
    std::ofstream text(dir / "heldout.txt", std::ios::binary);
    for (int32_t t : tokens) text.put(static_cast<char>(t));
  }
  const std::string text = compsearch::testing::run_llama_perplexity(
      "-m " + gguf.string() + " -f " + (dir / "heldout.txt").string() +
          " -c 128 --chunks 4 -b 128 -t 2",
      "ppl");
  std::smatch m;
  REQUIRE_MESSAGE(std::regex_search(text, m, std::regex(R"(Final estimate: PPL = ([0-9.]+))")),
                  text);
  const double theirs = std::stod(m[1]);
  const PerplexityResult ours = evaluate_perplexity(load_llm(gguf), tokens, 128, 4);
  MESSAGE("llama-perplexity " << theirs << ", compsearch " << ours.perplexity);
  // Same windows and scored positions; llama.cpp keeps K/V in f16, hence not exactly equal.
  CHECK(ours.perplexity == doctest::Approx(theirs).epsilon(1e-3));
}
