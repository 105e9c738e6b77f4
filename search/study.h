// Study and Trial, as Optuna's (optuna/study/study.py, optuna/trial/_trial.py, _tell.py): a
// named set of trials with directions in a Storage, searched by a Sampler.
//
// Ask/tell: ask() creates a RUNNING trial (or pops a WAITING one: enqueued, or re-queued after
// a stale heartbeat) and samples the given parameters; tell() finishes it with Optuna's strict
// checks: COMPLETE needs one non-NaN value per direction, PRUNED and FAIL take no
// values (PRUNED records the last intermediate value, as Optuna does), only a RUNNING trial can
// be told, and tell without a state completes the trial when the values are valid and fails it
// otherwise.
//
// optimize() runs `objective` on n_jobs TBB workers; an objective that throws marks its trial
// FAIL with the reason in the system attribute "fail_reason" and the others go on; throwing
// TrialPruned marks it PRUNED (an objective asks Trial::should_prune(), decided by the study's
// Pruner, search/pruner.h). Sampler calls are serialised by the study (samplers need not be
// thread-safe); objectives run concurrently.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "search/pruner.h"
#include "search/sampler.h"
#include "search/storage.h"

namespace compsearch::search {

// Thrown by an objective to prune its trial (Optuna's TrialPruned).
struct TrialPruned : std::runtime_error {
  TrialPruned() : std::runtime_error("trial pruned") {}
  using std::runtime_error::runtime_error;
};

class Study;

// A running trial handed to the objective (or returned by ask()). Not thread-safe: one thread
// uses a trial at a time. Valid while its Study lives.
class Trial {
 public:
  int64_t number() const { return number_; }
  int64_t trial_id() const { return trial_id_; }

  // Optuna's suggest_* (the same name twice returns the first value). Distribution arguments
  // are validated (std::invalid_argument); a name must keep a compatible distribution across
  // the study's trials.
  double suggest_float(const std::string& name, double low, double high,
                       std::optional<double> step = std::nullopt, bool log = false);
  int64_t suggest_int(const std::string& name, int64_t low, int64_t high, int64_t step = 1,
                      bool log = false);
  nlohmann::json suggest_categorical(const std::string& name, std::vector<nlohmann::json> choices);
  nlohmann::json suggest(const std::string& name,
                         const Distribution& distribution);  // external value

  // Intermediate value at `step` (>= 0). Single-objective studies only; the first report of a
  // step wins (Optuna's rule).
  void report(double value, int64_t step);
  void set_user_attr(const std::string& key, const nlohmann::json& value);
  void set_system_attr(const std::string& key, const nlohmann::json& value);
  // Optuna's Trial.should_prune(): Study::should_prune(number()).
  bool should_prune();

  // External parameter values, in the order they were suggested.
  const std::vector<std::pair<std::string, nlohmann::json>>& params() const { return params_; }
  const FrozenTrial& cached() const { return cached_; }

 private:
  friend class Study;
  Trial(Study& study, int64_t trial_id);

  Study* study_;
  int64_t trial_id_;
  int64_t number_;
  FrozenTrial cached_;
  SearchSpace relative_space_;
  std::map<std::string, double> relative_params_;
  std::vector<std::pair<std::string, nlohmann::json>> params_;
};

struct StudyOptions {
  // When set, optimize() keeps a heartbeat on its running trials and, before each trial, fails
  // (and optionally re-queues) trials whose heartbeat is older than the grace period.
  std::optional<HeartbeatOptions> heartbeat;
  // When set, optimize() starts no new trial once it reads true (running trials finish): a
  // runner's Ctrl-C handler sets it.
  const std::atomic<bool>* stop = nullptr;
  // Decides Study::should_prune (make_pruner, search/pruner.h). Null means Optuna's default,
  // MedianPruner() with its default arguments. One pruner object per study (it may keep state).
  std::shared_ptr<Pruner> pruner;
};

class Study : public StudyView {
 public:
  // Creates a study; throws DuplicatedStudyError when the name exists unless load_if_exists.
  // A null sampler means RandomSampler with a random seed.
  static std::unique_ptr<Study> create(std::shared_ptr<Storage> storage, const std::string& name,
                                       const std::vector<StudyDirection>& directions,
                                       std::shared_ptr<Sampler> sampler = nullptr,
                                       bool load_if_exists = false, StudyOptions options = {});
  // Loads an existing study; throws StorageKeyError naming the study when absent.
  static std::unique_ptr<Study> load(std::shared_ptr<Storage> storage, const std::string& name,
                                     std::shared_ptr<Sampler> sampler = nullptr,
                                     StudyOptions options = {});

