// Quantization-aware fine-tuning with knowledge distillation, and plain training.
//
// finetune() trains a copy of a model under a recipe with model::Trainer. Every compressed layer
// computes with effective = compress(master), where compress is the compressors' own kernels
// (prune_* once for the mask, then quantize_weights / binarize_weights / round_weights_to_half
// every step), so the rules of DESIGN.md 1-8 have one implementation:
//   * pruning masks are computed once, from the starting weights, and stay fixed: pruned master
//     weights are set to 0 and their gradients (and, for channel pruning, the bias's) are zeroed,
//     so they stay exactly 0;
//   * quantization scales are recomputed from the (masked) master weights on every forward;
//   * backward is the straight-through estimator clipped to the quantization range: 2..8-bit
//     layers pass the gradient where |w| <= the group's clipping amax (scale * qmax), binary
//     layers where |w| <= 1, 16-bit layers everywhere;
//   * 4/8-bit activations are fake-quantized with compressors::fake_quantize_activations on a
//     range that starts from a calibration pass (the recipe's method) and then follows the batch
//     min/max by an exponential moving average (PyTorch's MovingAverageMinMaxObserver); the
//     gradient is zeroed outside the representable range.
// The loss is Hinton distillation against the uncompressed model (teacher logits from a
// model::Executor, once per batch) with the recipe's temperature and alpha; alpha 0 needs no
// teacher (plain cross-entropy, which is what `compsearch train` runs). The result holds the
// effective weights as plain floats, so applying the same recipe to it again changes no weight.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "compressors/activation_quant.h"
#include "compressors/apply.h"
#include "compressors/recipe.h"
#include "model/dataset.h"
#include "model/graph.h"

namespace compsearch::evaluators {

// Reported every `progress_every` steps and at the end of each epoch.
struct FinetuneProgress {
  int epoch = 0;  // from 1
  int epochs = 0;
  int64_t step = 0;  // within the epoch, from 1
  int64_t steps_per_epoch = 0;
  double loss = 0.0;            // mean over the epoch so far
  double train_accuracy = 0.0;  // of the student on the training batches so far this epoch
  double images_per_second = 0.0;
  double eta_seconds = 0.0;  // for the whole run
  bool epoch_end = false;
};

struct FinetuneEpoch {
  int epoch = 0;  // from 1
  double loss = 0.0;
  double train_accuracy = 0.0;
  double seconds = 0.0;  // training only (not the evaluation below)
  double images_per_second = 0.0;
  double eval_accuracy = -1.0;  // on FinetuneOptions::eval_data, -1 when none
};

struct FinetuneOptions {
  uint64_t seed = 0;                  // the shuffle (model::epoch_permutation)
  int threads = 0;                    // trainer and teacher threads (0 = OpenMP default)
  int64_t calibration_samples = 512;  // training images for the starting activation ranges
  double activation_ema = 0.01;       // weight of each batch's min/max in the moving average
  int64_t progress_every = 50;        // steps between progress calls
  std::function<void(const FinetuneProgress&)> progress;  // optional
  const std::atomic<bool>* stop = nullptr;  // set (e.g. by SIGINT): stop after the current step
  const model::Dataset* eval_data =
      nullptr;  // optional: accuracy after each epoch (never trained on)
  int64_t eval_batch = 1000;
};

struct FinetuneResult {
  // The fine-tuned model: every compressed layer holds its effective weights (dequantized floats,
  // pruned zeros), every other parameter its trained value.
  model::Graph graph;
  // apply_recipe(graph, recipe) with keep_quantized (a fixed point: the same weights) and the
  // trained activation ranges, ready for compressors::export_model.
  compressors::CompressedModel compressed;
  std::vector<FinetuneEpoch> epochs;
  int64_t steps = 0;
  int64_t images = 0;
  double seconds = 0.0;
  bool interrupted = false;  // options.stop was set; `graph` is then the state after the last step

  nlohmann::json to_json() const;  // epochs, steps, images, seconds, interrupted
};

// Fine-tunes `graph` under `recipe` on `train` (labelled; the caller passes the training split)
// with the schedule `spec` (epochs, lr, optimizer, schedule, temperature, alpha, batch_size,
// samples). Throws std::invalid_argument for a recipe that does not fit the model, a dataset that
// does not fit it, or an unlabelled set with alpha < 1.
FinetuneResult finetune(const model::Graph& graph, const compressors::Recipe& recipe,
                        const model::Dataset& train, const compressors::DistillationSpec& spec,
                        const FinetuneOptions& options = {});

// The weights a recipe's fine-tuning uses for `spec`: the recipe's own distillation block, else
// the defaults with one epoch.
compressors::DistillationSpec distillation_or_default(const compressors::Recipe& recipe);

}  // namespace compsearch::evaluators
