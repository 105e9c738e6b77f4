// Sampler benchmark against Optuna 3.1 (scripts/bench_samplers_optuna.py, run with
// /usr/bin/python3): per-trial sampler overhead and hypervolume after 200 and 1,000
// evaluations (median of seeds) for NSGA-II and multi-objective TPE on ZDT1, ZDT2, DTLZ2
// (3 objectives) and a 30-parameter mixed space; plus the exact solver on 54 layers x 60
// options. Prints the machine, the peer and the ratios.
//
//   bench_samplers [--trials 1000] [--seeds 5] [--optuna live|none|DIR] [--part all|samplers|exact]
//                  [--problems zdt1,zdt2,dtlz2,mixed30] [--samplers NSGAIISampler,TPESampler]
//
// --optuna live (default) runs the Optuna script now for NSGA-II (every problem and seed at
// --trials) and for TPE's overhead at study size 1,000 (5 trials after 995 random ones, seed 0:
// Optuna's MOTPE takes 5-40 s per trial there); Optuna's TPE 200-trial runs (HV@200) take
// ~1.5 h, so they are read from bench/optuna_results/tpe_200.jsonl, committed with the script
// that made them (scripts/make_optuna_sampler_results.sh; dated, reduced seeds). --optuna DIR
// reads everything from DIR (nsga2_1000.jsonl, tpe_200.jsonl, tpe_prefill.jsonl), e.g.
// bench/optuna_results. Overheads are process CPU time per trial minus the objective's own
// arithmetic, for both peers. No Optuna TPE run reaches 1,000 trials (hours per seed here), so
// TPE's HV@1000 has no peer value.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "bench/bench_common.h"
#include "search/exact_solver.h"
#include "search/hypervolume.h"
#include "search/in_memory_storage.h"
#include "search/nsga2_sampler.h"
#include "search/problems.h"
#include "search/random_sampler.h"
#include "search/sampler_factory.h"
#include "search/study.h"

using namespace compsearch::search;

