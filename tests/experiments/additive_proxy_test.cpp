// The additive view of a search space: parts and table entries counted by hand, the proxy exact
// where the metric is additive (relative weight error), the sensitivity cache, the exact route
// against brute force, and the exact route and the external evaluator inside a real search.
#include "experiments/additive_proxy.h"

#include <doctest/doctest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>

#include "experiments/experiment_config.h"
#include "experiments/search_runner.h"
#include "search/journal_storage.h"
#include "search/pareto.h"
#include "search/study.h"

using namespace compsearch;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

fs::path source_dir() { return fs::path(COMPSEARCH_SOURCE_DIR); }

fs::path temp_dir(const std::string& name) {
  const fs::path d =
      fs::temp_directory_path() / ("compsearch_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

// Data-free CNN problem: weight error against size, conv1 and fc1 frozen (2 searched layers).
json weight_error_config(const fs::path& storage) {
  return json{{"study_name", "w"},
              {"model", (source_dir() / "models" / "fmnist_cnn.onnx").string()},
              {"space",
               {{"w_bits", {2, 4, 8}},
                {"prune_kind", {"none", "unstructured"}},
                {"prune_ratio", {{"low", 0.5}, {"high", 0.5}, {"step", 0.25}}},
                {"freeze", {"conv1", "fc1"}}}},
              {"targets", {"mcu:stm32f746"}},
              {"objectives", json::array({json::array({"weight_error", "minimize"}),
                                          json::array({"size_bytes", "minimize"})})},
              {"sampler", {{"name", "exact"}, {"seed", 0}}},
              {"budget", {{"trials", 6}, {"jobs", 1}}},
              {"storage", storage.string()}};
}

experiments::ExperimentConfig load(const json& j) {
  return experiments::config_from_json(j, "cfg.json", source_dir());
}

}  // namespace

TEST_CASE("proxy parts and table entries of the CNN, counted by hand") {
  json j = weight_error_config("/tmp/unused.journal");
  j["space"]["prune_ratio"] = {{"low", 0.25}, {"high", 0.75}, {"step", 0.25}};
  j["space"].erase("freeze");
  const auto cfg = load(j);
  experiments::CompressionProblem problem(cfg, /*load_data=*/false);
  experiments::ProxyParts parts(problem.space(), problem.table());
  // 4 layers, no Adds: one joint part per layer, 3 bit widths x (none + 3 unstructured ratios).
  REQUIRE(parts.parts().size() == 4);
  for (const auto& p : parts.parts()) {
    CHECK(p.quant);
    CHECK(p.prune);
    CHECK(p.options.size() == 3 * 4);
    CHECK(p.quant_params.size() == 1);  // w_bits (granularity, a_bits have one choice)
    CHECK(p.prune_params.size() == 2);  // prune_kind, prune_ratio
  }
  // Entries: per layer 3 quant sides + 3 prune sides (prune "none" compresses nothing).
  CHECK(parts.option_count() == 4 * (3 + 3));
  experiments::Params params = {{"conv2.w_bits", 4},
                                {"conv2.prune_kind", "none"},
                                {"fc1.w_bits", 8},
                                {"fc1.prune_kind", "unstructured"},
                                {"fc1.prune_ratio", 0.5}};
  const auto keys = parts.keys(params);
  // conv1 and fc2 take the first choice (2 bits) through their absent params.
  CHECK(std::count(keys.begin(), keys.end(), "conv2|q|w_bits=4") == 1);
  CHECK(std::count(keys.begin(), keys.end(), "fc1|q|w_bits=8") == 1);
  CHECK(std::count(keys.begin(), keys.end(), "fc1|p|prune_kind=unstructured,prune_ratio=0.5") == 1);
  CHECK(std::none_of(keys.begin(), keys.end(),
                     [](const std::string& k) { return k.rfind("conv2|p|", 0) == 0; }));
}

TEST_CASE("the additive proxy of the relative weight error is exact across layers") {
  const fs::path dir = temp_dir("proxy_exact");
  const auto cfg = load(weight_error_config(dir / "s.journal"));
  experiments::CompressionProblem problem(cfg, /*load_data=*/false);
  experiments::ProxyParts parts(problem.space(), problem.table());
  const auto table = std::make_shared<const evaluators::SensitivityTable>(
      experiments::problem_sensitivity(problem, parts, dir));
  CHECK(table->measured == static_cast<int64_t>(parts.option_count()) + 1);  // + uncompressed
  CHECK(table->reference.at("weight_error") == 0.0);
  // The relative error sums layer by layer (one global norm), so a recipe that quantizes one
  // layer and prunes the other is estimated exactly.
  for (int bits : {2, 4, 8}) {
    const experiments::Params p = {
        {"conv2.w_bits", bits}, {"conv2.prune_kind", "none"}, {"fc2.prune_kind", "unstructured"}};
    compressors::Recipe r = problem.space().recipe(p);
    r.layers["fc2"].w_bits = 32;  // fc2: pruning only (its absent w_bits took the first choice)
    r.layers["fc2"].granularity = compressors::LayerSetting{}.granularity;
    evaluators::Candidate c;
    c.recipe = &r;
    const double measured = problem.evaluator().evaluate(c).at("weight_error");
    const double proxy = evaluators::additive_estimate(
        *table, {"conv2|q|w_bits=" + std::to_string(bits), "fc2|p|prune_kind=unstructured"},
        "weight_error");
    CAPTURE(bits);
    CHECK(measured > 0);
    CHECK(proxy == doctest::Approx(measured).epsilon(1e-12));
  }
  // A second call reads the cache; a cache written under another key is ignored.
  const auto again = experiments::problem_sensitivity(problem, parts, dir);
  CHECK(again.measured == 0);
  CHECK(again.options == table->options);
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().filename().string().rfind("sensitivity-", 0) != 0) continue;
    std::ifstream in(e.path());
    json j = json::parse(in);
    j["key"] = "something else";
    std::ofstream(e.path()) << j.dump();
  }
  CHECK(experiments::problem_sensitivity(problem, parts, dir).measured ==
        static_cast<int64_t>(parts.option_count()) + 1);
  fs::remove_all(dir);
}

