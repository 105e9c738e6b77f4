// Parameter distributions, as Optuna defines them (optuna/distributions.py): the value types
// that describe a search space. Internal representation is a double; a categorical stores the
// index of its choice. JSON is Optuna's {"name": "...", "attributes": {...}}.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <variant>
#include <vector>

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
// A categorical distribution's choices: an immutable list that the copies of a distribution
// share (a journal's 28,000 trials hold one copy per parameter each, so copies must be cheap).
// Reads like a const std::vector<nlohmann::json>.
class Choices {
 public:
  Choices() : list_(std::make_shared<const std::vector<nlohmann::json>>()) {}
  Choices(std::vector<nlohmann::json> list)  // NOLINT: implicit, as the vector it replaces
      : list_(std::make_shared<const std::vector<nlohmann::json>>(std::move(list))) {}
  size_t size() const { return list_->size(); }
  bool empty() const { return list_->empty(); }
  const nlohmann::json& operator[](size_t i) const { return (*list_)[i]; }
  std::vector<nlohmann::json>::const_iterator begin() const { return list_->begin(); }
  std::vector<nlohmann::json>::const_iterator end() const { return list_->end(); }
  // Whether both are copies of one list (then they are equal without comparing).
  bool shares(const Choices& other) const { return list_ == other.list_; }

 private:
  std::shared_ptr<const std::vector<nlohmann::json>> list_;
};

struct CategoricalDistribution {
  Choices choices;
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
// Optuna's attribute order (FloatDistribution: step, low, high, log; IntDistribution: log, step,
// low, high), and the exact text of optuna.distributions.distribution_to_json, which the
// journal stores as a string. distribution_from_json also accepts such a string, Optuna's
// deprecated classes (UniformDistribution, LogUniformDistribution, DiscreteUniformDistribution,
// IntUniformDistribution, IntLogUniformDistribution) and the old {"type": ...} form.
nlohmann::ordered_json distribution_to_ordered_json(const Distribution& d);
std::string distribution_to_json_string(const Distribution& d);
// Optuna's check_distribution_compatibility: same kind, same log flag, same categorical
// choices; throws std::invalid_argument naming `param_name`.
void check_distribution_compatibility(const std::string& param_name, const Distribution& old_d,
                                      const Distribution& new_d);
// Optuna's _get_single_value (is_single(d) must hold): low, or the first choice's index 0.
double single_value(const Distribution& d);
bool operator==(const Distribution& a, const Distribution& b);

// External value (what the user sees) <-> internal double.
double to_internal(const Distribution& d, const nlohmann::json& external);
nlohmann::json to_external(const Distribution& d, double internal);
bool contains(const Distribution& d, double internal);
bool is_single(const Distribution& d);  // exactly one possible value

}  // namespace compsearch::search
