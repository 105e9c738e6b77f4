// Storage: where studies and trials live, as Optuna's BaseStorage (optuna/storages/_base.py).
// Two implementations: InMemoryStorage (one process) and JournalStorage (Optuna's journal file,
// shared by processes, Python Optuna workers included). One contract test suite
// (tests/search/storage_test.cpp) runs against both.
//
// Contract:
//  - Thread safety: every method may be called from any thread at any time.
//  - Ids: study ids and trial ids are assigned by the storage and never reused. Trial ids are
//    unique across all studies of a storage; a trial's `number` counts the trials of its study
//    from 0 in creation order, without gaps and without duplicates, even with several processes
//    writing one journal.
//  - Ownership of a RUNNING trial: the worker (thread) that created it, or that moved it from
//    WAITING to RUNNING with set_trial_state_values (which returns false to every other worker
//    that tries the same trial, so a queued trial is run once). Storages do not enforce
//    ownership on other updates: any worker may update an unfinished trial (this is how stale
//    trials of dead workers are failed).
//  - A finished trial (COMPLETE, PRUNED, FAIL) is immutable: updating it throws
//    TrialFinishedError.
//  - Unknown study or trial ids and names throw StorageKeyError; creating a study whose name
//    exists throws DuplicatedStudyError.
//  - Values are stored as given (checks of state and values belong to Study::tell).
//  - Params are stored in internal representation with their distribution; a parameter name
//    keeps a compatible distribution across the trials of a study
//    (check_distribution_compatibility), otherwise set_trial_param throws std::invalid_argument.
//  - Returned FrozenTrial and FrozenStudy objects are copies: the caller owns them. The one
//    exception is read_trials, which lends the storage's own trials for the length of a call
//    (for readers of many trials: the CLI's trials verbs, samplers that only look).
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "search/distributions.h"
#include "search/trial.h"

namespace compsearch::search {

struct StorageKeyError : std::out_of_range {
  using std::out_of_range::out_of_range;
};
struct DuplicatedStudyError : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};
struct TrialFinishedError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct FrozenStudy {
  int64_t study_id = -1;
  std::string study_name;
  std::vector<StudyDirection> directions;
  std::map<std::string, nlohmann::json> user_attrs;
  std::map<std::string, nlohmann::json> system_attrs;
};

class Storage {
 public:
  virtual ~Storage() = default;

  // Studies.
  virtual int64_t create_new_study(const std::vector<StudyDirection>& directions,
                                   const std::string& study_name) = 0;
  virtual void delete_study(int64_t study_id) = 0;
  virtual void set_study_user_attr(int64_t study_id, const std::string& key,
                                   const nlohmann::json& value) = 0;
  virtual void set_study_system_attr(int64_t study_id, const std::string& key,
                                     const nlohmann::json& value) = 0;
  virtual int64_t get_study_id_from_name(const std::string& study_name) = 0;
  virtual FrozenStudy get_study(int64_t study_id) = 0;
  virtual std::vector<FrozenStudy> get_all_studies() = 0;  // in study id order

  // Trials. `template_trial` (Optuna's add_trial / enqueue_trial) gives the new trial's state,
  // values, params, distributions, attributes and intermediate values; without it the trial is
  // RUNNING, started now, and owned by the calling worker.
  virtual int64_t create_new_trial(int64_t study_id,
                                   const FrozenTrial* template_trial = nullptr) = 0;
  virtual void set_trial_param(int64_t trial_id, const std::string& name, double internal_value,
                               const Distribution& distribution) = 0;
  virtual int64_t get_trial_id_from_study_id_trial_number(int64_t study_id, int64_t number) = 0;
  // Sets the state (and values, when given). RUNNING also stamps datetime_start and returns
  // whether the calling worker now owns the trial; a finished state stamps datetime_complete.
  virtual bool set_trial_state_values(int64_t trial_id, TrialState state,
                                      const std::vector<double>* values = nullptr) = 0;
  // Optuna keeps the first value reported at a step; the storage overwrites (Trial::report
  // enforces Optuna's rule).
  virtual void set_trial_intermediate_value(int64_t trial_id, int64_t step, double value) = 0;
  virtual void set_trial_user_attr(int64_t trial_id, const std::string& key,
                                   const nlohmann::json& value) = 0;
  virtual void set_trial_system_attr(int64_t trial_id, const std::string& key,
                                     const nlohmann::json& value) = 0;
  virtual FrozenTrial get_trial(int64_t trial_id) = 0;
  // Trials of a study in number order; `states` empty means all.
  virtual std::vector<FrozenTrial> get_all_trials(int64_t study_id,
                                                  const std::vector<TrialState>& states = {}) = 0;
  // The trials get_all_trials returns, without copying them: calls `fn` once with pointers to
  // the storage's own trials, valid until `fn` returns. The storage is locked meanwhile, so
  // `fn` must not call the storage (or a Study on it). The default lends get_all_trials's copies.
  virtual void read_trials(int64_t study_id, const std::vector<TrialState>& states,
                           const TrialReader& fn);
  // Trials numbered >= first_number, in number order (samplers cache the finished ones).
  virtual std::vector<FrozenTrial> get_trials_from(int64_t study_id, int64_t first_number) {
    std::vector<FrozenTrial> out;
    for (auto& t : get_all_trials(study_id)) {
      if (t.number >= first_number) out.push_back(std::move(t));
    }
    return out;
  }
};

// Heartbeats of RUNNING trials, kept in the trial's system attributes (never a new journal op
// code, which Optuna's readers would reject), so that trials of a crashed worker are found.
// A trial without the attribute (e.g. a Python Optuna worker's) is never considered stale.
inline constexpr const char* kHeartbeatAttr = "compsearch:heartbeat";  // unix time, seconds
// Optuna's RetryFailedTrialCallback conventions for a re-queued trial.
inline constexpr const char* kFailedTrialAttr = "failed_trial";    // number of the first failure
inline constexpr const char* kRetryHistoryAttr = "retry_history";  // numbers of earlier attempts
inline constexpr const char* kFailReasonAttr = "fail_reason";

struct HeartbeatOptions {
  double interval_s = 60.0;  // how often a running worker refreshes its trials' heartbeat
  double grace_s = 180.0;    // a heartbeat older than this marks the trial stale
  bool requeue = false;      // re-queue a stale trial's params as a WAITING trial
  int max_retries = 3;       // re-queue at most this many times (len(retry_history))
};

double unix_time_now_s();

// Marks FAIL (with fail_reason) every RUNNING trial of the study whose heartbeat is older than
// options.grace_s at `now_s`, and re-queues it when options.requeue and retries remain. Returns
// the numbers of the trials this call failed (another worker may have failed some first).
std::vector<int64_t> fail_stale_trials(Storage& storage, int64_t study_id,
                                       const HeartbeatOptions& options, double now_s);

}  // namespace compsearch::search
