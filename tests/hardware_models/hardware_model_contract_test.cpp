// The HardwareModel contract, run over every preset profile (hardware_models/profiles) on the
// reference models (models/*.onnx) and zoo architectures with a spread of recipes
// (test_recipes.h contract_recipes):
//   * totals: latency and energy are the sum of the layers plus the per-inference overhead,
//     weight bytes the sum of the layers';
//   * deployable exactly when `reasons` is empty;
//   * a warm estimate (same model, same `out`) allocates nothing, and neither does
//     resolve_settings into a warm vector (allocation_counter.h counts every operator new);
//   * latency never falls when the batch grows, nor when one layer's w_bits or a_bits grow while
//     that layer stays on the same datapath (and, on NPUs, the same side of the fallback).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "allocation_counter.h"
#include "hardware_models/arch_zoo.h"
#include "model/graph.h"
#include "model/layer_table.h"
#include "test_recipes.h"

namespace cp = compsearch::compressors;
namespace hm = compsearch::hardware_models;
namespace model = compsearch::model;

namespace {

struct NamedWorkload {
  std::string name;
  std::unique_ptr<hm::Workload> workload;  // compiled models point into it: keep it in place
};

std::vector<NamedWorkload> reference_workloads() {
  std::vector<NamedWorkload> out;
  for (const char* file : {"fmnist_cnn.onnx", "fmnist_mlp.onnx"}) {
    const model::Graph g = model::load_onnx(std::string(COMPSEARCH_SOURCE_DIR) + "/models/" + file);
    out.push_back({file, std::make_unique<hm::Workload>(
                             hm::workload_from_graph(g, model::build_layer_table(g)))});
  }
  for (const char* zoo :
       {"resnet18", "mobilenet_v2", "ds_cnn_kws", "mobilenet_v1_vww", "fc_autoencoder"})
    out.push_back({zoo, std::make_unique<hm::Workload>(hm::build_zoo_model(zoo))});
  return out;
}

// Collects violations (the sweeps run ~10^5 estimates; one CHECK each would drown the report).
// The first few of each kind are printed.
struct Violations {
  long count = 0;
  std::map<std::string, long> by_kind;
  void add(const std::string& kind, const std::string& what) {
    ++count;
    if (++by_kind[kind] <= 3) MESSAGE(kind << ": " << what);
  }
};

std::string label(const hm::HardwareModel& m, const std::string& workload,
                  const std::string& recipe) {
  return m.profile().name + " / " + workload + " / " + recipe;
}

void check_totals(const hm::HardwareModel& m, const hm::Estimate& e, const std::string& where,
                  Violations& v) {
  double latency = 0.0, energy = 0.0, bytes = 0.0;
  for (const auto& le : e.layers) {
    latency += le.latency_ms;
    energy += le.energy_mj;
    bytes += le.weight_bytes;
  }
  const double fixed_ms = m.profile().inference_overhead_us.value * 1e-3;
  latency += fixed_ms;
  energy += m.profile().idle_power_w.value * fixed_ms;
  auto close = [](double a, double b) {
    return std::abs(a - b) <= 1e-12 * std::max(std::abs(a), std::abs(b));
  };
  if (!close(e.latency_ms, latency))
    v.add("totals", where + ": latency " + std::to_string(e.latency_ms) + " != sum " +
                        std::to_string(latency));
  if (!close(e.energy_mj, energy))
    v.add("totals",
          where + ": energy " + std::to_string(e.energy_mj) + " != sum " + std::to_string(energy));
  if (!close(e.weight_bytes, bytes))
    v.add("totals", where + ": weight bytes " + std::to_string(e.weight_bytes) + " != sum " +
                        std::to_string(bytes));
  if (e.deployable != e.reasons.empty())
    v.add("deployable vs reasons", where + ": deployable " + std::to_string(e.deployable) +
                                       " with " + std::to_string(e.reasons.size()) + " reasons");
}

}  // namespace

