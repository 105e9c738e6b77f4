// Many writers on one journal (issue 12, item 4): N compsearch processes and M python3-optuna
// processes ask and tell T trials each on one study at once, then the study is checked (trial
// numbers unique and gap-free, every trial a worker was told about COMPLETE with the value it
// told: nothing lost) and the wall time is set against the same load on Optuna alone (N + M
// python3-optuna processes), measured in the same run.
//
//   bench_many_writers [--compsearch 32] [--optuna 32] [--trials 200] [--storage PATH|redis://..]
//                      [--no-baseline]
//
// The storage is a fresh journal file in a temporary directory unless --storage names one (a
// redis:// URL gets a fresh prefix per run). Exit status 1 when a check fails.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "bench/bench_common.h"
#include "search/distributions.h"
#include "search/open_storage.h"
#include "search/random_sampler.h"
#include "search/study.h"

namespace {

namespace fs = std::filesystem;
using namespace compsearch::search;

constexpr const char* kStudy = "many";

// One python3-optuna worker: argv = storage, trials, seed, out file. The storage argument is a
// journal path or "redis://...#prefix".
constexpr const char* kOptunaWorker = R"(
import json, sys, optuna
from optuna.storages import JournalStorage, JournalFileStorage, JournalRedisStorage
optuna.logging.set_verbosity(optuna.logging.WARNING)
where, trials, seed, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
if where.startswith('redis://'):
    url, prefix = where.split('#', 1)
    backend = JournalRedisStorage(url, prefix=prefix)
else:
    backend = JournalFileStorage(where)
study = optuna.load_study(study_name='many', storage=JournalStorage(backend),
                          sampler=optuna.samplers.RandomSampler(seed=seed))
# Optuna 3.1's file reader raises JSONDecodeError when it reads a line another process is still
# appending (optuna#5138, fixed in 3.6); nothing is applied then, so the call is retried, as a
# supervisor would restart the worker. A raise after the call's own write (ask, tell) is
# detected by looking at the storage: an ask whose trial was written but not returned leaves an
# orphan RUNNING trial, counted on the 'orphans' line.
retries = orphans = 0
def retry(fn):
    global retries
    while True:
        try:
            return fn()
        except json.JSONDecodeError:
            retries += 1
def ask():
    global retries, orphans
    while True:
        try:
            return study.ask()
        except json.JSONDecodeError:  # before or after its CREATE_TRIAL record: maybe an orphan
            retries += 1
            orphans += 1
with open(out, 'w') as f:
    for _ in range(trials):
        t = ask()
        x = retry(lambda: t.suggest_float('x', 0, 1))
        def tell():
            if retry(lambda: study._storage.get_trial(t._trial_id)).state.is_finished():
                return
            study.tell(t, x * x)
        retry(tell)
        f.write('%d %r\n' % (t.number, x * x))
        f.flush()
sys.stderr.write('retries %d orphans %d\n' % (retries, orphans))
)";

// The storage a worker opens: the journal path, or the redis URL with its prefix.
struct Target {
  std::string path_or_url;  // as open_storage takes it
  std::string for_python;   // as kOptunaWorker takes it
};

Target make_target(const std::string& storage, const fs::path& dir, const std::string& tag) {
  if (storage.rfind("redis://", 0) == 0) {
    const std::string prefix = "bench_many_writers_" + std::to_string(::getpid()) + "_" + tag;
    const std::string base = storage.substr(0, storage.find('?'));
    return {base + "?prefix=" + prefix, base + "#" + prefix};
  }
  const std::string path =
      storage.empty() ? (dir / ("study_" + tag + ".journal")).string() : storage + "." + tag;
  return {path, path};
}

// A compsearch worker (this program with --worker): T trials through the library.
int run_worker(const std::string& storage, int trials, uint64_t seed, const std::string& out) {
  auto study = Study::load(open_storage(storage), kStudy, std::make_shared<RandomSampler>(seed));
  std::ofstream f(out);
  f.precision(17);
  for (int i = 0; i < trials; ++i) {
    Trial t = study->ask();
    const double x = t.suggest_float("x", 0, 1);
    study->tell(t.number(), std::vector<double>{x * x});
    f << t.number() << " " << x * x << "\n";
  }
  return 0;
}

