// Optuna 3.1's pruners (optuna/pruners/*.py), rule for rule; see pruner.h. Each function names
// the Optuna function it follows. Successive halving and Hyperband: pruners_halving.cpp.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "search/kwargs.h"
#include "search/pruner.h"
#include "search/pruners_internal.h"
#include "search/study.h"

namespace compsearch::search {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

using internal::last_step;
using internal::maximizing;

// numpy.nanmin / nanmax: NaN only when every value is NaN.
double nan_best(const std::vector<double>& values, bool maximize) {
  double best = kNaN;
  for (double v : values) {
    if (std::isnan(v)) continue;
    if (std::isnan(best) || (maximize ? v > best : v < best)) best = v;
  }
  return best;
}

// numpy 1.24's nanpercentile(values, percentile) with the default "linear" method, operation for
// operation (function_base._quantile, _get_indexes, _get_gamma, _lerp), so that ties and
// infinities give numpy's answer. This file is compiled with -ffp-contract=off (no fused
// multiply-add), as numpy computes.
double nan_percentile(std::vector<double> values, double percentile) {
  values.erase(std::remove_if(values.begin(), values.end(), [](double v) { return std::isnan(v); }),
               values.end());
  if (values.empty()) return kNaN;
  std::sort(values.begin(), values.end());
  const auto n = static_cast<int64_t>(values.size());
  const double virtual_index = static_cast<double>(n - 1) * (percentile / 100.0);
  int64_t previous, next;
  double previous_as_float;
  if (virtual_index >= static_cast<double>(n - 1)) {  // numpy takes index -1 (the largest)
    previous = next = n - 1;
    previous_as_float = -1.0;
  } else {
    previous_as_float = std::floor(virtual_index);
    previous = static_cast<int64_t>(previous_as_float);
    next = previous + 1;
  }
  const double gamma = virtual_index - previous_as_float;
  const double a = values[previous], b = values[next];
  const double diff = b - a;
  if (gamma >= 0.5) return b - diff * (1 - gamma);
  return a + diff * gamma;
}

// _percentile._is_first_in_interval_step (step >= n_warmup_steps here).
bool is_first_in_interval_step(int64_t step, const std::map<int64_t, double>& intermediate,
                               int64_t n_warmup_steps, int64_t interval_steps) {
  const int64_t nearest_lower_pruning_step =
      (step - n_warmup_steps) / interval_steps * interval_steps + n_warmup_steps;
  int64_t second_last_step = -1;
  for (const auto& [s, _] : intermediate) {
    if (s > second_last_step && s != step) second_last_step = s;
  }
  return second_last_step < nearest_lower_pruning_step;
}

class NopPruner final : public Pruner {
 public:
  std::string name() const override { return "NopPruner"; }
  bool prune(Study&, const FrozenTrial&) const override { return false; }
};

class PercentilePruner final : public Pruner {
 public:
  PercentilePruner(std::string name, double percentile, int64_t n_startup_trials,
                   int64_t n_warmup_steps, int64_t interval_steps, int64_t n_min_trials)
      : name_(std::move(name)),
        percentile_(percentile),
        n_startup_trials_(n_startup_trials),
        n_warmup_steps_(n_warmup_steps),
        interval_steps_(interval_steps),
        n_min_trials_(n_min_trials) {}

  std::string name() const override { return name_; }

  // PercentilePruner.prune.
  bool prune(Study& study, const FrozenTrial& trial) const override {
    const auto completed = study.get_trials({TrialState::kComplete});
    const auto n_trials = static_cast<int64_t>(completed.size());
    if (n_trials == 0 || n_trials < n_startup_trials_) return false;
    const auto step = last_step(trial);
    if (!step || *step < n_warmup_steps_) return false;
    if (!is_first_in_interval_step(*step, trial.intermediate_values, n_warmup_steps_,
                                   interval_steps_)) {
      return false;
    }
    const bool maximize = maximizing(study);
    std::vector<double> own;
    for (const auto& [_, v] : trial.intermediate_values) own.push_back(v);
    const double best = nan_best(own, maximize);  // _get_best_intermediate_result_over_steps
    if (std::isnan(best)) return true;
    // _get_percentile_intermediate_result_over_trials: NaN values count towards n_min_trials.
    std::vector<double> at_step;
    for (const auto& t : completed) {
      auto it = t.intermediate_values.find(*step);
      if (it != t.intermediate_values.end()) at_step.push_back(it->second);
    }
    if (static_cast<int64_t>(at_step.size()) < n_min_trials_) return false;
    const double p = nan_percentile(std::move(at_step), maximize ? 100 - percentile_ : percentile_);
    if (std::isnan(p)) return false;
    return maximize ? best < p : best > p;
  }

