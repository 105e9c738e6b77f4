// Trials, states and directions, as Optuna defines them (optuna/trial/_frozen.py,
// optuna/trial/_state.py, optuna/study/_study_direction.py). Enum values equal Optuna's, since
// they are written to the journal.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "search/distributions.h"

namespace compsearch::search {

enum class TrialState { kRunning = 0, kComplete = 1, kPruned = 2, kFail = 3, kWaiting = 4 };
enum class StudyDirection { kNotSet = 0, kMinimize = 1, kMaximize = 2 };

const char* to_string(TrialState s);                         // "RUNNING", "COMPLETE", ...
TrialState trial_state_from_string(const std::string& s);    // throws std::invalid_argument
const char* to_string(StudyDirection d);                     // "MINIMIZE", "MAXIMIZE"
StudyDirection direction_from_string(const std::string& s);  // accepts "minimize"/"MINIMIZE"
bool is_finished(TrialState s);

struct FrozenTrial {
  int64_t number = -1;
  int64_t trial_id = -1;
  TrialState state = TrialState::kRunning;
  std::vector<double> values;                 // objectives in study order; empty unless COMPLETE
  std::optional<std::string> datetime_start;  // "YYYY-MM-DD HH:MM:SS.ffffff" (Optuna's)
  std::optional<std::string> datetime_complete;
  std::map<std::string, double> params;  // internal representation
  std::map<std::string, Distribution> distributions;
  std::map<std::string, nlohmann::json> user_attrs;
  std::map<std::string, nlohmann::json> system_attrs;
  std::map<int64_t, double> intermediate_values;

  // External value of a parameter (throws std::out_of_range for an unknown name).
  nlohmann::json param(const std::string& name) const;
  // Optuna's constraint convention: system_attrs["constraints"], each <= 0 when satisfied.
  std::optional<std::vector<double>> constraints() const;
  bool feasible() const;  // true when no constraints are recorded or all are <= 0
};

// Trials lent without copies (Storage::read_trials, StudyView::read_trials): pointers valid
// during the call that lends them only.
using TrialRefs = std::span<const FrozenTrial* const>;
using TrialReader = std::function<void(TrialRefs)>;
// Lends `trials` (e.g. copies) to `fn` as TrialRefs: the default of the read_trials methods.
void lend_trials(const std::vector<FrozenTrial>& trials, const TrialReader& fn);

}  // namespace compsearch::search
