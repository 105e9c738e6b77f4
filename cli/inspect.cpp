// `compsearch inspect MODEL.onnx [--json]`: the layer table of a model.
#include <boost/program_options.hpp>

#include <iostream>

#include "cli/command.h"
#include "compressors/recipe.h"
#include "experiments/compress_commands.h"
#include "experiments/model_commands.h"
#include "model/graph.h"

namespace po = boost::program_options;

namespace compsearch::cli {
namespace {

int run_inspect(const std::vector<std::string>& args) {
  po::options_description opts("usage: compsearch inspect MODEL.onnx [--recipe RECIPE.json] [--json]\n\n"
                               "Prints every searchable layer (Conv/Gemm/MatMul with a constant "
                               "weight): op, weight shape, params, MACs per sample, input and "
                               "output activation elements, and the model totals.\n\noptions");
  opts.add_options()("help,h", "show this help")("json", "print JSON instead of a table")(
      "model", po::value<std::string>(), "ONNX model file (positional)")(
      "recipe", po::value<std::string>(),
      "compsearch.recipe/1 file: show the effective table (settings, effective MACs after channel "
      "pruning and its propagation to consumers, stored bytes)");
  po::positional_options_description pos;
  pos.add("model", 1);
  po::variables_map vm;
  try {
    std::vector<std::string> rest(args.begin() + 1, args.end());
    po::store(po::command_line_parser(rest).options(opts).positional(pos).run(), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    throw UsageError(e.what());
  }
  if (vm.count("help")) {
    std::cout << opts << "\n";
    return 0;
  }
  if (!vm.count("model")) throw UsageError("missing MODEL.onnx");
  const std::string path = vm["model"].as<std::string>();
  const model::Graph graph = model::load_onnx(path);
  if (vm.count("recipe")) {
    // Effective layer table under a recipe (issue 3); logic in experiments/compress_commands.cpp.
    const std::string recipe_path = vm["recipe"].as<std::string>();
    const auto r = experiments::inspect_recipe(graph, compressors::load_recipe(recipe_path), path, recipe_path);
    if (vm.count("json")) std::cout << r.to_json().dump(2) << "\n";
    else std::cout << r.to_text();
    return 0;
  }
  const auto result = experiments::inspect_graph(graph, path);
  if (vm.count("json")) std::cout << result.to_json().dump(2) << "\n";
  else std::cout << result.to_text();
  return 0;
}

const CommandRegistration kRegistration("inspect", "show a model's layer table (params, MACs)",
                                        run_inspect);

}  // namespace
}  // namespace compsearch::cli
