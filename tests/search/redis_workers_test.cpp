// Many workers on one Redis study (README "Running on many machines"): 8 `compsearch search`
// processes and 4 python3-optuna workers (JournalRedisStorage) at once; trial numbers come out
// unique and gap-free and every trial's final state and values read the same from compsearch
// (library and `compsearch trials`) and from Optuna.
#include <doctest/doctest.h>

#include <fstream>
#include <map>
#include <string>

#include "redis_server.h"
#include "search/journal_redis_backend.h"
#include "search/journal_storage.h"
#include "search_test_util.h"
#include "tests/test_skip.h"

using namespace compsearch::search;
using compsearch::search::testing::RedisServer;
using compsearch::search::testing::run_command;
using compsearch::search::testing::shell_quote;
using compsearch::search::testing::TempDir;

namespace {

constexpr int kCompsearchWorkers = 8;
constexpr int kOptunaWorkers = 4;
constexpr int kTrialsEach = 3;  // each compsearch worker's budget, each Optuna worker's trials

const std::string kCli = std::string(COMPSEARCH_BINARY_DIR) + "/cli/compsearch";

// An Optuna worker: joins (or creates) the study, asks and tells like any Optuna script; its
// last trial fails, so the study holds the three final states.
const std::string kOptunaWorker = R"(
import sys, optuna
from optuna.storages import JournalStorage, JournalRedisStorage
optuna.logging.set_verbosity(optuna.logging.WARNING)
url, seed = sys.argv[1], int(sys.argv[2])
storage = JournalStorage(JournalRedisStorage(url, prefix='many'))
study = optuna.create_study(study_name='many', storage=storage, load_if_exists=True,
                            directions=['minimize', 'minimize'],
                            sampler=optuna.samplers.RandomSampler(seed=seed))
for i in range()" + std::to_string(kTrialsEach) +
                                  R"():
    t = study.ask()
    x = t.suggest_float('py_x', 0, 1)
    if i == 0:
        study.tell(t, state=optuna.trial.TrialState.FAIL)
    else:
        study.tell(t, [x, 1000 * x])
)";

constexpr const char* kOptunaReader = R"(
import json, sys, optuna
from optuna.storages import JournalStorage, JournalRedisStorage
s = optuna.load_study(study_name='many',
                      storage=JournalStorage(JournalRedisStorage(sys.argv[1], prefix='many')))
print(json.dumps([[t.number, t.state.name, t.values] for t in s.trials]))
)";

}  // namespace

TEST_CASE("8 compsearch workers and 4 Optuna workers share one Redis study") {
  if (compsearch::search::testing::redis_server_path().empty())
    COMPSEARCH_SKIP_TEST("redis-server is not installed");
  if (run_command("/usr/bin/python3 -c 'import optuna, redis' 2>/dev/null").exit_code != 0)
    COMPSEARCH_SKIP_TEST("python3-optuna or python3-redis is not installed");
  RedisServer server;
  TempDir dir;
  const std::string url = server.url("/0?prefix=many");
  const std::string py_url = server.url("/0");
  // A data-free search (weight error against size) so that a trial takes milliseconds.
  const nlohmann::json config = {
      {"study_name", "many"},
      {"model", std::string(COMPSEARCH_SOURCE_DIR) + "/models/fmnist_cnn.onnx"},
      {"space", {{"w_bits", {2, 4, 8}}, {"prune_kind", {"none", "unstructured"}}}},
      {"targets", {"mcu:stm32f746"}},
      {"objectives", nlohmann::json::array({nlohmann::json::array({"weight_error", "minimize"}),
                                            nlohmann::json::array({"size_bytes", "minimize"})})},
      {"fidelity", {{"proxy", false}}},
      {"sampler", {{"name", "random"}, {"seed", 5}}},
      {"budget", {{"trials", kTrialsEach}, {"jobs", 1}}},
      {"storage", "unused.journal"}};
  std::ofstream(dir.file("cfg.json")) << config.dump(2);
  std::ofstream(dir.file("worker.py")) << kOptunaWorker;
  std::ofstream(dir.file("reader.py")) << kOptunaReader;

  // All twelve at once from one shell; it exits non-zero when any worker did.
  std::string script = "cd " + shell_quote(dir.path.string()) + " && pids=''";
  for (int i = 0; i < kCompsearchWorkers; ++i) {
    script += "; " + shell_quote(kCli) + " search --quiet --config cfg.json --storage " +
              shell_quote(url) + " > cs" + std::to_string(i) + ".log 2>&1 & pids=\"$pids $!\"";
  }
  for (int i = 0; i < kOptunaWorkers; ++i) {
    script += "; /usr/bin/python3 -W ignore worker.py " + shell_quote(py_url) + " " +
              std::to_string(i) + " > py" + std::to_string(i) + ".log 2>&1 & pids=\"$pids $!\"";
  }
  script += "; rc=0; for p in $pids; do wait $p || rc=1; done; exit $rc";
  const auto ran = run_command("sh -c " + shell_quote(script));
  if (ran.exit_code != 0) {
    for (const auto& e : std::filesystem::directory_iterator(dir.path))
      if (e.path().extension() == ".log")
        MESSAGE(e.path().filename().string()
                << ": " << compsearch::search::testing::read_file(e.path()));
  }
  REQUIRE(ran.exit_code == 0);

  // compsearch's view.
  JournalStorage storage(make_journal_redis_backend(parse_redis_url(url)));
  const int64_t study = storage.get_study_id_from_name("many");
  const auto trials = storage.get_all_trials(study);
  // Every Optuna worker ran its trials; every compsearch worker ran its budget less what the
  // study held when it started (so at least one trial each overall).
  REQUIRE(trials.size() >= static_cast<size_t>(kOptunaWorkers * kTrialsEach + kTrialsEach));
  std::map<std::string, int> states;
  for (size_t i = 0; i < trials.size(); ++i) {
    CAPTURE(i);
    CHECK(trials[i].number == static_cast<int64_t>(i));  // unique and gap-free
    CHECK(trials[i].state != TrialState::kRunning);      // every worker finished its trials
    ++states[to_string(trials[i].state)];
  }
  CHECK(states["FAIL"] >= kOptunaWorkers);
  CHECK(states["COMPLETE"] >= kOptunaWorkers * (kTrialsEach - 1) + 1);

  // Optuna's view: the same trials, states and values.
  const auto py = run_command("/usr/bin/python3 -W ignore " + dir.file("reader.py") + " " +
                              shell_quote(py_url));
  REQUIRE(py.exit_code == 0);
  const auto optuna_trials = nlohmann::json::parse(py.output);
  REQUIRE(optuna_trials.size() == trials.size());
  for (size_t i = 0; i < trials.size(); ++i) {
    CAPTURE(i);
    CHECK(optuna_trials[i][0] == trials[i].number);
    CHECK(optuna_trials[i][1] == to_string(trials[i].state));
    if (trials[i].state == TrialState::kComplete)
      CHECK(optuna_trials[i][2].get<std::vector<double>>() == trials[i].values);
    else
      CHECK(optuna_trials[i][2].is_null());
  }

  // The CLI's study verbs read the same study through the URL.
  const auto listed = run_command(shell_quote(kCli) + " trials --storage " + shell_quote(url) +
                                  " --study-name many --format json");
  REQUIRE(listed.exit_code == 0);
  CHECK(nlohmann::json::parse(listed.output).size() == trials.size());
}
