// TPE: Optuna's split of observations (single objective with pruned trials, non-domination
// ranks plus hypervolume subset selection, constraints) on hand-computed examples, and a
// search that must beat random sampling.
#include "search/tpe_sampler.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <limits>

#include "search/random_sampler.h"
#include "search/tpe_split.h"
#include "tests/search/study_util.h"

using namespace compsearch::search;
using compsearch::search::testing::ParamList;

namespace {
constexpr double kNegInf = -std::numeric_limits<double>::infinity();
std::vector<size_t> sorted(std::vector<size_t> v) {
  std::sort(v.begin(), v.end());
  return v;
}
}  // namespace

TEST_CASE("TPE split ranks complete trials before pruned ones, then by value") {
  // Trial 3 was pruned at step 2 with value 0: Optuna scores it (-2, 0), after every complete
  // trial (-inf, value).
  const auto s = tpe_detail::split_observations(
      {{kNegInf, {3}}, {kNegInf, {1}}, {kNegInf, {2}}, {-2, {0}}}, 2, {});
  CHECK(s.below == std::vector<size_t>{1, 2});
  CHECK(s.above == std::vector<size_t>{0, 3});
}

TEST_CASE("MOTPE split takes whole fronts, then a greedy hypervolume subset") {
  const std::vector<std::pair<double, std::vector<double>>> l{{kNegInf, {1, 4}},
                                                              {kNegInf, {2, 2}},
                                                              {kNegInf, {4, 1}},
                                                              {kNegInf, {3, 3}},
                                                              {kNegInf, {5, 5}}};
  // Front 0 (3 points) fits in 4, then front 1 = {3}.
  CHECK(sorted(tpe_detail::split_observations(l, 4, {}).below) == std::vector<size_t>{0, 1, 2, 3});
  // Two of front 0: reference max(1.1, 0.9) * (4, 4) = (4.4, 4.4); (2,2) has the largest box
  // (5.76); after it, (1,4) and (4,1) both add 0.4, the lower index wins.
  const auto s = tpe_detail::split_observations(l, 2, {});
  CHECK(sorted(s.below) == std::vector<size_t>{0, 1});
  CHECK(s.above == std::vector<size_t>{2, 3, 4});
}

TEST_CASE("Greedy hypervolume subset selection picks the largest gains") {
  const auto chosen = tpe_detail::greedy_hssp({{1, 4}, {2, 2}, {4, 1}}, 2, {4.4, 4.4});
  CHECK(chosen == std::vector<size_t>{1, 0});
}

TEST_CASE("TPE split with constraints prefers feasible trials and smaller violations") {
  const std::vector<std::pair<double, std::vector<double>>> l{
      {kNegInf, {5}}, {kNegInf, {0}}, {kNegInf, {1}}, {kNegInf, {0}}};
  const std::vector<double> viol{0, 2, 0, 1};
  auto s = tpe_detail::split_observations(l, 1, viol);
  CHECK(s.below == std::vector<size_t>{2});
  CHECK(s.above == std::vector<size_t>{0, 1, 3});
  s = tpe_detail::split_observations(l, 3, viol);
  CHECK(s.below == std::vector<size_t>{0, 2, 3});
  CHECK(s.above == std::vector<size_t>{1});
}

TEST_CASE("TPE finds a better minimum of a 4-D sphere than random sampling") {
  const ParamList space{{"a", make_float(-5, 5)},
                        {"b", make_float(-5, 5)},
                        {"c", make_int(-5, 5)},
                        {"d", make_categorical({0, 1, 2, 3})}};
  auto f = [](const FrozenTrial& t) {
    const double a = t.params.at("a") - 1, b = t.params.at("b") + 2, c = t.params.at("c") - 3;
    return std::vector<double>{a * a + b * b + c * c + (t.params.at("d") == 2 ? 0 : 4)};
  };
  for (bool multivariate : {false, true}) {
    CAPTURE(multivariate);
    double tpe_sum = 0, random_sum = 0;
    for (uint64_t seed = 0; seed < 3; ++seed) {
      TPESampler::Options o;
      o.seed = seed;
      o.multivariate = multivariate;
      auto tpe =
          testing::in_memory_study(std::make_shared<TPESampler>(o), {StudyDirection::kMinimize});
      auto rnd = testing::in_memory_study(std::make_shared<RandomSampler>(seed),
                                          {StudyDirection::kMinimize});
      testing::run_trials(*tpe, space, f, 100);
      testing::run_trials(*rnd, space, f, 100);
      tpe_sum += tpe->best_trials().at(0).values.at(0);
      random_sum += rnd->best_trials().at(0).values.at(0);
    }
    CHECK(tpe_sum < 0.5 * random_sum);
  }
}

TEST_CASE("TPE rejects out-of-range options by name") {
  TPESampler::Options zero_prior, zero_candidates;
  zero_prior.prior_weight = 0;
  zero_candidates.n_ei_candidates = 0;
  CHECK_THROWS_WITH_AS(TPESampler{zero_prior}, "TPESampler: prior_weight = 0.000000, expected > 0",
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(TPESampler{zero_candidates},
                       "TPESampler: n_ei_candidates = 0, expected >= 1", std::invalid_argument);
}
