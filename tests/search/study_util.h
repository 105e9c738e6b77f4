// Sampler tests drive samplers through the real Study over an InMemoryStorage, so what they
// check is the ask protocol users get (fixed params, single-valued distributions, relative then
// independent sampling, before_trial attributes persisted, after_trial on tell), not a copy of it.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "search/in_memory_storage.h"
#include "search/study.h"

namespace compsearch::search::testing {

using ParamList = std::vector<std::pair<std::string, Distribution>>;
using TrialFunction = std::function<std::vector<double>(const FrozenTrial&)>;

inline constexpr const char* kTestStudyName = "sampler-test";

// A new study named kTestStudyName in a new InMemoryStorage, sampled by `sampler`.
inline std::unique_ptr<Study> in_memory_study(std::shared_ptr<Sampler> sampler,
                                              const std::vector<StudyDirection>& directions) {
  return Study::create(std::make_shared<InMemoryStorage>(), kTestStudyName, directions,
                       std::move(sampler));
}

// The study's trial `number` as stored.
inline FrozenTrial stored_trial(const Study& study, int64_t number) {
  return study.get_trials_from(number).at(0);
}

// Asks one trial for `params` and tells it COMPLETE with `objective` of its params; with
// `constraints`, records them first as Optuna does (system attribute "constraints").
inline FrozenTrial ask_and_tell(Study& study, const ParamList& params,
                                const TrialFunction& objective,
                                const TrialFunction& constraints = {}) {
  Trial trial = study.ask(params);
  if (constraints) trial.set_system_attr("constraints", constraints(trial.cached()));
  return study.tell(trial.number(), objective(trial.cached()), TrialState::kComplete);
}

// Runs `n` trials through `study`, each asked and told in turn.
inline void run_trials(Study& study, const ParamList& params, const TrialFunction& objective, int n,
                       const TrialFunction& constraints = {}) {
  for (int i = 0; i < n; ++i) ask_and_tell(study, params, objective, constraints);
}

}  // namespace compsearch::search::testing
