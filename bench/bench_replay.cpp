// Journal replay benchmark (issue 12, item 5): a 28,000-trial, ~135 MB journal written by
// scripts/make_big_journal.py (made when absent), opened by the CLI verbs that replay it whole,
// `compsearch trials`, `best-trials` and `ask`, each a fresh process timed from exec to exit
// with its peak RSS (wait4), against Optuna 3.1 loading the same file in the same run
// (JournalStorage(JournalFileStorage(path)) + load_study + get_trials, /usr/bin/python3). Then
// the incremental re-read: a JournalStorage that has read the file reads 100 new trials
// appended by another writer, timed against its first full read. Prints the machine, the peer
// and the ratios; the goal is <= 1 s and peak RSS <= 2x the file size per verb.
//
//   bench_replay [--journal PATH (default: <build>/big.journal)] [--compsearch BIN] [--baseline
//   BIN] [--repeat N]
//                [--optuna live|none]
//
// --compsearch: the CLI to time (default: cli/compsearch next to this program's build folder;
// "none" times the in-process parts only).
// --baseline: another build of the CLI (e.g. the commit before the change) timed in the same run,
// for before/after numbers. --repeat: runs per verb (the median is printed). Run from the
// repository root (the generator is scripts/make_big_journal.py).
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "bench/bench_common.h"
#include "search/journal_replay.h"
#include "search/journal_storage.h"
#include "search/python_json.h"

namespace fs = std::filesystem;
using compsearch::search::JournalStorage;

namespace {

const char* kUsage =
    "usage: bench_replay [--journal PATH] [--compsearch BIN] [--baseline BIN] [--repeat N] "
    "[--optuna live|none]\n";

struct Run {
  double wall_s = 0;
  double cpu_s = 0;
  double peak_rss_mb = 0;
  int status = 0;
};

// Runs argv as a child (stdout to /dev/null, stderr kept), timing it from fork to exit.
Run run_child(const std::vector<std::string>& args) {
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  const auto start = std::chrono::steady_clock::now();
  const pid_t pid = fork();
  if (pid == 0) {
    FILE* null = std::fopen("/dev/null", "w");
    if (null) dup2(fileno(null), STDOUT_FILENO);
    execv(argv[0], argv.data());
    std::perror(argv[0]);
    _exit(127);
  }
  Run r;
  rusage ru{};
  int status = 0;
  wait4(pid, &status, 0, &ru);
  r.wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  r.cpu_s = static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
            1e-6 * static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
  r.peak_rss_mb = static_cast<double>(ru.ru_maxrss) / 1024.0;
  r.status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return r;
}

Run median_run(const std::vector<std::string>& args, int repeat, const std::string& copy_from = "",
               const std::string& copy_to = "") {
  std::vector<Run> runs;
  for (int i = 0; i < repeat; ++i) {
    // ask appends a trial: each run starts from the same file.
    if (!copy_from.empty()) fs::copy_file(copy_from, copy_to, fs::copy_options::overwrite_existing);
    runs.push_back(run_child(args));
    if (runs.back().status != 0) {
      std::cerr << "bench_replay: " << args[0] << " " << args[1] << " exited with status "
                << runs.back().status << "\n";
      std::exit(1);
    }
  }
  std::sort(runs.begin(), runs.end(),
            [](const Run& a, const Run& b) { return a.wall_s < b.wall_s; });
  return runs[runs.size() / 2];
}

std::string fixed(double v, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.*f", digits, v);
  return buf;
}

void print_row(const std::string& what, const Run& r, double file_mb) {
  std::cout << "  " << what << ": " << fixed(r.wall_s, 2) << " s wall, " << fixed(r.cpu_s, 2)
            << " s CPU, peak RSS " << fixed(r.peak_rss_mb, 0) << " MB ("
            << fixed(r.peak_rss_mb / file_mb, 2) << "x the file)\n";
}

const char* kOptunaScript =
    "import sys, time\n"
    "import warnings; warnings.simplefilter('ignore')\n"
    "import optuna\n"
    "from optuna.storages import JournalStorage, JournalFileStorage\n"
    "optuna.logging.set_verbosity(optuna.logging.WARNING)\n"
    "t = time.perf_counter()\n"
    "s = optuna.load_study(study_name='big', "
    "storage=JournalStorage(JournalFileStorage(sys.argv[1])))\n"
    "n = len(s.get_trials())\n"
    "print(n, time.perf_counter() - t)\n";

// 100 trials by another worker (create, a param, two attributes, complete): the new bytes an
// incremental re-read consumes.
std::string appended_trials(int64_t first_trial_id) {
  std::string out;
  const std::string w = R"("worker_id":"bench-appender-1")";
  for (int64_t id = first_trial_id; id < first_trial_id + 100; ++id) {
    const std::string t = std::to_string(id);
    out += R"({"op_code":4,)" + w +
           R"(,"study_id":0,"datetime_start":"2026-12-01T00:00:00.000000"})"
           "\n";
    out +=
        R"({"op_code":5,)" + w + R"(,"trial_id":)" + t +
        R"(,"param_name":"kd.epochs","param_value_internal":1,"distribution":"{\"name\": \"IntDistribution\", \"attributes\": {\"log\": false, \"step\": 1, \"low\": 0, \"high\": 3}}"})"
        "\n";
    out += R"({"op_code":8,)" + w + R"(,"trial_id":)" + t +
           R"(,"user_attr":{"accuracy":0.875}})"
           "\n";
    out += R"({"op_code":8,)" + w + R"(,"trial_id":)" + t +
           R"(,"user_attr":{"latency_ms@mcu:stm32f746":3.25}})"
           "\n";
    out += R"({"op_code":6,)" + w + R"(,"trial_id":)" + t +
           R"(,"state":1,"values":[0.875,3.25],"datetime_complete":"2026-12-01T00:00:01.000000"})"
           "\n";
  }
  return out;
}

