// Sampler interface, as Optuna's BaseSampler: a relative (joint) step over the search space the
// sampler infers, then an independent step for every parameter the relative step left out.
// Samplers must be deterministic for a seed and may rebuild all of their state from the study's
// trials (each CLI call is a fresh process).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "search/distributions.h"
#include "search/trial.h"

namespace compsearch::search {

// What a sampler may see of the study it samples for. Study implements it.
class StudyView {
 public:
  virtual ~StudyView() = default;
  virtual std::vector<StudyDirection> directions() const = 0;
  // Trials in number order, optionally only those in `states`.
  virtual std::vector<FrozenTrial> get_trials(const std::vector<TrialState>& states = {}) const = 0;
  // Trials numbered >= `first_number`, in number order. Finished trials never change, so
  // samplers cache them and ask only for the rest; a Study that can answer this without copying
  // every trial should override it (the default filters get_trials()).
  virtual std::vector<FrozenTrial> get_trials_from(int64_t first_number) const {
    std::vector<FrozenTrial> all = get_trials();
    std::vector<FrozenTrial> out;
    for (FrozenTrial& t : all) {
      if (t.number >= first_number) out.push_back(std::move(t));
    }
    return out;
  }
  // get_trials without the copies: calls `fn` once with the study's trials (number order,
  // `states` empty = all), lent for the call only; `fn` must not call the study. For samplers
  // that only look. The default lends get_trials's copies.
  virtual void read_trials(const std::vector<TrialState>& states, const TrialReader& fn) const {
    lend_trials(get_trials(states), fn);
  }
  // Persists a system attribute of a running trial (NSGA-II records its generation and parents
  // this way, as Optuna does, so a fresh process can rebuild the population).
  virtual void set_trial_system_attr(int64_t trial_id, const std::string& key,
                                     const nlohmann::json& value) = 0;
  bool is_multi_objective() const { return directions().size() > 1; }
};

class Sampler {
 public:
  virtual ~Sampler() = default;

  virtual SearchSpace infer_relative_search_space(const StudyView& study,
                                                  const FrozenTrial& trial) = 0;
  // Returns internal values for (a subset of) `space`.
  virtual std::map<std::string, double> sample_relative(const StudyView& study,
                                                        const FrozenTrial& trial,
                                                        const SearchSpace& space) = 0;
  virtual double sample_independent(const StudyView& study, const FrozenTrial& trial,
                                    const std::string& name, const Distribution& dist) = 0;

  // Called when a trial starts (may set system attributes on it through `trial`, which the
  // study then persists) and when it finishes.
  virtual void before_trial(const StudyView& /*study*/, FrozenTrial& /*trial*/) {}
  virtual void after_trial(const StudyView& /*study*/, const FrozenTrial& /*trial*/,
                           TrialState /*state*/, const std::vector<double>* /*values*/) {}
  virtual void reseed_rng(uint64_t seed) = 0;
};

}  // namespace compsearch::search
