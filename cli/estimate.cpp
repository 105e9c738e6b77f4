// `compsearch estimate --model M [--recipe R] --target T [--batch N] [--json]`: latency, energy and
// memory of a (compressed) model on one hardware target, per layer and in total; for an LLM, its
// GGUF size, VRAM at a context, decode and prefill speed (experiments/llm_estimate.h).
#include <iostream>

#include "cli/command.h"
#include "cli/options.h"
#include "experiments/estimate_commands.h"
#include "experiments/llm_commands.h"
#include "experiments/llm_estimate.h"

namespace po = boost::program_options;

namespace compsearch::cli {
namespace {

int run_estimate(const std::vector<std::string>& args) {
  VerbOptions o(
      "usage: compsearch estimate --model M [--recipe R] --target T [--batch N] [--json]\n"
      "       compsearch estimate --model LLM_DIR|MODEL.gguf [--recipe R | --type T] --target "
      "gpu:X\n"
      "                           [--context C] [--batch B] [--kv-type f16|q8_0|q4_0] [--vram-gb "
      "N] "
      "[--json]\n\n"
      "Costs every layer on the target: latency = max(compute, memory) + overhead, energy, the\n"
      "executing precision and what bounds it; totals, and peak SRAM / flash on MCUs with whether\n"
      "the model deploys (and why not). Without --recipe the model runs as stored (fp32).\n"
      "M is an .onnx file or an architecture-zoo model: zoo:NAME[,alpha=A,res=R,classes=C] with\n"
      "NAME one of mobilenet_v1, mobilenet_v2, resnet18, resnet50, resnext101_32x8d, ds_cnn_kws,\n"
      "resnet8_cifar, mobilenet_v1_vww, fc_autoencoder. T is a preset (compsearch hw list) or a\n"
      "profile file.\n"
      "An LLM (docs/llm.md, \"Cost model\") gets, as llama.cpp runs it with every layer on the "
      "GPU:\n"
      "the GGUF file size, VRAM (weights + KV cache + compute buffer; token_embd stays in host\n"
      "memory), decode tokens/s at context C and the prefill time of C tokens, and whether it "
      "fits\n"
      "in the GPU's memory (or --vram-gb N) and by how much. GPUs with LLM constants: "
      "gpu:rtx4090,\n"
      "gpu:a100, gpu:h100, gpu:t4, gpu:agx-orin, gpu:orin-nano.\n\noptions");
  o.add()("model", po::value<std::string>(), "model file or zoo:NAME")(
      "recipe", po::value<std::string>()->default_value(""), "compsearch.recipe/1 file")(
      "target", po::value<std::string>(), "target preset or profile file")(
      "batch", po::value<int>()->default_value(1), "batch size (LLM: sequences decoded together)")(
      "type", po::value<std::string>()->default_value(""),
      "LLM: one llama.cpp type for every matrix (q4_k, q8_0, ...) instead of --recipe")(
      "context", po::value<int64_t>()->default_value(4096), "LLM: tokens per sequence")(
      "kv-type", po::value<std::string>()->default_value("f16"), "LLM: KV cache type")(
      "ubatch", po::value<int64_t>()->default_value(512), "LLM: prefill tokens per graph")(
      "no-flash-attn", "LLM: flash attention off (llama.cpp -fa off)")(
      "vram-gb", po::value<double>()->default_value(0.0),
      "LLM: memory to fit in, GB (default: the GPU's)")("json", "print JSON instead of a table");
  if (!o.parse(args)) return 0;
  if (experiments::is_llm_model(o.required<std::string>("model"))) {
    experiments::LlmEstimateRequest llm_req;
    llm_req.model = o.required<std::string>("model");
    llm_req.target = o.required<std::string>("target");
    llm_req.recipe = o.get<std::string>("recipe");
    llm_req.type = o.get<std::string>("type");
    llm_req.settings.context = o.get<int64_t>("context");
    llm_req.settings.batch = o.get<int>("batch");
    llm_req.settings.kv_type = experiments::parse_kv_cache_type(o.get<std::string>("kv-type"));
    llm_req.settings.ubatch = o.get<int64_t>("ubatch");
    llm_req.settings.flash_attention = !o.has("no-flash-attn");
    llm_req.vram_gb = o.get<double>("vram-gb");
    const auto result = experiments::run_llm_estimate(llm_req);
    std::cout << (o.has("json") ? result.to_json().dump(2) + "\n" : result.to_text());
    return 0;
  }
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
