// One contract for every sampler (Random, Grid, NSGA-II, TPE in its variants): proposed values
// lie in their distributions; the same seed gives the same trials; a fresh sampler per ask (what
// CLI processes do) gives the same trials as one sampler in-process; another seed differs.
#include <doctest/doctest.h>

#include <cmath>
#include <functional>
#include <memory>

#include "search/sampler_factory.h"
#include "tests/search/mini_study.h"

using namespace compsearch::search;
using compsearch::search::testing::MiniStudy;
using compsearch::search::testing::ParamList;

namespace {

ParamList mixed_space() {
  return {{"x", make_float(-5, 5)},
          {"lr", make_float(1e-5, 1e-1, true)},
          {"drop", make_float(0, 0.5, false, 0.1)},
          {"n", make_int(1, 10)},
          {"units", make_int(8, 512, true)},
          {"bits", make_int(2, 8, false, 2)},
          {"act", make_categorical({"relu", "tanh", nullptr, 1.5, true})},
          {"fixed", make_float(1, 1)}};
}

std::vector<double> two_objectives(const FrozenTrial& t) {
  const double x = t.params.at("x");
  const double act = t.params.at("act");
  return {x * x + t.params.at("n") + act, (x - 2) * (x - 2) + std::log(t.params.at("lr")) +
                                              t.params.at("bits") / 8.0 + t.params.at("drop")};
}

struct Config {
  const char* name;
  const char* cls;
  nlohmann::json kwargs;  // without "seed"
  int n_objectives;
  bool constrained;
};

std::vector<Config> configs() {
  nlohmann::json grid = {{"x", {-1, 0, 2.5}},
                         {"lr", {1e-4, 1e-2}},
                         {"drop", {0.0, 0.3}},
                         {"n", {1, 7}},
                         {"units", {8, 64}},
                         {"bits", {2, 8}},
                         {"act", {"relu", nullptr, true}},
                         {"fixed", {1.0}}};
  return {
      {"RandomSampler", "RandomSampler", nlohmann::json::object(), 2, false},
      {"GridSampler", "GridSampler", {{"search_space", grid}}, 2, false},
      {"NSGAIISampler", "NSGAIISampler", {{"population_size", 8}}, 2, false},
      {"NSGAIISampler with constraints", "NSGAIISampler", {{"population_size", 6}}, 2, true},
      {"TPESampler single-objective", "TPESampler", {{"n_startup_trials", 5}}, 1, false},
      {"TPESampler multivariate",
       "TPESampler",
       {{"n_startup_trials", 5}, {"multivariate", true}},
       1,
       false},
      {"TPESampler multi-objective (MOTPE)", "TPESampler", {{"n_startup_trials", 5}}, 2, false},
      {"TPESampler MOTPE multivariate with constraints",
       "TPESampler",
       {{"n_startup_trials", 5}, {"multivariate", true}},
       2,
       true},
      {"TPESampler constant liar",
       "TPESampler",
       {{"n_startup_trials", 5}, {"constant_liar", true}},
       1,
       false},
  };
}

std::vector<std::map<std::string, double>> run(const Config& c, uint64_t seed, bool fresh,
                                               int n_trials) {
  std::vector<StudyDirection> dirs(c.n_objectives, StudyDirection::kMinimize);
  if (c.n_objectives == 2) dirs[1] = StudyDirection::kMaximize;
  MiniStudy study(dirs);
  nlohmann::json kw = c.kwargs;
  kw["seed"] = seed;
  auto make = [&] { return make_sampler(c.cls, kw); };
  auto objective = [&](const FrozenTrial& t) {
    auto v = two_objectives(t);
    v.resize(c.n_objectives);
    return v;
  };
  std::function<std::vector<double>(const FrozenTrial&)> constraints;
  if (c.constrained) {
    constraints = [](const FrozenTrial& t) { return std::vector<double>{t.params.at("x") - 3.0}; };
  }
  study.optimize(make, mixed_space(), objective, n_trials, fresh, constraints);
  std::vector<std::map<std::string, double>> out;
  const ParamList space = mixed_space();
  for (const auto& t : study.trials()) {
    for (const auto& [name, dist] : space) {
      INFO(c.name << ": trial " << t.number << " param " << name);
      REQUIRE(t.params.count(name));
      CHECK(contains(dist, t.params.at(name)));
    }
    out.push_back(t.params);
  }
  return out;
}

}  // namespace

TEST_CASE(
    "Every sampler proposes valid values, deterministically per seed, in one process or many") {
  for (const Config& c : configs()) {
    SUBCASE(c.name) {
      const int n = 40;
      const auto a = run(c, 3, false, n);
      const auto b = run(c, 3, false, n);
      const auto fresh = run(c, 3, true, n);
      const auto other = run(c, 4, false, n);
      CHECK(a == b);
      CHECK(a == fresh);
      CHECK(a != other);
      // Not every trial is the same point (a sampler that ignores its RNG would pass the above).
      size_t distinct = 0;
      for (size_t i = 1; i < a.size(); ++i) distinct += a[i] != a[0];
      CHECK(distinct > 30);
    }
  }
}

TEST_CASE("make_sampler rejects unknown classes, unknown keywords and bad values by name") {
  CHECK_THROWS_WITH_AS(make_sampler("CmaEsSampler", {}),
                       doctest::Contains("unknown sampler \"CmaEsSampler\""),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(make_sampler("TPESampler", {{"n_startup", 3}}),
                       doctest::Contains("unknown or unsupported keyword argument \"n_startup\""),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(make_sampler("NSGAIISampler", {{"population_size", 1}}),
                       "NSGAIISampler: population_size = 1, expected >= 2", std::invalid_argument);
  CHECK_THROWS_WITH_AS(make_sampler("NSGAIISampler", {{"mutation_prob", 1.5}}),
                       doctest::Contains("mutation_prob = 1.5"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(make_sampler("RandomSampler", {{"seed", -1}}),
                       "RandomSampler: seed = -1, expected a non-negative integer or null",
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(make_sampler("TPESampler", {{"multivariate", "yes"}}),
                       "TPESampler: multivariate = \"yes\", expected true or false",
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(make_sampler("GridSampler", {{"seed", 0}}),
                       doctest::Contains("\"search_space\" is required"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(
      make_sampler("GridSampler", {{"search_space", {{"x", nlohmann::json::array()}}}}),
      doctest::Contains("search_space[\"x\"] = []"), std::invalid_argument);
  CHECK_THROWS_AS(make_sampler("TPESampler", nlohmann::json::array()), std::invalid_argument);
  CHECK(make_sampler("TPESampler", nullptr) != nullptr);
  CHECK(make_sampler("NSGAIISampler",
                     {{"mutation_prob", nullptr}, {"crossover", "UniformCrossover"}}) != nullptr);
}