TEST_CASE("the exact route's front equals brute force over every recipe of a small space") {
  const fs::path dir = temp_dir("exact_front");
  const auto cfg = load(weight_error_config(dir / "s.journal"));
  experiments::CompressionProblem problem(cfg, /*load_data=*/false);
  experiments::ProxyParts parts(problem.space(), problem.table());
  const auto table = experiments::problem_sensitivity(problem, parts, dir);
  REQUIRE(parts.parts().size() == 2);  // conv2 and fc2 (conv1, fc1 frozen)
  // Brute force: every joint choice, additive loss and additive size; the Pareto set.
  const auto& ref = problem.reference_cost_metrics();
  std::vector<experiments::Params> all;
  std::vector<search::Point> points;
  for (const auto& a : parts.parts()[0].options)
    for (const auto& b : parts.parts()[1].options) {
      experiments::Params p = a;
      p.insert(b.begin(), b.end());
      double size = ref.at("size_bytes");
      for (size_t i = 0; i < 2; ++i) {
        const auto& o = i == 0 ? a : b;
        size += problem.cost_metrics(parts.isolated_recipe(i, o)).at("size_bytes") -
                ref.at("size_bytes");
      }
      all.push_back(p);
      points.push_back({evaluators::additive_estimate(table, parts.keys(p), "weight_error"), size});
    }
  REQUIRE(all.size() == 36);
  std::set<std::vector<std::string>> expected;
  for (size_t i = 0; i < all.size(); ++i) {
    bool dominated = false;
    for (size_t k = 0; k < all.size() && !dominated; ++k)
      dominated = search::dominates(points[k], points[i]);
    if (!dominated) expected.insert(parts.keys(all[i]));
  }
  std::set<std::vector<std::string>> got;
  const auto front = experiments::exact_front(problem, parts, table, 1000);
  for (const auto& p : front) got.insert(parts.keys(p.params));
  // Equal (loss, cost) points may be kept once by the solver: every point it returns is on the
  // brute-force front, and every brute-force point has an equal-valued twin among them.
  for (const auto& k : got) CHECK(expected.count(k) == 1);
  CHECK(got.size() >= 2);
  CHECK(got.size() <= expected.size());
  for (size_t i = 1; i < front.size(); ++i)
    CHECK(front[i].cost_estimate[0] >= front[i - 1].cost_estimate[0]);
  // A budget smaller than the front keeps both ends.
  const auto three = experiments::exact_front(problem, parts, table, 3);
  REQUIRE(three.size() == 3);
  CHECK(parts.keys(three.front().params) == parts.keys(front.front().params));
  CHECK(parts.keys(three.back().params) == parts.keys(front.back().params));
  fs::remove_all(dir);
}