struct Load {
  double wall_s = 0;
  bool ok = true;
  std::string report;
};

// Starts `cs` compsearch and `py` Optuna workers on a fresh study, waits, checks the study.
Load run_load(const std::string& self, const Target& target, const fs::path& dir,
              const std::string& tag, int cs, int py, int trials) {
  Load load;
  {
    auto storage = open_storage(target.path_or_url);
    Study::create(storage, kStudy, {StudyDirection::kMinimize});
  }
  const std::string script = (dir / "worker.py").string();
  std::ofstream(script) << kOptunaWorker;
  std::vector<pid_t> pids;
  std::vector<std::string> outs;
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < cs + py; ++i) {
    const std::string out = (dir / (tag + "_w" + std::to_string(i) + ".txt")).string();
    const std::string log = (dir / (tag + "_w" + std::to_string(i) + ".log")).string();
    outs.push_back(out);
    if (i < cs) {
      pids.push_back(
          compsearch::bench::spawn_logged({self, "--worker", target.path_or_url,
                                           std::to_string(trials), std::to_string(1000 + i), out},
                                          log, /*append=*/false));
    } else {
      pids.push_back(compsearch::bench::spawn_logged(
          {"/usr/bin/python3", "-W", "ignore", script, target.for_python, std::to_string(trials),
           std::to_string(i), out},
          log, /*append=*/false));
    }
  }
  int failed_workers = 0, optuna_reader_crashes = 0;
  int64_t optuna_retries = 0, optuna_orphans = 0;
  for (size_t i = 0; i < pids.size(); ++i) {
    int status = 0;
    ::waitpid(pids[i], &status, 0);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
      if (static_cast<int>(i) >= cs) {  // the worker's last line: "retries N orphans M"
        std::ifstream log(dir / (tag + "_w" + std::to_string(i) + ".log"));
        std::string word;
        int64_t n = 0;
        while (log >> word) {
          if (word == "retries" && log >> n) optuna_retries += n;
          if (word == "orphans" && log >> n) optuna_orphans += n;
        }
      }
      continue;
    }
    // Optuna < 3.6 reads a line another process is still appending as two lines and raises
    // (optuna/optuna#5138, fixed by #5195): a crash of the Python reader, counted apart.
    std::ifstream log(dir / (tag + "_w" + std::to_string(i) + ".log"));
    const std::string text((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
    if (static_cast<int>(i) >= cs && text.find("raise last_decode_error") != std::string::npos)
      ++optuna_reader_crashes;
    else
      ++failed_workers;
  }
  load.wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  // What each worker was told, against the study.
  std::map<int64_t, double> told;
  int64_t duplicates = 0;
  for (const auto& out : outs) {
    std::ifstream f(out);
    int64_t number;
    double value;
    while (f >> number >> value) duplicates += !told.emplace(number, value).second;
  }
  auto storage = open_storage(target.path_or_url);
  const auto trials_seen = storage->get_all_trials(storage->get_study_id_from_name(kStudy));
  int64_t gaps = 0, not_complete = 0, lost = 0, wrong_value = 0, running = 0;
  for (size_t i = 0; i < trials_seen.size(); ++i) {
    const auto& t = trials_seen[i];
    gaps += t.number != static_cast<int64_t>(i);
    not_complete += t.state != TrialState::kComplete;
    running += t.state == TrialState::kRunning;
  }
  for (const auto& [number, value] : told) {
    if (number < 0 || number >= static_cast<int64_t>(trials_seen.size())) {
      ++lost;
      continue;
    }
    const auto& t = trials_seen[static_cast<size_t>(number)];
    if (t.state != TrialState::kComplete) ++lost;
    // Optuna writes repr(x*x) (17 digits at most), we write 17 significant digits: exact.
    else if (t.values.size() != 1 || t.values[0] != value)
      ++wrong_value;
  }
  // A crashed Optuna worker leaves at most its trial in hand RUNNING and never runs the rest.
  const int64_t expected = static_cast<int64_t>(cs + py - optuna_reader_crashes) * trials;
  std::ostringstream os;
  os << tag << ": " << cs << " compsearch + " << py << " python3-optuna processes x " << trials
     << " trials: " << load.wall_s << " s wall; study has " << trials_seen.size() << " trials ("
     << expected << " expected from the workers that finished), workers failed " << failed_workers
     << ", python3-optuna workers killed by Optuna 3.1's reader race "
     << "(optuna#5138) " << optuna_reader_crashes << ", calls retried after that race "
     << optuna_retries << " (asks that may have left a RUNNING orphan: " << optuna_orphans
     << "), numbers out of place " << gaps << ", not COMPLETE " << not_complete
     << ", told but lost " << lost << ", wrong values " << wrong_value << ", numbers told twice "
     << duplicates;
  load.report = os.str();
  // Trials not COMPLETE may only be those a crashed Optuna worker held (at most one each) or an
  // ask retried after the race left behind.
  load.ok = failed_workers == 0 && gaps == 0 && lost == 0 && wrong_value == 0 && duplicates == 0 &&
            not_complete == running && running <= optuna_reader_crashes + optuna_orphans &&
            static_cast<int64_t>(told.size()) >= expected;
  return load;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  try {
    if (!args.empty() && args[0] == "--worker") {
      if (args.size() != 5) throw std::invalid_argument("--worker STORAGE TRIALS SEED OUT");
      return run_worker(args[1], std::stoi(args[2]), std::stoull(args[3]), args[4]);
    }
    int cs = 32, py = 32, trials = 200;
    bool baseline = true;
    std::string storage;
    for (size_t i = 0; i < args.size(); ++i) {
      auto next = [&]() -> std::string {
        if (i + 1 >= args.size()) throw std::invalid_argument(args[i] + " needs a value");
        return args[++i];
      };
      if (args[i] == "--compsearch") {
        cs = std::stoi(next());
      } else if (args[i] == "--optuna") {
        py = std::stoi(next());
      } else if (args[i] == "--trials") {
        trials = std::stoi(next());
      } else if (args[i] == "--storage") {
        storage = next();
      } else if (args[i] == "--no-baseline") {
        baseline = false;
      } else if (args[i] == "--help") {
        std::cout << "usage: bench_many_writers [--compsearch N] [--optuna M] [--trials T] "
                     "[--storage PATH|redis://host:port/db] [--no-baseline]\n";
        return 0;
      } else {
        throw std::invalid_argument("unknown argument " + args[i]);
      }
    }
    if (cs < 0 || py < 0 || trials < 1 || cs + py < 1)
      throw std::invalid_argument("need --compsearch + --optuna >= 1 and --trials >= 1");
    char tmpl[] = "/tmp/bench_many_writers_XXXXXX";
    if (!::mkdtemp(tmpl)) throw std::runtime_error("mkdtemp failed");
    const fs::path dir(tmpl);
    const std::string self = fs::read_symlink("/proc/self/exe").string();
    std::cout << compsearch::bench::machine_line() << "\n";
    const Load mixed =
        run_load(self, make_target(storage, dir, "mixed"), dir, "mixed", cs, py, trials);
    std::cout << mixed.report << "\n";
    bool ok = mixed.ok;
    if (baseline) {
      const Load alone =
          run_load(self, make_target(storage, dir, "optuna"), dir, "optuna", 0, cs + py, trials);
      std::cout << alone.report << "\n";
      std::cout << "peer: python3-optuna "
                << "3.1"
                << " alone with the same load; wall time "
                << "compsearch+optuna / optuna alone = " << mixed.wall_s / alone.wall_s << "\n";
      ok = ok && alone.ok;
    }
    std::cout << (ok ? "all checks passed" : "CHECKS FAILED") << " (files in " << dir.string()
              << ")\n";
    if (ok) fs::remove_all(dir);
    return ok ? 0 : 1;
  } catch (const std::exception& e) {
    std::cerr << "bench_many_writers: " << e.what() << "\n";
    return 2;
  }
}
