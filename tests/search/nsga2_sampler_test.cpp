// NSGA-II: generations and parents in trial system attributes (Optuna's keys), elite selection
// by non-dominated sorting and crowding distance on a hand-computed example, constrained
// domination, a population rebuilt from the study by a fresh sampler, and the SBX option.
#include "search/nsga2_sampler.h"

#include <doctest/doctest.h>

#include <cmath>

#include "tests/search/study_util.h"

using namespace compsearch::search;
using compsearch::search::testing::in_memory_study;
using compsearch::search::testing::ParamList;

namespace {
NSGAIISampler::Options opts(int64_t population_size, std::optional<uint64_t> seed = std::nullopt) {
  NSGAIISampler::Options o;
  o.population_size = population_size;
  o.seed = seed;
  return o;
}

const ParamList kSpace{{"x", make_float(0, 1)}, {"c", make_categorical({"a", "b", "c"})}};
const std::vector<StudyDirection> kTwoMinimized(2, StudyDirection::kMinimize);

// Runs one trial per entry of `values` (two minimised objectives, told as given).
std::unique_ptr<Study> hand_study(std::shared_ptr<NSGAIISampler> sampler,
                                  const std::vector<std::vector<double>>& values,
                                  const std::vector<double>& violations = {}) {
  auto study = in_memory_study(std::move(sampler), kTwoMinimized);
  for (size_t i = 0; i < values.size(); ++i) {
    testing::TrialFunction constraints;
    if (!violations.empty()) {
      constraints = [&](const FrozenTrial&) { return std::vector<double>{violations[i]}; };
    }
    testing::ask_and_tell(
        *study, kSpace, [&](const FrozenTrial&) { return values[i]; }, constraints);
  }
  return study;
}

const std::vector<std::vector<double>> kValues{{1, 4.5}, {2, 3.5}, {3.2, 2}, {5, 5},
                                               {0.5, 6}, {4, 1},   {6, 6},   {2.5, 2.5}};
}  // namespace

TEST_CASE("NSGA-II records each trial's generation under Optuna's key") {
  const auto study = hand_study(std::make_shared<NSGAIISampler>(opts(4, 1)), kValues);
  const auto trials = study->get_trials();
  for (int i = 0; i < 8; ++i) {
    CHECK(trials[i].system_attrs.at("nsga2:generation") == i / 4);
  }
  // Generation 0 has no parents; generation 1 children record one or two parents of gen 0.
  CHECK(trials[0].system_attrs.at("nsga2:parents").empty());
  const auto& parents = trials[5].system_attrs.at("nsga2:parents");
  CHECK((parents.size() == 1 || parents.size() == 2));
  for (const auto& p : parents) CHECK(p.get<int>() < 4);
}

TEST_CASE("NSGA-II elite selection matches a hand-computed crowding-distance cut") {
  // Generation 1 plus its parents (all of generation 0): front 0 is trials 0,1,2,4,5,7 (3 and 6
  // are dominated by 7). Crowding (width 3.5 in f0, 5 in f1): 4 and 5 are extremes (inf),
  // trial 0: 1.5/3.5 + 2.5/5 = 0.929, trial 1: 1.5/3.5 + 2/5 = 0.829, trial 2: 0.729,
  // trial 7: 0.643. The elite of 4 is 4, 5, 0, 1.
  auto sampler = std::make_shared<NSGAIISampler>(opts(4, 1));
  const auto study = hand_study(sampler, kValues);
  const auto [generation, parents] = sampler->parent_population(*study);
  CHECK(generation == 1);
  CHECK(parents == std::vector<int64_t>{4, 5, 0, 1});
  // A fresh sampler rebuilds the same population from the trials' system attributes.
  NSGAIISampler fresh(opts(4, 99));
  CHECK(fresh.parent_population(*study) == std::make_pair(int64_t{1}, parents));
}

TEST_CASE("NSGA-II with constraints puts feasible trials before an infeasible dominating one") {
  // Trial 4 dominates on objectives but violates its constraint. Feasible front 0: 0,1,2,5,7.
  // Crowding (width 3 in f0, 3.5 in f1): 0 and 5 inf, 1: 0.5 + 0.571, 2: 0.5 + 0.429,
  // 7: 0.4 + 0.429. The elite of 4 is 5, 0, 1, 2.
  auto sampler = std::make_shared<NSGAIISampler>(opts(4, 1));
  const auto study = hand_study(sampler, kValues, {0, 0, 0, 0, 1.0, 0, 0, 0});
  const auto [generation, parents] = sampler->parent_population(*study);
  CHECK(generation == 1);
  CHECK(parents == std::vector<int64_t>{5, 0, 1, 2});
}

