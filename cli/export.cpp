// `compsearch export --storage S --study-name N --trial K --format recipe|nni|onnx-qdq|
// safetensors --out PATH`: a trial's recipe, NNI 3 config lists or compressed model.
#include <iostream>

#include "cli/command.h"
#include "cli/options.h"
#include "experiments/results.h"

namespace po = boost::program_options;

namespace compsearch::cli {
namespace {

int run_export(const std::vector<std::string>& args) {
  VerbOptions o(
      "usage: compsearch export --storage S --study-name N --trial K\n"
      "                         --format recipe|nni|onnx-qdq|onnx|safetensors --out PATH "
      "[--json]\n\n"
      "Writes trial K of the study as:\n"
      "  recipe       its compsearch.recipe/1 file\n"
      "  nni          NNI 3 config lists: {\"quantization\": [...], \"pruning\": [...]}, entries "
      "with\n"
      "               op_names, target_names, quant_dtype, quant_scheme, granularity, "
      "sparse_ratio\n"
      "  onnx-qdq     the compressed model with QuantizeLinear/DequantizeLinear (as `compress`)\n"
      "  onnx         the fake-quantized float model\n"
      "  safetensors  integer weights, scales and the recipe as metadata\n"
      "Models come from the study's config; 4/8-bit activations calibrate on its calibration\n"
      "split, as the search did.\n\noptions");
  o.add()("storage", po::value<std::string>(), "the study's journal file or redis:// URL")(
      "study-name", po::value<std::string>(), "study name")(
      "trial", po::value<int64_t>(), "trial number")("format", po::value<std::string>(),
                                                     "recipe, nni, onnx-qdq, onnx or safetensors")(
      "out", po::value<std::string>(), "output file")("json", "print a JSON summary");
  if (!o.parse(args)) return 0;
  const auto storage = o.required<std::string>("storage");
  const auto name = o.required<std::string>("study-name");
  const auto trial = o.required<int64_t>("trial");
  const auto kind = experiments::export_kind_from_string(o.required<std::string>("format"));
  const auto out = o.required<std::string>("out");
  const auto study = experiments::load_study_results(storage, name);
  const auto summary = experiments::export_trial(study, trial, kind, out);
  if (o.has("json")) {
    std::cout << summary.dump(2) << "\n";
  } else {
    std::cout << "exported trial " << trial << " (" << summary.value("format", std::string())
              << ") to " << out << "\n";
  }
  return 0;
}

const CommandRegistration kRegistration("export",
                                        "export a trial: recipe, nni, onnx-qdq, onnx, safetensors",
                                        run_export);

}  // namespace
}  // namespace compsearch::cli
