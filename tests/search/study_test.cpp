// Study and Trial: Optuna's ask/tell checks, suggest rules, optimize on several workers with a
// failing objective, best_trials on hand-computed fronts, and RandomSampler's determinism.
#include "search/study.h"

#include <doctest/doctest.h>

#include <atomic>
#include <cmath>
#include <limits>
#include <set>

#include "search/in_memory_storage.h"
#include "search/journal_storage.h"
#include "search/random_sampler.h"
#include "search_test_util.h"

using namespace compsearch::search;

namespace {

std::unique_ptr<Study> new_study(std::vector<StudyDirection> dirs = {StudyDirection::kMinimize},
                                 uint64_t seed = 1) {
  return Study::create(std::make_shared<InMemoryStorage>(), "s", dirs,
                       std::make_shared<RandomSampler>(seed));
}

FrozenTrial complete(int64_t number, std::vector<double> values,
                     std::optional<std::vector<double>> constraints = {}) {
  FrozenTrial t;
  t.number = number;
  t.state = TrialState::kComplete;
  t.values = std::move(values);
  if (constraints) t.system_attrs["constraints"] = *constraints;
  return t;
}

std::vector<int64_t> numbers(const std::vector<FrozenTrial>& ts) {
  std::vector<int64_t> out;
  for (const auto& t : ts) out.push_back(t.number);
  return out;
}

}  // namespace

