// `compsearch evaluate --model M --data D [--split test] [--recipe R] [--json]`: top-1 accuracy of
// a model, or of the compressed model against the uncompressed one. The decisions (which
// evaluation, whether to calibrate) live in experiments/compress_commands.h.
#include <iostream>

#include "cli/command.h"
#include "cli/options.h"
#include "experiments/compress_commands.h"

namespace po = boost::program_options;

namespace compsearch::cli {
namespace {

int run_evaluate(const std::vector<std::string>& args) {
  VerbOptions o(
      "usage: compsearch evaluate --model MODEL.onnx --data fashion-mnist|DATA.json [--recipe "
      "RECIPE.json] [options]\n\n"
      "Runs the model on every labelled sample of the data set and prints top-1 accuracy.\n"
      "--data is the built-in name `fashion-mnist` (Debian's dataset-fashion-mnist, pixels / "
      "255) or a dataset JSON file (see model/dataset.h: format idx|npy, images, labels, scale, "
      "mean, std, shape, layout, limit).\n\noptions");
  o.add()("model", po::value<std::string>(), "ONNX model file")(
      "data", po::value<std::string>(), "fashion-mnist or a dataset JSON file")(
      "split", po::value<std::string>()->default_value("test"), "train or test (fashion-mnist)")(
      "batch", po::value<int64_t>()->default_value(256), "batch size")(
      "threads", po::value<int>()->default_value(0), "threads (0 = all cores; at most 1024)")(
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
  if (!o.parse(args)) return 0;
  experiments::EvaluateRequest req;
  req.model = o.required<std::string>("model");
  req.data = o.required<std::string>("data");
  req.split = o.get<std::string>("split");
  req.batch_size = o.get<int64_t>("batch");
  req.threads = threads_flag(o);
  req.limit = o.get<int64_t>("limit");
  req.recipe = o.optional<std::string>("recipe").value_or("");
  req.calibration = {o.get<std::string>("calibration-data"),
                     o.get<std::string>("calibration-split"),
                     o.get<int64_t>("calibration-samples")};
  const auto report = experiments::run_evaluate(req);
  if (o.has("json")) {
    std::cout << report.to_json().dump(2) << "\n";
  } else {
    std::cout << report.to_text();
  }
  return 0;
}

const CommandRegistration kRegistration("evaluate", "top-1 accuracy of a model on a data set",
                                        run_evaluate);

}  // namespace
}  // namespace compsearch::cli
