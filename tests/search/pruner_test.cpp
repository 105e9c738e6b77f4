// Pruners against python3-optuna itself: tests/data/search/pruners.json holds Optuna's
// should_prune() decision at every report of seeded ask/tell studies (several trials running at
// once, NaN and infinite values, mixed step patterns, both directions, several study names for
// Hyperband's brackets) and the "completed_rung_<K>" attributes Optuna wrote. These tests replay
// the same events through compsearch's Study (InMemoryStorage) and pruner and require every
// decision and attribute to be equal.
//
// Regenerate the fixture with Debian's python: /usr/bin/python3 scripts/make_pruner_fixtures.py
#include "search/pruner.h"

#include <doctest/doctest.h>

#include <atomic>
#include <cmath>
#include <fstream>
#include <limits>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>

#include "search/in_memory_storage.h"
#include "search/journal_storage.h"
#include "search/python_json.h"
#include "search/random_sampler.h"
#include "search/study.h"
#include "search_test_util.h"
#include "tests/test_skip.h"

using namespace compsearch::search;

namespace {

const nlohmann::json& fixture() {
  static const nlohmann::json doc = [] {
    std::ifstream in(std::string(COMPSEARCH_TEST_DATA) + "/search/pruners.json");
    REQUIRE_MESSAGE(in.good(),
                    "tests/data/search/pruners.json is missing "
                    "(/usr/bin/python3 scripts/make_pruner_fixtures.py)");
    std::stringstream ss;
    ss << in.rdbuf();
    return parse_python_json(ss.str());
  }();
  return doc;
}

std::unique_ptr<Study> new_study(const std::string& name, StudyDirection direction,
                                 std::shared_ptr<Pruner> pruner) {
  StudyOptions options;
  options.pruner = std::move(pruner);
  return Study::create(std::make_shared<InMemoryStorage>(), name, {direction},
                       std::make_shared<RandomSampler>(0), false, options);
}

std::map<std::string, nlohmann::json> rung_attrs(const FrozenTrial& t) {
  std::map<std::string, nlohmann::json> out;
  for (const auto& [k, v] : t.system_attrs) {
    if (k.rfind("completed_rung_", 0) == 0) out[k] = v;
  }
  return out;
}

// Runs events [first, last) of fixture case `k` on `study`, checking each should_prune() against
// Optuna's; returns the number of decisions compared. Trials started by another process (the
// shared-journal test) are reported through the storage, as Trial::report would.
size_t run_events(Study& study, const nlohmann::json& k, size_t first, size_t last) {
  std::map<int64_t, Trial> running;
  int64_t next_number = 0;
  for (size_t i = 0; i < first; ++i) next_number += k.at("events")[i].at(0) == "a";
  size_t compared = 0, mismatches = 0;
  for (size_t i = first; i < last; ++i) {
    const auto& e = k.at("events")[i];
    const std::string op = e.at(0).get<std::string>();
    if (op == "a") {
      Trial t = study.ask();
      REQUIRE(t.number() == next_number++);
      running.emplace(t.number(), std::move(t));
    } else if (op == "r") {
      const int64_t number = e.at(1).get<int64_t>(), step = e.at(2).get<int64_t>();
      const double value = e.at(3).get<double>();
      bool decision;
      if (auto it = running.find(number); it != running.end()) {
        it->second.report(value, step);
        decision = it->second.should_prune();
      } else {
        const FrozenTrial t = study.get_trials_from(number).at(0);
        if (!t.intermediate_values.count(step))
          study.storage().set_trial_intermediate_value(t.trial_id, step, value);
        decision = study.should_prune(number);
      }
      ++compared;
      if (decision != e.at(4).get<bool>()) {
        ++mismatches;
        CHECK_MESSAGE(decision == e.at(4).get<bool>(), "event " << i << ": trial " << number
                                                                << " step " << step << " value "
                                                                << e.at(3).dump());
        if (mismatches >= 5) FAIL("too many mismatches in this case");
      }
    } else if (op == "t") {
      const int64_t number = e.at(1).get<int64_t>();
      const TrialState state = trial_state_from_string(e.at(2).get<std::string>());
      std::optional<std::vector<double>> values;
      if (state == TrialState::kComplete) values = std::vector<double>{e.at(3).get<double>()};
      study.tell(number, values, state);
      running.erase(number);
    } else {
      FAIL("unknown event " << e.dump());
    }
  }
  return compared;
}

// Every trial's "completed_rung_<K>" attributes equal `expected` ({number: {key: value}}).
void check_rung_attrs(const Study& study, const nlohmann::json& expected) {
  size_t with_rungs = 0;
  for (const auto& t : study.get_trials()) {
    const auto got = rung_attrs(t);
    const std::string key = std::to_string(t.number);
    if (!got.empty()) ++with_rungs;
    std::map<std::string, nlohmann::json> want;
    if (expected.contains(key)) {
      for (const auto& [name, v] : expected.at(key).items()) want[name] = v;
    }
    CHECK_MESSAGE(nlohmann::json(got) == nlohmann::json(want), "trial " << t.number);
  }
  CHECK(with_rungs == expected.size());
}

std::string describe(size_t c, const nlohmann::json& k) {
  return "case " + std::to_string(c) + ": " + k.at("pruner").get<std::string>() + " " +
         k.at("kwargs").dump() + " " + k.at("direction").get<std::string>() + " study \"" +
         k.at("study_name").get<std::string>() + "\"";
}

// Replays every fixture case of Optuna class `cls` (and says how many decisions it compared).
void replay(const std::string& cls) {
  size_t compared = 0, cases = 0;
  const auto& all = fixture().at("cases");
  for (size_t c = 0; c < all.size(); ++c) {
    const auto& k = all[c];
    if (k.at("pruner") != cls) continue;
    ++cases;
    INFO(describe(c, k));
    auto study = new_study(k.at("study_name").get<std::string>(),
                           direction_from_string(k.at("direction").get<std::string>()),
                           make_pruner(cls, k.at("kwargs")));
    REQUIRE(study->pruner().name() == cls);
    compared += run_events(*study, k, 0, k.at("events").size());
    check_rung_attrs(*study, k.at("rung_attrs"));
  }
  REQUIRE(cases > 0);
  MESSAGE(cls << ": " << compared << " decisions of Optuna " << fixture().at("optuna_version")
              << " compared in " << cases << " studies");
}

}  // namespace

