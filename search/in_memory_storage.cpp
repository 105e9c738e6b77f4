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
  std::mt19937_64 rng((static_cast<uint64_t>(rd()) << 32) ^ rd() ^
                      static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count()));
  uint64_t a = rng(), b = rng();
  a = (a & ~0xF000ULL) | 0x4000ULL;                             // version 4
  b = (b & 0x3FFFFFFFFFFFFFFFULL) | 0x8000000000000000ULL;      // RFC 4122 variant
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%08llx-%04llx-%04llx-%04llx-%012llx-", static_cast<unsigned long long>(a >> 32),
                static_cast<unsigned long long>((a >> 16) & 0xFFFF), static_cast<unsigned long long>(a & 0xFFFF),
                static_cast<unsigned long long>(b >> 48), static_cast<unsigned long long>(b & 0xFFFFFFFFFFFFULL));
  return buf;
}

std::string current_thread_ident() {
  return std::to_string(std::hash<std::thread::id>{}(std::this_thread::get_id()));
}

InMemoryStorage::InMemoryStorage() : worker_prefix_(new_worker_prefix()) {}

std::string InMemoryStorage::worker_id() const { return worker_prefix_ + current_thread_ident(); }

void InMemoryStorage::apply(journal::Op op, nlohmann::ordered_json fields) {
  const std::string worker = worker_id();
  state_.apply(nlohmann::json(journal::with_header(op, worker, std::move(fields))), worker);
}

int64_t InMemoryStorage::create_new_study(const std::vector<StudyDirection>& directions, const std::string& name) {
  std::lock_guard lock(mutex_);
  apply(journal::Op::kCreateStudy, journal::create_study_log(directions, name));
  return state_.study_id_from_name(name);
}

void InMemoryStorage::delete_study(int64_t study_id) {
  std::lock_guard lock(mutex_);
  apply(journal::Op::kDeleteStudy, {{"study_id", study_id}});
}

void InMemoryStorage::set_study_user_attr(int64_t study_id, const std::string& key, const nlohmann::json& value) {
  std::lock_guard lock(mutex_);
  apply(journal::Op::kSetStudyUserAttr, {{"study_id", study_id}, {"user_attr", {{key, value}}}});
}

void InMemoryStorage::set_study_system_attr(int64_t study_id, const std::string& key, const nlohmann::json& value) {
  std::lock_guard lock(mutex_);
  apply(journal::Op::kSetStudySystemAttr, {{"study_id", study_id}, {"system_attr", {{key, value}}}});
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
  std::lock_guard lock(mutex_);
  apply(journal::Op::kCreateTrial, journal::create_trial_log(study_id, template_trial));
  return *state_.last_created_trial(worker_id());
}

void InMemoryStorage::set_trial_param(int64_t trial_id, const std::string& name, double internal_value,
                                      const Distribution& distribution) {
  std::lock_guard lock(mutex_);
  apply(journal::Op::kSetTrialParam, journal::set_trial_param_log(trial_id, name, internal_value, distribution));
}

int64_t InMemoryStorage::get_trial_id_from_study_id_trial_number(int64_t study_id, int64_t number) {
  std::lock_guard lock(mutex_);
  return state_.trial_id_from_number(study_id, number);
}

bool InMemoryStorage::set_trial_state_values(int64_t trial_id, TrialState state, const std::vector<double>* values) {
  std::lock_guard lock(mutex_);
  apply(journal::Op::kSetTrialStateValues, journal::set_trial_state_values_log(trial_id, state, values));
  return !(state == TrialState::kRunning && state_.owned_trial(worker_id()) != trial_id);
}

void InMemoryStorage::set_trial_intermediate_value(int64_t trial_id, int64_t step, double value) {
  std::lock_guard lock(mutex_);
  apply(journal::Op::kSetTrialIntermediateValue, {{"trial_id", trial_id}, {"step", step}, {"intermediate_value", value}});
}

void InMemoryStorage::set_trial_user_attr(int64_t trial_id, const std::string& key, const nlohmann::json& value) {
  std::lock_guard lock(mutex_);
  apply(journal::Op::kSetTrialUserAttr, {{"trial_id", trial_id}, {"user_attr", {{key, value}}}});
}

void InMemoryStorage::set_trial_system_attr(int64_t trial_id, const std::string& key, const nlohmann::json& value) {
  std::lock_guard lock(mutex_);
  apply(journal::Op::kSetTrialSystemAttr, {{"trial_id", trial_id}, {"system_attr", {{key, value}}}});
}

FrozenTrial InMemoryStorage::get_trial(int64_t trial_id) {
  std::lock_guard lock(mutex_);
  return state_.trial(trial_id);
}

std::vector<FrozenTrial> InMemoryStorage::get_all_trials(int64_t study_id, const std::vector<TrialState>& states) {
  std::lock_guard lock(mutex_);
  return state_.all_trials(study_id, states);
}

}  // namespace compsearch::search

namespace compsearch::search {

std::vector<FrozenTrial> InMemoryStorage::get_trials_from(int64_t study_id, int64_t first_number) {
  std::lock_guard lock(mutex_);
  return state_.trials_from(study_id, first_number);
}

}  // namespace compsearch::search