  Study(std::shared_ptr<Storage> storage, int64_t study_id, std::shared_ptr<Sampler> sampler,
        StudyOptions options = {});
  ~Study() override;

  int64_t study_id() const { return study_id_; }
  const std::string& name() const { return name_; }
  Storage& storage() { return *storage_; }
  Sampler& sampler() { return *sampler_; }

  // StudyView.
  std::vector<StudyDirection> directions() const override { return directions_; }
  std::vector<FrozenTrial> get_trials(const std::vector<TrialState>& states = {}) const override;
  std::vector<FrozenTrial> get_trials_from(int64_t first_number) const override;
  void read_trials(const std::vector<TrialState>& states, const TrialReader& fn) const override;
  void set_trial_system_attr(int64_t trial_id, const std::string& key,
                             const nlohmann::json& value) override;

  // Creates (or pops a WAITING) trial and suggests every parameter of `fixed`, in order.
  Trial ask(const std::vector<std::pair<std::string, Distribution>>& fixed = {});
  // Finishes trial `number`. Throws std::invalid_argument for Optuna's ValueErrors (unknown
  // number, trial not RUNNING, state/values mismatch, NaN, wrong number of values).
  FrozenTrial tell(int64_t number, std::optional<std::vector<double>> values,
                   std::optional<TrialState> state = std::nullopt, bool skip_if_finished = false);

  // Optuna's enqueue_trial: a WAITING trial whose listed params are fixed.
  void enqueue_trial(const std::map<std::string, nlohmann::json>& params,
                     const std::map<std::string, nlohmann::json>& user_attrs = {});

  using Objective = std::function<std::vector<double>(Trial&)>;
  // Runs n_trials trials (n_trials <= 0: until the timeout) on n_jobs workers (-1: one per
  // core), stopping new trials after timeout_s (<= 0: none). Storage or sampler errors stop the
  // loop and are rethrown after the running trials end; objective errors never do.
  void optimize(const Objective& objective, int n_trials, int n_jobs = 1, double timeout_s = 0.0);

  // COMPLETE, feasible (every "constraints" value <= 0, or none recorded) trials that no other
  // such trial dominates, in number order; for one objective, the first best one.
  std::vector<FrozenTrial> best_trials() const;

  void set_user_attr(const std::string& key, const nlohmann::json& value);
  void set_system_attr(const std::string& key, const nlohmann::json& value);

  // The pruner (null: MedianPruner(), Optuna's default). Set it before optimize() runs.
  void set_pruner(std::shared_ptr<Pruner> pruner);
  const Pruner& pruner() const { return *options_.pruner; }
  // Optuna's Trial.should_prune() for trial `number` as stored now (intermediate values and
  // system attributes): the pruner's decision. Throws std::logic_error for a multi-objective
  // study (Optuna raises NotImplementedError) and std::invalid_argument for an unknown number.
  bool should_prune(int64_t trial_number);

 private:
  friend class Trial;
  void run_trial(const Objective& objective);
  void heartbeat_loop();

  std::shared_ptr<Storage> storage_;
  int64_t study_id_;
  std::string name_;
  std::vector<StudyDirection> directions_;
  std::shared_ptr<Sampler> sampler_;
  StudyOptions options_;
  std::recursive_mutex sampler_mutex_;  // samplers call back into the study (set_trial_system_attr)

  std::mutex heartbeat_mutex_;
  std::map<int64_t, int> beating_;  // trial ids running in optimize()
};

// Pareto front of `trials` (COMPLETE only; feasible only when any has constraints) for
// `directions`; ties (identical values) are all kept, as Optuna does. Number order.
std::vector<const FrozenTrial*> best_trial_refs(TrialRefs trials,
                                                const std::vector<StudyDirection>& directions);
// best_trial_refs, copied.
std::vector<FrozenTrial> best_trials_of(const std::vector<FrozenTrial>& trials,
                                        const std::vector<StudyDirection>& directions);

}  // namespace compsearch::search
