// Search quality on the standard test problems DESIGN promises search/ is checked on (ZDT1,
// ZDT2, DTLZ2; search/problems.h): NSGA-II and multi-objective TPE, run through the real Study
// with a small budget and fixed seeds, must keep most of their measured hypervolume lead over
// random sampling.
//
// How the floors were derived: each (problem, sampler) was run once at the budget below for
// seeds 0, 1, 2 with the samplers of the commit that added this test, and the median
// hypervolume recorded in kMeasured (a failure prints this run's row in the same form). The
// runs are deterministic, so the same code reproduces them exactly; the floor a sampler must
// reach is RandomSampler's measured median plus kKeptLead (90%) of the sampler's measured lead
// over it. A sampler change that loses more than a tenth of that lead on any problem fails
// here; RandomSampler itself must reproduce its measured value (it is the baseline to beat).
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "search/hypervolume.h"
#include "search/nsga2_sampler.h"
#include "search/problems.h"
#include "search/random_sampler.h"
#include "search/tpe_sampler.h"
#include "tests/search/study_util.h"

using namespace compsearch::search;
using compsearch::search::testing::ParamList;

namespace {

// The budget: enough for NSGA-II (population 20) to run 10 generations, and for TPE to leave
// its 10 random start-up trials far behind, in a few seconds for the whole test.
constexpr int kTrials = 200;
constexpr int kPopulation = 20;
constexpr uint64_t kSeeds[] = {0, 1, 2};
// The share of its measured lead over random sampling a sampler must keep.
constexpr double kKeptLead = 0.9;

struct Problem {
  const char* name;
  size_t n_variables;
  std::vector<StudyDirection> directions;
  std::vector<double> (*evaluate)(const std::vector<double>&);
  Point reference;  // as bench/bench_samplers.cpp uses: 1.1 x the worst corner of the front
};

std::vector<double> dtlz2_3(const std::vector<double>& x) { return dtlz2(x, 3); }

const std::vector<Problem>& problems() {
  static const std::vector<Problem> p = {
      {"zdt1", 30, std::vector<StudyDirection>(2, StudyDirection::kMinimize), zdt1, {1.1, 11.0}},
      {"zdt2", 30, std::vector<StudyDirection>(2, StudyDirection::kMinimize), zdt2, {1.1, 11.0}},
      {"dtlz2",
       12,
       std::vector<StudyDirection>(3, StudyDirection::kMinimize),
       dtlz2_3,
       {4.4, 4.4, 4.4}},
  };
  return p;
}

std::shared_ptr<Sampler> make(const std::string& sampler, uint64_t seed) {
  if (sampler == "RandomSampler") return std::make_shared<RandomSampler>(seed);
  if (sampler == "NSGAIISampler") {
    NSGAIISampler::Options o;
    o.population_size = kPopulation;
    o.seed = seed;
    return std::make_shared<NSGAIISampler>(o);
  }
  TPESampler::Options o;
  o.seed = seed;
  return std::make_shared<TPESampler>(o);
}

double hypervolume_of_run(const Problem& p, const std::string& sampler, uint64_t seed) {
  ParamList params;
  std::vector<std::string> names;
  for (size_t i = 0; i < p.n_variables; ++i) {
    names.push_back("x" + std::to_string(i));
    params.emplace_back(names.back(), make_float(0, 1));
  }
  auto study = testing::in_memory_study(make(sampler, seed), p.directions);
  testing::run_trials(
      *study, params,
      [&](const FrozenTrial& t) {
        std::vector<double> x;
        for (const auto& n : names) x.push_back(t.params.at(n));
        return p.evaluate(x);
      },
      kTrials);
  std::vector<Point> values;
  for (const auto& t : study->get_trials({TrialState::kComplete})) values.push_back(t.values);
  REQUIRE(values.size() == static_cast<size_t>(kTrials));
  return hypervolume(values, p.reference);
}

double median_hypervolume(const Problem& p, const std::string& sampler) {
  std::vector<double> hv;
  for (uint64_t seed : kSeeds) hv.push_back(hypervolume_of_run(p, sampler, seed));
  std::sort(hv.begin(), hv.end());
  return hv[hv.size() / 2];
}

struct Measured {
  const char* problem;
  double random, nsga2, tpe;  // median hypervolume over kSeeds
};
const Measured kMeasured[] = {
    {"zdt1", 8.585232, 9.244352, 9.613444},
    {"zdt2", 7.269355, 8.427958, 7.833672},
    {"dtlz2", 81.741438, 82.369056, 84.068376},
};

}  // namespace

TEST_CASE("NSGA-II and TPE keep their measured hypervolume lead over random on ZDT1, ZDT2, DTLZ2") {
  REQUIRE(std::size(kMeasured) == problems().size());
  for (size_t i = 0; i < problems().size(); ++i) {
    const Problem& p = problems()[i];
    const Measured& m = kMeasured[i];
    REQUIRE(std::string(m.problem) == p.name);
    CAPTURE(std::string(p.name));
    const double random = median_hypervolume(p, "RandomSampler");
    const double nsga2 = median_hypervolume(p, "NSGAIISampler");
    const double tpe = median_hypervolume(p, "TPESampler");
    char now[160];  // this run as a kMeasured row, for a deliberate re-measurement
    std::snprintf(now, sizeof now, "{\"%s\", %.6f, %.6f, %.6f}", p.name, random, nsga2, tpe);
    INFO("measured now: " << now);
    CHECK(random == doctest::Approx(m.random).epsilon(1e-6));
    CHECK(nsga2 >= m.random + kKeptLead * (m.nsga2 - m.random));
    CHECK(tpe >= m.random + kKeptLead * (m.tpe - m.random));
    // The floors mean something only if the measured runs did beat random sampling.
    CHECK(m.nsga2 > m.random);
    CHECK(m.tpe > m.random);
  }
}
