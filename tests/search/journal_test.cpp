// JournalStorage specifics: the file format on disk, several writers on one file, torn lines,
// the symlink lock's grace period, and heartbeats of running trials.
#include <doctest/doctest.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <regex>
#include <thread>

#include "search/in_memory_storage.h"
#include "search/journal_storage.h"
#include "search/python_json.h"
#include "search/study.h"
#include "search_test_util.h"

using namespace compsearch::search;
using compsearch::search::testing::read_file;
using compsearch::search::testing::TempDir;

namespace {

std::vector<std::string> lines_of(const std::string& path) {
  std::vector<std::string> out;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) out.push_back(line);
  return out;
}

void append_raw(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::app | std::ios::binary);
  out << text;
}

}  // namespace

TEST_CASE("JournalStorage writes Optuna's records with compact separators") {
  TempDir dir;
  const auto path = dir.file("j.log");
  JournalStorage s(path);
  int64_t study = s.create_new_study({StudyDirection::kMinimize, StudyDirection::kMaximize}, "s");
  int64_t id = s.create_new_trial(study);
  s.set_trial_param(id, "c", 1.0, make_categorical({"a", "b"}));
  std::vector<double> v{1.0, 0.5};
  s.set_trial_state_values(id, TrialState::kComplete, &v);
  auto lines = lines_of(path);
  REQUIRE(lines.size() == 4);
  const std::string worker =
      R"("worker_id":"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}-[0-9]+")";
  CHECK(std::regex_match(lines[0], std::regex(R"(\{"op_code":0,)" + worker +
                                              R"(,"study_name":"s","directions":\[1,2\]\})")));
  CHECK(std::regex_match(
      lines[1],
      std::regex(R"(\{"op_code":4,)" + worker +
                 R"(,"study_id":0,"datetime_start":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}"\})")));
  CHECK(
      lines[2].find(
          R"("param_name":"c","param_value_internal":1,"distribution":"{\"name\": \"CategoricalDistribution\", \"attributes\": {\"choices\": [\"a\", \"b\"]}}"})") !=
      std::string::npos);
  CHECK(std::regex_search(
      lines[3],
      std::regex(
          R"("trial_id":0,"state":1,"values":\[1.0,0.5\],"datetime_complete":"[0-9T:.-]{26}"\}$)")));
}

TEST_CASE("JournalStorage reads Python's default separators, NaN and a second writer's records") {
  TempDir dir;
  const auto path = dir.file("j.log");
  append_raw(
      path,
      "{\"op_code\": 0, \"worker_id\": \"py-1\", \"study_name\": \"s\", \"directions\": [1]}\n"
      "{\"op_code\": 4, \"worker_id\": \"py-1\", \"study_id\": 0, \"datetime_start\": "
      "\"2024-01-02T03:04:05.000006\"}\n"
      "{\"op_code\": 7, \"worker_id\": \"py-1\", \"trial_id\": 0, \"step\": 2, "
      "\"intermediate_value\": NaN}\n"
      "{\"op_code\": 6, \"worker_id\": \"py-1\", \"trial_id\": 0, \"state\": 1, \"values\": "
      "[-Infinity], "
      "\"datetime_complete\": \"2024-01-02T03:04:06.500000\"}\n");
  JournalStorage a(path);
  auto t = a.get_trial(0);
  CHECK(t.state == TrialState::kComplete);
  CHECK(t.values[0] == -std::numeric_limits<double>::infinity());
  CHECK(std::isnan(t.intermediate_values.at(2)));
  CHECK(*t.datetime_start == "2024-01-02 03:04:05.000006");
  CHECK(*t.datetime_complete == "2024-01-02 03:04:06.500000");

  JournalStorage b(path);
  int64_t id = b.create_new_trial(0);
  CHECK(id == 1);
  CHECK(a.get_all_trials(0).size() == 2);  // a sees b's record
  CHECK(a.create_new_trial(0) == 2);
  CHECK(b.get_trial(2).number == 2);
}

TEST_CASE("A torn last line is ignored by readers and cut off by the next writer") {
  TempDir dir;
  const auto path = dir.file("j.log");
  {
    JournalStorage s(path);
    s.create_new_study({StudyDirection::kMinimize}, "s");
    s.create_new_trial(0);
  }
  const std::string before = read_file(path);
  append_raw(path,
             R"({"op_code":4,"worker_id":"dead","study_id":0,"datetime_st)");  // killed mid-write
  JournalStorage reader(path);
  CHECK(reader.get_all_trials(0).size() == 1);
  CHECK(read_file(path).size() > before.size());  // readers do not repair
  reader.create_new_trial(0);                     // the writer does, under the lock
  const std::string after = read_file(path);
  CHECK(after.substr(0, before.size()) == before);
  CHECK(after.back() == '\n');
  for (const auto& line : lines_of(path)) CHECK_NOTHROW(parse_python_json(line));
  CHECK(reader.get_all_trials(0).size() == 2);
  CHECK(JournalStorage(path).get_all_trials(0).size() == 2);
}

