// Trial states, directions and FrozenTrial helpers (see trial.h).
#include "search/trial.h"

#include <algorithm>
#include <cctype>
#include <stdexcept>

namespace compsearch::search {

const char* to_string(TrialState s) {
  switch (s) {
    case TrialState::kRunning:
      return "RUNNING";
    case TrialState::kComplete:
      return "COMPLETE";
    case TrialState::kPruned:
      return "PRUNED";
    case TrialState::kFail:
      return "FAIL";
    case TrialState::kWaiting:
      return "WAITING";
  }
  return "UNKNOWN";
}

TrialState trial_state_from_string(const std::string& s) {
  std::string u = s;
  std::transform(u.begin(), u.end(), u.begin(), [](unsigned char c) { return std::toupper(c); });
  if (u == "RUNNING") return TrialState::kRunning;
  if (u == "COMPLETE") return TrialState::kComplete;
  if (u == "PRUNED") return TrialState::kPruned;
  if (u == "FAIL") return TrialState::kFail;
  if (u == "WAITING") return TrialState::kWaiting;
  throw std::invalid_argument(
      "trial state \"" + s +
      "\" is unknown; expected one of running, complete, pruned, fail, waiting");
}

const char* to_string(StudyDirection d) {
  switch (d) {
    case StudyDirection::kNotSet:
      return "NOT_SET";
    case StudyDirection::kMinimize:
      return "MINIMIZE";
    case StudyDirection::kMaximize:
      return "MAXIMIZE";
  }
  return "NOT_SET";
}

StudyDirection direction_from_string(const std::string& s) {
  std::string u = s;
  std::transform(u.begin(), u.end(), u.begin(), [](unsigned char c) { return std::toupper(c); });
  if (u == "MINIMIZE") return StudyDirection::kMinimize;
  if (u == "MAXIMIZE") return StudyDirection::kMaximize;
  throw std::invalid_argument("study direction \"" + s +
                              "\" is unknown; expected minimize or maximize");
}

bool is_finished(TrialState s) {
  return s == TrialState::kComplete || s == TrialState::kPruned || s == TrialState::kFail;
}

nlohmann::json FrozenTrial::param(const std::string& name) const {
  auto p = params.find(name);
  auto d = distributions.find(name);
  if (p == params.end() || d == distributions.end()) {
    throw std::out_of_range("trial " + std::to_string(number) + " has no parameter \"" + name +
                            "\"");
  }
  return to_external(d->second, p->second);
}

std::optional<std::vector<double>> FrozenTrial::constraints() const {
  auto it = system_attrs.find("constraints");
  if (it == system_attrs.end() || it->second.is_null()) return std::nullopt;
  if (!it->second.is_array()) {
    throw std::invalid_argument(
        "trial " + std::to_string(number) +
        ": system attribute \"constraints\" must be a list of numbers, got " + it->second.dump());
  }
  std::vector<double> out;
  for (const auto& v : it->second) {
    if (!v.is_number()) {
      throw std::invalid_argument("trial " + std::to_string(number) +
                                  ": system attribute \"constraints\" holds a non-number " +
                                  v.dump());
    }
    out.push_back(v.get<double>());
  }
  return out;
}

bool FrozenTrial::feasible() const {
  auto c = constraints();
  if (!c) return true;
  return std::all_of(c->begin(), c->end(), [](double v) { return v <= 0.0; });
}

void lend_trials(const std::vector<FrozenTrial>& trials, const TrialReader& fn) {
  std::vector<const FrozenTrial*> refs;
  refs.reserve(trials.size());
  for (const auto& t : trials) refs.push_back(&t);
  fn(refs);
}

}  // namespace compsearch::search