double cpu_now_s() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         1e-6 * static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

// Replays the journal into a fresh ReplayState, line by line, through the nlohmann reader that
// JournalStorage used before simdjson (apply(parse_python_json(line))) or through apply_text.
// Returns {wall s, CPU s}.
std::pair<double, double> replay_in_process(const std::string& path, bool nlohmann_reader) {
  std::ifstream in(path, std::ios::binary);
  std::string line;
  const auto t0 = std::chrono::steady_clock::now();
  const double c0 = cpu_now_s();
  {
    compsearch::search::journal::ReplayState state;
    while (std::getline(in, line)) {
      try {
        if (nlohmann_reader)
          state.apply(compsearch::search::parse_python_json(line), "bench");
        else
          state.apply_text(line, "bench");
      } catch (const std::exception&) {
      }
    }
  }
  return {std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(),
          cpu_now_s() - c0};
}

}  // namespace

int main(int argc, char** argv) {
  namespace bench = compsearch::bench;
  if (bench::help_requested(argc, argv, kUsage)) return 0;
  std::string journal = (fs::path(argv[0]).parent_path().parent_path() / "big.journal").string();
  std::string compsearch =
      (fs::path(argv[0]).parent_path().parent_path() / "cli" / "compsearch").string();
  std::string baseline, optuna = "live";
  int repeat = 3;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (i + 1 >= argc) bench::usage_error("missing value after " + a, kUsage);
    const std::string v = argv[++i];
    if (a == "--journal")
      journal = v;
    else if (a == "--compsearch")
      compsearch = v;
    else if (a == "--baseline")
      baseline = v;
    else if (a == "--optuna")
      optuna = v;
    else if (a == "--repeat")
      repeat = std::max(1, std::stoi(v));
    else
      bench::usage_error("unknown option " + a, kUsage);
  }
  if (!fs::exists(journal)) {
    std::cout << "writing " << journal << " with scripts/make_big_journal.py\n";
    const Run r = run_child({"/usr/bin/python3", "scripts/make_big_journal.py", journal});
    if (r.status != 0 || !fs::exists(journal)) {
      std::cerr << "bench_replay: scripts/make_big_journal.py failed (run from the repository "
                   "root)\n";
      return 1;
    }
  }
  const double file_mb = static_cast<double>(fs::file_size(journal)) / (1024.0 * 1024.0);
  std::cout << bench::machine_line() << "\n";
  std::cout << "journal: " << journal << ", " << fixed(file_mb, 1)
            << " MB (scripts/make_big_journal.py: 28,000 trials, study \"big\")\n";
  std::cout << "peer: Optuna 3.1 (/usr/bin/python3), JournalStorage(JournalFileStorage(path)) + "
               "load_study + get_trials, in this run\n";

  const std::string ask_copy = journal + ".ask";
  const std::string space =
      R"({"kd.epochs": {"name": "IntDistribution", "attributes": {"log": false, "step": 1, "low": 0, "high": 3}}})";
  struct Verb {
    std::string name;
    std::vector<std::string> args;
    bool writes;
  };
  const std::vector<Verb> verbs = {
      {"trials", {"trials", "--storage", journal, "--study-name", "big"}, false},
      {"best-trials", {"best-trials", "--storage", journal, "--study-name", "big"}, false},
      {"ask",
       {"ask", "--storage", ask_copy, "--study-name", "big", "--sampler", "RandomSampler",
        "--search-space", space},
       true},
  };
  std::vector<std::pair<std::string, std::string>> builds;
  if (compsearch != "none") builds.push_back({"compsearch", compsearch});
  if (!baseline.empty()) builds.push_back({"baseline", baseline});
  std::map<std::string, double> wall;  // "<build> <verb>" -> s
  for (const auto& [label, bin] : builds) {
    std::cout << label << " (" << bin << "), median of " << repeat << ":\n";
    for (const auto& v : verbs) {
      std::vector<std::string> args = {bin};
      args.insert(args.end(), v.args.begin(), v.args.end());
      const Run r =
          v.writes ? median_run(args, repeat, journal, ask_copy) : median_run(args, repeat);
      print_row(v.name, r, file_mb);
      wall[label + " " + v.name] = r.wall_s;
    }
  }
  fs::remove(ask_copy);

  double optuna_s = 0;
  if (optuna == "live") {
    const Run r = median_run({"/usr/bin/python3", "-c", kOptunaScript, journal}, 1);
    print_row("Optuna 3.1 load_study + get_trials (one run)", r, file_mb);
    optuna_s = r.wall_s;
  }
  for (const auto& v : verbs) {
    if (!wall.count("compsearch " + v.name)) break;
    const double ours = wall["compsearch " + v.name];
    std::cout << "ratio " << v.name << ": ";
    if (optuna_s > 0) std::cout << "Optuna / compsearch = " << fixed(optuna_s / ours, 1) << "x";
    if (wall.count("baseline " + v.name))
      std::cout << (optuna_s > 0 ? ", " : "")
                << "baseline / compsearch = " << fixed(wall["baseline " + v.name] / ours, 1) << "x";
    std::cout << (ours <= 1.0 ? " (goal <= 1 s: met)" : " (goal <= 1 s: not met)") << "\n";
  }

  // The record parser alone, before (nlohmann) and after (simdjson), in this process.
  const auto before = replay_in_process(journal, true);
  const auto after = replay_in_process(journal, false);
  std::cout << "replay in process (ReplayState, every line): nlohmann reader (before) "
            << fixed(before.first, 2) << " s wall / " << fixed(before.second, 2)
            << " s CPU; apply_text (simdjson, after) " << fixed(after.first, 2) << " s wall / "
            << fixed(after.second, 2)
            << " s CPU; before / after = " << fixed(before.second / after.second, 1) << "x (CPU)\n";

  // Incremental re-read: a reader that has replayed the file reads 100 appended trials.
  const std::string inc = journal + ".incremental";
  fs::copy_file(journal, inc, fs::copy_options::overwrite_existing);
  {
    auto t0 = std::chrono::steady_clock::now();
    JournalStorage reader(inc);
    const auto first = reader.get_all_trials(0).size();
    const double full_s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const std::string extra = appended_trials(static_cast<int64_t>(first));
    {
      std::ofstream out(inc, std::ios::app | std::ios::binary);
      out << extra;
    }
    t0 = std::chrono::steady_clock::now();
    const int64_t last = reader.get_trial_id_from_study_id_trial_number(
        0, static_cast<int64_t>(first) + 99);  // reads the new records, copies no trial
    const double inc_s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::cout << "incremental re-read (in process): first read + get_all_trials "
              << fixed(full_s, 2) << " s; " << extra.size() << " appended bytes (100 trials) "
              << fixed(inc_s * 1e3, 2) << " ms (trial id " << last << "), "
              << fixed(full_s / std::max(inc_s, 1e-9), 0) << "x less than the first read\n";
  }
  fs::remove(inc);
  return 0;
}