TEST_CASE("the pruner fixture covers every pruner with enough decisions") {
  const auto& doc = fixture();
  std::set<std::string> classes;
  size_t decisions = 0, prunes = 0;
  for (const auto& c : doc.at("cases")) {
    classes.insert(c.at("pruner").get<std::string>());
    for (const auto& e : c.at("events")) {
      if (e.at(0) == "r") {
        ++decisions;
        prunes += e.at(4).get<bool>();
      }
    }
  }
  CHECK(classes == std::set<std::string>{"NopPruner", "MedianPruner", "PercentilePruner",
                                         "SuccessiveHalvingPruner", "HyperbandPruner",
                                         "ThresholdPruner", "PatientPruner"});
  CHECK(decisions == doc.at("n_decisions").get<size_t>());
  CHECK(decisions > 5000);
  CHECK(prunes > 500);
}

TEST_CASE("NopPruner decides as Optuna") { replay("NopPruner"); }
TEST_CASE("MedianPruner decides as Optuna") { replay("MedianPruner"); }
TEST_CASE("PercentilePruner decides as Optuna") { replay("PercentilePruner"); }
TEST_CASE("SuccessiveHalvingPruner decides and records rungs as Optuna") {
  replay("SuccessiveHalvingPruner");
}
TEST_CASE("HyperbandPruner decides and records rungs as Optuna, per bracket") {
  replay("HyperbandPruner");
}
TEST_CASE("ThresholdPruner decides as Optuna") { replay("ThresholdPruner"); }
TEST_CASE("PatientPruner decides as Optuna") { replay("PatientPruner"); }

