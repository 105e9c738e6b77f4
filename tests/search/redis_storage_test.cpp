// The Redis journal backend (search/journal_redis_backend.h): URLs and their errors, byte
// compatibility with python3-optuna's JournalRedisStorage both ways (raw Redis values checked),
// a server restart, a reply lost mid-append, and a connection lost during a trial. Each test
// starts its own redis-server (tests/search/redis_server.h).
#include <doctest/doctest.h>

#include <algorithm>
#include <fstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "common/log.h"
#include "redis_server.h"
#include "search/journal_redis_backend.h"
#include "search/journal_storage.h"
#include "search/open_storage.h"
#include "search_test_util.h"
#include "tests/test_skip.h"

using namespace compsearch::search;
using compsearch::search::testing::redis_server_path;
using compsearch::search::testing::RedisServer;
using compsearch::search::testing::run_command;
using compsearch::search::testing::shell_quote;
using compsearch::search::testing::TempDir;

namespace {

std::shared_ptr<JournalStorage> open_redis(const std::string& url, RedisOptions options = {}) {
  return std::make_shared<JournalStorage>(
      make_journal_redis_backend(parse_redis_url(url), options));
}

// Runs a python3-optuna script (argv[1:] = args) and returns the JSON its last line prints.
nlohmann::json run_python(const std::string& script, const std::vector<std::string>& args) {
  TempDir dir;
  const std::string path = dir.file("script.py");
  std::ofstream(path) << script;
  std::string cmd = "/usr/bin/python3 -W ignore " + shell_quote(path);
  for (const auto& a : args) cmd += " " + shell_quote(a);
  const auto r = run_command(cmd);
  INFO("python said: " << r.output);
  REQUIRE(r.exit_code == 0);
  const auto last = r.output.find_last_of('\n', r.output.size() - 2);
  return nlohmann::json::parse(last == std::string::npos ? r.output : r.output.substr(last + 1));
}

bool python_has_optuna_and_redis() {
  return run_command("/usr/bin/python3 -c 'import optuna, redis' 2>/dev/null").exit_code == 0;
}

// The message of what `f` throws ("" when it does not throw).
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

struct CapturedLog {
  std::vector<std::string> messages;
  compsearch::LogSink previous;
  CapturedLog() {
    previous = compsearch::set_log_sink(
        [this](compsearch::LogLevel, std::string_view text) { messages.emplace_back(text); });
  }
  ~CapturedLog() { compsearch::set_log_sink(std::move(previous)); }
  bool contains(const std::string& part) const {
    for (const auto& m : messages)
      if (m.find(part) != std::string::npos) return true;
    return false;
  }
};

// Optuna's view of a study as JSON: its raw log values checked against json.dumps (what
// Optuna itself writes), the log_number key, and every trial.
constexpr const char* kOptunaReadScript = R"(
import json, sys, redis, optuna
from optuna.storages import JournalStorage, JournalRedisStorage
url, prefix, name = sys.argv[1], sys.argv[2], sys.argv[3]
r = redis.Redis.from_url(url)
n = int(r.get(prefix + ':log_number'))
raw = [r.get('%s:log:%d' % (prefix, i)).decode('ascii') for i in range(n + 1)]
not_dumps = [i for i, v in enumerate(raw) if json.dumps(json.loads(v)) != v]
study = optuna.load_study(study_name=name,
                          storage=JournalStorage(JournalRedisStorage(url, prefix=prefix)))
trials = [{'number': t.number, 'state': t.state.name, 'values': t.values, 'params': t.params,
           'user_attrs': t.user_attrs,
           'intermediate': {str(k): v for k, v in t.intermediate_values.items()}}
          for t in study.trials]
print(json.dumps({'log_number': n, 'not_json_dumps': not_dumps, 'keys': sorted(
    k.decode() for k in r.keys(prefix + ':*')), 'trials': trials}))
)";

}  // namespace

