// `compsearch estimate --model M [--recipe R] --target T [--batch N] [--json]`: latency, energy and
// memory of a (compressed) model on one hardware target, per layer and in total.
#include <boost/program_options.hpp>

#include <iostream>

#include "cli/command.h"
#include "experiments/estimate_commands.h"

namespace po = boost::program_options;

namespace compsearch::cli {
namespace {

int run_estimate(const std::vector<std::string>& args) {
  po::options_description opts(
      "usage: compsearch estimate --model M [--recipe R] --target T [--batch N] [--json]\n\n"
      "Costs every layer on the target: latency = max(compute, memory) + overhead, energy, the\n"
      "executing precision and what bounds it; totals, and peak SRAM / flash on MCUs with whether\n"
      "the model deploys (and why not). Without --recipe the model runs as stored (fp32).\n"
      "M is an .onnx file or an architecture-zoo model: zoo:NAME[,alpha=A,res=R,classes=C] with\n"
      "NAME one of mobilenet_v1, mobilenet_v2, resnet18, resnet50, resnext101_32x8d, ds_cnn_kws,\n"
      "resnet8_cifar, mobilenet_v1_vww, fc_autoencoder. T is a preset (compsearch hw list) or a\n"
      "profile file.\n\noptions");
  opts.add_options()("help,h", "show this help")("model", po::value<std::string>(), "model file or zoo:NAME")(
      "recipe", po::value<std::string>()->default_value(""), "compsearch.recipe/1 file")(
      "target", po::value<std::string>(), "target preset or profile file")(
      "batch", po::value<int>()->default_value(1), "batch size")("json", "print JSON instead of a table");
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
  if (!vm.count("target")) throw UsageError("missing --target");
  experiments::EstimateRequest req;
  req.model = vm["model"].as<std::string>();
  req.recipe = vm["recipe"].as<std::string>();
  req.target = vm["target"].as<std::string>();
  req.batch = vm["batch"].as<int>();
  if (req.batch < 1) throw UsageError("--batch must be >= 1, got " + std::to_string(req.batch));
  const auto result = experiments::run_estimate(req);
  if (vm.count("json")) std::cout << result.to_json().dump(2) << "\n";
  else std::cout << result.to_text();
  return 0;
}

const CommandRegistration kRegistration("estimate", "latency, energy and memory on a hardware target",
                                        run_estimate);

}  // namespace
}  // namespace compsearch::cli
