// `compsearch compress --model M --recipe R --format onnx-qdq|onnx|safetensors --out PATH`:
// applies a recipe and exports the compressed model (experiments/compress_commands.h).
#include <iostream>

#include "cli/command.h"
#include "cli/options.h"
#include "experiments/compress_commands.h"
#include "experiments/llm_commands.h"
#include "experiments/llm_export.h"

namespace po = boost::program_options;

namespace compsearch::cli {
namespace {

int run_compress(const std::vector<std::string>& args) {
  VerbOptions o(
      "usage: compsearch compress --model MODEL.onnx --recipe RECIPE.json --format FORMAT --out "
      "PATH [options]\n\n"
      "Applies a compsearch.recipe/1 file to the model and writes the compressed model:\n"
      "  onnx-qdq     int8 weights + DequantizeLinear for layers of <= 8 bits, QuantizeLinear /\n"
      "               DequantizeLinear pairs on 4/8-bit activations (Cast pairs for 16 bits)\n"
      "  onnx         the fake-quantized float weights in the original graph (weights only)\n"
      "  safetensors  integer weights (I8), scales (F64), other tensors, recipe as metadata\n"
      "Recipes with 4/8-bit activations are calibrated on --calibration-data (default: the\n"
      "fashion-mnist train split).\n"
      "An LLM checkpoint (a Hugging Face directory with config.json, or a GGUF file) takes a\n"
      "recipe of llama.cpp types, or a llama.cpp mix name (q2_k, q3_k_m, q4_k_m, q5_k_m, q6_k,\n"
      "...), and these formats (docs/llm.md):\n"
      "  gguf                the tensors quantized by ggml\n"
      "  llama-tensor-types  a llama-quantize --tensor-type-file (one regex=type per matrix);\n"
      "                      prints the equivalent llama-quantize command line\n"
      "  recipe              the recipe file, every matrix named\n"
      "  safetensors         --out is a folder: a Hugging Face checkpoint (config.json,\n"
      "                      model.safetensors) of the dequantized weights\n"
      "\noptions");
  o.add()("model", po::value<std::string>(), "ONNX model file")(
      "recipe", po::value<std::string>(),
      "recipe JSON file (compsearch.recipe/1); LLM: or a llama.cpp mix name")(
      "format", po::value<std::string>(),
      "onnx-qdq, onnx or safetensors (LLM: gguf, llama-tensor-types, recipe, safetensors)")(
      "out", po::value<std::string>(), "output file")(
      "calibration-data", po::value<std::string>()->default_value("fashion-mnist"),
      "fashion-mnist or a dataset JSON file, for activation calibration")(
      "calibration-split", po::value<std::string>()->default_value("train"),
      "train or test (fashion-mnist)")("calibration-samples",
                                       po::value<int64_t>()->default_value(512),
                                       "calibration images")("json", "print a JSON summary");
  if (!o.parse(args)) return 0;
  if (experiments::is_llm_model(o.required<std::string>("model"))) {
    const auto summary =
        experiments::export_llm(o.required<std::string>("model"), o.required<std::string>("recipe"),
                                o.required<std::string>("format"), o.required<std::string>("out"));
    std::cout << (o.has("json") ? summary.dump(2) + "\n" : experiments::export_llm_text(summary));
    return 0;
  }
  experiments::CompressRequest req;
  req.model = o.required<std::string>("model");
  req.recipe = o.required<std::string>("recipe");
  req.format = o.required<std::string>("format");
  req.out = o.required<std::string>("out");
  req.calibration = {o.get<std::string>("calibration-data"),
                     o.get<std::string>("calibration-split"),
                     o.get<int64_t>("calibration-samples")};
  const auto report = experiments::run_compress(req);
  if (o.has("json")) {
    std::cout << report.to_json().dump(2) << "\n";
  } else {
    std::cout << report.to_text();
  }
  return 0;
}

const CommandRegistration kRegistration(
    "compress", "apply a recipe and export (onnx-qdq, onnx, safetensors, gguf, llama-tensor-types)",
    run_compress);

}  // namespace
}  // namespace compsearch::cli
