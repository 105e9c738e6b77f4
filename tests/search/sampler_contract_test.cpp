// One contract for every sampler (Random, Grid, NSGA-II, TPE in its variants), run through the
// real Study over an InMemoryStorage: proposed values lie in their distributions; the same seed
// gives the same trials; a fresh Study and sampler per ask (what CLI processes do) gives the
// same trials as one sampler in-process; another seed differs.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <memory>

#include "search/in_memory_storage.h"
#include "search/sampler_factory.h"
#include "search/sampler_internal.h"
#include "search/study.h"
#include "tests/search/study_util.h"

using namespace compsearch::search;
using compsearch::search::testing::ParamList;
using compsearch::search::testing::TrialFunction;

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
  nlohmann::json kw = c.kwargs;
  kw["seed"] = seed;
  auto make = [&] { return std::shared_ptr<Sampler>(make_sampler(c.cls, kw)); };
  TrialFunction objective = [&](const FrozenTrial& t) {
    auto v = two_objectives(t);
    v.resize(c.n_objectives);
    return v;
  };
  TrialFunction constraints;
  if (c.constrained) {
    constraints = [](const FrozenTrial& t) { return std::vector<double>{t.params.at("x") - 3.0}; };
  }
  const ParamList space = mixed_space();
  auto storage = std::make_shared<InMemoryStorage>();
  auto study = Study::create(storage, testing::kTestStudyName, dirs, make());
  for (int i = 0; i < n_trials; ++i) {
    // A CLI `ask` is a new process: a new Study object and a new sampler on the same storage.
    if (fresh) study = Study::load(storage, testing::kTestStudyName, make());
    testing::ask_and_tell(*study, space, objective, constraints);
  }
  std::vector<std::map<std::string, double>> out;
  for (const auto& t : study->get_trials()) {
    CHECK(t.state == TrialState::kComplete);
    for (const auto& entry : space) {
      const std::string& name = entry.first;  // not a structured binding: clang 14's INFO
      INFO(c.name << ": trial " << t.number << " param " << name);
      REQUIRE(t.params.count(name));
      CHECK(contains(entry.second, t.params.at(name)));
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

namespace {

// A fingerprint of every proposed value's bit pattern, trial by trial, names in order (the
// samplers' own 64-bit FNV-1a over the bytes).
uint64_t digest(const std::vector<std::map<std::string, double>>& trials) {
  std::string bytes;
  for (const auto& params : trials) {
    for (const auto& [name, v] : params) {
      char b[sizeof v];
      std::memcpy(b, &v, sizeof v);
      bytes.append(b, sizeof v);
    }
  }
  return internal::hash_name(bytes);
}

}  // namespace

TEST_CASE("Every sampler's fixed-seed proposals are those it made before refactoring") {
  // Recorded from the samplers as they were before search/ was refactored (one SplitMix64, one
  // FNV-1a, one Pareto front, tpe_sampler.cpp split by topic): refactoring must keep every
  // proposal bit for bit. Seed 3, 40 trials of the mixed space above; `x_39` is trial 39's x.
  struct Golden {
    const char* name;
    uint64_t digest;
    double x_39;
  };
  const std::vector<Golden> golden = {
      {"RandomSampler", 0x934e83a46d44e8beULL, -1.6742372661945994},
      {"GridSampler", 0xd7ff13887c8a4fd5ULL, 0},
      {"NSGAIISampler", 0x87ae32f4fb5a1983ULL, -4.3809005046893734},
      {"NSGAIISampler with constraints", 0xb011b317cee23197ULL, -0.39200994373222642},
      {"TPESampler single-objective", 0x1df940f8b521693aULL, 1.2941689564598915},
      {"TPESampler multivariate", 0x26d95ee781fa851bULL, -0.67463022217608581},
      {"TPESampler multi-objective (MOTPE)", 0x032c61987210db37ULL, -2.486619506573958},
      {"TPESampler MOTPE multivariate with constraints", 0x34b366526189b5f0ULL,
       -2.9765201732071613},
      {"TPESampler constant liar", 0x1df940f8b521693aULL, 1.2941689564598915},
  };
  const auto cs = configs();
  REQUIRE(golden.size() == cs.size());
  for (size_t i = 0; i < cs.size(); ++i) {
    CAPTURE(std::string(cs[i].name));
    const auto trials = run(cs[i], 3, false, 40);
    REQUIRE(trials.size() == 40);
    CHECK(golden[i].name == std::string(cs[i].name));
    CHECK(digest(trials) == golden[i].digest);
    CHECK(trials[39].at("x") == golden[i].x_39);
  }
}
