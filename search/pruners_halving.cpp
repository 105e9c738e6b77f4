// Optuna 3.1's SuccessiveHalvingPruner (optuna/pruners/_successive_halving.py) and
// HyperbandPruner (_hyperband.py), rule for rule; see pruner.h.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "search/pruners_internal.h"

namespace compsearch::search::internal {

namespace {

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

}  // namespace

std::unique_ptr<Pruner> make_successive_halving_pruner(std::optional<int64_t> min_resource,
                                                       int64_t reduction_factor,
                                                       int64_t min_early_stopping_rate,
                                                       int64_t bootstrap_count) {
  return std::make_unique<SuccessiveHalvingPruner>(min_resource, reduction_factor,
                                                   min_early_stopping_rate, bootstrap_count);
}

std::unique_ptr<Pruner> make_hyperband_pruner(int64_t min_resource,
                                              std::optional<int64_t> max_resource,
                                              int64_t reduction_factor, int64_t bootstrap_count) {
  return std::make_unique<HyperbandPruner>(min_resource, max_resource, reduction_factor,
                                           bootstrap_count);
}

}  // namespace compsearch::search::internal
