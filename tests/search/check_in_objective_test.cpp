// Why COMPSEARCH_CHECK throws instead of aborting (common/check.h): a broken invariant inside one
// objective call costs that trial, recorded as FAIL with the check's text, and the search goes on.
#include <doctest/doctest.h>

#include <memory>
#include <string>

#include "common/check.h"
#include "search/in_memory_storage.h"
#include "search/random_sampler.h"
#include "search/study.h"

using namespace compsearch::search;

TEST_CASE(
    "A failed COMPSEARCH_CHECK in an objective fails that trial with file:line and the search goes "
    "on") {
  auto study = Study::create(std::make_shared<InMemoryStorage>(), "s", {StudyDirection::kMinimize},
                             std::make_shared<RandomSampler>(7));
  study->optimize(
      [](Trial& t) -> std::vector<double> {
        const double x = t.suggest_float("x", 0, 1);
        COMPSEARCH_CHECK(t.number() != 1, "trial " + std::to_string(t.number()) + " is odd");
        return {x};
      },
      3);
  const auto trials = study->get_trials();
  REQUIRE(trials.size() == 3);
  CHECK(trials[0].state == TrialState::kComplete);
  CHECK(trials[2].state == TrialState::kComplete);
  REQUIRE(trials[1].state == TrialState::kFail);
  const std::string reason = trials[1].system_attrs.at(kFailReasonAttr).get<std::string>();
  CHECK(reason.find("check_in_objective_test.cpp:") != std::string::npos);
  CHECK(reason.find(": check failed: t.number() != 1: trial 1 is odd") != std::string::npos);
}
