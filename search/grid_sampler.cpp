// GridSampler with Optuna 3.1's semantics (see grid_sampler.h).
#include "search/grid_sampler.h"

#include <algorithm>
#include <cmath>
#include <set>
#include <stdexcept>

#include "search/sampler_internal.h"

namespace compsearch::search {

namespace {
bool grid_value_equal(const nlohmann::json& a, const nlohmann::json& b) {
  if (a.is_number() && b.is_number() && std::isnan(a.get<double>()) &&
      std::isnan(b.get<double>())) {
    return true;
  }
  return a == b;
}
}  // namespace

GridSampler::GridSampler(const nlohmann::json& search_space, std::optional<uint64_t> seed)
    : seed_(seed ? *seed : internal::entropy_seed()) {
  if (!search_space.is_object() || search_space.empty()) {
    throw std::invalid_argument("GridSampler: search_space = " + search_space.dump() +
                                ", expected a non-empty object {name: [values...]}");
  }
  for (const auto& [name, values] : search_space.items()) {
    if (!values.is_array() || values.empty()) {
      throw std::invalid_argument("GridSampler: search_space[\"" + name + "\"] = " + values.dump() +
                                  ", expected a non-empty array of values");
    }
    for (const auto& v : values) {
      if (!(v.is_null() || v.is_boolean() || v.is_number() || v.is_string())) {
        throw std::invalid_argument("GridSampler: search_space[\"" + name + "\"] holds " +
                                    v.dump() + ", expected null, bool, number or string values");
      }
    }
    names_.push_back(name);
    values_.emplace_back(values.begin(), values.end());
    n_grids_ *= values.size();
  }
  search_space_ = search_space;
}

const nlohmann::json& GridSampler::grid_value(int64_t grid_id, const std::string& name) const {
  // itertools.product order: the last parameter varies fastest.
  auto it = std::find(names_.begin(), names_.end(), name);
  if (it == names_.end()) {
    throw std::invalid_argument("GridSampler: the parameter name, " + name +
                                ", is not found in the given grid");
  }
  const size_t p = static_cast<size_t>(it - names_.begin());
  size_t id = static_cast<size_t>(grid_id);
  for (size_t q = names_.size(); q-- > p + 1;) id /= values_[q].size();
  return values_[p][id % values_[p].size()];
}

std::vector<int64_t> GridSampler::unvisited_grid_ids(const StudyView& study) const {
  std::set<int64_t> visited, running;
  study.read_trials({}, [&](TrialRefs trials) {
    for (const FrozenTrial* tp : trials) {
      const FrozenTrial& t = *tp;
      auto g = t.system_attrs.find("grid_id");
      auto s = t.system_attrs.find("search_space");
      if (g == t.system_attrs.end() || s == t.system_attrs.end() || !s->second.is_object())
        continue;
      bool same = s->second.size() == search_space_.size();
      for (auto it = search_space_.begin(); same && it != search_space_.end(); ++it) {
        auto other = s->second.find(it.key());
        same = other != s->second.end() && other->is_array() && other->size() == it->size();
        for (size_t i = 0; same && i < it->size(); ++i) {
          same = grid_value_equal((*other)[i], (*it)[i]);
        }
      }
      if (!same) continue;
      if (is_finished(t.state)) {
        visited.insert(g->second.get<int64_t>());
      } else if (t.state == TrialState::kRunning) {
        running.insert(g->second.get<int64_t>());
      }
    }
  });
  std::vector<int64_t> out;
  for (int64_t i = 0; i < static_cast<int64_t>(n_grids_); ++i) {
    if (!visited.count(i) && !running.count(i)) out.push_back(i);
  }
  if (out.empty()) {
    for (int64_t i = 0; i < static_cast<int64_t>(n_grids_); ++i) {
      if (!visited.count(i)) out.push_back(i);
    }
  }
  return out;
}

void GridSampler::before_trial(const StudyView& study, FrozenTrial& trial) {
  if (trial.system_attrs.count("grid_id") || trial.system_attrs.count("fixed_params")) return;
  std::vector<int64_t> targets = unvisited_grid_ids(study);
  if (targets.empty()) {
    for (int64_t i = 0; i < static_cast<int64_t>(n_grids_); ++i) targets.push_back(i);
  }
  std::mt19937_64 rng(internal::mix_seed(seed_, static_cast<uint64_t>(trial.number)));
  std::uniform_int_distribution<size_t> pick(0, targets.size() - 1);
  trial.system_attrs["search_space"] = search_space_;
  trial.system_attrs["grid_id"] = targets[pick(rng)];
}

double GridSampler::sample_independent(const StudyView& /*study*/, const FrozenTrial& trial,
                                       const std::string& name, const Distribution& dist) {
  auto g = trial.system_attrs.find("grid_id");
  if (g == trial.system_attrs.end()) {
    throw std::invalid_argument(
        "GridSampler: trial " + std::to_string(trial.number) +
        " has no grid_id; all parameters must be specified when using GridSampler with "
        "enqueue_trial");
  }
  const nlohmann::json& value = grid_value(g->second.get<int64_t>(), name);
  double internal_value;
  try {
    internal_value = to_internal(dist, value);
  } catch (const std::exception& e) {
    throw std::invalid_argument("GridSampler: grid value " + value.dump() + " of parameter " +
                                name + " is not valid for its distribution " +
                                distribution_to_json(dist).dump() + ": " + e.what());
  }
  return internal_value;
}

}  // namespace compsearch::search
