// A minimal in-memory StudyView with ask/tell, for testing samplers without the real Study
// (tests only). It calls the sampler as Optuna's Trial does: before_trial, then the relative
// step over the inferred space, then sample_independent for every parameter left, in the order
// the objective suggests them; single-valued distributions take their only value.
#pragma once

#include <functional>
#include <stdexcept>
#include <utility>
#include <vector>

#include "search/sampler.h"

namespace compsearch::search::testing {

using ParamList = std::vector<std::pair<std::string, Distribution>>;

class MiniStudy : public StudyView {
 public:
  explicit MiniStudy(std::vector<StudyDirection> directions) : directions_(std::move(directions)) {}

  std::vector<StudyDirection> directions() const override { return directions_; }
  std::vector<FrozenTrial> get_trials(const std::vector<TrialState>& states = {}) const override {
    std::vector<FrozenTrial> out;
    for (const auto& t : trials_) {
      if (states.empty() || std::find(states.begin(), states.end(), t.state) != states.end()) {
        out.push_back(t);
      }
    }
    return out;
  }
  std::vector<FrozenTrial> get_trials_from(int64_t first_number) const override {
    return std::vector<FrozenTrial>(
        trials_.begin() + std::min<int64_t>(first_number, trials_.size()), trials_.end());
  }
  void set_trial_system_attr(int64_t trial_id, const std::string& key,
                             const nlohmann::json& value) override {
    trials_.at(static_cast<size_t>(trial_id)).system_attrs[key] = value;
  }

  // Creates a RUNNING trial and samples `params` with `sampler`; returns its number.
  int64_t ask(Sampler& sampler, const ParamList& params) {
    FrozenTrial t;
    t.number = static_cast<int64_t>(trials_.size());
    t.trial_id = t.number;
    t.state = TrialState::kRunning;
    trials_.push_back(t);
    FrozenTrial& cur = trials_.back();
    FrozenTrial copy = cur;
    sampler.before_trial(*this, copy);
    cur.system_attrs = copy.system_attrs;
    const SearchSpace space = sampler.infer_relative_search_space(*this, cur);
    const auto relative = sampler.sample_relative(*this, trials_.back(), space);
    for (const auto& [name, dist] : params) {
      double v;
      auto it = relative.find(name);
      if (it != relative.end() && space.count(name)) {
        v = it->second;
      } else if (is_single(dist)) {
        v = single(dist);
      } else {
        v = sampler.sample_independent(*this, trials_.back(), name, dist);
      }
      trials_.back().params[name] = v;
      trials_.back().distributions[name] = dist;
    }
    return t.number;
  }

  void tell(int64_t number, TrialState state, std::vector<double> values = {},
            std::optional<std::vector<double>> constraints = std::nullopt) {
    FrozenTrial& t = trials_.at(static_cast<size_t>(number));
    t.state = state;
    t.values = std::move(values);
    if (constraints) t.system_attrs["constraints"] = *constraints;
  }

  // Runs `n` trials of `objective` (params -> values [, constraints]) sequentially. With
  // `fresh_sampler`, every ask uses a newly made sampler, as CLI processes do.
  void optimize(const std::function<std::unique_ptr<Sampler>()>& make, const ParamList& params,
                const std::function<std::vector<double>(const FrozenTrial&)>& objective, int n,
                bool fresh_sampler = false,
                const std::function<std::vector<double>(const FrozenTrial&)>& constraints = {}) {
    std::unique_ptr<Sampler> sampler = make();
    for (int i = 0; i < n; ++i) {
      if (fresh_sampler) sampler = make();
      const int64_t num = ask(*sampler, params);
      const FrozenTrial& t = trials_.back();
      auto c = constraints ? std::optional<std::vector<double>>(constraints(t)) : std::nullopt;
      tell(num, TrialState::kComplete, objective(t), c);
      sampler->after_trial(*this, trials_.back(), TrialState::kComplete, &trials_.back().values);
    }
  }

  const std::vector<FrozenTrial>& trials() const { return trials_; }

 private:
  static double single(const Distribution& d) {
    if (const auto* f = std::get_if<FloatDistribution>(&d)) return f->low;
    if (const auto* i = std::get_if<IntDistribution>(&d)) return static_cast<double>(i->low);
    return 0.0;
  }

  std::vector<StudyDirection> directions_;
  std::vector<FrozenTrial> trials_;
};

}  // namespace compsearch::search::testing