TEST_CASE("a search on the exact route evaluates the proxy's front and resumes without repeats") {
  const fs::path dir = temp_dir("exact_search");
  auto cfg = load(weight_error_config(dir / "s.journal"));
  const auto s1 = experiments::run_search(cfg);
  CHECK(s1.run_now == 6);
  CHECK(s1.exact_enqueued >= 2);
  CHECK(s1.exact_enqueued <= 6);
  CHECK(s1.sensitivity_options > 0);
  // weight error is additive here only within the proxy's reach: quant and prune of one layer
  // interact, so the correlation is high but not 1.
  CHECK(s1.spearman_proxy > 0.8);
  auto storage = std::make_shared<search::JournalStorage>((dir / "s.journal").string());
  auto study = search::Study::load(storage, "w");
  int64_t routed = 0;
  for (const auto& t : study->get_trials())
    if (t.user_attrs.count("compsearch.route")) ++routed;
  CHECK(routed == s1.exact_enqueued);
  cfg.budget.trials = 9;
  const auto s2 = experiments::run_search(cfg);
  CHECK(s2.run_now == 3);
  std::set<std::vector<std::string>> seen;
  experiments::CompressionProblem problem(cfg, false);
  experiments::ProxyParts parts(problem.space(), problem.table());
  for (const auto& t : study->get_trials({search::TrialState::kComplete})) {
    if (!t.user_attrs.count("compsearch.route")) continue;
    experiments::Params p;
    for (const auto& [k, v] : t.params) p[k] = t.param(k);
    CHECK(seen.insert(parts.keys(p)).second);  // no front point evaluated twice
  }
  fs::remove_all(dir);
}

