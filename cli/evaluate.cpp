// `compsearch evaluate --model M --data D [--split test] [--json]`: top-1 accuracy of a model.
#include <boost/program_options.hpp>

#include <iostream>

#include "cli/command.h"
#include "compressors/recipe.h"
#include "experiments/compress_commands.h"
#include "experiments/model_commands.h"
#include "model/dataset.h"
#include "model/graph.h"

namespace po = boost::program_options;

namespace compsearch::cli {
namespace {

int run_evaluate(const std::vector<std::string>& args) {
  po::options_description opts(
      "usage: compsearch evaluate --model MODEL.onnx --data fashion-mnist|DATA.json [--recipe RECIPE.json] [options]\n\n"
      "Runs the model on every labelled sample of the data set and prints top-1 accuracy.\n"
      "--data is the built-in name `fashion-mnist` (Debian's dataset-fashion-mnist, pixels / "
      "255) or a dataset JSON file (see model/dataset.h: format idx|npy, images, labels, scale, "
      "mean, std, shape, layout, limit).\n\noptions");
  opts.add_options()("help,h", "show this help")(
      "model", po::value<std::string>(), "ONNX model file")(
      "data", po::value<std::string>(), "fashion-mnist or a dataset JSON file")(
      "split", po::value<std::string>()->default_value("test"), "train or test (fashion-mnist)")(
      "batch", po::value<int64_t>()->default_value(256), "batch size")(
      "threads", po::value<int>()->default_value(0), "threads (0 = all cores)")(
      "limit", po::value<int64_t>()->default_value(-1), "only the first N samples (-1 = all)")(
      "json", "print JSON (keys accuracy, correct, samples, ...) instead of text")(
      "recipe", po::value<std::string>(),
      "compsearch.recipe/1 file: evaluate the compressed model against the uncompressed one "
      "(JSON keys accuracy, agreement, kl, size_bytes, macs, samples)")(
      "calibration-data", po::value<std::string>()->default_value("fashion-mnist"),
      "with --recipe: data for 4/8-bit activation calibration")(
      "calibration-split", po::value<std::string>()->default_value("train"),
      "with --recipe: split of the calibration data (fashion-mnist)")(
      "calibration-samples", po::value<int64_t>()->default_value(512),
      "with --recipe: calibration images");
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
  if (!vm.count("model")) throw UsageError("missing --model");
  if (!vm.count("data")) throw UsageError("missing --data");
  const std::string split = vm["split"].as<std::string>();
  if (split != "train" && split != "test") {
    throw UsageError("--split must be train or test, got '" + split + "'");
  }
  if (vm["batch"].as<int64_t>() < 1) throw UsageError("--batch must be >= 1");
  const std::string model_path = vm["model"].as<std::string>();
  const model::Graph graph = model::load_onnx(model_path);
  const model::Dataset data = model::load_dataset(vm["data"].as<std::string>(), split);
  experiments::EvaluateOptions options;
  options.batch_size = vm["batch"].as<int64_t>();
  options.threads = vm["threads"].as<int>();
  options.limit = vm["limit"].as<int64_t>();
  if (vm.count("recipe")) {
    // Compressed evaluation (issue 3); the logic lives in experiments/compress_commands.cpp.
    const std::string recipe_path = vm["recipe"].as<std::string>();
    const compressors::Recipe recipe = compressors::load_recipe(recipe_path);
    if (vm["calibration-samples"].as<int64_t>() < 1) throw UsageError("--calibration-samples must be >= 1");
    experiments::RecipeEvaluateOptions ro;
    ro.batch_size = options.batch_size;
    ro.threads = options.threads;
    ro.limit = options.limit;
    ro.calibration_samples = vm["calibration-samples"].as<int64_t>();
    const bool calibrate = experiments::recipe_needs_calibration(graph, recipe);
    const model::Dataset calibration =
        calibrate ? model::load_dataset(vm["calibration-data"].as<std::string>(), vm["calibration-split"].as<std::string>())
                  : model::Dataset{};
    const auto r = experiments::evaluate_recipe(graph, recipe, data, calibration, ro, model_path, recipe_path);
    if (vm.count("json")) std::cout << r.to_json().dump(2) << "\n";
    else std::cout << r.to_text();
    return 0;
  }
  const auto result = experiments::evaluate_graph(graph, data, options, model_path);
  if (vm.count("json")) std::cout << result.to_json().dump(2) << "\n";
  else std::cout << result.to_text();
  return 0;
}

const CommandRegistration kRegistration("evaluate", "top-1 accuracy of a model on a data set",
                                        run_evaluate);

}  // namespace
}  // namespace compsearch::cli
