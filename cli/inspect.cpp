// `compsearch inspect MODEL.onnx [--recipe RECIPE.json] [--json]`: the layer table of a model, or
// its effective table under a recipe.
#include <iostream>

#include "cli/command.h"
#include "cli/options.h"
#include "experiments/compress_commands.h"

namespace po = boost::program_options;

namespace compsearch::cli {
namespace {

int run_inspect(const std::vector<std::string>& args) {
  VerbOptions o(
      "usage: compsearch inspect MODEL.onnx [--recipe RECIPE.json] [--json]\n\n"
      "Prints every searchable layer (Conv/Gemm/MatMul with a constant "
      "weight): op, weight shape, params, MACs per sample, input and "
      "output activation elements, and the model totals.\n\noptions");
  o.add()("json", "print JSON instead of a table")("model", po::value<std::string>(),
                                                   "ONNX model file (positional)")(
      "recipe", po::value<std::string>(),
      "compsearch.recipe/1 file: show the effective table (settings, effective MACs after channel "
      "pruning and its propagation to consumers, stored bytes)");
  o.positional("model", 1);
  if (!o.parse(args)) return 0;
  experiments::InspectRequest req;
  req.model = o.required<std::string>("model", "missing MODEL.onnx");
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
