// InMemoryStorage (see in_memory_storage.h).
#include "search/in_memory_storage.h"

#include <chrono>
#include <cstdio>
#include <functional>
#include <random>
#include <thread>

namespace compsearch::search {

std::string new_worker_prefix() {
  std::random_device rd;
  std::mt19937_64 rng(
      (static_cast<uint64_t>(rd()) << 32) ^ rd() ^
      static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count()));
  uint64_t a = rng(), b = rng();
  a = (a & ~0xF000ULL) | 0x4000ULL;                         // version 4
  b = (b & 0x3FFFFFFFFFFFFFFFULL) | 0x8000000000000000ULL;  // RFC 4122 variant
  char buf[64];
  std::snprintf(
      buf, sizeof(buf), "%08llx-%04llx-%04llx-%04llx-%012llx-",
      static_cast<unsigned long long>(a >> 32), static_cast<unsigned long long>((a >> 16) & 0xFFFF),
      static_cast<unsigned long long>(a & 0xFFFF), static_cast<unsigned long long>(b >> 48),
      static_cast<unsigned long long>(b & 0xFFFFFFFFFFFFULL));
  return buf;
}

std::string current_thread_ident() {
  return std::to_string(std::hash<std::thread::id>{}(std::this_thread::get_id()));
}

InMemoryStorage::InMemoryStorage() : worker_prefix_(new_worker_prefix()) {}

std::string InMemoryStorage::worker_id() const { return worker_prefix_ + current_thread_ident(); }

int64_t InMemoryStorage::create_new_study(const std::vector<StudyDirection>& directions,
                                          const std::string& name) {
  std::lock_guard lock(mutex_);
  state_.create_study(name, directions, true);
  return state_.study_id_from_name(name);
}

void InMemoryStorage::delete_study(int64_t study_id) {
  std::lock_guard lock(mutex_);
  state_.delete_study(study_id, true);
}

void InMemoryStorage::set_study_user_attr(int64_t study_id, const std::string& key,
                                          const nlohmann::json& value) {
  std::lock_guard lock(mutex_);
  state_.set_study_attr(study_id, true, key, value, true);
}

void InMemoryStorage::set_study_system_attr(int64_t study_id, const std::string& key,
                                            const nlohmann::json& value) {
  std::lock_guard lock(mutex_);
  state_.set_study_attr(study_id, false, key, value, true);
}

int64_t InMemoryStorage::get_study_id_from_name(const std::string& name) {
  std::lock_guard lock(mutex_);
  return state_.study_id_from_name(name);
}

FrozenStudy InMemoryStorage::get_study(int64_t study_id) {
  std::lock_guard lock(mutex_);
  return state_.study(study_id);
}

std::vector<FrozenStudy> InMemoryStorage::get_all_studies() {
  std::lock_guard lock(mutex_);
  return state_.all_studies();
}

int64_t InMemoryStorage::create_new_trial(int64_t study_id, const FrozenTrial* template_trial) {
  FrozenTrial t;
  if (template_trial) {
    t.state = template_trial->state;
    t.values = template_trial->values;
    t.datetime_start = template_trial->datetime_start;
    t.datetime_complete = template_trial->datetime_complete;
    t.params = template_trial->params;
    t.distributions = template_trial->distributions;
    t.user_attrs = template_trial->user_attrs;
    t.system_attrs = template_trial->system_attrs;
    t.intermediate_values = template_trial->intermediate_values;
    for (const auto& [name, v] : t.params) {
      if (!t.distributions.count(name)) {
        throw std::invalid_argument("template trial: parameter \"" + name +
                                    "\" has no distribution");
      }
    }
  } else {
    t.state = TrialState::kRunning;
    t.datetime_start = journal::now_frozen();
  }
  const std::string worker = worker_id();
  std::lock_guard lock(mutex_);
  state_.create_trial(study_id, std::move(t), worker, true);
  return *state_.last_created_trial(worker);
}

void InMemoryStorage::set_trial_param(int64_t trial_id, const std::string& name,
                                      double internal_value, const Distribution& distribution) {
  std::lock_guard lock(mutex_);
  state_.set_trial_param(trial_id, name, internal_value, distribution, true);
}

int64_t InMemoryStorage::get_trial_id_from_study_id_trial_number(int64_t study_id, int64_t number) {
  std::lock_guard lock(mutex_);
  return state_.trial_id_from_number(study_id, number);
}

bool InMemoryStorage::set_trial_state_values(int64_t trial_id, TrialState state,
                                             const std::vector<double>* values) {
  const std::string worker = worker_id();
  const std::string now =
      is_finished(state) || state == TrialState::kRunning ? journal::now_frozen() : std::string();
  std::lock_guard lock(mutex_);
  state_.set_trial_state_values(trial_id, state,
                                values ? std::optional<std::vector<double>>(*values) : std::nullopt,
                                now, worker, true);
  return !(state == TrialState::kRunning && state_.owned_trial(worker) != trial_id);
}

void InMemoryStorage::set_trial_intermediate_value(int64_t trial_id, int64_t step, double value) {
  std::lock_guard lock(mutex_);
  state_.set_trial_intermediate_value(trial_id, step, value, true);
}

void InMemoryStorage::set_trial_user_attr(int64_t trial_id, const std::string& key,
                                          const nlohmann::json& value) {
  std::lock_guard lock(mutex_);
  state_.set_trial_attr(trial_id, true, key, value, true);
}

void InMemoryStorage::set_trial_system_attr(int64_t trial_id, const std::string& key,
                                            const nlohmann::json& value) {
  std::lock_guard lock(mutex_);
  state_.set_trial_attr(trial_id, false, key, value, true);
}

FrozenTrial InMemoryStorage::get_trial(int64_t trial_id) {
  std::lock_guard lock(mutex_);
  return state_.trial(trial_id);
}

std::vector<FrozenTrial> InMemoryStorage::get_all_trials(int64_t study_id,
                                                         const std::vector<TrialState>& states) {
  std::lock_guard lock(mutex_);
  return state_.all_trials(study_id, states);
}

}  // namespace compsearch::search

namespace compsearch::search {

std::vector<FrozenTrial> InMemoryStorage::get_trials_from(int64_t study_id, int64_t first_number) {
  std::lock_guard lock(mutex_);
  return state_.trials_from(study_id, first_number);
}

void InMemoryStorage::read_trials(int64_t study_id, const std::vector<TrialState>& states,
                                  const TrialReader& fn) {
  std::lock_guard lock(mutex_);
  fn(state_.trial_refs(study_id, states));
}

}  // namespace compsearch::search