TEST_CASE("A complete line that is not JSON is skipped with a warning") {
  TempDir dir;
  const auto path = dir.file("j.log");
  {
    JournalStorage s(path);
    s.create_new_study({StudyDirection::kMinimize}, "s");
  }
  // What Optuna 3.1 leaves when it appends after a torn line.
  append_raw(path, "{\"op_code\":4,\"wor{\"op_code\": 4, \"worker_id\": \"x\", \"study_id\": 0}\n");
  JournalStorage s(path);
  CHECK(s.get_all_trials(0).empty());
  CHECK(s.create_new_trial(0) == 0);
}

TEST_CASE(
    "The symlink lock waits for a live holder and breaks a stale one after the grace period") {
  TempDir dir;
  const auto path = dir.file("j.log");
  JournalStorage s(path, JournalOptions{0.5, false});
  s.create_new_study({StudyDirection::kMinimize}, "s");
  const std::string lock = path + ".lock";

  SUBCASE("live holder") {
    JournalFileLock holder(path, 30.0);
    holder.acquire();
    struct stat st {};
    REQUIRE(::lstat(lock.c_str(), &st) == 0);
    CHECK(S_ISLNK(st.st_mode));
    std::thread releaser([&] {
      std::this_thread::sleep_for(std::chrono::milliseconds(250));
      holder.release();
    });
    auto start = std::chrono::steady_clock::now();
    s.create_new_trial(0);
    double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    releaser.join();
    CHECK(waited >= 0.2);
    CHECK(waited < 0.45);  // released before the 0.5 s grace period: waited, did not break
  }
  SUBCASE("stale lock left by a killed writer (old mtime)") {
    REQUIRE(::symlink(path.c_str(), lock.c_str()) == 0);
    struct timeval old[2] = {{std::time(nullptr) - 100, 0}, {std::time(nullptr) - 100, 0}};
    REQUIRE(::lutimes(lock.c_str(), old) == 0);
    auto start = std::chrono::steady_clock::now();
    s.create_new_trial(0);
    CHECK(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() < 0.3);
  }
  SUBCASE("stale lock that stays unchanged longer than the grace period") {
    REQUIRE(::symlink(path.c_str(), lock.c_str()) == 0);
    auto start = std::chrono::steady_clock::now();
    s.create_new_trial(0);
    double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    CHECK(waited >= 0.45);
    CHECK(waited < 2.0);
  }
  CHECK(s.get_all_trials(0).size() == 1);
  struct stat st {};
  CHECK(::lstat(lock.c_str(), &st) != 0);  // released
}

TEST_CASE("A stale lock left as a directory is broken without leaving its .rename behind") {
  TempDir dir;
  const auto path = dir.file("j.log");
  JournalStorage s(path, JournalOptions{0.2, false});
  s.create_new_study({StudyDirection::kMinimize}, "s");
  const std::string lock = path + ".lock";
  REQUIRE(::mkdir(lock.c_str(), 0755) == 0);  // e.g. a tool that locks with mkdir
  s.create_new_trial(0);                      // waits out the grace period, then breaks it
  CHECK(s.get_all_trials(0).size() == 1);
  std::vector<std::string> left;
  for (const auto& e : std::filesystem::directory_iterator(dir.path))
    if (e.path().filename() != "j.log") left.push_back(e.path().filename().string());
  CHECK(left.empty());  // neither the lock nor a "j.log.lock<uuid>.rename" remains
}

TEST_CASE("A journal line nested 100000 deep is skipped like any other bad line") {
  TempDir dir;
  const auto path = dir.file("j.log");
  {
    JournalStorage s(path);
    s.create_new_study({StudyDirection::kMinimize}, "s");
  }
  const size_t deep = 100000;
  // Valid JSON, but nested far deeper than any record: parsing, printing it in the warning or
  // walking it must not overflow the stack.
  append_raw(path, "{\"op_code\":4,\"worker_id\":\"x\",\"study_id\":0,\"a\":" +
                       std::string(deep, '[') + std::string(deep, ']') + "}\n");
  append_raw(path, std::string(deep, '{') + "\n");  // and deep, and not JSON
  CHECK_THROWS_WITH_AS(parse_python_json(std::string(deep, '[') + std::string(deep, ']')),
                       doctest::Contains("JSON nested deeper than 512 levels (at byte 512)"),
                       std::invalid_argument);
  JournalStorage s(path);
  CHECK(s.get_all_trials(0).empty());
  CHECK(s.create_new_trial(0) == 0);
  CHECK(JournalStorage(path).get_all_trials(0).size() == 1);
}

