// Pruners, as Optuna 3.1's (optuna/pruners/): given a running trial's intermediate values and the
// study's other trials, decide whether to stop the trial early. The decisions equal Optuna's for
// the same trials (tests/search/pruner_test.cpp replays decisions recorded from python3-optuna),
// so a study shared with Optuna workers (JournalStorage) is pruned the same way by both:
//
//   NopPruner                never prunes.
//   PercentilePruner         prunes when the trial's best intermediate value so far is worse than
//                            the `percentile`-th of the COMPLETE trials' values at the same step
//                            (numpy.nanpercentile, linear interpolation). MedianPruner is
//                            PercentilePruner(50).
//   SuccessiveHalvingPruner  asynchronous successive halving; records the value at each rung as
//                            the trial system attribute "completed_rung_<K>", as Optuna does.
//   HyperbandPruner          one SuccessiveHalvingPruner per bracket; a trial's bracket is
//                            crc32("<study name>_<trial number>") spread over the brackets'
//                            budgets, and each bracket sees only its own trials.
//   ThresholdPruner          prunes when the latest value is outside [lower, upper] or NaN.
//   PatientPruner            asks its wrapped pruner (or prunes, without one) only once the best
//                            value has not improved by min_delta for `patience` steps.
//
// NaN intermediate values behave as in Optuna (numpy's nan-aware min/max/percentile).
//
// A pruner may keep state that Optuna keeps too (SuccessiveHalvingPruner's "auto" min_resource,
// HyperbandPruner's brackets, fixed at the first decision that can compute them), so use one
// pruner object per study. prune() is thread-safe.
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "search/trial.h"

namespace compsearch::search {

class Study;

class Pruner {
 public:
  virtual ~Pruner() = default;
  // Optuna's class name, e.g. "MedianPruner".
  virtual std::string name() const = 0;
  // Optuna's BasePruner.prune(study, trial): `trial` is the running trial as stored now (its
  // intermediate values and system attributes). Single-objective studies only (Study::should_prune
  // checks). May set trial system attributes through `study` (SuccessiveHalving and Hyperband).
  virtual bool prune(Study& study, const FrozenTrial& trial) const = 0;
};

// Builds a pruner from Optuna's class name ("MedianPruner", "PercentilePruner",
// "SuccessiveHalvingPruner", "HyperbandPruner", "ThresholdPruner", "PatientPruner",
// "NopPruner") or its short name ("median", "percentile", "successive_halving", "hyperband",
// "threshold", "patient", "nop"), and Optuna's constructor keyword arguments as a JSON object
// (null is {}):
//   median:             n_startup_trials=5, n_warmup_steps=0, interval_steps=1, n_min_trials=1
//   percentile:         percentile (required, 0..100) and the same four as median
//   successive_halving: min_resource="auto" (or >= 1), reduction_factor=4,
//                       min_early_stopping_rate=0, bootstrap_count=0
//   hyperband:          min_resource=1, max_resource="auto" (or an integer), reduction_factor=3,
//                       bootstrap_count=0
//   threshold:          lower=null, upper=null (one at least), n_warmup_steps=0, interval_steps=1
//   patient:            wrapped_pruner={"name": ..., "kwargs": {...}} or null, patience
//                       (required, >= 0), min_delta=0.0
// Throws std::invalid_argument naming the key and what is allowed, for everything Optuna's
// constructors reject. Integers must be JSON integers. Stricter than Optuna: HyperbandPruner
// checks min_resource >= 1, max_resource >= 1, reduction_factor >= 2 and bootstrap_count >= 0 at
// once (Optuna fails on them only at the first pruning decision).
std::unique_ptr<Pruner> make_pruner(const std::string& name, const nlohmann::json& kwargs);

}  // namespace compsearch::search