TEST_CASE(
    "Every preset keeps the HardwareModel contract on the reference models for every recipe") {
  const std::vector<std::string> presets = hm::list_presets();
  REQUIRE(presets.size() >= 16);  // hardware_models/profiles: 6 gpu, 4 npu, 4 mcu, 4 cpu
  const std::vector<NamedWorkload> workloads = reference_workloads();
  Violations v;
  long estimates = 0, undeployable = 0, with_host_layers = 0, bits_compared = 0;
  for (const std::string& preset : presets) {
    const auto m = hm::make_hardware_model(hm::load_profile(preset));
    for (const NamedWorkload& nw : workloads) {
      const hm::Workload& w = *nw.workload;
      const hm::CompiledModel c1 = m->compile(w, 1);
      for (const auto& [rname, recipe] : hm::testing::contract_recipes(w)) {
        const std::string where = label(*m, nw.name, rname);
        std::vector<const cp::LayerSetting*> settings;
        hm::resolve_settings(recipe, w.table, settings);
        hm::Estimate e;
        m->estimate(c1, settings, e);
        ++estimates;
        check_totals(*m, e, where, v);
        if (!e.deployable) ++undeployable;
        for (const auto& le : e.layers) with_host_layers += le.on_host;

        // Warm: the same recipe again into the same Estimate and settings vector.
        const long before = hm::testing::allocations_so_far();
        hm::resolve_settings(recipe, w.table, settings);
        m->estimate(c1, settings, e);
        const long allocated = hm::testing::allocations_so_far() - before;
        if (allocated != 0)
          v.add("warm allocation",
                where + ": a warm estimate allocated " + std::to_string(allocated) + " times");

        // Batch growth.
        double previous = e.latency_ms;
        for (int batch : {2, 3, 4, 8, 16, 64}) {
          const hm::CompiledModel cb = m->compile(w, batch);
          hm::Estimate eb;
          m->estimate(cb, settings, eb);
          ++estimates;
          check_totals(*m, eb, where + " batch " + std::to_string(batch), v);
          if (eb.latency_ms < previous)
            v.add("batch", where + ": latency falls from " + std::to_string(previous) + " to " +
                               std::to_string(eb.latency_ms) + " ms at batch " +
                               std::to_string(batch));
          previous = eb.latency_ms;
        }

        // One layer's bits grow; compared only while that layer keeps its datapath and side.
        for (size_t i = 0; i < w.table.layers.size(); ++i) {
          std::vector<const cp::LayerSetting*> changed = settings;
          cp::LayerSetting s = *settings[i];
          changed[i] = &s;
          for (const bool weights : {true, false}) {
            const std::vector<int> widths = weights
                                                ? std::vector<int>{1, 2, 3, 4, 5, 6, 7, 8, 16, 32}
                                                : std::vector<int>{4, 8, 16, 32};
            s = *settings[i];
            bool have_previous = false;
            std::string previous_dp;
            bool previous_host = false;
            double previous_latency = 0.0;
            int previous_bits = 0;
            for (int bits : widths) {
              (weights ? s.w_bits : s.a_bits) = bits;
              m->estimate(c1, changed, e);
              ++estimates;
              const auto& le = e.layers[i];
              const bool runs = !le.precision.empty();  // a layer nothing can run has no datapath
              const bool same_datapath = runs && have_previous && le.precision == previous_dp &&
                                         le.on_host == previous_host;
              bits_compared += same_datapath;
              if (same_datapath && e.latency_ms < previous_latency) {
                v.add("bits", where + ": layer " + w.table.layers[i].name +
                                  (weights ? " w_bits " : " a_bits ") +
                                  std::to_string(previous_bits) + " -> " + std::to_string(bits) +
                                  " on " + std::string(le.precision) + ": latency falls from " +
                                  std::to_string(previous_latency) + " to " +
                                  std::to_string(e.latency_ms));
              }
              have_previous = runs;
              previous_dp = le.precision;
              previous_host = le.on_host;
              previous_latency = e.latency_ms;
              previous_bits = bits;
            }
          }
        }
      }
    }
  }
  MESSAGE(estimates << " estimates over " << presets.size() << " presets, " << workloads.size()
                    << " models; " << undeployable << " recipes not deployable, "
                    << with_host_layers << " layers on an NPU host");
  MESSAGE(bits_compared << " bit-width steps compared at a fixed datapath");
  CHECK(bits_compared > 10000);  // the sweep really compared
  CHECK(undeployable > 0);       // the reason path was exercised
  CHECK(with_host_layers > 0);   // so was the NPU fallback
  for (const auto& [kind, n] : v.by_kind) MESSAGE(kind << ": " << n << " violations");
  CHECK(v.count == 0);
}
