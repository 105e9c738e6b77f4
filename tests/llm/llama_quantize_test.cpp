// compsearch against llama.cpp's own llama-quantize (built by llm/CMakeLists.txt from the pinned
// llama.cpp tree): the same stored type for every tensor, fallbacks included, and bit-identical
// dequantized weights.
#include <doctest/doctest.h>

#include <cstdlib>
#include <filesystem>

#include "llm/checkpoint.h"
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