TEST_CASE("parse_redis_url reads redis-py's URL forms and hides the password") {
  auto u = parse_redis_url("redis://:s%40cret@db.example:6380/3?prefix=team");
  CHECK(u.host == "db.example");
  CHECK(u.port == 6380);
  CHECK(u.db == 3);
  CHECK(u.username.empty());
  CHECK(u.password == "s@cret");
  CHECK(u.prefix == "team");
  CHECK(u.display == "redis://:***@db.example:6380/3?prefix=team");
  u = parse_redis_url("redis://localhost");
  CHECK(u.host == "localhost");
  CHECK(u.port == 6379);
  CHECK(u.db == 0);
  CHECK(u.prefix.empty());  // Optuna's default prefix: keys ":log_number", ":log:0", ...
  CHECK(u.display == "redis://localhost:6379/0");
  u = parse_redis_url("redis://alice:pw@[::1]:7000?reconnect_s=2.5");
  CHECK(u.username == "alice");
  CHECK(u.password == "pw");
  CHECK(u.host == "::1");
  CHECK(u.port == 7000);
  CHECK(u.reconnect_s == 2.5);
  CHECK(u.display == "redis://alice:***@[::1]:7000/0");
}

TEST_CASE("A bad redis:// URL names the URL without its password and the expected form") {
  CHECK_THROWS_WITH_AS(parse_redis_url("redis://:topsecret@host:port/0"),
                       "storage URL redis://:***@host:port/0: port \"port\" is not an integer in "
                       "[1, 65535]; expected redis://[[username]:[password]@]host[:port][/db]"
                       "[?prefix=NAME&reconnect_s=SECONDS]",
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(parse_redis_url("redis://h/x"),
                       doctest::Contains("redis://h/x: db \"x\" is not an integer"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(parse_redis_url("redis://h/0?prefx=a"),
                       doctest::Contains("unknown parameter \"prefx\""), std::invalid_argument);
  CHECK_THROWS_WITH_AS(open_storage("postgresql://u:pw@h/db"),
                       doctest::Contains("\"postgresql\" URLs are not supported"),
                       std::invalid_argument);
  CHECK(error_of([] { open_storage("postgresql://u:pw@h/db"); }).find("pw") == std::string::npos);
}

TEST_CASE("An unreachable server, a wrong or missing password and a bad db are clear errors") {
  if (redis_server_path().empty()) COMPSEARCH_SKIP_TEST("redis-server is not installed");
  const int closed_port = compsearch::search::testing::free_tcp_port();
  const std::string closed = "127.0.0.1:" + std::to_string(closed_port);
  CHECK(error_of([&] {
          open_storage("redis://" + closed);
        }).rfind("journal redis://" + closed + "/0: cannot connect to Redis (", 0) == 0);
  RedisServer server({"--requirepass", "right"});
  const std::string host = "127.0.0.1:" + std::to_string(server.port());
  const std::string wrong = error_of([&] { open_storage("redis://:wrong@" + host); });
  CHECK(wrong.rfind("journal redis://:***@" + host + "/0: authentication failed (WRONGPASS", 0) ==
        0);
  CHECK(wrong.find(":wrong@") == std::string::npos);
  CHECK_THROWS_WITH_AS(open_storage("redis://" + host),
                       doctest::Contains("the server requires a password (NOAUTH"),
                       std::runtime_error);
  CHECK_THROWS_WITH_AS(open_storage("redis://:right@" + host + "/99"),
                       doctest::Contains("cannot select db 99"), std::runtime_error);
  auto s = open_storage("redis://:right@" + host + "/2");
  CHECK(s->create_new_study({StudyDirection::kMinimize}, "s") == 0);
}

TEST_CASE("compsearch writes Redis records python3-optuna reads, byte for byte as Optuna's") {
  if (redis_server_path().empty()) COMPSEARCH_SKIP_TEST("redis-server is not installed");
  if (!python_has_optuna_and_redis()) COMPSEARCH_SKIP_TEST("python3-optuna or python3-redis");
  RedisServer server;
  const std::string url = server.url("/0");
  auto s = open_redis(url + "?prefix=cs");
  const int64_t study =
      s->create_new_study({StudyDirection::kMinimize, StudyDirection::kMaximize}, "s");
  const int64_t t0 = s->create_new_trial(study);
  s->set_trial_param(t0, "x", 0.25, make_float(0, 1));
  s->set_trial_param(t0, "n", 3, make_int(1, 8));
  s->set_trial_user_attr(t0, "note", "caf\u00e9 \u2713");  // ensure_ascii: \u escapes
  const std::vector<double> v0{1.5, -2e-7};
  s->set_trial_state_values(t0, TrialState::kComplete, &v0);
  const int64_t t1 = s->create_new_trial(study);
  s->set_trial_intermediate_value(t1, 2, 0.125);
  s->set_trial_state_values(t1, TrialState::kPruned);
  s->create_new_trial(study);  // RUNNING

  const auto py = run_python(kOptunaReadScript, {url, "cs", "s"});
  CHECK(py["log_number"] == 9);  // 10 records: log:0 .. log:9
  CHECK(py["not_json_dumps"] == nlohmann::json::array());
  std::vector<std::string> keys{"cs:log_number"};
  for (int i = 0; i <= 9; ++i) keys.push_back("cs:log:" + std::to_string(i));
  std::sort(keys.begin(), keys.end());
  CHECK(py["keys"].get<std::vector<std::string>>() == keys);  // no snapshot, nothing else
  const auto& trials = py["trials"];
  REQUIRE(trials.size() == 3);
  CHECK(trials[0]["state"] == "COMPLETE");
  CHECK(trials[0]["values"] == nlohmann::json{1.5, -2e-7});
  CHECK(trials[0]["params"] == nlohmann::json{{"x", 0.25}, {"n", 3}});
  CHECK(trials[0]["user_attrs"]["note"] == "caf\u00e9 \u2713");
  CHECK(trials[1]["state"] == "PRUNED");
  CHECK(trials[1]["intermediate"] == nlohmann::json{{"2", 0.125}});
  CHECK(trials[2]["state"] == "RUNNING");
  // The raw bytes of one record, against the Python literal Optuna writes for it.
  const auto raw = compsearch::search::testing::redis_cli(server, "GET cs:log:0");
  CHECK(raw.rfind("{\"op_code\": 0, \"worker_id\": \"", 0) == 0);
  CHECK(raw.find("\"study_name\": \"s\", \"directions\": [1, 2]}") != std::string::npos);
}

TEST_CASE("python3-optuna writes a Redis study compsearch reads and extends") {
  if (redis_server_path().empty()) COMPSEARCH_SKIP_TEST("redis-server is not installed");
  if (!python_has_optuna_and_redis()) COMPSEARCH_SKIP_TEST("python3-optuna or python3-redis");
  RedisServer server;
  const std::string url = server.url("/0");
  const auto made = run_python(R"(
import json, sys, optuna
from optuna.storages import JournalStorage, JournalRedisStorage
storage = JournalStorage(JournalRedisStorage(sys.argv[1], prefix='py'))
study = optuna.create_study(study_name='s', storage=storage, directions=['minimize'],
                            sampler=optuna.samplers.RandomSampler(seed=3))
def objective(t):
    x = t.suggest_float('x', -1, 1)
    t.suggest_int('k', 0, 9)
    t.suggest_categorical('c', ['a', 'b'])
    t.set_user_attr('u', [1, 'two'])
    t.report(x * 2, 1)
    if t.number == 2:
        raise optuna.TrialPruned()
    return x * x
study.optimize(objective, n_trials=4)
print(json.dumps([[t.number, t.state.name, t.values, t.params] for t in study.trials]))
)",
                               {url});
  REQUIRE(made.size() == 4);
  auto s = open_redis(url + "?prefix=py");
  const int64_t study = s->get_study_id_from_name("s");
  const auto trials = s->get_all_trials(study);
  REQUIRE(trials.size() == 4);
  for (size_t i = 0; i < 4; ++i) {
    CAPTURE(i);
    CHECK(trials[i].number == made[i][0]);
    CHECK(to_string(trials[i].state) == made[i][1].get<std::string>());
    if (!made[i][2].is_null()) CHECK(trials[i].values == made[i][2].get<std::vector<double>>());
    for (const auto& [name, value] : made[i][3].items()) CHECK(trials[i].param(name) == value);
    CHECK(trials[i].user_attrs.at("u") == nlohmann::json{1, "two"});
    CHECK(trials[i].intermediate_values.at(1) == 2 * made[i][3]["x"].get<double>());
  }
  // compsearch adds a trial; Optuna sees it, and every raw value is still json.dumps's.
  const int64_t t = s->create_new_trial(study);
  s->set_trial_param(t, "x", 0.5, make_float(-1, 1));
  const std::vector<double> v{0.25};
  s->set_trial_state_values(t, TrialState::kComplete, &v);
  const auto py = run_python(kOptunaReadScript, {url, "py", "s"});
  CHECK(py["not_json_dumps"] == nlohmann::json::array());
  REQUIRE(py["trials"].size() == 5);
  CHECK(py["trials"][4]["number"] == 4);
  CHECK(py["trials"][4]["state"] == "COMPLETE");
  CHECK(py["trials"][4]["values"] == nlohmann::json{0.25});
  CHECK(py["trials"][4]["params"] == nlohmann::json{{"x", 0.5}});
}

TEST_CASE("A study goes on after the Redis server restarts with appendonly") {
  if (redis_server_path().empty()) COMPSEARCH_SKIP_TEST("redis-server is not installed");
  RedisServer server;
  CapturedLog log;
  auto s = open_redis(server.url("/0?reconnect_s=20"));
  const int64_t study = s->create_new_study({StudyDirection::kMinimize}, "s");
  const std::vector<double> v{1.0};
  s->set_trial_state_values(s->create_new_trial(study), TrialState::kComplete, &v);
  server.restart();
  s->set_trial_state_values(s->create_new_trial(study), TrialState::kComplete, &v);
  CHECK(log.contains("lost the connection to Redis"));
  const auto trials = open_redis(server.url("/0"))->get_all_trials(study);
  REQUIRE(trials.size() == 2);
  CHECK(trials[0].number == 0);
  CHECK(trials[1].number == 1);
  CHECK(trials[1].state == TrialState::kComplete);
  CHECK(compsearch::search::testing::redis_cli(server, "GET :log_number") == "4\n");
}

TEST_CASE("A server that comes back without the records read so far is an error") {
  if (redis_server_path().empty()) COMPSEARCH_SKIP_TEST("redis-server is not installed");
  RedisServer server({"--appendonly", "no"});  // nothing persists
  auto s = open_redis(server.url("/0"));
  s->create_new_study({StudyDirection::kMinimize}, "s");
  server.restart();
  CHECK_THROWS_WITH_AS(s->get_all_studies(),
                       doctest::Contains("the server has 0 records but this worker has read 1"),
                       std::runtime_error);
}

TEST_CASE("A reply lost mid-append is not appended twice") {
  if (redis_server_path().empty()) COMPSEARCH_SKIP_TEST("redis-server is not installed");
  RedisServer server({"--enable-debug-command", "yes"});
  CapturedLog log;
  RedisOptions options;
  options.command_timeout_s = 0.3;
  auto s = open_redis(server.url("/0"), options);
  const int64_t study = s->create_new_study({StudyDirection::kMinimize}, "s");
  const int64_t t = s->create_new_trial(study);
  // The server stalls for 1.2 s: our EVAL waits behind DEBUG SLEEP, its reply times out, the
  // script still runs once the server wakes.
  std::thread staller([&] { compsearch::search::testing::redis_cli(server, "DEBUG SLEEP 1.2"); });
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  s->set_trial_user_attr(t, "k", 7);
  staller.join();
  INFO("log: " << nlohmann::json(log.messages).dump());
  CHECK(log.contains("while appending"));
  CHECK(log.contains("the record had been stored before the connection broke"));
  CHECK(compsearch::search::testing::redis_cli(server, "GET :log_number") == "2\n");
  CHECK(open_redis(server.url("/0"))->get_trial(t).user_attrs.at("k") == 7);
}

TEST_CASE("A connection lost during a trial marks nothing COMPLETE that was not told") {
  if (redis_server_path().empty()) COMPSEARCH_SKIP_TEST("redis-server is not installed");
  RedisServer server;
  CapturedLog log;
  auto s = open_redis(server.url("/0?reconnect_s=0.5"));
  const int64_t study = s->create_new_study({StudyDirection::kMinimize}, "s");
  const int64_t t = s->create_new_trial(study);
  server.stop();
  const std::vector<double> v{3.0};
  CHECK_THROWS_WITH_AS(s->set_trial_state_values(t, TrialState::kComplete, &v),
                       doctest::Contains("could not reconnect"), std::runtime_error);
  server.start();
  CHECK(open_redis(server.url("/0"))->get_trial(t).state == TrialState::kRunning);
  // The same worker, told again once the server is back, completes it once.
  s->set_trial_state_values(t, TrialState::kComplete, &v);
  const auto again = open_redis(server.url("/0"))->get_trial(t);
  CHECK(again.state == TrialState::kComplete);
  CHECK(again.values == v);
  CHECK(compsearch::search::testing::redis_cli(server, "GET :log_number") == "2\n");
}
