// GridSampler: Optuna's grid order (itertools.product over sorted names), every point visited
// once before any repeats, and Optuna's system attributes.
#include "search/grid_sampler.h"

#include <doctest/doctest.h>

#include <set>

#include "tests/search/study_util.h"

using namespace compsearch::search;
using compsearch::search::testing::in_memory_study;
using compsearch::search::testing::ParamList;

TEST_CASE("GridSampler numbers grid points as itertools.product over sorted names") {
  // Names sort to a, b: ids 0..5 = (1,x) (1,y) (1,z) (2,x) (2,y) (2,z).
  GridSampler g(nlohmann::json{{"b", {"x", "y", "z"}}, {"a", {1, 2}}}, 0);
  CHECK(g.grid_size() == 6);
  CHECK(g.grid_value(4, "a") == 2);
  CHECK(g.grid_value(4, "b") == "y");
  CHECK(g.grid_value(2, "a") == 1);
  CHECK(g.grid_value(2, "b") == "z");
  CHECK_THROWS_WITH_AS(g.grid_value(0, "c"), doctest::Contains("c, is not found in the given grid"),
                       std::invalid_argument);
}

TEST_CASE("GridSampler visits every grid point once, then repeats") {
  const ParamList space{{"a", make_int(0, 10)}, {"b", make_categorical({"x", "y", "z"})}};
  auto g = std::make_shared<GridSampler>(nlohmann::json{{"b", {"x", "y", "z"}}, {"a", {1, 2}}}, 7);
  auto study = in_memory_study(g, {StudyDirection::kMinimize});
  std::set<std::pair<double, double>> seen;
  for (int i = 0; i < 6; ++i) {
    const Trial trial = study->ask(space);
    const FrozenTrial& t = trial.cached();
    seen.insert({t.params.at("a"), t.params.at("b")});
    CHECK(t.system_attrs.at("search_space") ==
          nlohmann::json{{"a", {1, 2}}, {"b", {"x", "y", "z"}}});
    study->tell(trial.number(), std::vector<double>{0.0}, TrialState::kComplete);
    CHECK(g->unvisited_grid_ids(*study).size() == static_cast<size_t>(5 - i));
  }
  CHECK(seen.size() == 6);
  // Exhausted: a seventh trial re-evaluates some point.
  const Trial trial = study->ask(space);
  CHECK(testing::stored_trial(*study, trial.number()).system_attrs.at("grid_id").get<int>() < 6);
}

TEST_CASE("GridSampler rejects a parameter outside the grid and a value outside the distribution") {
  auto study = in_memory_study(std::make_shared<GridSampler>(nlohmann::json{{"b", {"x", "w"}}}, 0),
                               {StudyDirection::kMinimize});
  CHECK_THROWS_WITH_AS(study->ask({{"zz", make_float(0, 1)}}),
                       doctest::Contains("zz, is not found in the given grid"),
                       std::invalid_argument);
  auto study2 = in_memory_study(std::make_shared<GridSampler>(nlohmann::json{{"b", {"w"}}}, 0),
                                {StudyDirection::kMinimize});
  CHECK_THROWS_WITH_AS(study2->ask({{"b", make_categorical({"x", "y"})}}),
                       doctest::Contains("grid value \"w\" of parameter b"), std::invalid_argument);
}
