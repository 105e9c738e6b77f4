// The Evaluator seam: turns a candidate (a recipe for one model) into named metrics.
//
// Implementations (one contract test runs over all of them,
// tests/evaluators/evaluator_contract_test.cpp):
//   accuracy      labelled top-1 accuracy on a validation set (plus agreement and KL to the
//                 uncompressed model, which come for free from the same forward pass)
//   fidelity      label-free: agreement and KL to the uncompressed model only
//   weight_error  data-free: relative squared weight error of the compressed layers
//   proxy         the additive proxy built from a per-layer sensitivity table
//   external      the user's program, trial JSON on stdin, metrics JSON on stdout
//
// Metric names are plain (`accuracy`, `agreement`, `kl`, `weight_error`, `proxy_accuracy`, ...);
// cost metrics of the hardware models are added by the runner as `metric@target`.
//
// Multi-fidelity: an evaluator that works in stages (a subset of the data, then all of it, then a
// fine-tune) calls `report(value, step)` after each stage; when it returns true the trial is to be
// stopped, and the evaluator throws search::TrialPruned-compatible EvaluationPruned carrying the
// metrics measured so far.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

#include "compressors/recipe.h"

namespace compsearch::evaluators {

using Metrics = std::map<std::string, double>;

// Intermediate value of stage `step`; returns true when the caller wants the trial stopped.
using ReportFn = std::function<bool(double value, int64_t step)>;

struct Candidate {
  const compressors::Recipe* recipe = nullptr;       // never null inside evaluate()
  int64_t number = -1;                               // trial number, -1 outside a study
  nlohmann::json params = nlohmann::json::object();  // the trial's params as the study stores them
};

// Thrown by evaluate() when `report` asked to stop; `metrics` holds what was measured so far.
struct EvaluationPruned : std::runtime_error {
  EvaluationPruned(Metrics m, int64_t step_)
      : std::runtime_error("pruned at step " + std::to_string(step_)),
        metrics(std::move(m)),
        step(step_) {}
  Metrics metrics;
  int64_t step;
};

class Evaluator {
 public:
  virtual ~Evaluator() = default;
  // Short kind name ("accuracy", "fidelity", "weight_error", "proxy", "external").
  virtual std::string name() const = 0;
  // Names of the metrics evaluate() returns (every call returns all of them).
  virtual std::vector<std::string> metric_names() const = 0;
  // Scores one candidate. Thread-safe: the runner calls it from several workers at once. Throws
  // std::exception with a reason on failure (the trial becomes FAIL) and EvaluationPruned when
  // `report` (may be empty) asked to stop.
  virtual Metrics evaluate(const Candidate& candidate, const ReportFn& report = {}) const = 0;
};

}  // namespace compsearch::evaluators