TEST_CASE(
    "Stale heartbeats fail a trial and re-queue it; trials without heartbeat are left alone") {
  TempDir dir;
  const auto path = dir.file("j.log");
  auto storage = std::make_shared<JournalStorage>(path);
  auto study = Study::create(storage, "s", {StudyDirection::kMinimize});
  const double now = unix_time_now_s();
  auto t_stale = study->ask({{"x", make_float(0, 1)}});
  storage->set_trial_system_attr(t_stale.trial_id(), kHeartbeatAttr, now - 100);
  auto t_fresh = study->ask();
  storage->set_trial_system_attr(t_fresh.trial_id(), kHeartbeatAttr, now - 1);
  auto t_python = study->ask();  // no heartbeat: e.g. a Python Optuna worker's trial

  HeartbeatOptions hb;
  hb.grace_s = 10;
  hb.requeue = true;
  hb.max_retries = 1;
  JournalStorage other(path);  // a second worker races for the same stale trial
  auto failed = fail_stale_trials(*storage, study->study_id(), hb, now);
  CHECK(failed == std::vector<int64_t>{t_stale.number()});
  CHECK(fail_stale_trials(other, study->study_id(), hb, now).empty());

  auto trials = study->get_trials();
  REQUIRE(trials.size() == 4);
  CHECK(trials[0].state == TrialState::kFail);
  CHECK(trials[0].system_attrs.at(kFailReasonAttr).get<std::string>().find("stale heartbeat") == 0);
  CHECK(trials[1].state == TrialState::kRunning);
  CHECK(trials[2].state == TrialState::kRunning);
  CHECK(trials[3].state == TrialState::kWaiting);
  CHECK(trials[3].params == trials[0].params);
  CHECK(trials[3].system_attrs.at(kFailedTrialAttr) == 0);
  CHECK(trials[3].system_attrs.at(kRetryHistoryAttr) == nlohmann::json{0});

  // The retry runs with the failed trial's params; when it goes stale too, max_retries = 1 stops.
  auto retry = study->ask({{"x", make_float(0, 1)}});
  CHECK(retry.number() == 3);
  CHECK(retry.cached().params == trials[0].params);
  storage->set_trial_system_attr(retry.trial_id(), kHeartbeatAttr, now - 100);
  CHECK(fail_stale_trials(*storage, study->study_id(), hb, now) == std::vector<int64_t>{3});
  CHECK(study->get_trials().size() == 4);
}

TEST_CASE("optimize with heartbeats recovers a dead worker's trial and keeps its own fresh") {
  TempDir dir;
  auto storage = std::make_shared<JournalStorage>(dir.file("j.log"));
  StudyOptions options;
  options.heartbeat = HeartbeatOptions{0.05, 10.0, true, 2};
  auto study = Study::create(storage, "s", {StudyDirection::kMinimize}, nullptr, false, options);
  auto dead = study->ask({{"x", make_float(0, 1)}});
  storage->set_trial_system_attr(dead.trial_id(), kHeartbeatAttr, unix_time_now_s() - 60);
  study->optimize(
      [](Trial& t) {
        double x = t.suggest_float("x", 0, 1);
        std::this_thread::sleep_for(std::chrono::milliseconds(120));  // a few heartbeats
        return std::vector<double>{x};
      },
      2);
  auto trials = study->get_trials();
  REQUIRE(trials.size() == 3);
  CHECK(trials[0].state == TrialState::kFail);
  CHECK(trials[1].state == TrialState::kComplete);  // the re-queued trial ran first
  CHECK(trials[1].system_attrs.at(kFailedTrialAttr) == 0);
  CHECK(trials[1].params == trials[0].params);
  CHECK(trials[2].state == TrialState::kComplete);
  CHECK(trials[2].system_attrs.count(kHeartbeatAttr));
}

TEST_CASE("Heartbeat options are validated, every problem reported at once") {
  StudyOptions options;
  options.heartbeat = HeartbeatOptions{0.0, 0.0, true, -1};
  auto storage = std::make_shared<InMemoryStorage>();
  CHECK_THROWS_WITH_AS(
      Study::create(storage, "s", {StudyDirection::kMinimize}, nullptr, false, options),
      "study \"s\": heartbeat options: interval_s = 0.0 (expected > 0); grace_s = 0.0 (expected > "
      "interval_s, or live trials go stale); max_retries = -1 (expected >= 0);",
      std::invalid_argument);
}
