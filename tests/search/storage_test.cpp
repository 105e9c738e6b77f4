// One contract test suite (search/storage.h) run against every Storage: InMemoryStorage and
// JournalStorage over a file and over Redis (one redis-server for the suite, a key prefix per
// test; skipped without redis-server).
#include <doctest/doctest.h>

#include <cmath>
#include <future>
#include <limits>
#include <memory>
#include <thread>

#include "redis_server.h"
#include "search/in_memory_storage.h"
#include "search/journal_redis_backend.h"
#include "search/journal_storage.h"
#include "search_test_util.h"
#include "tests/test_skip.h"

using namespace compsearch::search;
using compsearch::search::testing::RedisServer;
using compsearch::search::testing::TempDir;

namespace {

struct InMemoryFixture {
  std::shared_ptr<Storage> make() { return std::make_shared<InMemoryStorage>(); }
};

struct JournalFixture {
  TempDir dir;
  std::shared_ptr<Storage> make() {
    return std::make_shared<JournalStorage>(dir.file("study.journal"));
  }
};

struct RedisFixture {
  static bool unavailable() { return compsearch::search::testing::redis_server_path().empty(); }
  // Each fixture its own prefix (a study of its own); make() again opens the same one.
  std::string prefix = "contract" + std::to_string(instances()++);
  std::shared_ptr<Storage> make() {
    static RedisServer server;  // one for the suite, stopped at exit
    return std::make_shared<JournalStorage>(
        make_journal_redis_backend(parse_redis_url(server.url("/0?prefix=" + prefix))));
  }
  static int& instances() {
    static int n = 0;
    return n;
  }
};

template <typename F>
bool unavailable(const F&) {
  if constexpr (std::is_same_v<F, RedisFixture>) return RedisFixture::unavailable();
  return false;
}

const std::vector<StudyDirection> kMin{StudyDirection::kMinimize};

}  // namespace

TEST_CASE_TEMPLATE("Storage creates studies with unique names and finds them by name", F,
                   InMemoryFixture, JournalFixture, RedisFixture) {
  F f;
  if (unavailable(f)) COMPSEARCH_SKIP_TEST("redis-server is not installed");
  auto s = f.make();
  int64_t a = s->create_new_study(kMin, "a");
  int64_t b = s->create_new_study({StudyDirection::kMinimize, StudyDirection::kMaximize}, "b");
  CHECK(a == 0);
  CHECK(b == 1);
  CHECK(s->get_study_id_from_name("b") == 1);
  CHECK(s->get_study(b).directions ==
        std::vector<StudyDirection>{StudyDirection::kMinimize, StudyDirection::kMaximize});
  CHECK_THROWS_AS(s->create_new_study(kMin, "a"), DuplicatedStudyError);
  CHECK_THROWS_AS(s->get_study_id_from_name("zzz"), StorageKeyError);
  s->set_study_user_attr(a, "k", {{"x", 1}});
  s->set_study_system_attr(a, "sys", 2.5);
  auto fs = s->get_study(a);
  CHECK(fs.user_attrs.at("k") == nlohmann::json{{"x", 1}});
  CHECK(fs.system_attrs.at("sys") == 2.5);
  s->delete_study(a);
  CHECK_THROWS_AS(s->get_study(a), StorageKeyError);
  CHECK(s->get_all_studies().size() == 1);
  CHECK(s->create_new_study(kMin, "c") == 2);  // ids are never reused
}

TEST_CASE_TEMPLATE("Storage numbers trials per study and ids across studies", F, InMemoryFixture,
                   JournalFixture, RedisFixture) {
  F f;
  if (unavailable(f)) COMPSEARCH_SKIP_TEST("redis-server is not installed");
  auto s = f.make();
  int64_t a = s->create_new_study(kMin, "a");
  int64_t b = s->create_new_study(kMin, "b");
  CHECK(s->create_new_trial(a) == 0);
  CHECK(s->create_new_trial(b) == 1);
  CHECK(s->create_new_trial(a) == 2);
  CHECK(s->get_trial(2).number == 1);
  CHECK(s->get_trial(1).number == 0);
  CHECK(s->get_trial_id_from_study_id_trial_number(a, 1) == 2);
  CHECK_THROWS_AS(s->get_trial_id_from_study_id_trial_number(a, 2), StorageKeyError);
  CHECK_THROWS_AS(s->get_trial(3), StorageKeyError);
  auto t = s->get_trial(0);
  CHECK(t.state == TrialState::kRunning);
  REQUIRE(t.datetime_start);
  CHECK(t.datetime_start->size() == 26);  // "YYYY-MM-DD HH:MM:SS.ffffff"
  CHECK((*t.datetime_start)[10] == ' ');
  CHECK(s->get_trials_from(a, 1).size() == 1);
  CHECK(s->get_trials_from(a, 1)[0].trial_id == 2);
}

