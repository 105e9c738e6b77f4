// Parameter distributions, as Optuna defines them (optuna/distributions.py): the value types
// that describe a search space. Internal representation is a double; a categorical stores the
// index of its choice. JSON is Optuna's {"name": "...", "attributes": {...}}.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

namespace compsearch::search {

struct FloatDistribution {
  double low = 0.0;
  double high = 0.0;
  bool log = false;
  std::optional<double> step;  // Optuna: step and log are exclusive
};

struct IntDistribution {
  int64_t low = 0;
  int64_t high = 0;
  bool log = false;
  int64_t step = 1;
};

// Choices are None, bool, int, float or string (Optuna's CategoricalChoiceType), kept as JSON.
struct CategoricalDistribution {
  std::vector<nlohmann::json> choices;
};

using Distribution = std::variant<FloatDistribution, IntDistribution, CategoricalDistribution>;
using SearchSpace = std::map<std::string, Distribution>;

// Validating constructors: throw std::invalid_argument with the offending values, with
// Optuna's rules (low <= high, log needs low > 0, step > 0, log and step exclusive, Optuna's
// adjustment of `high` to the step grid, non-empty unique choices).
FloatDistribution make_float(double low, double high, bool log = false,
                             std::optional<double> step = std::nullopt);
IntDistribution make_int(int64_t low, int64_t high, bool log = false, int64_t step = 1);
CategoricalDistribution make_categorical(std::vector<nlohmann::json> choices);

nlohmann::json distribution_to_json(const Distribution& d);
Distribution distribution_from_json(const nlohmann::json& j);  // throws std::invalid_argument
bool operator==(const Distribution& a, const Distribution& b);

// External value (what the user sees) <-> internal double.
double to_internal(const Distribution& d, const nlohmann::json& external);
nlohmann::json to_external(const Distribution& d, double internal);
bool contains(const Distribution& d, double internal);
bool is_single(const Distribution& d);  // exactly one possible value

}  // namespace compsearch::search
