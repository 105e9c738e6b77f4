// `compsearch measure --model M [--recipe R] [--int8] [--batch N] [--threads T] [--repeats K]
// [--compare-target T] [--json]`: latency on this machine, measured, per layer and in total.
#include <iostream>

#include "cli/command.h"
#include "cli/options.h"
#include "experiments/measure_commands.h"

namespace po = boost::program_options;

namespace compsearch::cli {
namespace {

int run_measure(const std::vector<std::string>& args) {
  VerbOptions o(
      "usage: compsearch measure --model M [--recipe R] [--int8] [--batch N] [--threads T]\n"
      "                          [--repeats K] [--warmup W] [--compare-target T] [--json]\n\n"
      "Runs the (compressed) model on this machine with compsearch's executor on random inputs "
      "and\n"
      "reports the median of K timed runs, in total and per layer (Conv/Gemm/MatMul with the\n"
      "activation fused into it), the rest as 'other ops'. Without --int8 the compressed weights\n"
      "run in fp32; with --int8, layers with 8-bit weights and activations run on integer kernels\n"
      "(activations calibrated on the random inputs). --compare-target puts a hardware model's\n"
      "estimate of the same recipe beside each layer, with its error.\n\noptions");
  o.add()("model", po::value<std::string>(), ".onnx model file")(
      "recipe", po::value<std::string>()->default_value(""), "compsearch.recipe/1 file")(
      "int8", "integer kernels for w8a8 layers")("batch", po::value<int>()->default_value(1),
                                                 "batch size")(
      "threads", po::value<int>()->default_value(1), "executor threads (0 = all cores)")(
      "repeats", po::value<int>()->default_value(30), "timed runs (the median is reported)")(
      "warmup", po::value<int>()->default_value(3), "untimed runs first")(
      "compare-target", po::value<std::string>()->default_value(""),
      "target preset or profile file to estimate beside")("json", "print JSON instead of a table");
  if (!o.parse(args)) return 0;
  experiments::MeasureRequest req;
  req.model = o.required<std::string>("model");
  req.recipe = o.get<std::string>("recipe");
  req.int8 = o.has("int8");
  req.batch = o.get<int>("batch");
  req.threads = o.get<int>("threads");
  req.repeats = o.get<int>("repeats");
  req.warmup = o.get<int>("warmup");
  req.compare_target = o.get<std::string>("compare-target");
  const auto result = experiments::run_measure(req);
  if (o.has("json")) {
    std::cout << result.to_json().dump(2) << "\n";
  } else {
    std::cout << result.to_text();
  }
  return 0;
}

const CommandRegistration kRegistration("measure",
                                        "latency on this machine, measured per layer and in total",
                                        run_measure);

}  // namespace
}  // namespace compsearch::cli
