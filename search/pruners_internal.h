// Shared by the pruner sources (pruners.cpp, pruners_halving.cpp); not a public interface.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>

#include "search/pruner.h"
#include "search/study.h"

namespace compsearch::search::internal {

// FrozenTrial.last_step: the largest reported step.
inline std::optional<int64_t> last_step(const FrozenTrial& t) {
  if (t.intermediate_values.empty()) return std::nullopt;
  return t.intermediate_values.rbegin()->first;
}

inline bool maximizing(const Study& study) {
  return study.directions().at(0) == StudyDirection::kMaximize;
}

// SuccessiveHalvingPruner (min_resource nullopt: "auto") and HyperbandPruner (max_resource
// nullopt: "auto"), arguments already validated by make_pruner.
std::unique_ptr<Pruner> make_successive_halving_pruner(std::optional<int64_t> min_resource,
                                                       int64_t reduction_factor,
                                                       int64_t min_early_stopping_rate,
                                                       int64_t bootstrap_count);
std::unique_ptr<Pruner> make_hyperband_pruner(int64_t min_resource,
                                              std::optional<int64_t> max_resource,
                                              int64_t reduction_factor, int64_t bootstrap_count);

}  // namespace compsearch::search::internal
