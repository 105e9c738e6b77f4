// Helpers shared by the model tests: fixture paths and tolerant tensor comparison.
#pragma once

#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "model/tensor.h"

namespace compsearch::model::testing {

inline std::filesystem::path data_dir() {
  return std::filesystem::path(COMPSEARCH_TEST_DATA) / "model";
}
inline std::filesystem::path source_dir() { return COMPSEARCH_SOURCE_DIR; }

// A fixture set's manifest.json (written by the scripts that made the fixtures), under data_dir().
inline nlohmann::json fixture_manifest(const std::string& set) {
  std::ifstream in(data_dir() / set / "manifest.json");
  REQUIRE(in);
  nlohmann::json j;
  in >> j;
  return j;
}

// Largest violation of |a - b| <= rtol * |b| + atol (<= 0 means all within); the absolute floor
// keeps values that are exactly 0 in the reference from needing an exact 0.
inline double worst_violation(const Tensor& got, const Tensor& want, double rtol, double atol) {
  double worst = -1.0;
  for (size_t i = 0; i < want.f32.size(); ++i) {
    const double diff = std::fabs(double(got.f32[i]) - double(want.f32[i]));
    worst = std::max(worst, diff - (rtol * std::fabs(double(want.f32[i])) + atol));
  }
  return worst;
}

}  // namespace compsearch::model::testing
