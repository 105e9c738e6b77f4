// Study and Trial (see study.h).
#include "search/study.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <random>
#include <thread>

#include "common/check.h"
#include "common/log.h"
#include "search/pareto.h"
#include "search/python_json.h"
#include "search/random_sampler.h"

namespace compsearch::search {

// ---------------------------------------------------------------------------------- Trial

Trial::Trial(Study& study, int64_t trial_id) : study_(&study), trial_id_(trial_id) {
  cached_ = study.storage_->get_trial(trial_id);
  number_ = cached_.number;
  for (const auto& [name, v] : cached_.params) {
    params_.emplace_back(name, to_external(cached_.distributions.at(name), v));
  }
  std::lock_guard lock(study.sampler_mutex_);
  relative_space_ = study.sampler_->infer_relative_search_space(study, cached_);
  relative_params_ = study.sampler_->sample_relative(study, cached_, relative_space_);
}

double Trial::suggest_float(const std::string& name, double low, double high,
                            std::optional<double> step, bool log) {
  return suggest(name, make_float(low, high, log, step)).get<double>();
}

int64_t Trial::suggest_int(const std::string& name, int64_t low, int64_t high, int64_t step,
                           bool log) {
  return suggest(name, make_int(low, high, log, step)).get<int64_t>();
}

nlohmann::json Trial::suggest_categorical(const std::string& name,
                                          std::vector<nlohmann::json> choices) {
  return suggest(name, make_categorical(std::move(choices)));
}

nlohmann::json Trial::suggest(const std::string& name, const Distribution& dist) {
  if (auto it = cached_.distributions.find(name); it != cached_.distributions.end()) {
    check_distribution_compatibility(name, it->second, dist);
    return to_external(it->second, cached_.params.at(name));
  }
  std::optional<double> internal;
  auto fixed = cached_.system_attrs.find("fixed_params");
  if (fixed != cached_.system_attrs.end() && fixed->second.is_object() &&
      fixed->second.contains(name)) {
    internal = to_internal(dist, fixed->second[name]);
    if (!contains(dist, *internal)) {
      log_warning("fixed parameter '", name, "' with value ", fixed->second[name].dump(),
                  " is out of range for distribution ", distribution_to_json_string(dist));
    }
  } else if (is_single(dist)) {
    internal = single_value(dist);
  } else if (auto rel = relative_params_.find(name); rel != relative_params_.end()) {
    auto space = relative_space_.find(name);
    COMPSEARCH_CHECK(
        space != relative_space_.end(),
        "parameter '" + name +
            "' was sampled by sample_relative but is not in the relative search space");
    check_distribution_compatibility(name, space->second, dist);
    if (contains(dist, rel->second)) internal = rel->second;
  }
  if (!internal) {
    std::lock_guard lock(study_->sampler_mutex_);
    internal = study_->sampler_->sample_independent(*study_, cached_, name, dist);
  }
  study_->storage_->set_trial_param(trial_id_, name, *internal, dist);
  cached_.params[name] = *internal;
  cached_.distributions[name] = dist;
  nlohmann::json external = to_external(dist, *internal);
  params_.emplace_back(name, external);
  return external;
}

void Trial::report(double value, int64_t step) {
  if (study_->directions_.size() > 1) {
    throw std::logic_error("Trial.report is not supported for multi-objective optimization");
  }
  if (step < 0) {
    throw std::invalid_argument("The `step` argument is " + std::to_string(step) +
                                " but cannot be negative.");
  }
  if (cached_.intermediate_values.count(step)) return;  // Optuna keeps the first report of a step
  study_->storage_->set_trial_intermediate_value(trial_id_, step, value);
  cached_.intermediate_values[step] = value;
}

bool Trial::should_prune() { return study_->should_prune(number_); }

void Trial::set_user_attr(const std::string& key, const nlohmann::json& value) {
  study_->storage_->set_trial_user_attr(trial_id_, key, value);
  cached_.user_attrs[key] = value;
}

void Trial::set_system_attr(const std::string& key, const nlohmann::json& value) {
  study_->storage_->set_trial_system_attr(trial_id_, key, value);
  cached_.system_attrs[key] = value;
}

// ---------------------------------------------------------------------------------- Study

namespace {

// Every problem at once, so a configuration is fixed in one go.
void validate_options(const StudyOptions& options, const std::string& name) {
  const auto& hb = options.heartbeat;
  if (!hb) return;
  std::string problems;
  if (!(hb->interval_s > 0))
    problems += " interval_s = " + python_float_repr(hb->interval_s) + " (expected > 0);";
  if (!(hb->grace_s > hb->interval_s)) {
    problems += " grace_s = " + python_float_repr(hb->grace_s) +
                " (expected > interval_s, or live trials go stale);";
  }
  if (hb->max_retries < 0)
    problems += " max_retries = " + std::to_string(hb->max_retries) + " (expected >= 0);";
  if (!problems.empty())
    throw std::invalid_argument("study \"" + name + "\": heartbeat options:" + problems);
}

}  // namespace

std::unique_ptr<Study> Study::create(std::shared_ptr<Storage> storage, const std::string& name,
                                     const std::vector<StudyDirection>& directions,
                                     std::shared_ptr<Sampler> sampler, bool load_if_exists,
                                     StudyOptions options) {
  validate_options(options, name);
  if (directions.empty())
    throw std::invalid_argument("study \"" + name + "\": at least one direction is required");
  for (auto d : directions) {
    if (d != StudyDirection::kMinimize && d != StudyDirection::kMaximize) {
      throw std::invalid_argument("study \"" + name +
                                  "\": directions must be minimize or maximize");
    }
  }
  int64_t id;
  try {
    id = storage->create_new_study(directions, name);
  } catch (const DuplicatedStudyError&) {
    if (!load_if_exists) throw;
    id = storage->get_study_id_from_name(name);
  }
  return std::make_unique<Study>(std::move(storage), id, std::move(sampler), options);
}

std::unique_ptr<Study> Study::load(std::shared_ptr<Storage> storage, const std::string& name,
                                   std::shared_ptr<Sampler> sampler, StudyOptions options) {
  int64_t id;
  try {
    id = storage->get_study_id_from_name(name);
  } catch (const StorageKeyError&) {
    throw StorageKeyError("study \"" + name + "\" does not exist in the storage");
  }
  return std::make_unique<Study>(std::move(storage), id, std::move(sampler), options);
}

Study::Study(std::shared_ptr<Storage> storage, int64_t study_id, std::shared_ptr<Sampler> sampler,
             StudyOptions options)
    : storage_(std::move(storage)),
      study_id_(study_id),
      sampler_(std::move(sampler)),
      options_(options) {
  FrozenStudy s = storage_->get_study(study_id);
  name_ = s.study_name;
  directions_ = s.directions;
  if (!sampler_) sampler_ = std::make_shared<RandomSampler>(std::random_device{}());
  validate_options(options_, name_);
  set_pruner(options_.pruner);
}

Study::~Study() = default;

std::vector<FrozenTrial> Study::get_trials(const std::vector<TrialState>& states) const {
  return storage_->get_all_trials(study_id_, states);
}

std::vector<FrozenTrial> Study::get_trials_from(int64_t first_number) const {
  return storage_->get_trials_from(study_id_, first_number);
}

void Study::read_trials(const std::vector<TrialState>& states, const TrialReader& fn) const {
  storage_->read_trials(study_id_, states, fn);
}

void Study::set_trial_system_attr(int64_t trial_id, const std::string& key,
                                  const nlohmann::json& value) {
  storage_->set_trial_system_attr(trial_id, key, value);
}

void Study::set_user_attr(const std::string& key, const nlohmann::json& value) {
  storage_->set_study_user_attr(study_id_, key, value);
}

void Study::set_system_attr(const std::string& key, const nlohmann::json& value) {
  storage_->set_study_system_attr(study_id_, key, value);
}

void Study::set_pruner(std::shared_ptr<Pruner> pruner) {
  options_.pruner = pruner ? std::move(pruner) : std::shared_ptr<Pruner>(make_pruner("median", {}));
}

bool Study::should_prune(int64_t trial_number) {
  if (directions_.size() > 1) {
    throw std::logic_error(
        "Trial.should_prune is not supported for multi-objective optimization (study \"" + name_ +
        "\")");
  }
  int64_t trial_id;
  try {
    trial_id = storage_->get_trial_id_from_study_id_trial_number(study_id_, trial_number);
  } catch (const StorageKeyError&) {
    throw std::invalid_argument("should_prune: study \"" + name_ + "\" has no trial number " +
                                std::to_string(trial_number));
  }
  return options_.pruner->prune(*this, storage_->get_trial(trial_id));
}

Trial Study::ask(const std::vector<std::pair<std::string, Distribution>>& fixed) {
  std::optional<int64_t> trial_id;
  for (const auto& t : storage_->get_all_trials(study_id_, {TrialState::kWaiting})) {
    try {
      if (storage_->set_trial_state_values(t.trial_id, TrialState::kRunning)) {
        trial_id = t.trial_id;
        break;
      }
    } catch (const TrialFinishedError&) {
      // finished by another worker in the meantime
    }
  }
  if (!trial_id) trial_id = storage_->create_new_trial(study_id_);
  {
    FrozenTrial ft = storage_->get_trial(*trial_id);
    const auto before = ft.system_attrs;
    std::lock_guard lock(sampler_mutex_);
    sampler_->before_trial(*this, ft);
    for (const auto& [k, v] : ft.system_attrs) {
      auto it = before.find(k);
      if (it == before.end() || it->second != v) storage_->set_trial_system_attr(*trial_id, k, v);
    }
  }
  Trial trial(*this, *trial_id);
  for (const auto& [name, dist] : fixed) trial.suggest(name, dist);
  return trial;
}

namespace {

// Optuna's _check_values_are_feasible: nullopt when fine, else the reason.
std::optional<std::string> values_problem(const std::vector<double>& values, size_t n_directions) {
  for (double v : values) {
    if (std::isnan(v)) return "The value nan is not acceptable.";
  }
  if (values.size() != n_directions) {
    return "The number of the values " + std::to_string(values.size()) +
           " did not match the number of the objectives " + std::to_string(n_directions) + ".";
  }
  return std::nullopt;
}

}  // namespace

FrozenTrial Study::tell(int64_t number, std::optional<std::vector<double>> values,
                        std::optional<TrialState> state, bool skip_if_finished) {
  int64_t trial_id;
  try {
    trial_id = storage_->get_trial_id_from_study_id_trial_number(study_id_, number);
  } catch (const StorageKeyError&) {
    throw std::invalid_argument("Cannot tell for trial with number " + std::to_string(number) +
                                " since it has not been created.");
  }
  FrozenTrial ft = storage_->get_trial(trial_id);
  if (is_finished(ft.state) && skip_if_finished) return ft;
  if (ft.state != TrialState::kRunning) {
    throw std::invalid_argument(std::string("Cannot tell a ") + to_string(ft.state) + " trial.");
  }
  if (state == TrialState::kComplete) {
    if (!values)
      throw std::invalid_argument(
          "No values were told. Values are required when state is TrialState.COMPLETE.");
  } else if (state == TrialState::kPruned || state == TrialState::kFail) {
    if (values) {
      throw std::invalid_argument(
          "Values were told. Values cannot be specified when state is TrialState.PRUNED or "
          "TrialState.FAIL.");
    }
  } else if (state) {
    throw std::invalid_argument(std::string("Cannot tell with state ") + to_string(*state) + ".");
  }

  std::optional<std::string> fail_reason;
  if (state == TrialState::kComplete) {
    if (auto problem = values_problem(*values, directions_.size()))
      throw std::invalid_argument(*problem);
  } else if (state == TrialState::kPruned) {
    if (!ft.intermediate_values.empty()) {
      double last = ft.intermediate_values.rbegin()->second;
      if (!values_problem({last}, directions_.size())) values = std::vector<double>{last};
    }
  } else if (!state) {
    fail_reason = values ? values_problem(*values, directions_.size())
                         : std::optional<std::string>("The value None could not be cast to float.");
    if (fail_reason) {
      state = TrialState::kFail;
      values.reset();
    } else {
      state = TrialState::kComplete;
    }
  }
  if (fail_reason) storage_->set_trial_system_attr(trial_id, kFailReasonAttr, *fail_reason);
  try {
    std::lock_guard lock(sampler_mutex_);
    sampler_->after_trial(*this, ft, *state, values ? &*values : nullptr);
  } catch (...) {
    storage_->set_trial_state_values(trial_id, *state, values ? &*values : nullptr);
    throw;
  }
  storage_->set_trial_state_values(trial_id, *state, values ? &*values : nullptr);
  return storage_->get_trial(trial_id);
}

void Study::enqueue_trial(const std::map<std::string, nlohmann::json>& params,
                          const std::map<std::string, nlohmann::json>& user_attrs) {
  FrozenTrial t;
  t.state = TrialState::kWaiting;
  nlohmann::json fixed = nlohmann::json::object();
  for (const auto& [k, v] : params) fixed[k] = v;
  t.system_attrs["fixed_params"] = fixed;
  t.user_attrs = user_attrs;
  storage_->create_new_trial(study_id_, &t);
}

void Study::run_trial(const Objective& objective) {
  const auto& hb = options_.heartbeat;
  if (hb) fail_stale_trials(*storage_, study_id_, *hb, unix_time_now_s());
  Trial trial = ask();
  if (hb) {
    storage_->set_trial_system_attr(trial.trial_id(), kHeartbeatAttr, unix_time_now_s());
    std::lock_guard lock(heartbeat_mutex_);
    beating_[trial.trial_id()] = 1;
  }
  std::optional<std::vector<double>> values;
  std::optional<TrialState> state;
  std::optional<std::string> reason;
  try {
    values = objective(trial);
  } catch (const TrialPruned&) {
    state = TrialState::kPruned;
  } catch (const std::exception& e) {
    state = TrialState::kFail;
    reason = e.what();
  } catch (...) {
    state = TrialState::kFail;
    reason = "unknown exception (not derived from std::exception)";
  }
  if (hb) {
    std::lock_guard lock(heartbeat_mutex_);
    beating_.erase(trial.trial_id());
  }
  if (reason) storage_->set_trial_system_attr(trial.trial_id(), kFailReasonAttr, *reason);
  if (state)
    tell(trial.number(), std::nullopt, state);
  else
    tell(trial.number(), values, std::nullopt);
}

void Study::optimize(const Objective& objective, int n_trials, int n_jobs, double timeout_s) {
  if (n_trials <= 0 && timeout_s <= 0) {
    throw std::invalid_argument(
        "optimize: give n_trials > 0 or timeout_s > 0 (got n_trials=" + std::to_string(n_trials) +
        ", timeout_s=" + python_float_repr(timeout_s) + ")");
  }
  if (n_jobs == -1) n_jobs = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  if (n_jobs < 1)
    throw std::invalid_argument("optimize: n_jobs = " + std::to_string(n_jobs) +
                                ", expected >= 1 or -1");
  const auto start = std::chrono::steady_clock::now();
  std::atomic<int> started{0};
  std::atomic<bool> stop{false};
  std::mutex error_mutex;
  std::exception_ptr first_error;

  auto worker = [&] {
    while (!stop.load()) {
      if (options_.stop && options_.stop->load()) break;
      if (n_trials > 0 && started.fetch_add(1) >= n_trials) break;
      if (timeout_s > 0 &&
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() >=
              timeout_s) {
        break;
      }
      try {
        run_trial(objective);
      } catch (...) {
        std::lock_guard lock(error_mutex);
        if (!first_error) first_error = std::current_exception();
        stop = true;
      }
    }
  };

  // The heartbeat thread refreshes the running trials' heartbeats until the loop ends.
  std::mutex hb_mutex;
  std::condition_variable hb_cv;
  bool hb_done = false;
  std::thread hb_thread;
  if (options_.heartbeat) {
    const double interval_s = options_.heartbeat->interval_s;
    hb_thread = std::thread([&, interval_s] {
      std::unique_lock lock(hb_mutex);
      while (!hb_cv.wait_for(lock, std::chrono::duration<double>(interval_s),
                             [&] { return hb_done; })) {
        std::vector<int64_t> ids;
        {
          std::lock_guard beat_lock(heartbeat_mutex_);
          for (const auto& [id, _] : beating_) ids.push_back(id);
        }
        for (int64_t id : ids) {
          try {
            storage_->set_trial_system_attr(id, kHeartbeatAttr, unix_time_now_s());
          } catch (const std::exception&) {
            // the trial finished meanwhile; its heartbeat no longer matters
          }
        }
      }
    });
  }

  if (n_jobs == 1) {
    worker();
  } else {
    // One thread per job, as Optuna's thread pool (n_jobs may exceed the cores: objectives may
    // wait on I/O or external commands). Plain threads, not TBB tasks: their start and join are
    // synchronisation ThreadSanitizer sees (libtbb.so's task queues are not instrumented).
    std::vector<std::thread> jobs;
    jobs.reserve(static_cast<size_t>(n_jobs));
    for (int i = 0; i < n_jobs; ++i) jobs.emplace_back(worker);
    for (auto& j : jobs) j.join();
  }
  if (hb_thread.joinable()) {
    {
      std::lock_guard lock(hb_mutex);
      hb_done = true;
    }
    hb_cv.notify_all();
    hb_thread.join();
  }
  if (first_error) std::rethrow_exception(first_error);
}

std::vector<FrozenTrial> Study::best_trials() const {
  std::vector<FrozenTrial> out;
  read_trials({}, [&](TrialRefs trials) {
    for (const FrozenTrial* t : best_trial_refs(trials, directions_)) out.push_back(*t);
  });
  return out;
}

std::vector<const FrozenTrial*> best_trial_refs(TrialRefs trials,
                                                const std::vector<StudyDirection>& directions) {
  std::vector<const FrozenTrial*> pool;
  for (const FrozenTrial* t : trials) {
    if (t->state == TrialState::kComplete && t->values.size() == directions.size() && t->feasible())
      pool.push_back(t);
  }
  if (pool.empty()) return {};
  auto normalized = [&](const FrozenTrial& t, size_t k) {
    return directions[k] == StudyDirection::kMaximize ? -t.values[k] : t.values[k];
  };
  if (directions.size() == 1) {
    const FrozenTrial* best = pool[0];
    for (const auto* t : pool) {
      if (normalized(*t, 0) < normalized(*best, 0)) best = t;
    }
    return {best};
  }
  std::vector<Point> points;
  points.reserve(pool.size());
  for (const auto* t : pool) points.push_back(to_minimization(t->values, directions));
  std::vector<const FrozenTrial*> front;
  for (size_t i : pareto_front_indices(points)) front.push_back(pool[i]);
  // Two objectives: in number order whatever the input order (Optuna's 2-D sweep sorts them).
  if (directions.size() == 2) {
    std::sort(front.begin(), front.end(),
              [](const FrozenTrial* a, const FrozenTrial* b) { return a->number < b->number; });
  }
  return front;
}

std::vector<FrozenTrial> best_trials_of(const std::vector<FrozenTrial>& trials,
                                        const std::vector<StudyDirection>& directions) {
  std::vector<FrozenTrial> out;
  lend_trials(trials, [&](TrialRefs refs) {
    for (const FrozenTrial* t : best_trial_refs(refs, directions)) out.push_back(*t);
  });
  return out;
}

}  // namespace compsearch::search
