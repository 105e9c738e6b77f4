// Trial states, directions and FrozenTrial helpers (search/trial.h): the names and numbers
// Optuna writes to journals, and the constraint convention.
#include "search/trial.h"

#include <doctest/doctest.h>

using namespace compsearch::search;

TEST_CASE("trial states and directions carry Optuna's numbers and names") {
  CHECK(static_cast<int>(TrialState::kWaiting) == 4);  // optuna.trial.TrialState.WAITING
  CHECK(static_cast<int>(StudyDirection::kMaximize) == 2);
  CHECK(std::string(to_string(TrialState::kPruned)) == "PRUNED");
  CHECK(trial_state_from_string("fail") == TrialState::kFail);
  CHECK(trial_state_from_string("COMPLETE") == TrialState::kComplete);
  CHECK_THROWS_WITH_AS(trial_state_from_string("done"),
                       doctest::Contains("trial state \"done\" is unknown"), std::invalid_argument);
  CHECK(direction_from_string("maximize") == StudyDirection::kMaximize);
  CHECK(std::string(to_string(StudyDirection::kMinimize)) == "MINIMIZE");
  CHECK_THROWS_WITH_AS(direction_from_string("up"),
                       doctest::Contains("\"up\" is unknown; expected minimize or maximize"),
                       std::invalid_argument);
  CHECK(is_finished(TrialState::kPruned));
  CHECK_FALSE(is_finished(TrialState::kWaiting));
}

TEST_CASE("FrozenTrial gives external params and reads Optuna's constraints attribute") {
  FrozenTrial t;
  t.number = 4;
  t.params["bits"] = 2.0;
  t.distributions["bits"] = make_categorical({1, 2, 4, 8});
  t.params["ratio"] = 0.5;
  t.distributions["ratio"] = make_float(0, 0.75, false, 0.25);
  CHECK(t.param("bits") == 4);
  CHECK(t.param("ratio") == 0.5);
  CHECK_THROWS_WITH_AS(t.param("nope"), "trial 4 has no parameter \"nope\"", std::out_of_range);
  CHECK(t.feasible());  // nothing recorded
  t.system_attrs["constraints"] = {0.0, -2.0};
  CHECK(t.feasible());  // <= 0 is satisfied
  t.system_attrs["constraints"] = {0.0, 1e-9};
  CHECK_FALSE(t.feasible());
  t.system_attrs["constraints"] = "bad";
  CHECK_THROWS_WITH_AS(t.constraints(), doctest::Contains("must be a list of numbers, got \"bad\""),
                       std::invalid_argument);
}
