// Pareto dominance, non-dominated sorting, crowding distance and ParetoArchive, against
// hand-computed fronts.
#include "search/pareto.h"

#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <stdexcept>

using namespace compsearch::search;

TEST_CASE("dominates needs no worse everywhere and better somewhere") {
  CHECK(dominates({1, 2}, {1, 3}));
  CHECK_FALSE(dominates({1, 3}, {1, 2}));
  CHECK_FALSE(dominates({1, 2}, {1, 2}));
  CHECK_FALSE(dominates({1, 3}, {2, 2}));
  CHECK_THROWS_AS(dominates({1, 2}, {1, 2, 3}), std::invalid_argument);
}

TEST_CASE("to_minimization negates maximised objectives") {
  CHECK(to_minimization({1, 2}, {StudyDirection::kMinimize, StudyDirection::kMaximize}) ==
        Point{1, -2});
  CHECK_THROWS_WITH_AS(to_minimization({1}, {StudyDirection::kMinimize, StudyDirection::kMinimize}),
                       "to_minimization: 1 values for 2 directions", std::invalid_argument);
}

TEST_CASE("Constrained domination follows Deb's three rules and Optuna's missing-record rule") {
  const Point good{0, 0}, bad{5, 5};
  // Feasible beats infeasible whatever the objectives.
  CHECK(constrained_dominates(bad, 0.0, good, 1.0));
  CHECK_FALSE(constrained_dominates(good, 1.0, bad, 0.0));
  // Two infeasible: smaller total violation wins.
  CHECK(constrained_dominates(bad, 0.5, good, 1.0));
  CHECK_FALSE(constrained_dominates(good, 1.0, bad, 0.5));
  // Two feasible: plain domination.
  CHECK(constrained_dominates(good, 0.0, bad, 0.0));
  CHECK_FALSE(constrained_dominates(bad, 0.0, good, 0.0));
  // A point with constraints dominates one without; two without compare plainly.
  CHECK(constrained_dominates(bad, 3.0, good, std::nullopt));
  CHECK(constrained_dominates(good, std::nullopt, bad, std::nullopt));
  CHECK(total_violation(std::vector<double>{-1.0, 2.0, 0.5}) == doctest::Approx(2.5));
  CHECK_FALSE(total_violation(std::nullopt).has_value());
}

TEST_CASE("Non-dominated sorting ranks a hand-built set into four fronts") {
  const std::vector<Point> pts{{1, 5}, {2, 2}, {5, 1}, {3, 3}, {4, 4}, {6, 6}};
  const auto fronts = non_dominated_sort(pts);
  REQUIRE(fronts.size() == 4);
  CHECK(fronts[0] == std::vector<size_t>{0, 1, 2});
  CHECK(fronts[1] == std::vector<size_t>{3});
  CHECK(fronts[2] == std::vector<size_t>{4});
  CHECK(fronts[3] == std::vector<size_t>{5});
  CHECK(pareto_front_indices(pts) == std::vector<size_t>{0, 1, 2});
}

TEST_CASE("Non-dominated sorting with violations puts feasible points first") {
  // Point 0 dominates everything on objectives but is infeasible.
  const std::vector<Point> pts{{0, 0}, {2, 2}, {1, 3}, {3, 3}};
  const std::vector<std::optional<double>> viol{1.0, 0.0, 0.0, 0.5};
  const auto fronts = non_dominated_sort(pts, viol);
  REQUIRE(fronts.size() == 3);
  CHECK(fronts[0] == std::vector<size_t>{1, 2});
  CHECK(fronts[1] == std::vector<size_t>{3});  // smaller violation than point 0
  CHECK(fronts[2] == std::vector<size_t>{0});
  CHECK_THROWS_AS(non_dominated_sort(pts, {0.0}), std::invalid_argument);
}

TEST_CASE("Pareto front indices in three objectives keep duplicates") {
  const std::vector<Point> pts{{1, 1, 1}, {1, 1, 1}, {0, 2, 2}, {2, 2, 2}};
  CHECK(pareto_front_indices(pts) == std::vector<size_t>{0, 1, 2});
}

TEST_CASE("Crowding distance follows Optuna's normalisation and infinite extremes") {
  const std::vector<Point> pts{{1, 5}, {2, 2}, {5, 1}, {9, 9}};
  const auto d = crowding_distance(pts, {0, 1, 2});
  const double inf = std::numeric_limits<double>::infinity();
  // Objective 0: sorted 1,2,5, width 4: middle gets (5-1)/4 = 1. Objective 1: sorted 1,2,5,
  // middle (point 1) gets (5-1)/4 = 1. Extremes are infinite.
  CHECK(d[0] == inf);
  CHECK(d[1] == doctest::Approx(2.0));
  CHECK(d[2] == inf);
  // An objective with equal values contributes nothing.
  const std::vector<Point> flat{{1, 7}, {2, 7}, {4, 7}};
  const auto f = crowding_distance(flat, {0, 1, 2});
  CHECK(f[1] == doctest::Approx((4.0 - 1.0) / 3.0));
  std::vector<size_t> idx{1, 0, 2};
  sort_by_crowding_distance(flat, idx);
  CHECK(idx == std::vector<size_t>{0, 2, 1});
}

TEST_CASE("ParetoArchive drops a dominated point and rejects a dominated newcomer") {
  ParetoArchive archive(2);
  CHECK(archive.insert(0, {3, 3}));
  CHECK(archive.insert(1, {1, 5}));
  CHECK_FALSE(archive.insert(2, {4, 4}));  // dominated by (3, 3)
  CHECK(archive.insert(3, {2, 2}));        // removes (3, 3)
  REQUIRE(archive.size() == 2);
  CHECK(archive.entries()[0].id == 1);
  CHECK(archive.entries()[1].id == 3);
  CHECK(archive.insert(4, {2, 2}));  // a duplicate is kept
  CHECK(archive.size() == 3);
  CHECK_THROWS_WITH_AS(archive.insert(5, {1, 2, 3}),
                       "ParetoArchive::insert: point 5 has 3 objectives, expected 2",
                       std::invalid_argument);
  CHECK_THROWS_AS(archive.insert(6, {std::nan(""), 1}), std::invalid_argument);
}
