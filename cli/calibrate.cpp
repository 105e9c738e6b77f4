// `compsearch calibrate --model LLM --data TOKENS.npy --out imatrix.gguf`: the importance matrix
// of an LLM on calibration tokens, in llama-imatrix's GGUF format (docs/llm.md).
#include <algorithm>
#include <iostream>

#include "cli/command.h"
#include "cli/options.h"
#include "experiments/llm_commands.h"

namespace po = boost::program_options;

namespace compsearch::cli {
namespace {

int run_calibrate(const std::vector<std::string>& args) {
  VerbOptions o(
      "usage: compsearch calibrate --model LLM_DIR|MODEL.gguf --data TOKENS.npy --out "
      "IMATRIX.gguf [--context N] [--limit WINDOWS] [--process-output] [--json]\n\n"
      "Runs the LLM over the calibration tokens (windows of --context tokens, every position) and\n"
      "writes the mean squared activation per input column of every block matrix, as llama.cpp's\n"
      "llama-imatrix does, in its GGUF format: `llama-quantize --imatrix IMATRIX.gguf` reads it,\n"
      "and so do `compsearch evaluate --imatrix` and the LLM search (llm.imatrix). docs/llm.md.\n\n"
      "options");
  o.add()("model", po::value<std::string>(), "Hugging Face directory or .gguf")(
      "data", po::value<std::string>(), "calibration token ids (NPY of integers)")(
      "out", po::value<std::string>(), "output file (GGUF imatrix)")(
      "context", po::value<int64_t>()->default_value(0),
      "tokens per window (0 = min(512, trained context, tokens)); llama-imatrix's -c")(
      "limit", po::value<int64_t>()->default_value(0),
      "only the first N windows (0 = all); llama-imatrix's --chunks")(
      "threads", po::value<int>()->default_value(0), "threads (0 = all cores; at most 1024)")(
      "process-output", "also collect the output projection (llama-imatrix --process-output)")(
      "json", "print a JSON summary (out, entries, chunks, chunk_size, tokens, seconds)");
  if (!o.parse(args)) return 0;
  experiments::LlmCalibrateRequest req;
  req.model = o.required<std::string>("model", "missing --model LLM_DIR|MODEL.gguf");
  req.data = o.required<std::string>("data", "missing --data TOKENS.npy");
  req.out = o.required<std::string>("out", "missing --out IMATRIX.gguf");
  req.context = o.get<int64_t>("context");
  req.max_windows = o.get<int64_t>("limit");
  req.threads = threads_flag(o);
  req.process_output = o.has("process-output");
  const auto summary = experiments::calibrate_llm(req);
  if (o.has("json")) {
    std::cout << summary.dump(2) << "\n";
  } else {
    std::cout << "wrote " << req.out << ": " << summary["entries"].get<size_t>() << " tensors, "
              << summary["chunks"].get<int64_t>() << " windows of "
              << summary["chunk_size"].get<int64_t>() << " tokens\n";
  }
  return 0;
}

const CommandRegistration kRegistration("calibrate",
                                        "LLM importance matrix (llama-imatrix's GGUF format)",
                                        run_calibrate);

}  // namespace
}  // namespace compsearch::cli