TEST_CASE("NSGA-II children copy parent values and mutate about one parameter in n") {
  // With mutation_prob 0 and crossover, every child value comes from one of its parents.
  NSGAIISampler::Options o = opts(4, 5);
  o.mutation_prob = 0.0;
  auto study = in_memory_study(std::make_shared<NSGAIISampler>(o), kTwoMinimized);
  testing::run_trials(
      *study, kSpace,
      [](const FrozenTrial& t) {
        return std::vector<double>{t.params.at("x"), 1 - t.params.at("x")};
      },
      20);
  const auto trials = study->get_trials();
  for (int i = 4; i < 20; ++i) {
    const auto& t = trials[i];
    const auto& parents = t.system_attrs.at("nsga2:parents");
    REQUIRE(!parents.empty());
    for (const char* name : {"x", "c"}) {
      bool from_parent = false;
      for (const auto& p : parents) {
        from_parent |= trials[p.get<int>()].params.at(name) == t.params.at(name);
      }
      CHECK(from_parent);
    }
  }
}

TEST_CASE("NSGA-II rejects out-of-range options by name") {
  NSGAIISampler::Options bad_crossover = opts(50), bad_swapping = opts(50);
  bad_crossover.crossover_prob = -0.1;
  bad_swapping.swapping_prob = 2;
  CHECK_THROWS_WITH_AS(NSGAIISampler{opts(1)}, "NSGAIISampler: population_size = 1, expected >= 2",
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(NSGAIISampler{bad_crossover}, doctest::Contains("crossover_prob = -0.1"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(NSGAIISampler{bad_swapping}, doctest::Contains("swapping_prob = 2"),
                       std::invalid_argument);
}

TEST_CASE("NSGA-II with SBX blends numerical parents within bounds and swaps categoricals") {
  // Optuna's SBXCrossover: each numerical child value is a parent's value or one of two SBX
  // offspring (half the time); categorical values still come from a parent. Uniform
  // crossover (the default, checked above) never produces a value outside the parents'.
  NSGAIISampler::Options o = opts(4, 7);
  o.mutation_prob = 0.0;
  o.crossover_prob = 1.0;
  o.crossover = NSGAIISampler::Options::Crossover::kSBX;
  const ParamList space{{"x", make_float(0, 1)},
                        {"n", make_int(1, 64, true)},
                        {"c", make_categorical({"a", "b", "c"})}};
  auto study = in_memory_study(std::make_shared<NSGAIISampler>(o), kTwoMinimized);
  testing::run_trials(
      *study, space,
      [](const FrozenTrial& t) {
        return std::vector<double>{t.params.at("x"),
                                   (1 - t.params.at("x")) * std::log(t.params.at("n"))};
      },
      60);
  const auto trials = study->get_trials();
  int blended = 0;
  for (int i = 4; i < 60; ++i) {
    const auto& t = trials[i];
    const auto& parents = t.system_attrs.at("nsga2:parents");
    REQUIRE(parents.size() == 2);
    const auto& p0 = trials[parents[0].get<int>()];
    const auto& p1 = trials[parents[1].get<int>()];
    const double x = t.params.at("x"), n = t.params.at("n");
    CHECK(x >= 0.0);
    CHECK(x <= 1.0);
    CHECK(n >= 1.0);
    CHECK(n <= 64.0);
    CHECK(n == std::round(n));
    CHECK((t.params.at("c") == p0.params.at("c") || t.params.at("c") == p1.params.at("c")));
    blended += x != p0.params.at("x") && x != p1.params.at("x");
  }
  // About half of the 56 children take an SBX offspring for x (a few parents coincide).
  CHECK(blended > 10);
  NSGAIISampler::Options bad = opts(4);
  bad.sbx_eta = 0.0;
  CHECK_THROWS_WITH_AS(NSGAIISampler{bad}, doctest::Contains("sbx_eta = 0"), std::invalid_argument);
}
