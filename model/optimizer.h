// Optimizers, learning-rate schedules and the seeded shuffle of training samples.
//
// The update rules are PyTorch's (torch.optim.SGD, Adam, AdamW of PyTorch 1.13/2.x, single
// tensor path), computed in float32 in the same order, so a PyTorch script with the same
// hyper-parameters, schedule and sample order follows the same trajectory up to rounding:
//   SGD:   g = grad + wd*p;  b = g (first step) or momentum*b + (1 - dampening)*g;
//          g = nesterov ? g + momentum*b : b (when momentum > 0);  p -= lr*g
//   Adam:  g = grad + wd*p;  m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*g*g;
//          p -= (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
//   AdamW: p *= 1 - lr*wd first, then Adam with wd = 0.
// Weight decay applies to every parameter (PyTorch's default single parameter group).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "model/training.h"

namespace compsearch::model {

struct OptimizerOptions {
  enum class Kind { kSgd, kAdam, kAdamW };
  Kind kind = Kind::kAdam;
  double momentum = 0.0;   // SGD, in [0, 1)
  double dampening = 0.0;  // SGD, in [0, 1)
  bool nesterov = false;   // SGD; needs momentum > 0 and dampening 0
  double weight_decay = 0.0;
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;  // Adam/AdamW

  // Throws std::invalid_argument listing every out-of-range value at once.
  void validate() const;
};

// "sgd", "adam", "adamw" <-> Kind (throws std::invalid_argument naming the allowed values).
OptimizerOptions::Kind optimizer_kind_from_string(const std::string& s);
std::string optimizer_kind_to_string(OptimizerOptions::Kind kind);

class Optimizer {
 public:
  explicit Optimizer(OptimizerOptions options);  // validates

  // One update of every parameter from its grad with learning rate `lr`. State (momentum,
  // moments) is kept per position in `params`, created on the first step; later steps must pass
  // the same parameters in the same order (throws std::invalid_argument on a size change).
  void step(std::span<TrainableParameter> params, double lr);
  int64_t steps_taken() const { return steps_; }
  void reset();  // forget all state
  const OptimizerOptions& options() const { return options_; }

 private:
  OptimizerOptions options_;
  int64_t steps_ = 0;
  std::vector<std::vector<float>> m_, v_;  // SGD: m_ = momentum buffer; Adam: first/second moment
};

// Learning rate per optimizer step (step counted from 0, one per batch):
//   warm-up: s < warmup_steps -> base_lr * (s + 1) / warmup_steps
//   then, with t = s - warmup_steps and T = total_steps - warmup_steps:
//   constant: base_lr
//   step:     base_lr * gamma^floor(t / step_size)
//   cosine:   min_lr + (base_lr - min_lr) * (1 + cos(pi * min(t, T) / T)) / 2
struct LrSchedule {
  enum class Kind { kConstant, kStep, kCosine };
  Kind kind = Kind::kConstant;
  double base_lr = 1e-3;
  int64_t warmup_steps = 0;
  int64_t total_steps = 0;   // cosine: the whole run including warm-up (> warmup_steps)
  int64_t step_size = 1000;  // step
  double gamma = 0.1;        // step
  double min_lr = 0.0;       // cosine

  void validate() const;  // throws std::invalid_argument listing every problem
  double lr_at(int64_t step) const;
};

// "constant", "step", "cosine" <-> Kind.
LrSchedule::Kind schedule_kind_from_string(const std::string& s);
std::string schedule_kind_to_string(LrSchedule::Kind kind);

// SplitMix64 (Steele, Lea, Flood 2014): state += 0x9E3779B97F4A7C15; z = state;
// z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9; z = (z ^ (z >> 27)) * 0x94D049BB133111EB;
// return z ^ (z >> 31)  (all mod 2^64).
struct SplitMix64 {
  uint64_t state;
  explicit SplitMix64(uint64_t seed) : state(seed) {}
  uint64_t next();
};

// The order of the samples in epoch `epoch` (from 0): start from [0, 1, ..., n-1], seed a
// SplitMix64 with seed ^ (epoch * 0x9E3779B97F4A7C15) (mod 2^64), and for i = n-1 down to 1
// swap(perm[i], perm[next() % (i + 1)]) (Fisher-Yates). scripts/make_training_fixtures.py has
// the same function in Python.
std::vector<int64_t> epoch_permutation(int64_t n, uint64_t seed, int64_t epoch);

}  // namespace compsearch::model
