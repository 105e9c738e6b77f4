// The study verbs' decisions (experiments/study_commands.h): malformed flag values are
// UsageErrors naming the flag, `ask` creates a missing study with the given directions (default
// minimize) and refuses to change a stored study's, nothing is written when a flag is bad, and
// `tell` / `best-trials` finish and select trials as Optuna does.
#include "experiments/study_commands.h"

#include <doctest/doctest.h>
#include <unistd.h>

#include <filesystem>

#include "experiments/usage_error.h"
#include "search/journal_storage.h"

using namespace compsearch;
using experiments::UsageError;
using search::StudyDirection;
namespace fs = std::filesystem;

namespace {

// A fresh journal path per test case, removed with its directory afterwards.
struct TempJournal {
  fs::path dir;
  std::string path;
  TempJournal() {
    static int counter = 0;
    dir =
        fs::temp_directory_path() / ("compsearch_study_commands_test_" +
                                     std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::create_directories(dir);
    path = (dir / "study.journal").string();
  }
  ~TempJournal() { fs::remove_all(dir); }
};

constexpr const char* kSpace =
    R"({"x": {"name": "FloatDistribution", "attributes": {"low": 0.0, "high": 1.0, "step": null, "log": false}},
        "k": {"name": "CategoricalDistribution", "attributes": {"choices": ["a", "b"]}}})";

}  // namespace

TEST_CASE("Directions accept minimize and maximize only and one of the two flags") {
  CHECK(experiments::parse_directions(std::nullopt, {}).empty());
  CHECK(experiments::parse_directions("maximize", {}) ==
        std::vector<StudyDirection>{StudyDirection::kMaximize});
  CHECK(experiments::parse_directions(std::nullopt, {"minimize", "maximize"}) ==
        std::vector<StudyDirection>{StudyDirection::kMinimize, StudyDirection::kMaximize});
  CHECK_THROWS_WITH_AS(experiments::parse_directions(std::nullopt, {"minimize", "up"}),
                       "--directions: invalid choice 'up' (choose from 'minimize', 'maximize')",
                       UsageError);
  // Optuna's argparse choices are lower case; search's own parser would take "MAXIMIZE".
  CHECK_THROWS_WITH_AS(experiments::parse_directions("MAXIMIZE", {}),
                       "--direction: invalid choice 'MAXIMIZE' (choose from 'minimize', "
                       "'maximize')",
                       UsageError);
  CHECK_THROWS_WITH_AS(experiments::parse_directions("minimize", {"minimize"}),
                       "Specify only one of `direction` and `directions`.", UsageError);
}

TEST_CASE(
    "A search space keeps the text's order and malformed JSON or distributions are usage "
    "errors") {
  const auto space = experiments::parse_search_space(kSpace);
  REQUIRE(space.size() == 2);
  CHECK(space[0].first == "x");
  CHECK(space[1].first == "k");
  CHECK(std::holds_alternative<search::FloatDistribution>(space[0].second));
  CHECK(std::holds_alternative<search::CategoricalDistribution>(space[1].second));
  CHECK_THROWS_WITH_AS(experiments::parse_search_space("{"),
                       doctest::Contains("--search-space: not JSON"), UsageError);
  CHECK_THROWS_WITH_AS(experiments::parse_search_space("[1]"),
                       "--search-space: expected a JSON object of name -> distribution",
                       UsageError);
  CHECK_THROWS_WITH_AS(
      experiments::parse_search_space(R"({"x": {"name": "Nope", "attributes": {}}})"),
      doctest::Contains(
          "--search-space: parameter \"x\": distribution: unknown distribution class \"Nope\""),
      UsageError);
}

TEST_CASE(
    "The sampler defaults to TPE for one objective and NSGA-II for several, and bad flags "
    "are usage errors") {
  CHECK(experiments::make_study_sampler(std::nullopt, std::nullopt, 1) != nullptr);
  CHECK(experiments::make_study_sampler(std::nullopt, std::nullopt, 2) != nullptr);
  CHECK(experiments::make_study_sampler("RandomSampler", R"({"seed": 3})", 1) != nullptr);
  CHECK_THROWS_WITH_AS(experiments::make_study_sampler("SobolSampler", std::nullopt, 1),
                       doctest::Contains("--sampler: unknown sampler \"SobolSampler\""),
                       UsageError);
  CHECK_THROWS_WITH_AS(experiments::make_study_sampler(std::nullopt, R"({"seed": 1})", 1),
                       doctest::Contains("`--sampler_kwargs` is set without `--sampler`"),
                       UsageError);
  CHECK_THROWS_WITH_AS(experiments::make_study_sampler("RandomSampler", "{seed", 1),
                       doctest::Contains("--sampler-kwargs: {seed is not JSON"), UsageError);
  CHECK_THROWS_WITH_AS(experiments::make_study_sampler("RandomSampler", R"({"seeds": 1})", 1),
                       doctest::Contains("unknown or unsupported keyword argument \"seeds\""),
                       UsageError);
}