TEST_CASE("MedianPruner by hand: the median of the completed trials at the step") {
  auto study = new_study("hand", StudyDirection::kMinimize,
                         make_pruner("median", {{"n_startup_trials", 3}}));
  for (double v : {1.0, 2.0, 4.0}) {  // median at step 0: 2
    Trial t = study->ask();
    t.report(v, 0);
    study->tell(t.number(), std::vector<double>{v});
  }
  Trial a = study->ask();
  a.report(2.5, 0);
  CHECK(a.should_prune());  // 2.5 > 2
  Trial b = study->ask();
  b.report(2.0, 0);
  CHECK_FALSE(b.should_prune());  // not worse than the median
  Trial c = study->ask();
  c.report(std::numeric_limits<double>::quiet_NaN(), 0);
  CHECK(c.should_prune());  // only NaN so far
  Trial d = study->ask();
  d.report(1.0, 1);  // no completed trial reported step 1
  CHECK_FALSE(d.should_prune());
}

TEST_CASE("SuccessiveHalvingPruner by hand: rung attributes and promotion") {
  auto study =
      new_study("sh", StudyDirection::kMaximize,
                make_pruner("successive_halving", {{"min_resource", 1}, {"reduction_factor", 2}}));
  Trial a = study->ask();
  a.report(0.5, 0);
  CHECK_FALSE(a.should_prune());  // step 0 < rung 0's step 1
  a.report(0.6, 1);
  CHECK_FALSE(a.should_prune());  // alone in rung 0: promoted
  CHECK(study->get_trials()[0].system_attrs.at("completed_rung_0") == 0.6);
  Trial b = study->ask();
  b.report(0.1, 1);
  CHECK(b.should_prune());  // 2 competitors, top 1 kept: 0.6 wins
  CHECK(study->get_trials()[1].system_attrs.at("completed_rung_0") == 0.1);
  CHECK_FALSE(study->get_trials()[1].system_attrs.count("completed_rung_1"));
}

TEST_CASE("should_prune: Optuna's default pruner, multi-objective and unknown trials") {
  auto study = Study::create(std::make_shared<InMemoryStorage>(), "d", {StudyDirection::kMinimize});
  CHECK(study->pruner().name() == "MedianPruner");
  study->set_pruner(make_pruner("nop", nullptr));
  CHECK(study->pruner().name() == "NopPruner");
  CHECK_THROWS_AS(study->should_prune(0), std::invalid_argument);
  auto multi = Study::create(std::make_shared<InMemoryStorage>(), "m",
                             {StudyDirection::kMinimize, StudyDirection::kMaximize});
  Trial t = multi->ask();
  CHECK_THROWS_AS(multi->should_prune(t.number()), std::logic_error);
}

TEST_CASE("make_pruner rejects what Optuna's constructors reject") {
  size_t checked = 0;
  for (const auto& c : fixture().at("kwargs_checks")) {
    const std::string cls = c.at("pruner").get<std::string>();
    INFO(cls << " " << c.at("kwargs").dump());
    if (c.at("optuna_raises").get<bool>()) {
      CHECK_THROWS_AS(make_pruner(cls, c.at("kwargs")), std::invalid_argument);
    } else {
      CHECK_NOTHROW(make_pruner(cls, c.at("kwargs")));
    }
    ++checked;
  }
  CHECK(checked >= 20);
}

