// Recipes built in code for the hardware-model tests ("int8", "fp32", "int8-2:4", ...), so the
// tests do not depend on the recipe file parser.
#pragma once

#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "compressors/recipe.h"
#include "hardware_models/hardware_model.h"

namespace compsearch::hardware_models::testing {

inline compressors::LayerSetting setting(int w_bits, int a_bits) {
  compressors::LayerSetting s;
  s.w_bits = w_bits;
  s.a_bits = a_bits;
  return s;
}

// Precision names of tests/data/published_latency.json.
inline compressors::Recipe recipe_for(const std::string& precision, const Workload& w) {
  compressors::Recipe r;
  if (precision == "fp32") return r;
  if (precision == "fp16") {
    r.default_setting = setting(16, 16);
    return r;
  }
  if (precision == "int8" || precision == "int8-2:4") {
    r.default_setting = setting(8, 8);
    if (precision == "int8-2:4") {
      for (const auto& L : w.table.layers) {
        if (!compressors::nm_eligible(L, 4)) continue;
        auto s = setting(8, 8);
        s.prune.kind = compressors::PruneKind::kNM;
        s.prune.n = 2;
        s.prune.m = 4;
        s.prune.ratio = 0.5;
        r.layers[L.name] = s;
      }
    }
    return r;
  }
  if (precision == "int4-keep-first-last-int8") {
    r.default_setting = setting(4, 4);
    r.layers[w.table.layers.front().name] = setting(8, 8);
    r.layers[w.table.layers.back().name] = setting(8, 8);
    return r;
  }
  throw std::invalid_argument("unknown test precision '" + precision + "'");
}

// A spread of recipes for tests that must hold for any recipe (the HardwareModel contract): the
// precisions above plus binary, low-bit group quantization, unstructured and channel pruning, and
// a mixed per-layer recipe like the ones the search proposes.
inline std::vector<std::pair<std::string, compressors::Recipe>> contract_recipes(
    const Workload& w) {
  std::vector<std::pair<std::string, compressors::Recipe>> out;
  for (const char* p : {"fp32", "fp16", "int8", "int8-2:4", "int4-keep-first-last-int8"})
    out.emplace_back(p, recipe_for(p, w));
  compressors::Recipe r;
  r.default_setting = setting(1, 8);
  out.emplace_back("w1a8", r);
  r.default_setting = setting(3, 8);
  r.default_setting.granularity = {compressors::GranularityKind::kGroup, 16};
  out.emplace_back("w3a8-group16", r);
  r.default_setting = setting(8, 8);
  r.default_setting.prune = {compressors::PruneKind::kUnstructured, 0.5, 0, 0};
  out.emplace_back("w8a8-unstructured50", r);
  r.default_setting = setting(8, 8);
  r.default_setting.prune = {compressors::PruneKind::kChannel, 0.25, 0, 0};
  out.emplace_back("w8a8-channel25", r);
  r.default_setting = setting(32, 32);
  r.default_setting.prune = {compressors::PruneKind::kChannel, 0.5, 0, 0};
  out.emplace_back("fp32-channel50", r);
  // Mixed, as bench_hw's candidate: w8a8, every third layer w4 group:32, every fourth 2:4 (when
  // eligible), every fifth 25% channel pruning, every seventh fp16.
  compressors::Recipe m;
  m.default_setting = setting(8, 8);
  for (size_t i = 0; i < w.table.layers.size(); ++i) {
    const auto& L = w.table.layers[i];
    compressors::LayerSetting s = m.default_setting;
    if (i % 3 == 1) s.w_bits = 4, s.granularity = {compressors::GranularityKind::kGroup, 32};
    if (i % 4 == 2 && compressors::nm_eligible(L, 4))
      s.prune = {compressors::PruneKind::kNM, 0.5, 2, 4};
    else if (i % 5 == 3)
      s.prune = {compressors::PruneKind::kChannel, 0.25, 0, 0};
    if (i % 7 == 6) s = setting(16, 16);
    m.layers[L.name] = s;
  }
  out.emplace_back("mixed", m);
  return out;
}

}  // namespace compsearch::hardware_models::testing
