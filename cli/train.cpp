// `compsearch train --model M --data D --epochs N --out OUT.onnx [--json]`: plain training from the
// ONNX weights (cross-entropy on the training split), and the flags / run loop that `finetune`
// shares (cli/training_verb.h). The logic lives in experiments/train_commands.h.
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <iostream>

#include "cli/command.h"
#include "cli/training_verb.h"

namespace po = boost::program_options;

namespace compsearch::cli {

namespace {

std::atomic<bool> g_stop{false};

extern "C" void on_sigint(int) {
  g_stop.store(true);
  std::signal(SIGINT, SIG_DFL);  // a second Ctrl-C ends the process at once
}

}  // namespace

void add_training_flags(VerbOptions& o) {
  o.add()("model", po::value<std::string>(), "ONNX model file (the starting weights)")(
      "data", po::value<std::string>()->default_value("fashion-mnist"),
      "fashion-mnist (its train split) or a dataset JSON file to train on")(
      "out", po::value<std::string>(), "output ONNX file (written only when training completes)")(
      "format", po::value<std::string>()->default_value("onnx"),
      "onnx (weights as floats: `compsearch evaluate --model OUT` gives the trained accuracy) or "
      "onnx-qdq")("epochs", po::value<int>(), "epochs")("lr", po::value<double>(), "learning rate")(
      "batch", po::value<int64_t>(), "training batch size")(
      "samples", po::value<int64_t>(), "training images per epoch (default: all)")(
      "optimizer", po::value<std::string>(), "adam, adamw or sgd")(
      "schedule", po::value<std::string>(), "constant, step or cosine")(
      "seed", po::value<uint64_t>()->default_value(0), "shuffle seed")(
      "threads", po::value<int>()->default_value(0), "threads (0 = all cores; at most 1024)")(
      "eval-data", po::value<std::string>()->default_value("auto"),
      "held-out set scored before and after (auto: the fashion-mnist test split when --data is "
      "fashion-mnist; none: skip)")("eval-split", po::value<std::string>()->default_value("test"),
                                    "split of --eval-data (fashion-mnist)")(
      "eval-limit", po::value<int64_t>()->default_value(-1), "only the first N evaluation images")(
      "calibration-samples", po::value<int64_t>()->default_value(512),
      "training images for the starting 4/8-bit activation ranges")(
      "progress-every", po::value<int64_t>()->default_value(50), "steps between progress lines")(
      "quiet", "no progress lines")("json", "print the final summary as JSON");
}

experiments::TrainRequest training_request(const VerbOptions& o) {
  experiments::TrainRequest r;
  r.model = o.required<std::string>("model");
  r.out = o.required<std::string>("out");
  r.data = o.get<std::string>("data");
  r.format = o.get<std::string>("format");
  r.epochs = o.optional<int>("epochs");
  r.lr = o.optional<double>("lr");
  r.batch_size = o.optional<int64_t>("batch");
  r.samples = o.optional<int64_t>("samples");
  r.optimizer = o.optional<std::string>("optimizer");
  r.schedule = o.optional<std::string>("schedule");
  r.seed = o.get<uint64_t>("seed");
  r.threads = threads_flag(o);
  r.eval_data = o.get<std::string>("eval-data");
  r.eval_split = o.get<std::string>("eval-split");
  r.eval_limit = o.get<int64_t>("eval-limit");
  r.calibration_samples = o.get<int64_t>("calibration-samples");
  r.progress_every = o.get<int64_t>("progress-every");
  return r;
}

int run_training_verb(const VerbOptions& o, const experiments::TrainRequest& request,
                      bool finetune) {
  const bool quiet = o.has("quiet");
  const bool tty = ::isatty(STDERR_FILENO);
  auto progress = [&](const evaluators::FinetuneProgress& p) {
    if (quiet) return;
    const bool keep = p.epoch_end || !tty;  // a terminal redraws one line per epoch
    std::cerr << (tty ? "\r" : "") << experiments::progress_line(p) << (keep ? "\n" : "")
              << std::flush;
  };
  g_stop.store(false);
  auto* previous = std::signal(SIGINT, on_sigint);
  experiments::TrainReport report;
  try {
    report = finetune ? experiments::run_finetune(request, progress, &g_stop)
                      : experiments::run_train(request, progress, &g_stop);
  } catch (...) {
    std::signal(SIGINT, previous);
    throw;
  }
  std::signal(SIGINT, previous);
  if (o.has("json"))
    std::cout << report.to_json().dump(2) << "\n";
  else
    std::cout << report.to_text();
  return report.summary.value("interrupted", false) ? 130 : 0;
}

namespace {

int run_train(const std::vector<std::string>& args) {
  VerbOptions o(
      "usage: compsearch train --model MODEL.onnx --out OUT.onnx [--data fashion-mnist|DATA.json] "
      "[--epochs N] [options]\n\n"
      "Trains the model from its ONNX weights with cross-entropy on the training split (Adam, lr "
      "0.001, batch 128, 1 epoch unless told), shuffled by --seed. Prints a progress line (epoch, "
      "step, loss, train accuracy, images/s, ETA) and a summary; Ctrl-C stops and writes "
      "nothing.\n\n"
      "options");
  add_training_flags(o);
  if (!o.parse(args)) return 0;
  return run_training_verb(o, training_request(o), false);
}

const CommandRegistration kRegistration("train", "train a model from its ONNX weights", run_train);

}  // namespace
}  // namespace compsearch::cli
