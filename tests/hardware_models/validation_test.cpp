// Validation of the hardware models against published measurements (tests/data/
// published_latency.json): prints every case with its error, then requires a median absolute
// error <= 30% (on all cases and on the held-out cases alone) and every published ratio within 20%.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>

#include "hardware_models/arch_zoo.h"
#include "test_recipes.h"

namespace hm = compsearch::hardware_models;

namespace {

nlohmann::json load_cases() {
  std::ifstream in(std::string(COMPSEARCH_TEST_DATA) + "/published_latency.json");
  REQUIRE(in.good());
  return nlohmann::json::parse(in);
}

std::string resolve_target(const std::string& t) {
  return t.find('/') != std::string::npos ? std::string(COMPSEARCH_SOURCE_DIR) + "/" + t : t;
}

struct Evaluator {
  std::map<std::string, std::unique_ptr<hm::HardwareModel>> models;
  std::map<std::string, std::unique_ptr<hm::Workload>> workloads;

  hm::Estimate run(const std::string& model, const std::string& target,
                   const std::string& precision, int batch) {
    auto& m = models[target];
    if (!m) m = hm::make_hardware_model(hm::load_profile(resolve_target(target)));
    auto& w = workloads[model];
    if (!w) w = std::make_unique<hm::Workload>(hm::build_zoo_model_from_spec(model));
    return m->estimate(*w, hm::testing::recipe_for(precision, *w), batch);
  }
  double metric(const nlohmann::json& c) {
    const auto e = run(c["model"], c["target"], c["precision"], c["batch"]);
    const std::string metric = c["metric"];
    if (metric == "latency_ms") return e.latency_ms;
    if (metric == "latency_per_sample_ms") return e.latency_ms / e.batch;
    if (metric == "sram_kb") return e.sram_kb;
    if (metric == "flash_kb") return e.flash_kb;
    if (metric == "energy_mj") return e.energy_mj;
    FAIL("unknown metric " << metric);
    return 0;
  }
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

}  // namespace

TEST_CASE(
    "Hardware models agree with published latency, memory and energy within a 30% median error") {
  const auto doc = load_cases();
  Evaluator ev;
  std::vector<double> all, held_out, fit;
  std::map<std::string, std::vector<double>> by_class;
  std::printf("\n%-34s %-30s %-21s %10s %10s %8s %s\n", "case", "target", "metric", "published",
              "ours", "error", "subset");
  for (const auto& c : doc["cases"]) {
    const double ours = ev.metric(c);
    const double pub = c["published"];
    const double err = (ours - pub) / pub;
    const bool is_fit = c["fit"];
    std::string target = c["target"];
    if (target.size() > 30) target = "..." + target.substr(target.size() - 27);
    std::printf("%-34s %-30s %-21s %10.4g %10.4g %+7.1f%% %s\n", c["id"].get<std::string>().c_str(),
                target.c_str(), c["metric"].get<std::string>().c_str(), pub, ours, 100 * err,
                is_fit ? "fit" : "held-out");
    all.push_back(std::abs(err));
    (is_fit ? fit : held_out).push_back(std::abs(err));
  }
  std::printf("median |error|: all %.1f%% (%zu cases), held-out %.1f%% (%zu), fit %.1f%% (%zu)\n",
              100 * median(all), all.size(), 100 * median(held_out), held_out.size(),
              100 * median(fit), fit.size());
  CHECK(all.size() >= 12);
  CHECK(median(all) <= 0.30);
  CHECK(median(held_out) <= 0.30);
}

TEST_CASE(
    "Hardware models reproduce published int8/fp32, int4/int8, 2:4/dense and batch ratios within "
    "20%") {
  const auto doc = load_cases();
  Evaluator ev;
  std::printf("\n%-42s %10s %10s %8s\n", "ratio", "published", "ours", "error");
  std::set<std::string> kinds;
  for (const auto& r : doc["ratios"]) {
    const auto num = ev.run(r["model"], r["target"], r["precision"][0], r["batch"][0]);
    const auto den = ev.run(r["model"], r["target"], r["precision"][1], r["batch"][1]);
    const double ours = num.latency_ms / den.latency_ms;
    const double pub = r["published"];
    const double err = (ours - pub) / pub;
    std::printf("%-42s %10.4g %10.4g %+7.1f%%\n", r["id"].get<std::string>().c_str(), pub, ours,
                100 * err);
    CHECK_MESSAGE(std::abs(err) <= 0.20, r["id"].get<std::string>());
    kinds.insert(r["kind"].get<std::string>());
  }
  CHECK(kinds == std::set<std::string>{"int8/fp32", "int4/int8", "2:4/dense", "batch64/batch1"});
}