namespace {

double cpu_seconds() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

// The benchmark drives the real Study over an InMemoryStorage (what a library user runs), so
// its per-trial overhead includes the study's own ask/tell work, not only the sampler's.
constexpr const char* kStudyName = "bench";

struct Problem {
  std::string name;
  size_t n_objectives;
  std::vector<std::pair<std::string, Distribution>> params;
  std::function<std::vector<double>(const FrozenTrial&)> evaluate;  // the arithmetic only
  Point reference;
};

std::vector<Problem> problems() {
  std::vector<Problem> out;
  auto floats = [](size_t n) {
    std::vector<std::pair<std::string, Distribution>> ps;
    for (size_t i = 0; i < n; ++i) ps.emplace_back("x" + std::to_string(i), make_float(0, 1));
    std::sort(ps.begin(), ps.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
    return ps;
  };
  auto xs = [](const FrozenTrial& t, size_t n) {
    std::vector<double> x(n);
    for (size_t i = 0; i < n; ++i) x[i] = t.params.at("x" + std::to_string(i));
    return x;
  };
  out.push_back(
      {"zdt1", 2, floats(30), [=](const FrozenTrial& t) { return zdt1(xs(t, 30)); }, {1.1, 11.0}});
  out.push_back(
      {"zdt2", 2, floats(30), [=](const FrozenTrial& t) { return zdt2(xs(t, 30)); }, {1.1, 11.0}});
  out.push_back({"dtlz2",
                 3,
                 floats(12),
                 [=](const FrozenTrial& t) { return dtlz2(xs(t, 12), 3); },
                 {4.4, 4.4, 4.4}});
  // mixed30: must match scripts/bench_samplers_optuna.py.
  std::vector<std::pair<std::string, Distribution>> ps{{"x0", make_float(0, 1)}};
  for (int i = 1; i < 5; ++i) ps.emplace_back("f" + std::to_string(i), make_float(0, 1));
  for (int i = 5; i < 10; ++i)
    ps.emplace_back("s" + std::to_string(i), make_float(0, 1, false, 0.05));
  for (int i = 0; i < 5; ++i) ps.emplace_back("i" + std::to_string(i), make_int(0, 10));
  for (int i = 5; i < 10; ++i) ps.emplace_back("l" + std::to_string(i), make_int(1, 64, true));
  for (int i = 0; i < 10; ++i) {
    ps.emplace_back("c" + std::to_string(i), make_categorical({"a", "b", "c", "d"}));
  }
  // The samplers draw every parameter from a seed of its own name, so the order in which a
  // trial asks for them changes nothing; sorted by name, like the other problems.
  std::sort(ps.begin(), ps.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  out.push_back({"mixed30",
                 2,
                 ps,
                 [](const FrozenTrial& t) {
                   double s = 0;
                   for (const auto& [name, v] : t.params) {
                     switch (name[0]) {
                       case 'f':
                       case 's':
                         s += v;
                         break;
                       case 'i':
                         s += std::abs(v - 3) / 7.0;
                         break;
                       case 'l':
                         s += std::log2(v) / 6.0;
                         break;
                       case 'c':
                         s += v / 3.0;
                         break;
                       default:
                         break;
                     }
                   }
                   const double g = 1.0 + 9.0 * s / 29.0, x0 = t.params.at("x0");
                   return std::vector<double>{x0, g * (1.0 - std::sqrt(x0 / g))};
                 },
                 {1.1, 11.0}});
  return out;
}

struct RunResult {
  double overhead_ms_per_trial = 0;
  double fresh_ask_ms = NAN;  // ask + tell by a new sampler on the finished study (CLI-like)
  std::vector<std::vector<double>> values;
};

// "NSGAIISampler+SBX": our NSGA-II with the SBX crossover option (not Optuna's default; its
// peer column shows Optuna's default NSGAIISampler). Other names go to make_sampler.
std::unique_ptr<Sampler> make_bench_sampler(const std::string& name, uint64_t seed) {
  if (name == "NSGAIISampler+SBX") {
    NSGAIISampler::Options o;
    o.seed = seed;
    o.crossover = NSGAIISampler::Options::Crossover::kSBX;
    return std::make_unique<NSGAIISampler>(o);
  }
  return make_sampler(name, {{"seed", seed}});
}

// `prefill` random trials (untimed), then `warmup` untimed trials of the sampler under test (its
// first call copies the prefilled study into the sampler's trial cache), then `n_trials` timed
// ones. With `fresh_asks`, that many more trials are each asked by a new sampler, as every CLI
// `ask` process does (it rebuilds its state from the study's trials), and timed apart.
RunResult run_ours(const Problem& p, const std::string& sampler_name, uint64_t seed, int n_trials,
                   int prefill, int warmup = 0, int fresh_asks = 0) {
  auto storage = std::make_shared<InMemoryStorage>();
  const std::vector<StudyDirection> directions(p.n_objectives, StudyDirection::kMinimize);
  auto ask_and_tell = [&](Study& study) {
    Trial t = study.ask(p.params);
    study.tell(t.number(), p.evaluate(t.cached()), TrialState::kComplete);
  };
  RunResult r;
  if (prefill > 0) {
    auto random =
        Study::create(storage, kStudyName, directions, std::make_shared<RandomSampler>(seed));
    for (int i = 0; i < prefill; ++i) ask_and_tell(*random);
  }
  auto study = Study::create(storage, kStudyName, directions,
                             std::shared_ptr<Sampler>(make_bench_sampler(sampler_name, seed)),
                             /*load_if_exists=*/true);
  for (int i = 0; i < warmup; ++i) ask_and_tell(*study);
  double objective_s = 0;
  const double t0 = cpu_seconds();
  for (int i = 0; i < n_trials; ++i) {
    Trial t = study->ask(p.params);
    const double o0 = cpu_seconds();
    auto v = p.evaluate(t.cached());
    objective_s += cpu_seconds() - o0;
    study->tell(t.number(), std::move(v), TrialState::kComplete);
  }
  const double total = cpu_seconds() - t0;
  r.overhead_ms_per_trial = 1e3 * (total - objective_s) / n_trials;
  if (fresh_asks > 0) {
    double fresh_s = 0;
    for (int i = 0; i < fresh_asks; ++i) {
      // A CLI process: a new Study object and a new sampler on the same storage.
      auto fresh = Study::load(storage, kStudyName,
                               std::shared_ptr<Sampler>(make_bench_sampler(sampler_name, seed)));
      const double f0 = cpu_seconds();
      Trial t = fresh->ask(p.params);
      const double f1 = cpu_seconds();
      auto v = p.evaluate(t.cached());
      const double f2 = cpu_seconds();
      fresh->tell(t.number(), std::move(v), TrialState::kComplete);
      fresh_s += (f1 - f0) + (cpu_seconds() - f2);
    }
    r.fresh_ask_ms = 1e3 * fresh_s / fresh_asks;
  }
  // Only the first prefill + warmup + n_trials trials: the fresh asks come after.
  const size_t n_kept = static_cast<size_t>(prefill + warmup + n_trials);
  for (const auto& t : study->get_trials()) {
    if (r.values.size() < n_kept) r.values.push_back(t.values);
  }
  return r;
}

double hv_after(const std::vector<std::vector<double>>& values, size_t n, const Point& ref) {
  if (values.size() < n) return NAN;
  return hypervolume(std::vector<Point>(values.begin(), values.begin() + n), ref);
}

double median(std::vector<double> v) {
  v.erase(std::remove_if(v.begin(), v.end(), [](double x) { return std::isnan(x); }), v.end());
  if (v.empty()) return NAN;
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
}

// Optuna results: key (problem, sampler) -> runs.
struct PeerRun {
  int seed, n_trials, prefill;
  double overhead_ms;
  std::vector<std::vector<double>> values;
};
using PeerRuns = std::map<std::pair<std::string, std::string>, std::vector<PeerRun>>;

void read_peer(const std::string& path, PeerRuns& runs, bool optional = false) {
  std::ifstream in(path);
  if (!in) {
    if (!optional) std::cerr << "warning: no Optuna results in " << path << "\n";
    return;
  }
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    const auto j = nlohmann::json::parse(line);
    PeerRun r;
    r.seed = j.at("seed");
    r.n_trials = j.at("n_trials");
    r.prefill = j.value("prefill", 0);
    r.overhead_ms =
        1e3 * (j.at("total_s").get<double>() - j.at("objective_s").get<double>()) / r.n_trials;
    r.values = j.at("values").get<std::vector<std::vector<double>>>();
    runs[{j.at("problem"), j.at("sampler")}].push_back(std::move(r));
  }
}

std::string fmt(double v, int prec = 4) {
  if (std::isnan(v)) return "n/a";
  std::ostringstream s;
  s.precision(prec);
  s << v;
  return s.str();
}

void bench_exact_solver() {
  // 54 layers x 60 options (6 bit widths x 10 pruning ratios): cost 0 = stored bits, cost 1 =
  // a latency proxy (MACs x datapath width); loss = a sensitivity-weighted quantisation and
  // pruning error. Synthetic but shaped like the compression problem.
  std::mt19937_64 rng(2024);
  std::uniform_real_distribution<double> u(0, 1);
  AdditiveProblem p;
  const int bits[] = {2, 3, 4, 5, 6, 8};
  for (int l = 0; l < 54; ++l) {
    const double params = std::floor(std::exp(std::log(1e3) + u(rng) * std::log(1e3)));
    const double macs = params * (1 + std::floor(u(rng) * 196));
    const double sens = std::exp(-3 + 4 * u(rng));
    std::vector<LayerOption> opts;
    for (int b : bits) {
      for (int r = 0; r < 10; ++r) {
        const double ratio = 0.1 * r;
        LayerOption o;
        o.costs = {params * (1 - ratio) * b, macs * (1 - ratio) * (b <= 4 ? 0.5 : 1.0)};
        o.loss = sens * (std::pow(2.0, -2.0 * b) * 10 + ratio * ratio * (1 + 0.1 * u(rng)));
        opts.push_back(o);
      }
    }
    p.layers.push_back(opts);
  }
  double total_bits = 0;
  for (const auto& l : p.layers) {
    total_bits += l.front().costs[0] / 2 * 32;  // option 0: 2 bits, no pruning
  }
  // With real-valued costs the exact front has millions of points; the DP over cost buckets of
  // width r keeps it to (range / r) points per layer: every returned point is exact, and every
  // exact front point (c, l) has a returned point with loss <= l and cost <= c + 54 r.
  const double max_bits = total_bits / 32 * 8;
  FrontOptions fo;
  fo.cost_resolution = max_bits / 4096;
  auto t0 = std::chrono::steady_clock::now();
  const auto front = pareto_front(p, fo);
  const double front_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::cout << "\nexact solver, 54 layers x 60 options (no peer; goal: whole front < 1 s)\n";
  std::cout << "  front (bits vs loss), bucket r = max bits / 4096 (cost error <= 54 r = "
            << fmt(100.0 * 54 / 4096, 3) << "% of max): " << front.size() << " points in "
            << fmt(front_s) << " s\n"
            << std::flush;
}

}  // namespace

constexpr std::string_view kUsage =
    R"(usage: bench_samplers [--trials 1000] [--seeds 5] [--optuna live|none|DIR] [--part all|samplers|exact]
                      [--problems zdt1,zdt2,dtlz2,mixed30] [--samplers NSGAIISampler,TPESampler]
  Per-trial overhead and hypervolume of NSGA-II and TPE against Optuna 3.1 on ZDT1, ZDT2, DTLZ2
  and a 30-parameter mixed space (median of seeds), and the exact solver on 54 layers x 60
  options. --optuna live runs scripts/bench_samplers_optuna.py now; DIR reads committed results
  (e.g. bench/optuna_results); none skips the peer.
)";

