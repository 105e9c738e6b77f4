// Storage helpers shared by every implementation: read_trials's default, heartbeats and failing
// stale trials.
#include "search/storage.h"

#include <chrono>
#include <cstdio>

namespace compsearch::search {

void Storage::read_trials(int64_t study_id, const std::vector<TrialState>& states,
                          const TrialReader& fn) {
  lend_trials(get_all_trials(study_id, states), fn);
}

double unix_time_now_s() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::vector<int64_t> fail_stale_trials(Storage& storage, int64_t study_id,
                                       const HeartbeatOptions& options, double now_s) {
  std::vector<int64_t> failed;
  for (const auto& t : storage.get_all_trials(study_id, {TrialState::kRunning})) {
    auto hb = t.system_attrs.find(kHeartbeatAttr);
    if (hb == t.system_attrs.end() || !hb->second.is_number())
      continue;  // not ours: leave it alone
    const double age_s = now_s - hb->second.get<double>();
    if (age_s <= options.grace_s) continue;
    char reason[160];
    std::snprintf(reason, sizeof(reason),
                  "stale heartbeat: last beat %.1f s ago (grace period %.1f s)", age_s,
                  options.grace_s);
    try {
      storage.set_trial_system_attr(t.trial_id, kFailReasonAttr, reason);
      storage.set_trial_state_values(t.trial_id, TrialState::kFail);
    } catch (const TrialFinishedError&) {
      continue;  // another worker failed (or finished) it first
    }
    failed.push_back(t.number);
    if (!options.requeue) continue;
    // Optuna's RetryFailedTrialCallback conventions: the first failed number and the history.
    nlohmann::json history = nlohmann::json::array();
    if (auto h = t.system_attrs.find(kRetryHistoryAttr);
        h != t.system_attrs.end() && h->second.is_array()) {
      history = h->second;
    }
    history.push_back(t.number);
    if (static_cast<int>(history.size()) > options.max_retries) continue;
    FrozenTrial retry;
    retry.state = TrialState::kWaiting;
    retry.params = t.params;
    retry.distributions = t.distributions;
    retry.user_attrs = t.user_attrs;
    auto first = t.system_attrs.find(kFailedTrialAttr);
    retry.system_attrs[kFailedTrialAttr] =
        first != t.system_attrs.end() ? first->second : nlohmann::json(t.number);
    retry.system_attrs[kRetryHistoryAttr] = history;
    if (auto fp = t.system_attrs.find("fixed_params"); fp != t.system_attrs.end()) {
      retry.system_attrs["fixed_params"] = fp->second;
    }
    storage.create_new_trial(study_id, &retry);
  }
  return failed;
}

}  // namespace compsearch::search