TEST_CASE("make_pruner names the key and what is allowed") {
  using nlohmann::json;
  auto message = [](const std::string& name, const json& kwargs) -> std::string {
    try {
      make_pruner(name, kwargs);
    } catch (const std::invalid_argument& e) {
      return e.what();
    }
    return "(no error)";
  };
  auto contains = [](const std::string& text, const std::string& part) {
    INFO(text);
    CHECK(text.find(part) != std::string::npos);
  };
  contains(message("Median", {}), "unknown pruner \"Median\"");
  contains(message("Median", {}), "successive_halving");
  contains(message("median", {{"n_startup", 1}}),
           "unknown or unsupported keyword argument \"n_startup\"");
  contains(message("median", {{"n_startup", 1}}), "n_startup_trials");
  contains(message("median", {{"interval_steps", 0}}),
           "interval_steps = 0, expected an integer >= 1");
  contains(message("median", {{"n_warmup_steps", 2.5}}),
           "n_warmup_steps = 2.5, expected an integer");
  contains(message("percentile", {}), "\"percentile\" is required");
  contains(message("percentile", {{"percentile", 101}}),
           "percentile = 101, expected a number in [0, 100]");
  contains(message("successive_halving", {{"min_resource", "max"}}),
           "min_resource = \"max\", expected an integer >= 1 or \"auto\"");
  contains(message("successive_halving", {{"bootstrap_count", 1}}), "bootstrap_count = 1");
  contains(message("hyperband", {{"bootstrap_count", 1}}), "max_resource is \"auto\"");
  contains(message("hyperband", {{"reduction_factor", 1}}), "reduction_factor = 1");
  contains(message("hyperband", {{"min_resource", 0}}), "min_resource = 0");
  contains(message("hyperband", {{"max_resource", 0}}), "max_resource = 0");
  contains(message("threshold", {}), "either \"lower\" or \"upper\"");
  contains(message("threshold", {{"lower", 2}, {"upper", 1}}), "lower = 2, expected <= upper = 1");
  contains(message("patient", {{"wrapped_pruner", nullptr}}), "\"patience\" is required");
  contains(message("patient", {{"patience", 1}, {"min_delta", -1}}), "min_delta = -1");
  contains(message("patient", {{"patience", 1}, {"wrapped_pruner", "median"}}), "wrapped_pruner");
  contains(
      message("patient",
              {{"patience", 1}, {"wrapped_pruner", {{"name", "median"}, {"kwargs", {{"x", 1}}}}}}),
      "PatientPruner: wrapped_pruner: MedianPruner: unknown or unsupported keyword argument \"x\"");
  contains(message("nop", json::array()), "must be a JSON object");
  for (const auto& [short_name, cls] :
       std::map<std::string, std::string>{{"nop", "NopPruner"},
                                          {"median", "MedianPruner"},
                                          {"successive_halving", "SuccessiveHalvingPruner"},
                                          {"hyperband", "HyperbandPruner"}}) {
    CHECK(make_pruner(short_name, nullptr)->name() == cls);
    CHECK(make_pruner(cls, json::object())->name() == cls);
  }
  CHECK(make_pruner("percentile", {{"percentile", 10}})->name() == "PercentilePruner");
  CHECK(make_pruner("threshold", {{"upper", 1}})->name() == "ThresholdPruner");
  CHECK(make_pruner("patient", {{"patience", 0}})->name() == "PatientPruner");
}