TEST_CASE_TEMPLATE("Storage keeps params, values, intermediate values and attributes", F,
                   InMemoryFixture, JournalFixture, RedisFixture) {
  F f;
  if (unavailable(f)) COMPSEARCH_SKIP_TEST("redis-server is not installed");
  auto s = f.make();
  int64_t study = s->create_new_study(kMin, "a");
  int64_t id = s->create_new_trial(study);
  auto cat = make_categorical({"x", 3, nullptr});
  s->set_trial_param(id, "c", 1.0, cat);
  s->set_trial_param(id, "f", 0.25, make_float(0, 1));
  s->set_trial_intermediate_value(id, 0, 1.5);
  s->set_trial_intermediate_value(id, 3, std::numeric_limits<double>::quiet_NaN());
  s->set_trial_user_attr(id, "u", {{"nested", {1, "two"}}});
  s->set_trial_system_attr(id, "constraints", {-1.0, 0.5});
  std::vector<double> values{0.5};
  CHECK(s->set_trial_state_values(id, TrialState::kComplete, &values));
  auto t = s->get_trial(id);
  CHECK(t.state == TrialState::kComplete);
  CHECK(t.values == values);
  CHECK(t.param("c") == 3);
  CHECK(t.param("f") == 0.25);
  CHECK(t.distributions.at("c") == Distribution(cat));
  CHECK(t.intermediate_values.at(0) == 1.5);
  CHECK(std::isnan(t.intermediate_values.at(3)));
  CHECK(t.user_attrs.at("u") == nlohmann::json{{"nested", {1, "two"}}});
  CHECK(t.constraints() == std::vector<double>{-1.0, 0.5});
  CHECK_FALSE(t.feasible());
  REQUIRE(t.datetime_complete);
}

TEST_CASE_TEMPLATE("Storage rejects updates of finished trials and incompatible distributions", F,
                   InMemoryFixture, JournalFixture, RedisFixture) {
  F f;
  if (unavailable(f)) COMPSEARCH_SKIP_TEST("redis-server is not installed");
  auto s = f.make();
  int64_t study = s->create_new_study(kMin, "a");
  int64_t t0 = s->create_new_trial(study);
  s->set_trial_param(t0, "p", 0.5, make_float(0, 1));
  int64_t t1 = s->create_new_trial(study);
  CHECK_THROWS_WITH_AS(s->set_trial_param(t1, "p", 1.0, make_int(0, 3)),
                       doctest::Contains("different distribution kind"), std::invalid_argument);
  CHECK(s->get_trial(t1).params.empty());
  s->set_trial_state_values(t0, TrialState::kFail);
  CHECK_THROWS_WITH_AS(s->set_trial_user_attr(t0, "k", 1),
                       "Trial#0 has already finished and can not be updated.", TrialFinishedError);
  CHECK_THROWS_AS(s->set_trial_state_values(t0, TrialState::kComplete), TrialFinishedError);
  CHECK(s->get_trial(t0).state == TrialState::kFail);
  CHECK_THROWS_AS(s->set_trial_user_attr(99, "k", 1), StorageKeyError);
}