TEST_CASE("tell enforces Optuna's state and value checks") {
  auto study = new_study({StudyDirection::kMinimize, StudyDirection::kMaximize});
  auto t0 = study->ask();
  CHECK_THROWS_WITH_AS(study->tell(7, std::vector<double>{1, 2}),
                       "Cannot tell for trial with number 7 since it has not been created.",
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(
      study->tell(0, std::nullopt, TrialState::kComplete),
      "No values were told. Values are required when state is TrialState.COMPLETE.",
      std::invalid_argument);
  CHECK_THROWS_WITH_AS(
      study->tell(0, std::vector<double>{1, 2}, TrialState::kFail),
      doctest::Contains(
          "Values cannot be specified when state is TrialState.PRUNED or TrialState.FAIL"),
      std::invalid_argument);
  CHECK_THROWS_WITH_AS(study->tell(0, std::vector<double>{1}, TrialState::kComplete),
                       "The number of the values 1 did not match the number of the objectives 2.",
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(study->tell(0, std::vector<double>{1, std::nan("")}, TrialState::kComplete),
                       "The value nan is not acceptable.", std::invalid_argument);
  CHECK_THROWS_WITH_AS(study->tell(0, std::nullopt, TrialState::kRunning),
                       "Cannot tell with state RUNNING.", std::invalid_argument);
  auto done = study->tell(0, std::vector<double>{1, 2});
  CHECK(done.state == TrialState::kComplete);
  CHECK(done.values == std::vector<double>{1, 2});
  CHECK_THROWS_WITH_AS(study->tell(0, std::vector<double>{1, 2}), "Cannot tell a COMPLETE trial.",
                       std::invalid_argument);
  CHECK(study->tell(0, std::nullopt, TrialState::kFail, /*skip_if_finished=*/true).state ==
        TrialState::kComplete);

  auto t1 = study->ask();
  auto failed = study->tell(1, std::vector<double>{1});  // no state, wrong count: FAIL as Optuna
  CHECK(failed.state == TrialState::kFail);
  CHECK(failed.values.empty());
  CHECK(failed.system_attrs.at(kFailReasonAttr) ==
        "The number of the values 1 did not match the number of the objectives 2.");
}

TEST_CASE("a pruned trial keeps its last intermediate value, as Optuna does") {
  auto study = new_study();
  auto t = study->ask();
  t.report(3.0, 0);
  t.report(2.0, 5);
  t.report(9.0, 5);  // the first report of a step wins
  CHECK_THROWS_AS(t.report(1.0, -1), std::invalid_argument);
  auto pruned = study->tell(0, std::nullopt, TrialState::kPruned);
  CHECK(pruned.state == TrialState::kPruned);
  CHECK(pruned.values == std::vector<double>{2.0});
  CHECK(pruned.intermediate_values == std::map<int64_t, double>{{0, 3.0}, {5, 2.0}});
}

TEST_CASE("suggest returns the first value of a name and follows enqueued fixed params") {
  auto study = new_study();
  study->enqueue_trial({{"x", 0.75}, {"c", "b"}});
  auto t = study->ask();
  CHECK(t.suggest_float("x", 0, 1) == 0.75);
  CHECK(t.suggest_categorical("c", {"a", "b"}) == "b");
  CHECK(t.suggest_float("x", 0, 1) == 0.75);
  CHECK_THROWS_WITH_AS(t.suggest_int("x", 0, 1), doctest::Contains("different distribution kind"),
                       std::invalid_argument);
  CHECK(t.suggest_int("single", 4, 5, 2) == 4);  // one possible value
  int64_t n = t.suggest_int("n", 1, 9, 2);
  CHECK(n % 2 == 1);
  CHECK(t.params().size() == 4);
  CHECK(t.params()[0].first == "x");
  CHECK(t.params()[3].first == "n");
  auto stored = study->get_trials()[0];
  CHECK(stored.param("c") == "b");
  CHECK(stored.param("n") == n);
}

TEST_CASE("RandomSampler is deterministic per seed and stays on each distribution's grid") {
  auto space =
      std::vector<std::pair<std::string, Distribution>>{{"f", make_float(-1, 1)},
                                                        {"lg", make_float(1e-4, 1, true)},
                                                        {"st", make_float(0, 1, false, 0.25)},
                                                        {"i", make_int(0, 10, false, 5)},
                                                        {"il", make_int(1, 100, true)},
                                                        {"c", make_categorical({"a", "b", "c"})}};
  auto run = [&](uint64_t seed) {
    auto study = new_study({StudyDirection::kMinimize}, seed);
    std::vector<nlohmann::json> out;
    for (int k = 0; k < 40; ++k) {
      auto t = study->ask(space);
      for (const auto& [name, v] : t.params()) out.push_back(v);
      study->tell(t.number(), std::vector<double>{0.0});
    }
    return out;
  };
  auto a = run(5), b = run(5), c = run(6);
  CHECK(a == b);
  CHECK(a != c);
  std::set<std::string> cats;
  std::set<int64_t> ints;
  for (size_t k = 0; k < a.size(); k += 6) {
    CHECK(a[k].get<double>() >= -1);
    CHECK(a[k].get<double>() < 1);
    CHECK(a[k + 1].get<double>() >= 1e-4);
    CHECK(a[k + 1].get<double>() < 1);
    double st = a[k + 2].get<double>();
    CHECK(st * 4 == std::floor(st * 4));
    ints.insert(a[k + 3].get<int64_t>());
    int64_t il = a[k + 4].get<int64_t>();
    CHECK(il >= 1);
    CHECK(il <= 100);
    cats.insert(a[k + 5].get<std::string>());
  }
  CHECK(ints == std::set<int64_t>{0, 5, 10});
  CHECK(cats == std::set<std::string>{"a", "b", "c"});
}

TEST_CASE(
    "optimize on four workers records a failing objective as FAIL with its reason and goes on") {
  compsearch::search::testing::TempDir dir;
  auto storage = std::make_shared<JournalStorage>(dir.file("j.log"), JournalOptions{30.0, false});
  auto study =
      Study::create(storage, "s", {StudyDirection::kMinimize}, std::make_shared<RandomSampler>(3));
  std::atomic<int> calls{0};
  study->optimize(
      [&](Trial& t) -> std::vector<double> {
        ++calls;
        double x = t.suggest_float("x", 0, 1);
        if (t.number() % 5 == 2) throw std::runtime_error("diverged at x=" + std::to_string(x));
        if (t.number() % 5 == 4) throw TrialPruned();
        return {x};
      },
      30, 4);
  auto trials = study->get_trials();
  REQUIRE(trials.size() == 30);
  CHECK(calls == 30);
  int fails = 0, pruned = 0;
  for (size_t i = 0; i < trials.size(); ++i) {
    CHECK(trials[i].number == static_cast<int64_t>(i));
    if (trials[i].number % 5 == 2) {
      ++fails;
      CHECK(trials[i].state == TrialState::kFail);
      CHECK(trials[i]
                .system_attrs.at(kFailReasonAttr)
                .get<std::string>()
                .rfind("diverged at x=", 0) == 0);
    } else if (trials[i].number % 5 == 4) {
      ++pruned;
      CHECK(trials[i].state == TrialState::kPruned);
    } else {
      CHECK(trials[i].state == TrialState::kComplete);
      CHECK(trials[i].values[0] == trials[i].param("x").get<double>());
    }
  }
  CHECK(fails == 6);
  CHECK(pruned == 6);
  CHECK_THROWS_AS(study->optimize([](Trial&) { return std::vector<double>{0}; }, 0),
                  std::invalid_argument);
}

TEST_CASE("best_trials keeps the feasible non-dominated trials, ties included") {
  const std::vector<StudyDirection> mm{StudyDirection::kMinimize, StudyDirection::kMaximize};
  // Hand-computed front for (min f0, max f1): #0 (1,1), #2 (2,3) and #4 (2,3) (a tie); #1 (3,2)
  // is dominated by #2, #3 (1,0) by #0; #5 (0,9) is infeasible.
  std::vector<FrozenTrial> ts = {
      complete(0, {1, 1}), complete(1, {3, 2}), complete(2, {2, 3}, std::vector<double>{-1}),
      complete(3, {1, 0}), complete(4, {2, 3}), complete(5, {0, 9}, std::vector<double>{0.1})};
  FrozenTrial running;
  running.number = 6;
  ts.push_back(running);
  CHECK(numbers(best_trials_of(ts, mm)) == std::vector<int64_t>{0, 2, 4});
  const std::vector<StudyDirection> mmm{StudyDirection::kMinimize, StudyDirection::kMinimize,
                                        StudyDirection::kMinimize};
  std::vector<FrozenTrial> t3 = {complete(0, {1, 2, 3}), complete(1, {2, 2, 3}),
                                 complete(2, {3, 1, 1}), complete(3, {1, 2, 3})};
  CHECK(numbers(best_trials_of(t3, mmm)) == std::vector<int64_t>{0, 2, 3});
  std::vector<FrozenTrial> single = {complete(0, {5}), complete(1, {2}), complete(2, {2})};
  CHECK(numbers(best_trials_of(single, {StudyDirection::kMinimize})) == std::vector<int64_t>{1});
  CHECK(numbers(best_trials_of(single, {StudyDirection::kMaximize})) == std::vector<int64_t>{0});
}

TEST_CASE("a study reopened from its journal sees the same trials") {
  compsearch::search::testing::TempDir dir;
  const auto path = dir.file("j.log");
  {
    auto study = Study::create(std::make_shared<JournalStorage>(path), "s",
                               {StudyDirection::kMaximize}, std::make_shared<RandomSampler>(9));
    study->set_user_attr("k", "v");
    study->optimize([](Trial& t) { return std::vector<double>{t.suggest_float("x", 0, 1)}; }, 5);
  }
  auto again = Study::load(std::make_shared<JournalStorage>(path), "s");
  auto trials = again->get_trials();
  REQUIRE(trials.size() == 5);
  CHECK(again->directions() == std::vector<StudyDirection>{StudyDirection::kMaximize});
  auto best = again->best_trials();
  REQUIRE(best.size() == 1);
  for (const auto& t : trials) CHECK(t.values[0] <= best[0].values[0]);
  CHECK_THROWS_WITH_AS(Study::load(std::make_shared<JournalStorage>(path), "nope"),
                       doctest::Contains("study \"nope\" does not exist"), StorageKeyError);
  CHECK_THROWS_AS(
      Study::create(std::make_shared<JournalStorage>(path), "s", {StudyDirection::kMaximize}),
      DuplicatedStudyError);
}
