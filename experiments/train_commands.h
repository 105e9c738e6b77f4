// The logic behind `compsearch train` (plain training from the ONNX weights) and `compsearch
// finetune` (quantization-aware fine-tuning with distillation under a recipe,
// evaluators/finetune.h). Both train on the data's training split only (`fashion-mnist` means its
// train split), optionally score the result on a held-out split, and write OUT atomically: the
// model goes to a temporary file beside OUT that is renamed over it once complete, so an
// interrupted run (Ctrl-C) or a failed write leaves no half-written OUT. The CLI files parse flags
// into the requests below and print.
#pragma once

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "compressors/recipe.h"
#include "evaluators/finetune.h"

namespace compsearch::experiments {

// Flags shared by both verbs. Optional fields left unset keep the recipe's (finetune) or the
// default schedule's value (train: Adam, lr 1e-3, batch 128, constant, 1 epoch, cross-entropy).
struct TrainRequest {
  std::string model;                   // ONNX file
  std::string data = "fashion-mnist";  // built-in name (its train split) or a dataset JSON file
  std::string out;                     // OUT.onnx
  std::string format = "onnx";         // onnx (float weights) or onnx-qdq
  std::string recipe;                  // finetune: compsearch.recipe/1 file (required)
  std::optional<int> epochs;
  std::optional<double> lr;
  std::optional<int64_t> batch_size;
  std::optional<int64_t> samples;        // training images per epoch
  std::optional<std::string> optimizer;  // adam, adamw, sgd
  std::optional<std::string> schedule;   // constant, step, cosine
  std::optional<double> temperature;     // finetune only
  std::optional<double> alpha;           // finetune only
  uint64_t seed = 0;
  int threads = 0;  // 0 = all cores
  // Held-out evaluation: "" = none; for fashion-mnist data the default is its test split.
  std::string eval_data = "auto";
  std::string eval_split = "test";
  int64_t eval_limit = -1;  // only the first N evaluation images
  int64_t calibration_samples = 512;
  int64_t progress_every = 50;  // steps between progress calls
};

// The summary (`--json`). JSON keys: command, model, data, recipe, out, format, written,
// interrupted, epochs, steps, images, seconds, images_per_second, schedule (the distillation
// block used), history (per epoch: epoch, loss, train_accuracy, seconds, images_per_second),
// and with an evaluation set: eval_data, reference_accuracy (the model as given), accuracy (the
// result), and for finetune ptq_accuracy (the recipe without fine-tuning).
struct TrainReport {
  nlohmann::json summary;
  nlohmann::json to_json() const { return summary; }
  std::string to_text() const;
};

// One progress line: "epoch 1/2 step 120/469 loss 0.4312 train acc 0.8411 1534 img/s ETA 0:41".
std::string progress_line(const evaluators::FinetuneProgress& p);

// `train` (request.recipe ignored) and `finetune`. `progress` (optional) receives progress;
// `stop` (optional) is polled after every step: once set, training ends, nothing is written and
// the report says "interrupted": true. UsageError: bad format / optimizer / schedule names or
// values; std::invalid_argument / std::runtime_error for files that do not load or fit.
TrainReport run_train(const TrainRequest& request,
                      const std::function<void(const evaluators::FinetuneProgress&)>& progress = {},
                      const std::atomic<bool>* stop = nullptr);
TrainReport run_finetune(
    const TrainRequest& request,
    const std::function<void(const evaluators::FinetuneProgress&)>& progress = {},
    const std::atomic<bool>* stop = nullptr);

// Writes `cm` in `format` to `out` through a temporary file in the same directory and a rename.
void write_model_atomically(const compressors::CompressedModel& cm, const std::string& format,
                            const std::filesystem::path& out);

}  // namespace compsearch::experiments