TEST_CASE_TEMPLATE("Storage lends its trials through read_trials, as get_all_trials copies them", F,
                   InMemoryFixture, JournalFixture, RedisFixture) {
  F f;
  if (unavailable(f)) COMPSEARCH_SKIP_TEST("redis-server is not installed");
  auto s = f.make();
  const int64_t other = s->create_new_study(kMin, "other");
  const int64_t study = s->create_new_study(kMin, "a");
  s->create_new_trial(other);
  const int64_t t0 = s->create_new_trial(study);
  s->set_trial_param(t0, "c", 1, make_categorical({"x", "y"}));
  const std::vector<double> v0{0.25};
  s->set_trial_state_values(t0, TrialState::kComplete, &v0);
  const int64_t t1 = s->create_new_trial(study);
  s->set_trial_param(t1, "c", 0, make_categorical({"x", "y"}));
  s->set_trial_user_attr(t1, "note", "running");
  std::vector<const FrozenTrial*> first;
  int calls = 0;
  s->read_trials(study, {}, [&](TrialRefs trials) {
    ++calls;
    REQUIRE(trials.size() == 2);
    CHECK(trials[0]->number == 0);
    CHECK(trials[0]->trial_id == t0);
    CHECK(trials[0]->state == TrialState::kComplete);
    CHECK(trials[0]->values == v0);
    CHECK(trials[0]->param("c") == "y");
    CHECK(trials[1]->number == 1);
    CHECK(trials[1]->state == TrialState::kRunning);
    CHECK(trials[1]->param("c") == "x");
    CHECK(trials[1]->user_attrs.at("note") == "running");
    first.assign(trials.begin(), trials.end());
  });
  CHECK(calls == 1);
  // The same trials get_all_trials copies, state filter included.
  const auto copies = s->get_all_trials(study, {TrialState::kRunning});
  s->read_trials(study, {TrialState::kRunning}, [&](TrialRefs trials) {
    ++calls;
    REQUIRE(trials.size() == copies.size());
    CHECK(trials[0]->trial_id == copies[0].trial_id);
    CHECK(trials[0]->params == copies[0].params);
    // Lent, not copied: the storage's own trial, at the address the first call saw.
    CHECK(trials[0] == first[1]);
  });
  s->read_trials(study, {TrialState::kWaiting},
                 [&](TrialRefs trials) { calls += trials.empty() ? 1 : 100; });
  CHECK(calls == 3);
  CHECK_THROWS_AS(s->read_trials(99, {}, [](TrialRefs) {}), StorageKeyError);
}

TEST_CASE_TEMPLATE("Storage gives a WAITING trial to exactly one worker", F, InMemoryFixture,
                   JournalFixture, RedisFixture) {
  F f;
  if (unavailable(f)) COMPSEARCH_SKIP_TEST("redis-server is not installed");
  auto s = f.make();
  int64_t study = s->create_new_study(kMin, "a");
  FrozenTrial tmpl;
  tmpl.state = TrialState::kWaiting;
  tmpl.params["x"] = 2.0;
  tmpl.distributions["x"] = make_int(0, 5);
  tmpl.system_attrs["fixed_params"] = {{"x", 2}};
  tmpl.user_attrs["who"] = "queue";
  tmpl.intermediate_values[4] = 0.25;
  int64_t id = s->create_new_trial(study, &tmpl);
  auto w = s->get_trial(id);
  CHECK(w.state == TrialState::kWaiting);
  CHECK_FALSE(w.datetime_start);
  CHECK(w.param("x") == 2);
  CHECK(w.intermediate_values.at(4) == 0.25);
  CHECK(w.user_attrs.at("who") == "queue");

  // Two live threads (a joined thread's id may be reused, and the id names the worker).
  bool first = false, second = true;
  std::promise<void> a_done, b_done;
  std::thread a([&] {
    first = s->set_trial_state_values(id, TrialState::kRunning);
    a_done.set_value();
    b_done.get_future().wait();
  });
  a_done.get_future().wait();
  std::thread b([&] {
    second = s->set_trial_state_values(id, TrialState::kRunning);
    b_done.set_value();
  });
  b.join();
  a.join();
  CHECK(first);
  CHECK_FALSE(second);
  CHECK(s->get_trial(id).state == TrialState::kRunning);
  CHECK(s->get_trial(id).datetime_start);
  CHECK(s->get_all_trials(study, {TrialState::kWaiting}).empty());
  CHECK(s->get_all_trials(study, {TrialState::kRunning}).size() == 1);
}

TEST_CASE_TEMPLATE("Storage is safe under concurrent trial creation", F, InMemoryFixture,
                   JournalFixture, RedisFixture) {
  F f;
  if (unavailable(f)) COMPSEARCH_SKIP_TEST("redis-server is not installed");
  auto s = f.make();
  int64_t study = s->create_new_study(kMin, "a");
  std::vector<std::thread> threads;
  for (int k = 0; k < 4; ++k) {
    threads.emplace_back([&] {
      for (int i = 0; i < 10; ++i) {
        int64_t id = s->create_new_trial(study);
        std::vector<double> v{static_cast<double>(id)};
        s->set_trial_state_values(id, TrialState::kComplete, &v);
      }
    });
  }
  for (auto& t : threads) t.join();
  auto trials = s->get_all_trials(study);
  REQUIRE(trials.size() == 40);
  for (size_t i = 0; i < trials.size(); ++i) {
    CHECK(trials[i].number == static_cast<int64_t>(i));
    CHECK(trials[i].state == TrialState::kComplete);
    CHECK(trials[i].values[0] == static_cast<double>(trials[i].trial_id));
  }
}