TEST_CASE("the external evaluator scores trials and a failing program fails only its trial") {
  const fs::path dir = temp_dir("external_search");
  // The user's program: reads the trial, prints its number of 2-bit layers as `score`; trial 1
  // crashes, trial 2 prints garbage.
  const fs::path prog = dir / "eval.py";
  std::ofstream(prog)
      << "import json, sys, os\n"
         "t = json.load(sys.stdin)\n"
         "if t['number'] == 1: os.abort()\n"
         "if t['number'] == 2: print('no json here'); sys.exit(0)\n"
         "print('log line')\n"
         "n = sum(1 for l in t['recipe']['layers'].values() if l.get('w_bits') == 2)\n"
         "print(json.dumps({'score': n}))\n";
  json j = weight_error_config(dir / "s.journal");
  j["evaluator"] = {{"command", {"/usr/bin/python3", prog.string()}}, {"timeout", "30s"}};
  j["objectives"] =
      json::array({json::array({"score", "minimize"}), json::array({"size_bytes", "minimize"})});
  j["sampler"] = {{"name", "random"}, {"seed", 3}};
  j["budget"]["trials"] = 5;
  const auto s = experiments::run_search(load(j));
  CHECK(s.run_now == 5);
  CHECK(s.failed == 2);
  CHECK(s.completed == 3);
  auto storage = std::make_shared<search::JournalStorage>((dir / "s.journal").string());
  auto study = search::Study::load(storage, "w");
  for (const auto& t : study->get_trials()) {
    CAPTURE(t.number);
    if (t.number == 1) {
      REQUIRE(t.state == search::TrialState::kFail);
      CHECK(t.system_attrs.at("fail_reason").get<std::string>().find("died of signal 6") !=
            std::string::npos);
    } else if (t.number == 2) {
      REQUIRE(t.state == search::TrialState::kFail);
      CHECK(t.system_attrs.at("fail_reason").get<std::string>().find("no JSON object") !=
            std::string::npos);
    } else {
      REQUIRE(t.state == search::TrialState::kComplete);
      int twos = 0;
      for (const auto& [name, l] : t.user_attrs.at("recipe").at("layers").items())
        twos += l.value("w_bits", 32) == 2;
      CHECK(t.values[0] == twos);
    }
  }
  fs::remove_all(dir);
}

TEST_CASE("fidelity level 3 fine-tunes recipes with a distillation block and scores them again") {
  const fs::path dir = temp_dir("finetune_search");
  json j = {{"study_name", "kd"},
            {"model", (source_dir() / "models" / "fmnist_cnn.onnx").string()},
            {"data",
             {{"source", "fashion-mnist"},
              {"validation_samples", 500},
              {"subset_samples", 0},
              {"calibration_samples", 64},
              {"report_test", false}}},
            {"space",
             {{"w_bits", {2}},
              {"freeze", {"conv1", "fc2"}},
              {"distillation", {{"epochs", {0, 1}}, {"lr", {0.001}}, {"samples", 2000}}}}},
            {"objectives", json::array({json::array({"accuracy", "maximize"}),
                                        json::array({"size_bytes", "minimize"})})},
            {"fidelity", {{"proxy", false}}},
            {"sampler", {{"name", "random"}, {"seed", 0}}},
            {"budget", {{"trials", 4}, {"jobs", 1}}},
            {"storage", (dir / "s.journal").string()}};
  const auto s = experiments::run_search(load(j));
  CHECK(s.run_now == 4);
  auto storage = std::make_shared<search::JournalStorage>((dir / "s.journal").string());
  auto study = search::Study::load(storage, "kd");
  int tuned = 0, plain = 0;
  for (const auto& t : study->get_trials()) {
    CAPTURE(t.number);
    REQUIRE(t.state == search::TrialState::kComplete);
    const int epochs = t.param("kd.epochs").get<int>();
    const auto& f = t.user_attrs.at("fidelity");
    if (epochs == 0) {
      ++plain;
      CHECK(!t.user_attrs.count("accuracy_before_finetune"));
      CHECK(!f.contains("3"));
      continue;
    }
    ++tuned;
    // 2-bit conv2 and fc1 lose most of the accuracy; one short epoch of distillation recovers a
    // large part of it (measured: 0.34 -> 0.58..0.64 on these 500 images, by trial seed).
    const double before = t.user_attrs.at("accuracy_before_finetune").get<double>();
    const double after = t.user_attrs.at("accuracy").get<double>();
    CHECK(f.at("2").get<double>() == before);
    CHECK(f.at("3").get<double>() == after);
    MESSAGE("trial " << t.number << ": accuracy " << before << " before, " << after
                     << " after one distillation epoch on 2000 images");
    CHECK(t.values[0] == after);
    CHECK(after > before + 0.1);
    CHECK(t.user_attrs.at("finetune_seconds").get<double>() > 0);
  }
  CHECK(tuned >= 1);
  CHECK(plain >= 1);
  fs::remove_all(dir);
}