TEST_CASE("compsearch and Optuna workers prune one journal study alike, either one first") {
  using compsearch::search::testing::run_command;
  using compsearch::search::testing::shell_quote;
  if (run_command("/usr/bin/python3 -c 'import optuna' 2>/dev/null").exit_code != 0)
    COMPSEARCH_SKIP_TEST("/usr/bin/python3 cannot import optuna (python3-optuna)");
  const std::string fixture_path = std::string(COMPSEARCH_TEST_DATA) + "/search/pruners.json";
  const std::string script = std::string(COMPSEARCH_SOURCE_DIR) + "/scripts/pruner_interop.py";
  const auto& all = fixture().at("cases");
  // Pruners whose state a fresh object rebuilds the same way (no "auto" resource).
  std::vector<size_t> picked;
  std::set<std::string> kinds;
  for (size_t c = 0; c < all.size(); ++c) {
    const auto& k = all[c];
    const bool halving = k.at("pruner") == "SuccessiveHalvingPruner" &&
                         k.at("kwargs").value("min_resource", nlohmann::json("auto")) != "auto";
    const bool hyperband = k.at("pruner") == "HyperbandPruner" &&
                           k.at("kwargs").contains("max_resource") &&
                           k.at("kwargs").value("min_resource", 1) == 1;
    // The first of each pruner and direction, and the non-ASCII study name (each case costs two
    // Python processes).
    const std::string kind =
        k.at("pruner").get<std::string>() + k.at("direction").get<std::string>();
    const bool unicode = k.at("study_name").get<std::string>().find('\xc3') != std::string::npos;
    if ((halving || hyperband) && (kinds.insert(kind).second || unicode)) picked.push_back(c);
  }
  REQUIRE(picked.size() == 5);
  size_t compared = 0;
  compsearch::search::testing::TempDir dir;
  for (size_t c : picked) {
    const auto& k = all[c];
    INFO(describe(c, k));
    const size_t n_events = k.at("events").size(), half = n_events / 2;
    for (bool compsearch_first : {true, false}) {
      INFO((compsearch_first ? "compsearch, then Optuna" : "Optuna, then compsearch"));
      const std::string journal =
          dir.file("case" + std::to_string(c) + (compsearch_first ? "-cf" : "-of") + ".log");
      auto python = [&](size_t first, size_t last) {
        auto r = run_command("/usr/bin/python3 " + shell_quote(script) + " " +
                             shell_quote(fixture_path) + " " + std::to_string(c) + " " +
                             shell_quote(journal) + " " + std::to_string(first) + " " +
                             std::to_string(last));
        REQUIRE(r.exit_code == 0);
        return parse_python_json(r.output);
      };
      auto open_study = [&](bool create) {
        StudyOptions options;
        options.pruner = make_pruner(k.at("pruner").get<std::string>(), k.at("kwargs"));
        auto storage = std::make_shared<JournalStorage>(journal);
        const std::string name = k.at("study_name").get<std::string>();
        if (!create) return Study::load(storage, name, std::make_shared<RandomSampler>(0), options);
        return Study::create(storage, name,
                             {direction_from_string(k.at("direction").get<std::string>())},
                             std::make_shared<RandomSampler>(0), false, options);
      };
      nlohmann::json optuna_part;
      if (compsearch_first) {
        auto study = open_study(true);
        compared += run_events(*study, k, 0, half);
        optuna_part = python(half, n_events);
      } else {
        optuna_part = python(0, half);
        auto study = open_study(false);
        compared += run_events(*study, k, half, n_events);
      }
      for (const auto& d : optuna_part.at("decisions")) {
        const auto& e = k.at("events")[d.at(0).get<size_t>()];
        CHECK_MESSAGE(d.at(1) == e.at(4), "Optuna's decision at event " << d.at(0));
        ++compared;
      }
      check_rung_attrs(*open_study(false), k.at("rung_attrs"));
    }
  }
  MESSAGE(compared << " decisions compared on journals shared by compsearch and Optuna");
}

TEST_CASE("pruners decide for concurrent objectives in optimize(n_jobs = 4)") {
  for (const std::string name : {"hyperband", "successive_halving", "median"}) {
    INFO(name);
    auto study = new_study("concurrent-" + name, StudyDirection::kMinimize,
                           make_pruner(name, nlohmann::json::object()));
    std::atomic<int> pruned{0};
    study->optimize(
        [&](Trial& t) -> std::vector<double> {
          const double x = t.suggest_float("x", 0, 1);
          for (int step = 0; step < 30; ++step) {
            t.report(x + 1.0 / (step + 1), step);
            if (t.should_prune()) {
              ++pruned;
              throw TrialPruned();
            }
          }
          return {x};
        },
        60, 4);
    const auto trials = study->get_trials();
    REQUIRE(trials.size() == 60);
    int n_pruned = 0;
    for (const auto& t : trials) {
      n_pruned += t.state == TrialState::kPruned;
      CHECK((t.state == TrialState::kPruned || t.state == TrialState::kComplete));
      // Rungs are recorded in order: completed_rung_K implies every rung below K.
      const auto rungs = rung_attrs(t);
      for (size_t r = 0; r < rungs.size(); ++r)
        CHECK(rungs.count("completed_rung_" + std::to_string(r)));
    }
    CHECK(n_pruned == pruned.load());
    CHECK(n_pruned > 0);
  }
}