int main(int argc, char** argv) {
  if (compsearch::bench::help_requested(argc, argv, kUsage)) return 0;
  int n_trials = 1000, n_seeds = 5;
  std::string optuna = "live", part = "all";
  std::string only_problems, only_samplers;  // ",a,b," filters; empty: all
  for (int i = 1; i < argc; i += 2) {
    const std::string a = argv[i];
    if (i + 1 == argc) compsearch::bench::usage_error(a + " needs a value", kUsage);
    if (a == "--part")
      part = argv[i + 1];  // all | samplers | exact
    else if (a == "--trials")
      n_trials = std::stoi(argv[i + 1]);
    else if (a == "--seeds")
      n_seeds = std::stoi(argv[i + 1]);
    else if (a == "--optuna")
      optuna = argv[i + 1];
    else if (a == "--problems")
      only_problems = "," + std::string(argv[i + 1]) + ",";
    else if (a == "--samplers")
      only_samplers = "," + std::string(argv[i + 1]) + ",";
    else
      compsearch::bench::usage_error("unknown option " + a, kUsage);
  }
  std::cout << compsearch::bench::machine_line() << "\n";
  if (part == "exact") {
    bench_exact_solver();
    return 0;
  }
  std::cout << "peer: Optuna "
            << "3.1 (python3-optuna, /usr/bin/python3) via scripts/bench_samplers_optuna.py\n";
  PeerRuns peer;
  std::string seeds;
  for (int s = 0; s < n_seeds; ++s) seeds += (s ? "," : "") + std::to_string(s);
  // This file is bench/bench_samplers.cpp in the source tree; scripts/ is beside bench/.
  std::string src = __FILE__;
  src = src.substr(0, src.rfind('/'));
  src = src.substr(0, src.rfind('/'));
  // Optuna's TPE runs to 200 trials take ~1.5 h (see scripts/make_optuna_sampler_results.sh):
  // "live" reads them from the committed, dated results.
  std::string tpe200_dir = optuna;
  if (optuna == "live") {
    const std::string dir = "/tmp/compsearch_bench_optuna";
    const std::string script = src + "/scripts/bench_samplers_optuna.py";
    std::string problems_arg;
    if (!only_problems.empty()) {
      problems_arg = " --problems " + only_problems.substr(1, only_problems.size() - 2);
    }
    const std::string cmd =
        "mkdir -p " + dir + " && /usr/bin/python3 " + script + problems_arg +
        " --sampler NSGAIISampler --trials " + std::to_string(n_trials) + " --seeds " + seeds +
        " > " + dir + "/nsga2_1000.jsonl && /usr/bin/python3 " + script + problems_arg +
        " --sampler TPESampler --seeds 0 --prefill 995 --trials 5 > " + dir + "/tpe_prefill.jsonl";
    std::cout << "running Optuna now (NSGA-II runs and TPE at study size 1000: minutes); "
                 "Optuna TPE 200-trial runs read from "
              << src << "/bench/optuna_results\n"
              << std::flush;
    if (std::system(cmd.c_str()) != 0) std::cerr << "warning: the Optuna script failed\n";
    optuna = dir;
    tpe200_dir = src + "/bench/optuna_results";
  }
  // Our runs first, so that Optuna results still being written (--optuna DIR) are read last.
  struct Row {
    std::string problem, sampler;
    Point reference;
    double ours_ms = 0, ours_ms_at_1000 = NAN, ours_fresh_ms = NAN;
    std::vector<double> hv200, hv1000;
  };
  std::vector<Row> rows;
  for (const Problem& p : problems()) {
    if (!only_problems.empty() && only_problems.find("," + p.name + ",") == std::string::npos) {
      continue;
    }
    for (const std::string sampler : {"NSGAIISampler", "NSGAIISampler+SBX", "TPESampler"}) {
      if (!only_samplers.empty() && only_samplers.find("," + sampler + ",") == std::string::npos) {
        continue;
      }
      Row row;
      row.problem = p.name;
      row.sampler = sampler;
      row.reference = p.reference;
      for (int s = 0; s < n_seeds; ++s) {
        const RunResult r =
            run_ours(p, sampler, static_cast<uint64_t>(s), n_trials, 0, 0, s == 0 ? 3 : 0);
        row.ours_ms += r.overhead_ms_per_trial / n_seeds;
        row.hv200.push_back(hv_after(r.values, 200, p.reference));
        row.hv1000.push_back(hv_after(r.values, static_cast<size_t>(n_trials), p.reference));
        if (s == 0) row.ours_fresh_ms = r.fresh_ask_ms;
      }
      // The overhead at study size 1,000, measured as the Optuna script does with --prefill:
      // 994 random trials, one untimed warm-up trial (our sampler's first call copies the 994
      // into its cache; Optuna's sampler keeps no cache), then 5 timed ones.
      row.ours_ms_at_1000 = run_ours(p, sampler, 0, 5, 994, 1).overhead_ms_per_trial;
      std::cerr << "done: " << p.name << " " << sampler << "; HV@" << n_trials << " per seed:";
      for (double hv : row.hv1000) std::cerr << " " << fmt(hv);
      std::cerr << "\n";
      rows.push_back(row);
    }
  }
  if (optuna != "none") {
    read_peer(optuna + "/nsga2_1000.jsonl", peer);
    read_peer(tpe200_dir + "/tpe_200.jsonl", peer);
    read_peer(optuna + "/tpe_prefill.jsonl", peer);
    // More NSGA-II seeds on ZDT2 (seeds 0-19; runs duplicating a seed already read are
    // dropped below), for `--seeds 20 --problems zdt2`.
    read_peer(optuna + "/nsga2_1000_zdt2_20seeds.jsonl", peer, true);
    std::cout << "Optuna results from " << optuna << " (TPE 200-trial runs from " << tpe200_dir
              << ")\n";
    // Where the results came from: each line of the script's output records version and date.
    for (const char* f : {"/nsga2_1000.jsonl", "/tpe_prefill.jsonl"}) {
      std::ifstream in(optuna + f);
      std::string line;
      if (std::getline(in, line) && !line.empty()) {
        const auto j = nlohmann::json::parse(line);
        std::cout << "  " << f + 1 << ": Optuna " << j.value("optuna_version", "?") << ", "
                  << j.value("date", "undated") << "\n";
      }
    }
    std::ifstream in(tpe200_dir + "/tpe_200.jsonl");
    std::string line;
    if (std::getline(in, line) && !line.empty()) {
      const auto j = nlohmann::json::parse(line);
      std::cout << "  tpe_200.jsonl: Optuna " << j.value("optuna_version", "?") << ", "
                << j.value("date", "undated") << " (REDUCED seeds: see n= below)\n";
    }
  }
  std::cout << "overhead = process CPU ms per trial (ask + tell) minus the objective's arithmetic,"
               " averaged over the --trials run (every seed);\n"
               "@1000 = the 5 trials at study size ~1000, after random ones (seed 0 only; ours"
               " after one untimed warm-up trial, see run_ours);\n"
               "fresh = ours only: ask + tell by a NEW sampler on the finished seed-0 study (what"
               " a CLI `ask` process does, storage loading excluded), mean of 3\n";
  std::cout << "\n"
            << "problem  sampler        ours ms/trial  optuna ms/trial  ratio     "
            << "HV@200 ours / optuna (median, n)   HV@" << n_trials
            << " ours / optuna (median, n)\n";
  for (const Row& row : rows) {
    std::vector<double> phv200, phv1000, pov;
    double p_prefill_ms = NAN;
    const std::string peer_sampler =
        row.sampler == "NSGAIISampler+SBX" ? "NSGAIISampler" : row.sampler;
    std::vector<bool> seen_seed;
    for (const PeerRun& r : peer[{row.problem, peer_sampler}]) {
      // The same seeds as ours (0 .. --seeds - 1), each once.
      if (r.prefill == 0) {
        if (r.seed < 0 || r.seed >= n_seeds) continue;
        seen_seed.resize(static_cast<size_t>(n_seeds), false);
        if (seen_seed[static_cast<size_t>(r.seed)]) continue;
        seen_seed[static_cast<size_t>(r.seed)] = true;
      }
      if (r.prefill > 0) {
        p_prefill_ms = r.overhead_ms;
        continue;
      }
      phv200.push_back(hv_after(r.values, 200, row.reference));
      if (r.n_trials >= n_trials) {
        phv1000.push_back(hv_after(r.values, static_cast<size_t>(n_trials), row.reference));
        pov.push_back(r.overhead_ms);
      }
    }
    double peer_ms = NAN;
    if (!pov.empty()) {
      peer_ms = 0;
      for (double o : pov) peer_ms += o / pov.size();
    }
    auto print = [&](const std::string& label, double ours, double theirs) {
      std::printf("%-8s %-14s %13s  %15s  %-8s  %10s / %-10s n=%zu       %10s / %-10s n=%zu\n",
                  row.problem.c_str(), label.c_str(), fmt(ours).c_str(), fmt(theirs).c_str(),
                  fmt(ours / theirs, 3).c_str(), fmt(median(row.hv200)).c_str(),
                  fmt(median(phv200)).c_str(), phv200.size(), fmt(median(row.hv1000)).c_str(),
                  fmt(median(phv1000)).c_str(), phv1000.size());
    };
    print(row.sampler, row.ours_ms, peer_ms);
    print(row.sampler + "@1000", row.ours_ms_at_1000, p_prefill_ms);
    std::printf("%-8s %-14s %13s\n", row.problem.c_str(), (row.sampler + " fresh").c_str(),
                fmt(row.ours_fresh_ms).c_str());
  }
  std::fflush(stdout);
  if (part == "all") bench_exact_solver();
  return 0;
}
