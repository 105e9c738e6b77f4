// The study the results tests share: one small real search (10 trials, two targets, 8-bit
// activations in the space) per test process, and hand computations over its stored trials.
#pragma once

#include <doctest/doctest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "experiments/experiment_config.h"
#include "experiments/search_runner.h"
#include "search/trial.h"
#include "tests/experiments/cli_runner.h"

namespace compsearch::results_test {

namespace fs = std::filesystem;
using nlohmann::json;

inline const char* kMcu = "latency_ms@mcu:stm32f746";
inline const std::string kStudy = "r<&>\"'";  // every character the report must escape

inline fs::path source_dir() { return fs::path(COMPSEARCH_SOURCE_DIR); }

inline std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline size_t count_of(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

// One small search per test process, shared by the test cases.
inline const fs::path& journal() {
  static const fs::path path = [] {
    const fs::path dir =
        fs::temp_directory_path() / ("compsearch_results_test_" + std::to_string(::getpid()));
    fs::remove_all(dir);
    const fs::path j = dir / "study.journal";
    json c = {
        {"study_name", kStudy},
        {"model", (source_dir() / "models" / "fmnist_cnn.onnx").string()},
        {"data",
         {{"source", "fashion-mnist"},
          {"validation_samples", 300},
          {"subset_samples", 100},
          {"calibration_samples", 64},
          {"report_test", false}}},
        {"space",
         {{"w_bits", {2, 4, 8}}, {"a_bits", {8, 32}}, {"prune_kind", {"none", "unstructured"}}}},
        {"targets", {"mcu:stm32f746", "gpu:t4"}},
        {"objectives",
         json::array({json::array({"accuracy", "maximize"}), json::array({kMcu, "minimize"})})},
        {"constraints", {"sram_kb@mcu:stm32f746 <= 320"}},
        {"sampler", {{"name", "random"}, {"seed", 3}}},
        {"budget", {{"trials", 10}, {"jobs", 1}}},
        {"storage", j.string()}};
    const auto cfg = experiments::config_from_json(c, "cfg.json", source_dir());
    experiments::run_search(cfg);
    return j;
  }();
  return path;
}

inline std::optional<double> metric(const search::FrozenTrial& t, const std::string& m) {
  const auto it = t.user_attrs.find(m);
  if (it == t.user_attrs.end() || !it->second.is_number()) return std::nullopt;
  return it->second.get<double>();
}

inline bool feasible_by_hand(const search::FrozenTrial& t) {
  if (t.state != search::TrialState::kComplete) return false;
  const auto c = t.system_attrs.find("constraints");
  if (c == t.system_attrs.end()) return true;
  for (const auto& v : c->second)
    if (v.get<double>() > 0) return false;
  return true;
}

// The front by hand: feasible complete trials no other such trial dominates (max acc, min lat).
inline std::vector<int64_t> front_by_hand(const std::vector<search::FrozenTrial>& trials) {
  std::vector<const search::FrozenTrial*> ok;
  for (const auto& t : trials)
    if (feasible_by_hand(t)) ok.push_back(&t);
  std::vector<int64_t> out;
  for (const auto* a : ok) {
    bool dominated = false;
    for (const auto* b : ok) {
      const bool ge = b->values[0] >= a->values[0] && b->values[1] <= a->values[1];
      const bool gt = b->values[0] > a->values[0] || b->values[1] < a->values[1];
      dominated = dominated || (ge && gt);
    }
    if (!dominated) out.push_back(a->number);
  }
  return out;
}

inline std::string cli_study() {
  return "--storage " + testing::shell_quote(journal().string()) + " --study-name " +
         testing::shell_quote(kStudy);
}

}  // namespace compsearch::results_test
