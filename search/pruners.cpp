// Optuna 3.1's pruners (optuna/pruners/*.py), rule for rule; see pruner.h. Each function names
// the Optuna function it follows.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "search/kwargs.h"
#include "search/pruner.h"
#include "search/study.h"

namespace compsearch::search {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

// FrozenTrial.last_step: the largest reported step.
std::optional<int64_t> last_step(const FrozenTrial& t) {
  if (t.intermediate_values.empty()) return std::nullopt;
  return t.intermediate_values.rbegin()->first;
}

bool maximizing(const Study& study) {
  return study.directions().at(0) == StudyDirection::kMaximize;
}

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

// binascii.crc32 (zlib's CRC-32).
uint32_t crc32(const std::string& bytes) {
  static const auto table = [] {
    std::vector<uint32_t> t(256);
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  uint32_t c = 0xFFFFFFFFu;
  for (unsigned char ch : bytes) c = table[(c ^ ch) & 0xFFu] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
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

using TrialsOf = std::function<std::vector<FrozenTrial>()>;

class SuccessiveHalvingPruner final : public Pruner {
 public:
  SuccessiveHalvingPruner(std::optional<int64_t> min_resource, int64_t reduction_factor,
                          int64_t min_early_stopping_rate, int64_t bootstrap_count)
      : min_resource_(min_resource),
        reduction_factor_(reduction_factor),
        min_early_stopping_rate_(min_early_stopping_rate),
        bootstrap_count_(bootstrap_count) {}

  std::string name() const override { return "SuccessiveHalvingPruner"; }

  bool prune(Study& study, const FrozenTrial& trial) const override {
    return prune_among(study, trial, [&study] { return study.get_trials(); });
  }

  // SuccessiveHalvingPruner.prune with the study's trials given by `trials_of` (Hyperband's
  // bracket study filters them).
  bool prune_among(Study& study, const FrozenTrial& trial, const TrialsOf& trials_of) const {
    const auto step = last_step(trial);
    if (!step) return false;
    int64_t rung = 0;  // _get_current_rung
    while (trial.system_attrs.count(rung_key(rung))) ++rung;
    const double value = trial.intermediate_values.at(*step);
    std::optional<std::vector<FrozenTrial>> trials;
    while (true) {
      int64_t min_resource;
      {
        std::unique_lock lock(mutex_);
        if (!min_resource_) {
          lock.unlock();
          if (!trials) trials = trials_of();
          const auto estimate = estimate_min_resource(*trials);
          if (!estimate) return false;
          lock.lock();
          if (!min_resource_) min_resource_ = estimate;  // fixed once, as Optuna's attribute
        }
        min_resource = *min_resource_;
      }
      if (*step < promotion_step(min_resource, min_early_stopping_rate_ + rung)) return false;
      if (std::isnan(value)) return true;
      if (!trials) trials = trials_of();
      const std::string key = rung_key(rung);
      study.set_trial_system_attr(trial.trial_id, key, value);
      // _get_competing_values: `trials` were read before this rung was recorded, so the trial
      // itself is counted once, through `value`.
      std::vector<double> competing;
      for (const auto& t : *trials) {
        auto it = t.system_attrs.find(key);
        if (it != t.system_attrs.end() && it->second.is_number())
          competing.push_back(it->second.get<double>());
      }
      competing.push_back(value);
      if (static_cast<int64_t>(competing.size()) <= bootstrap_count_) return true;
      if (!promotable(value, std::move(competing), maximizing(study))) return true;
      ++rung;
    }
  }

  static std::string rung_key(int64_t rung) { return "completed_rung_" + std::to_string(rung); }

 private:
  // _estimate_min_resource: max(last step of the COMPLETE trials) // 100, at least 1.
  static std::optional<int64_t> estimate_min_resource(const std::vector<FrozenTrial>& trials) {
    std::optional<int64_t> last;
    for (const auto& t : trials) {
      const auto s = last_step(t);
      if (t.state == TrialState::kComplete && s) last = std::max(last.value_or(*s), *s);
    }
    if (!last) return std::nullopt;
    return std::max<int64_t>(*last / 100, 1);
  }

  // min_resource * reduction_factor ** exponent (Python integers: saturated instead of wrapping).
  int64_t promotion_step(int64_t min_resource, int64_t exponent) const {
    constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
    int64_t r = min_resource;
    for (int64_t i = 0; i < exponent; ++i) {
      if (r > kMax / reduction_factor_) return kMax;
      r *= reduction_factor_;
    }
    return r;
  }

  // _is_trial_promotable_to_next_rung.
  bool promotable(double value, std::vector<double> competing, bool maximize) const {
    int64_t idx = static_cast<int64_t>(competing.size()) / reduction_factor_ - 1;
    if (idx == -1) idx = 0;
    std::sort(competing.begin(), competing.end());
    if (maximize) return value >= competing[competing.size() - 1 - idx];
    return value <= competing[idx];
  }

  mutable std::mutex mutex_;
  mutable std::optional<int64_t> min_resource_;  // nullopt: "auto", not estimated yet
  int64_t reduction_factor_, min_early_stopping_rate_, bootstrap_count_;
};

class HyperbandPruner final : public Pruner {
 public:
  HyperbandPruner(int64_t min_resource, std::optional<int64_t> max_resource,
                  int64_t reduction_factor, int64_t bootstrap_count)
      : min_resource_(min_resource),
        max_resource_(max_resource),
        reduction_factor_(reduction_factor),
        bootstrap_count_(bootstrap_count) {}

  std::string name() const override { return "HyperbandPruner"; }

  // HyperbandPruner.prune: the trial's bracket decides, among the trials of that bracket.
  bool prune(Study& study, const FrozenTrial& trial) const override {
    {
      std::lock_guard lock(mutex_);
      if (pruners_.empty()) try_initialization(study);
      if (pruners_.empty()) return false;
    }
    const std::string& name = study.name();
    const size_t bracket = bracket_id(name, trial.number);
    return pruners_[bracket]->prune_among(study, trial, [&] {
      std::vector<FrozenTrial> in_bracket;
      for (auto& t : study.get_trials()) {
        if (bracket_id(name, t.number) == bracket) in_bracket.push_back(std::move(t));
      }
      return in_bracket;
    });
  }

 private:
  // _try_initialization (under mutex_).
  void try_initialization(const Study& study) const {
    if (!max_resource_) {
      std::optional<int64_t> last;
      for (const auto& t : study.get_trials({TrialState::kComplete})) {
        if (const auto s = last_step(t)) last = std::max(last.value_or(*s), *s);
      }
      if (!last) return;
      max_resource_ = *last + 1;
    }
    if (!n_brackets_) {
      // math.floor(math.log(max_resource / min_resource, reduction_factor)) + 1
      const double ratio = static_cast<double>(*max_resource_) / static_cast<double>(min_resource_);
      n_brackets_ = static_cast<int64_t>(std::floor(
                        std::log(ratio) / std::log(static_cast<double>(reduction_factor_)))) +
                    1;
    }
    for (int64_t b = 0; b < *n_brackets_; ++b) {
      // _calculate_trial_allocation_budget: ceil(n_brackets * reduction_factor**s / (s + 1)).
      const int64_t s = *n_brackets_ - 1 - b;
      double power = 1;
      for (int64_t i = 0; i < s; ++i) power *= static_cast<double>(reduction_factor_);
      const auto budget = static_cast<int64_t>(
          std::ceil(static_cast<double>(*n_brackets_) * power / static_cast<double>(s + 1)));
      total_budget_ += budget;
      budgets_.push_back(budget);
      pruners_.push_back(std::make_unique<SuccessiveHalvingPruner>(min_resource_, reduction_factor_,
                                                                   b, bootstrap_count_));
    }
  }

  // _get_bracket_id: crc32("<study name>_<number>") % total budget, walked through the budgets.
  size_t bracket_id(const std::string& study_name, int64_t number) const {
    auto n = static_cast<int64_t>(crc32(study_name + "_" + std::to_string(number)) %
                                  static_cast<uint64_t>(total_budget_));
    for (size_t b = 0; b < budgets_.size(); ++b) {
      n -= budgets_[b];
      if (n < 0) return b;
    }
    throw std::logic_error("HyperbandPruner: bracket id out of range");  // unreachable
  }

  int64_t min_resource_;
  mutable std::optional<int64_t> max_resource_;  // nullopt: "auto", not known yet
  int64_t reduction_factor_, bootstrap_count_;
  mutable std::mutex mutex_;
  // Set once by try_initialization, read-only afterwards.
  mutable std::optional<int64_t> n_brackets_;
  mutable int64_t total_budget_ = 0;
  mutable std::vector<int64_t> budgets_;
  mutable std::vector<std::unique_ptr<SuccessiveHalvingPruner>> pruners_;
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
    return std::make_unique<SuccessiveHalvingPruner>(min_resource, reduction_factor,
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
    return std::make_unique<HyperbandPruner>(min_resource, max_resource, reduction_factor,
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
