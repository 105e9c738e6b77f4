// compsearch against llama.cpp's own tools (built by llm/CMakeLists.txt from the pinned llama.cpp
// tree): llama-quantize gives the same stored type for every tensor, fallbacks included, and
// bit-identical dequantized weights; llama-perplexity gives the same perplexity.
#include <dlfcn.h>
#include <doctest/doctest.h>
#include <ggml.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include "llm/checkpoint.h"
#include "llm/decoder.h"
#include "llm/llm_recipe.h"
#include "tests/llm/llm_test_util.h"
#include "tests/test_skip.h"

using namespace compsearch::llm;
namespace fs = std::filesystem;

namespace {

fs::path llama_quantize() { return fs::path(COMPSEARCH_BINARY_DIR) / "llm" / "llama-quantize"; }

// Runs llama-quantize on the F16 fixture; returns the output file.
fs::path run_llama_quantize(const std::string& args, const std::string& name) {
  const fs::path out = compsearch::testing::fresh_dir("llama_quantize") / (name + ".gguf");
  const fs::path log = out.parent_path() / (name + ".log");
  const std::string cmd = llama_quantize().string() + " " + args + " " +
                          compsearch::testing::llm_fixture("tiny_llama.f16.gguf").string() + " " +
                          out.string() + " " + name + " > " + log.string() + " 2>&1";
  REQUIRE_MESSAGE(std::system(cmd.c_str()) == 0, "failed: " << cmd << " (log " << log << ")");
  return out;
}

}  // namespace

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
    REQUIRE(theirs.tensors.size() == ours.tensors.size());
    for (size_t i = 0; i < ours.tensors.size(); ++i) {
      CAPTURE(ours.tensors[i].name);
      CHECK(tensor_type_name(theirs.tensors[i].stored_type) ==
            tensor_type_name(plan.tensors[i].stored));
      CHECK(theirs.tensors[i].data == ours.tensors[i].data);
    }
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
  const fs::path bin = fs::path(COMPSEARCH_BINARY_DIR) / "llm" / "llama-perplexity";
  if (!fs::exists(bin)) {
    COMPSEARCH_SKIP_TEST("llama-perplexity was not built (see llm/CMakeLists.txt)");
  }
  // It loads its CPU backend from the working directory: the folder of the libggml-base we link.
  Dl_info info{};
  REQUIRE(dladdr(reinterpret_cast<void*>(&ggml_type_size), &info) != 0);
  const fs::path backends = fs::path(info.dli_fname).parent_path();
  const fs::path gguf = compsearch::testing::llm_fixture("tiny_llama.f16.gguf");
  const std::vector<int32_t> tokens =
      load_tokens(compsearch::testing::llm_fixture("fortunes_heldout.u8.npy"), 256);
  const fs::path dir = compsearch::testing::fresh_dir("llama_perplexity");
  {
    std::ofstream text(dir / "heldout.txt", std::ios::binary);
    for (int32_t t : tokens) text.put(static_cast<char>(t));
  }
  const std::string cmd = "cd " + backends.string() + " && " + bin.string() + " -m " +
                          gguf.string() + " -f " + (dir / "heldout.txt").string() +
                          " -c 128 --chunks 4 -b 128 -t 2 > " + (dir / "log").string() + " 2>&1";
  const int rc = std::system(cmd.c_str());
  std::ifstream log(dir / "log");
  std::stringstream ss;
  ss << log.rdbuf();
  const std::string text = ss.str();
  REQUIRE_MESSAGE(rc == 0, "failed (" << rc << "): " << cmd << "\n" << text);
  std::smatch m;
  REQUIRE_MESSAGE(std::regex_search(text, m, std::regex(R"(Final estimate: PPL = ([0-9.]+))")),
                  text);
  const double theirs = std::stod(m[1]);
  const PerplexityResult ours = evaluate_perplexity(load_llm(gguf), tokens, 128, 4);
  MESSAGE("llama-perplexity " << theirs << ", compsearch " << ours.perplexity);
  // Same windows and scored positions; llama.cpp keeps K/V in f16, hence not exactly equal.
  CHECK(ours.perplexity == doctest::Approx(theirs).epsilon(1e-3));
}