 private:
  std::string name_;
  double percentile_;
  int64_t n_startup_trials_, n_warmup_steps_, interval_steps_, n_min_trials_;
};

class ThresholdPruner final : public Pruner {
 public:
  ThresholdPruner(double lower, double upper, int64_t n_warmup_steps, int64_t interval_steps)
      : lower_(lower),
        upper_(upper),
        n_warmup_steps_(n_warmup_steps),
        interval_steps_(interval_steps) {}

  std::string name() const override { return "ThresholdPruner"; }

  bool prune(Study&, const FrozenTrial& trial) const override {
    const auto step = last_step(trial);
    if (!step || *step < n_warmup_steps_) return false;
    if (!is_first_in_interval_step(*step, trial.intermediate_values, n_warmup_steps_,
                                   interval_steps_)) {
      return false;
    }
    const double latest = trial.intermediate_values.at(*step);
    return std::isnan(latest) || latest < lower_ || latest > upper_;
  }

 private:
  double lower_, upper_;
  int64_t n_warmup_steps_, interval_steps_;
};

class PatientPruner final : public Pruner {
 public:
  PatientPruner(std::unique_ptr<Pruner> wrapped, int64_t patience, double min_delta)
      : wrapped_(std::move(wrapped)), patience_(patience), min_delta_(min_delta) {}

  std::string name() const override { return "PatientPruner"; }

  bool prune(Study& study, const FrozenTrial& trial) const override {
    const auto& iv = trial.intermediate_values;  // sorted by step
    if (iv.empty() || static_cast<int64_t>(iv.size()) <= patience_ + 1) return false;
    const size_t n_before = iv.size() - static_cast<size_t>(patience_ + 1);
    std::vector<double> before, after;
    for (const auto& [_, v] : iv) (before.size() < n_before ? before : after).push_back(v);
    const bool maximize = maximizing(study);
    const double best_before = nan_best(before, maximize), best_after = nan_best(after, maximize);
    const bool maybe_prune =
        maximize ? best_before - min_delta_ > best_after : best_before + min_delta_ < best_after;
    if (!maybe_prune) return false;
    return wrapped_ ? wrapped_->prune(study, trial) : true;
  }

 private:
  std::unique_ptr<Pruner> wrapped_;
  int64_t patience_;
  double min_delta_;
};

// ------------------------------------------------------------------------------ make_pruner

using internal::Kwargs;

const char* const kPrunerNames =
    "MedianPruner (median), PercentilePruner (percentile), SuccessiveHalvingPruner "
    "(successive_halving), HyperbandPruner (hyperband), ThresholdPruner (threshold), "
    "PatientPruner (patient), NopPruner (nop)";

std::string class_name_of(const std::string& name) {
  static const std::vector<std::pair<std::string, std::string>> kShort = {
      {"median", "MedianPruner"},
      {"percentile", "PercentilePruner"},
      {"successive_halving", "SuccessiveHalvingPruner"},
      {"hyperband", "HyperbandPruner"},
      {"threshold", "ThresholdPruner"},
      {"patient", "PatientPruner"},
      {"nop", "NopPruner"}};
  for (const auto& [short_name, cls] : kShort) {
    if (name == short_name || name == cls) return cls;
  }
  throw std::invalid_argument("unknown pruner \"" + name + "\" (accepted: " + kPrunerNames + ")");
}

int64_t at_least(const Kwargs& k, const std::string& key, int64_t dflt, int64_t min) {
  const int64_t v = k.integer(key, dflt);
  if (v < min) k.bad(key, "an integer >= " + std::to_string(min));
  return v;
}

// An integer >= 1 or "auto" (nullopt).
std::optional<int64_t> resource_or_auto(const Kwargs& k, const std::string& key,
                                        std::optional<int64_t> dflt) {
  if (!k.has(key)) return dflt;
  const auto& v = k.at(key);
  if (v.is_string() && v.get<std::string>() == "auto") return std::nullopt;
  if (!v.is_number_integer() || v.get<int64_t>() < 1) k.bad(key, "an integer >= 1 or \"auto\"");
  return v.get<int64_t>();
}

std::unique_ptr<Pruner> make_percentile(const std::string& cls, const Kwargs& k,
                                        double percentile) {
  return std::make_unique<PercentilePruner>(
      cls, percentile, at_least(k, "n_startup_trials", 5, 0), at_least(k, "n_warmup_steps", 0, 0),
      at_least(k, "interval_steps", 1, 1), at_least(k, "n_min_trials", 1, 1));
}

}  // namespace

