// Recipes built in code for the hardware-model tests ("int8", "fp32", "int8-2:4", ...), so the
// tests do not depend on the recipe file parser.
#pragma once

#include <stdexcept>
#include <string>

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
        const int64_t axis = L.op == "Conv" ? L.weight_shape[1] : L.reduction_length;
        if (axis % 4 != 0) continue;  // not eligible (DESIGN.md rule 4)
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

}  // namespace compsearch::hardware_models::testing
