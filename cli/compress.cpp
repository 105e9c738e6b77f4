// `compsearch compress --model M --recipe R --format onnx-qdq|onnx|safetensors --out PATH`:
// applies a recipe and exports the compressed model.
#include <boost/program_options.hpp>

#include <iostream>
#include <optional>

#include "cli/command.h"
#include "compressors/export.h"
#include "compressors/recipe.h"
#include "experiments/compress_commands.h"
#include "model/dataset.h"
#include "model/graph.h"

namespace po = boost::program_options;

namespace compsearch::cli {
namespace {

int run_compress(const std::vector<std::string>& args) {
  po::options_description opts(
      "usage: compsearch compress --model MODEL.onnx --recipe RECIPE.json --format FORMAT --out PATH "
      "[options]\n\n"
      "Applies a compsearch.recipe/1 file to the model and writes the compressed model:\n"
      "  onnx-qdq     int8 weights + DequantizeLinear for layers of <= 8 bits, QuantizeLinear /\n"
      "               DequantizeLinear pairs on 4/8-bit activations (Cast pairs for 16 bits)\n"
      "  onnx         the fake-quantized float weights in the original graph (weights only)\n"
      "  safetensors  integer weights (I8), scales (F64), other tensors, recipe as metadata\n"
      "Recipes with 4/8-bit activations are calibrated on --calibration-data (default: the\n"
      "fashion-mnist train split).\n\noptions");
  opts.add_options()("help,h", "show this help")("model", po::value<std::string>(), "ONNX model file")(
      "recipe", po::value<std::string>(), "recipe JSON file (compsearch.recipe/1)")(
      "format", po::value<std::string>(), "onnx-qdq, onnx or safetensors")(
      "out", po::value<std::string>(), "output file")(
      "calibration-data", po::value<std::string>()->default_value("fashion-mnist"),
      "fashion-mnist or a dataset JSON file, for activation calibration")(
      "calibration-split", po::value<std::string>()->default_value("train"), "train or test (fashion-mnist)")(
      "calibration-samples", po::value<int64_t>()->default_value(512), "calibration images")(
      "json", "print a JSON summary");
  po::variables_map vm;
  try {
    std::vector<std::string> rest(args.begin() + 1, args.end());
    po::store(po::command_line_parser(rest).options(opts).run(), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    throw UsageError(e.what());
  }
  if (vm.count("help")) {
    std::cout << opts << "\n";
    return 0;
  }
  for (const char* k : {"model", "recipe", "format", "out"})
    if (!vm.count(k)) throw UsageError(std::string("missing --") + k);
  compressors::ExportFormat format;
  try {
    format = compressors::export_format_from_string(vm["format"].as<std::string>());
  } catch (const std::invalid_argument& e) {
    throw UsageError(std::string("--format: ") + e.what());
  }
  if (vm["calibration-samples"].as<int64_t>() < 1) throw UsageError("--calibration-samples must be >= 1");
  const std::string model_path = vm["model"].as<std::string>();
  const model::Graph graph = model::load_onnx(model_path);
  const compressors::Recipe recipe = compressors::load_recipe(vm["recipe"].as<std::string>());
  std::optional<model::Dataset> calibration;
  if (experiments::recipe_needs_calibration(graph, recipe))
    calibration = model::load_dataset(vm["calibration-data"].as<std::string>(), vm["calibration-split"].as<std::string>());
  const auto summary = experiments::compress_model(graph, recipe, format, vm["out"].as<std::string>(),
                                                   calibration ? &*calibration : nullptr,
                                                   vm["calibration-samples"].as<int64_t>());
  if (vm.count("json")) {
    std::cout << summary.dump(2) << "\n";
  } else {
    std::cout << "wrote " << summary["out"].get<std::string>() << " (" << summary["format"].get<std::string>()
              << "): " << summary["layers_quantized"] << " of " << summary["layers"]
              << " layers quantized to <= 8 bits, stored size " << summary["size_bytes"].get<double>()
              << " bytes, " << summary["macs"] << " effective MACs per sample\n";
  }
  return 0;
}

const CommandRegistration kRegistration("compress", "apply a recipe and export (onnx-qdq, onnx, safetensors)",
                                        run_compress);

}  // namespace
}  // namespace compsearch::cli