std::unique_ptr<Pruner> make_pruner(const std::string& name, const nlohmann::json& kwargs) {
  const std::string cls = class_name_of(name);
  const char* what = "pruner kwargs";
  if (cls == "NopPruner") {
    Kwargs k(cls, kwargs, {}, what);
    return std::make_unique<NopPruner>();
  }
  if (cls == "MedianPruner") {
    Kwargs k(cls, kwargs, {"n_startup_trials", "n_warmup_steps", "interval_steps", "n_min_trials"},
             what);
    return make_percentile(cls, k, 50.0);
  }
  if (cls == "PercentilePruner") {
    Kwargs k(cls, kwargs,
             {"percentile", "n_startup_trials", "n_warmup_steps", "interval_steps", "n_min_trials"},
             what);
    if (!k.has("percentile"))
      throw std::invalid_argument(cls + ": the keyword argument \"percentile\" is required");
    const double percentile = k.number("percentile", kNaN);
    if (!(percentile >= 0.0 && percentile <= 100.0)) k.bad("percentile", "a number in [0, 100]");
    return make_percentile(cls, k, percentile);
  }
  if (cls == "SuccessiveHalvingPruner") {
    Kwargs k(cls, kwargs,
             {"min_resource", "reduction_factor", "min_early_stopping_rate", "bootstrap_count"},
             what);
    const auto min_resource = resource_or_auto(k, "min_resource", std::nullopt);
    const int64_t reduction_factor = at_least(k, "reduction_factor", 4, 2);
    const int64_t min_early_stopping_rate = at_least(k, "min_early_stopping_rate", 0, 0);
    const int64_t bootstrap_count = at_least(k, "bootstrap_count", 0, 0);
    if (bootstrap_count > 0 && !min_resource)
      k.bad("bootstrap_count", "0 when min_resource is \"auto\" (they are mutually incompatible)");
    return internal::make_successive_halving_pruner(min_resource, reduction_factor,
                                                    min_early_stopping_rate, bootstrap_count);
  }
  if (cls == "HyperbandPruner") {
    Kwargs k(cls, kwargs, {"min_resource", "max_resource", "reduction_factor", "bootstrap_count"},
             what);
    const int64_t min_resource = at_least(k, "min_resource", 1, 1);
    const auto max_resource = resource_or_auto(k, "max_resource", std::nullopt);
    const int64_t reduction_factor = at_least(k, "reduction_factor", 3, 2);
    const int64_t bootstrap_count = at_least(k, "bootstrap_count", 0, 0);
    if (bootstrap_count > 0 && !max_resource)
      k.bad("bootstrap_count", "0 when max_resource is \"auto\" (they are mutually incompatible)");
    return internal::make_hyperband_pruner(min_resource, max_resource, reduction_factor,
                                           bootstrap_count);
  }
  if (cls == "ThresholdPruner") {
    Kwargs k(cls, kwargs, {"lower", "upper", "n_warmup_steps", "interval_steps"}, what);
    const auto lower = k.optional_number("lower"), upper = k.optional_number("upper");
    if (!lower && !upper)
      throw std::invalid_argument(cls + ": either \"lower\" or \"upper\" must be given");
    if (lower.value_or(-kInf) > upper.value_or(kInf))
      k.bad("lower", "<= upper = " + k.at("upper").dump());
    return std::make_unique<ThresholdPruner>(lower.value_or(-kInf), upper.value_or(kInf),
                                             at_least(k, "n_warmup_steps", 0, 0),
                                             at_least(k, "interval_steps", 1, 1));
  }
  // PatientPruner
  Kwargs k(cls, kwargs, {"wrapped_pruner", "patience", "min_delta"}, what);
  if (!k.has("patience"))
    throw std::invalid_argument(cls + ": the keyword argument \"patience\" is required");
  const int64_t patience = at_least(k, "patience", 0, 0);
  const double min_delta = k.number("min_delta", 0.0);
  if (!(min_delta >= 0.0)) k.bad("min_delta", "a number >= 0");
  std::unique_ptr<Pruner> wrapped;
  if (k.has("wrapped_pruner")) {
    const auto& w = k.at("wrapped_pruner");
    if (!w.is_object() || !w.contains("name") || !w.at("name").is_string()) {
      k.bad("wrapped_pruner", "null or {\"name\": <pruner name>, \"kwargs\": {...}}");
    }
    for (const auto& [key, _] : w.items()) {
      if (key != "name" && key != "kwargs")
        k.bad("wrapped_pruner", "only the keys \"name\" and \"kwargs\" (got \"" + key + "\")");
    }
    try {
      wrapped = make_pruner(w.at("name").get<std::string>(),
                            w.contains("kwargs") ? w.at("kwargs") : nlohmann::json::object());
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument(cls + ": wrapped_pruner: " + e.what());
    }
  }
  return std::make_unique<PatientPruner>(std::move(wrapped), patience, min_delta);
}

}  // namespace compsearch::search
