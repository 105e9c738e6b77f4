// `compsearch inspect MODEL.onnx [--recipe RECIPE.json] [--json]`: the layer table of a model, or
// its effective table under a recipe.
#include <iostream>

#include "cli/command.h"
#include "cli/options.h"
#include "experiments/compress_commands.h"
#include "experiments/llm_commands.h"

namespace po = boost::program_options;

namespace compsearch::cli {
namespace {

int run_inspect(const std::vector<std::string>& args) {
  VerbOptions o(
      "usage: compsearch inspect MODEL.onnx|LLM_DIR|MODEL.gguf [--recipe RECIPE.json] "
      "[--json]\n\n"
      "Prints every searchable layer (Conv/Gemm/MatMul with a constant "
      "weight): op, weight shape, params, MACs per sample, input and "
      "output activation elements, and the model totals.\n"
      "For an LLM checkpoint (a Hugging Face directory with config.json, or a GGUF file): every "
      "tensor with its GGUF and HF names, role, shape, stored type, params and MACs per token; "
      "with --recipe (a file, or a llama.cpp mix name: q2_k, q3_k_m, q4_k_m, q5_k_m, q6_k, ...), "
      "the llama.cpp type each is stored as and the size (docs/llm.md).\n\noptions");
  o.add()("json", "print JSON instead of a table")("model", po::value<std::string>(),
                                                   "ONNX model file (positional)")(
      "recipe", po::value<std::string>(),
      "compsearch.recipe/1 file: show the effective table (settings, effective MACs after channel "
      "pruning and its propagation to consumers, stored bytes)");
  o.positional("model", 1);
  if (!o.parse(args)) return 0;
  const std::string model = o.required<std::string>("model", "missing MODEL.onnx");
  if (experiments::is_llm_model(model)) {
    const auto result =
        experiments::inspect_llm(model, o.optional<std::string>("recipe").value_or(""));
    std::cout << (o.has("json") ? result.to_json().dump(2) + "\n" : result.to_text());
    return 0;
  }
  experiments::InspectRequest req;
  req.model = model;
  req.recipe = o.optional<std::string>("recipe").value_or("");
  const auto report = experiments::run_inspect(req);
  if (o.has("json")) {
    std::cout << report.to_json().dump(2) << "\n";
  } else {
    std::cout << report.to_text();
  }
  return 0;
}

const CommandRegistration kRegistration("inspect", "show a model's layer table (params, MACs)",
                                        run_inspect);

}  // namespace
}  // namespace compsearch::cli
