// `compsearch estimate --model M [--recipe R] --target T [--batch N] [--json]`: latency, energy and
// memory of a (compressed) model on one hardware target, per layer and in total.
#include <iostream>

#include "cli/command.h"
#include "cli/options.h"
#include "experiments/estimate_commands.h"

namespace po = boost::program_options;

namespace compsearch::cli {
namespace {

int run_estimate(const std::vector<std::string>& args) {
  VerbOptions o(
      "usage: compsearch estimate --model M [--recipe R] --target T [--batch N] [--json]\n\n"
      "Costs every layer on the target: latency = max(compute, memory) + overhead, energy, the\n"
      "executing precision and what bounds it; totals, and peak SRAM / flash on MCUs with whether\n"
      "the model deploys (and why not). Without --recipe the model runs as stored (fp32).\n"
      "M is an .onnx file or an architecture-zoo model: zoo:NAME[,alpha=A,res=R,classes=C] with\n"
      "NAME one of mobilenet_v1, mobilenet_v2, resnet18, resnet50, resnext101_32x8d, ds_cnn_kws,\n"
      "resnet8_cifar, mobilenet_v1_vww, fc_autoencoder. T is a preset (compsearch hw list) or a\n"
      "profile file.\n\noptions");
  o.add()("model", po::value<std::string>(), "model file or zoo:NAME")(
      "recipe", po::value<std::string>()->default_value(""), "compsearch.recipe/1 file")(
      "target", po::value<std::string>(), "target preset or profile file")(
      "batch", po::value<int>()->default_value(1), "batch size")("json",
                                                                 "print JSON instead of a table");
  if (!o.parse(args)) return 0;
  experiments::EstimateRequest req;
  req.model = o.required<std::string>("model");
  req.target = o.required<std::string>("target");
  req.recipe = o.get<std::string>("recipe");
  req.batch = o.get<int>("batch");
  const auto result = experiments::run_estimate(req);
  if (o.has("json")) {
    std::cout << result.to_json().dump(2) << "\n";
  } else {
    std::cout << result.to_text();
  }
  return 0;
}

const CommandRegistration kRegistration("estimate",
                                        "latency, energy and memory on a hardware target",
                                        run_estimate);

}  // namespace
}  // namespace compsearch::cli