TEST_CASE(
    "ask creates a missing study, reuses an existing one and refuses to change its "
    "directions") {
  TempJournal j;
  auto storage = experiments::open_study_storage(j.path);
  experiments::AskRequest req;
  req.study_name = "s";
  req.search_space = kSpace;
  req.sampler = "RandomSampler";
  req.sampler_kwargs = R"({"seed": 0})";
  SUBCASE("created with minimize when no direction is given") {
    const auto first = experiments::ask(storage, req);
    CHECK(first.number == 0);
    REQUIRE(first.params.size() == 2);
    CHECK(first.params[0].first == "x");
    CHECK(first.params[1].first == "k");
    const int64_t id = storage->get_study_id_from_name("s");
    CHECK(storage->get_study(id).directions ==
          std::vector<StudyDirection>{StudyDirection::kMinimize});
    // A second ask (another process: a fresh storage on the same file) gets the next number.
    const auto second = experiments::ask(experiments::open_study_storage(j.path), req);
    CHECK(second.number == 1);
  }
  SUBCASE("created with the given directions, which a later ask must repeat or omit") {
    req.directions = {StudyDirection::kMinimize, StudyDirection::kMaximize};
    CHECK(experiments::ask(storage, req).number == 0);
    const int64_t id = storage->get_study_id_from_name("s");
    CHECK(storage->get_study(id).directions == req.directions);
    req.directions = {};
    CHECK(experiments::ask(storage, req).number == 1);
    req.directions = {StudyDirection::kMaximize};
    // Well-formed flags that conflict with the stored study: an error, not a usage error.
    try {
      experiments::ask(storage, req);
      FAIL("ask changed the directions of a stored study");
    } catch (const UsageError& e) {
      FAIL("a direction conflict is not a usage error: " << e.what());
    } catch (const std::invalid_argument& e) {
      CHECK(std::string(e.what()) == "Cannot overwrite study direction of \"s\".");
    }
  }
  SUBCASE("a bad flag writes nothing to the journal") {
    req.sampler = "SobolSampler";
    CHECK_THROWS_AS(experiments::ask(storage, req), UsageError);
    req.sampler = "RandomSampler";
    req.search_space = "{";
    CHECK_THROWS_AS(experiments::ask(storage, req), UsageError);
    CHECK(experiments::open_study_storage(j.path)->get_all_studies().empty());
  }
}

TEST_CASE("tell parses Python float values and states and best-trials keeps the Pareto front") {
  TempJournal j;
  auto storage = experiments::open_study_storage(j.path);
  experiments::CreateStudyRequest create;
  create.study_name = "mo";
  create.directions = {StudyDirection::kMinimize, StudyDirection::kMinimize};
  CHECK(experiments::create_study(storage, create) == "mo");
  CHECK_THROWS_WITH_AS(experiments::create_study(storage, create),
                       doctest::Contains("Another study with name 'mo' already exists"),
                       std::invalid_argument);
  create.skip_if_exists = true;
  CHECK(experiments::create_study(storage, create) == "mo");

  experiments::AskRequest ask;
  ask.study_name = "mo";
  for (int i = 0; i < 4; ++i) CHECK(experiments::ask(storage, ask).number == i);
  experiments::TellRequest tell;
  tell.study_name = "mo";
  // (1, 2) and (2, 1) are non-dominated; (2, 2) is dominated by both; trial 3 is pruned.
  const std::vector<std::vector<std::string>> values = {{"1", "2"}, {"2.0", "1e0"}, {"2", "2"}};
  for (int i = 0; i < 3; ++i) {
    tell.trial_number = i;
    tell.values = values[i];
    experiments::tell(storage, tell);
  }
  tell.trial_number = 3;
  tell.values.reset();
  tell.state = "done";
  CHECK_THROWS_WITH_AS(experiments::tell(storage, tell),
                       "--state: invalid choice 'done' (choose from 'complete', 'pruned', 'fail')",
                       UsageError);
  tell.state = "pruned";
  tell.values = std::vector<std::string>{"x2"};
  CHECK_THROWS_WITH_AS(experiments::tell(storage, tell), "--values: invalid float value: 'x2'",
                       UsageError);
  tell.values = std::vector<std::string>{};
  CHECK_THROWS_WITH_AS(experiments::tell(storage, tell), "--values: expected at least one argument",
                       UsageError);
  tell.values.reset();
  experiments::tell(storage, tell);

  int calls = 0;
  experiments::read_study_trials(storage, "mo", false, [&](const experiments::StudyTrials& all) {
    ++calls;
    REQUIRE(all.trials.size() == 4);
    CHECK_FALSE(all.only.has_value());
    CHECK(all.trials[1]->values == std::vector<double>{2.0, 1.0});
    CHECK(all.trials[3]->state == search::TrialState::kPruned);
  });
  experiments::read_study_trials(storage, "mo", true, [&](const experiments::StudyTrials& best) {
    ++calls;
    REQUIRE(best.only.has_value());
    CHECK(*best.only == std::vector<int64_t>{0, 1});
  });
  CHECK(calls == 2);
  CHECK_THROWS_WITH_AS(experiments::read_study_trials(storage, "nope", false,
                                                      [](const experiments::StudyTrials&) {}),
                       doctest::Contains("study \"nope\" does not exist"), std::exception);
}

TEST_CASE("A database URL as --storage is a usage error") {
  CHECK_THROWS_WITH_AS(experiments::open_study_storage("sqlite:///x.db"),
                       "--storage sqlite:///x.db: database URLs are not supported; give the path "
                       "of a journal file or a redis:// URL",
                       UsageError);
}
