// `compsearch evaluate --model M --data D [--split test] [--recipe R] [--json]`: top-1 accuracy of
// a model, or of the compressed model against the uncompressed one. The decisions (which
// evaluation, whether to calibrate) live in experiments/compress_commands.h.
#include <algorithm>
#include <iostream>

#include "cli/command.h"
#include "cli/options.h"
#include "experiments/compress_commands.h"
#include "experiments/llm_commands.h"

namespace po = boost::program_options;

namespace compsearch::cli {
namespace {

int run_evaluate(const std::vector<std::string>& args) {
  VerbOptions o(
      "usage: compsearch evaluate --model MODEL.onnx --data fashion-mnist|DATA.json [--recipe "
      "RECIPE.json] [options]\n"
      "       compsearch evaluate --model LLM_DIR|MODEL.gguf --data TOKENS.npy [--context N] "
      "[--recipe RECIPE.json] [--imatrix I.gguf] [--kld] [--json]\n\n"
      "Runs the model on every labelled sample of the data set and prints top-1 accuracy.\n"
      "An LLM checkpoint (a Hugging Face directory with config.json, or a GGUF file) is scored "
      "by perplexity over the token ids in TOKENS.npy (docs/llm.md); its --recipe gives "
      "llama.cpp types per tensor and --limit caps the windows.\n"
      "--data is the built-in name `fashion-mnist` (Debian's dataset-fashion-mnist, pixels / "
      "255) or a dataset JSON file (see model/dataset.h: format idx|npy, images, labels, scale, "
      "mean, std, shape, layout, limit).\n\noptions");
  o.add()("model", po::value<std::string>(), "ONNX model file")(
      "data", po::value<std::string>(), "fashion-mnist or a dataset JSON file")(
      "split", po::value<std::string>()->default_value("test"), "train or test (fashion-mnist)")(
      "batch", po::value<int64_t>()->default_value(256), "batch size")(
      "threads", po::value<int>()->default_value(0), "threads (0 = all cores; at most 1024)")(
      "limit", po::value<int64_t>()->default_value(-1),
      "only the first N samples (-1 = all); LLM: the first N windows")(
      "context", po::value<int64_t>()->default_value(0),
      "LLM: tokens per window (0 = min(512, trained context, tokens))")(
      "kld",
      "LLM: also the KL divergence and ΔNLL of the --recipe model against the model as loaded, "
      "as llama-perplexity --kl-divergence defines them (JSON keys kld, delta_nll, kld_p99, ...)")(
      "imatrix", po::value<std::string>(),
      "LLM: quantize the --recipe with this importance matrix (GGUF, from `compsearch calibrate` "
      "or llama-imatrix), as llama-quantize --imatrix does")(
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
  if (experiments::is_llm_model(o.required<std::string>("model"))) {
    experiments::LlmEvaluateRequest llm_req;
    llm_req.model = o.required<std::string>("model");
    llm_req.data = o.required<std::string>("data");
    llm_req.context = o.get<int64_t>("context");
    llm_req.max_windows = std::max<int64_t>(0, o.get<int64_t>("limit"));
    llm_req.threads = threads_flag(o);
    llm_req.recipe = o.optional<std::string>("recipe").value_or("");
    llm_req.kld = o.has("kld");
    llm_req.imatrix = o.optional<std::string>("imatrix").value_or("");
    const auto result = experiments::evaluate_llm(llm_req);
    std::cout << (o.has("json") ? result.to_json().dump(2) + "\n" : result.to_text());
    return 0;
  }
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
