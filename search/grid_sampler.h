// Grid search with the semantics of Optuna 3.1's GridSampler (optuna/samplers/_grid.py): the
// grid is the Cartesian product of the value lists of `search_space`, parameters in name order
// (the last name varies fastest); each trial takes a grid point not yet finished or running,
// chosen at random among those (so parallel workers rarely collide), recorded in the trial's
// system attributes "grid_id" and "search_space" (Optuna's keys), which is how a fresh process
// knows which points were visited. Once every point has finished, points are re-evaluated.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "search/sampler.h"

namespace compsearch::search {

class GridSampler : public Sampler {
 public:
  // `search_space`: a JSON object mapping each parameter name to a non-empty array of values
  // (null, bool, number or string). Throws std::invalid_argument naming the parameter otherwise.
  explicit GridSampler(const nlohmann::json& search_space,
                       std::optional<uint64_t> seed = std::nullopt);

  SearchSpace infer_relative_search_space(const StudyView&, const FrozenTrial&) override {
    return {};
  }
  std::map<std::string, double> sample_relative(const StudyView&, const FrozenTrial&,
                                                const SearchSpace&) override {
    return {};
  }
  // The trial's grid point's value for `name`, in internal representation. Throws
  // std::invalid_argument when `name` is not in the grid, when the trial has no grid_id, or when
  // the value is not a valid value of `dist` (Optuna warns and uses it; we cannot represent it).
  double sample_independent(const StudyView& study, const FrozenTrial& trial,
                            const std::string& name, const Distribution& dist) override;
  // Chooses the grid point (unless the trial already has "grid_id" or "fixed_params").
  void before_trial(const StudyView& study, FrozenTrial& trial) override;
  void reseed_rng(uint64_t seed) override { seed_ = seed; }

  size_t grid_size() const { return n_grids_; }
  // Grid ids not yet finished (Optuna's _get_unvisited_grid_ids); empty once all are done, which
  // is when Optuna's GridSampler stops the study.
  std::vector<int64_t> unvisited_grid_ids(const StudyView& study) const;
  // The value of parameter `name` at grid point `grid_id`.
  const nlohmann::json& grid_value(int64_t grid_id, const std::string& name) const;

 private:
  nlohmann::json search_space_;  // sorted by name (nlohmann::json objects are)
  std::vector<std::string> names_;
  std::vector<std::vector<nlohmann::json>> values_;
  size_t n_grids_ = 1;
  uint64_t seed_;
};

}  // namespace compsearch::search
