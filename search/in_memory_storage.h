// InMemoryStorage: a Storage held in this process's memory (Optuna's InMemoryStorage). It
// applies the same records as the journal (search/journal_replay.h), so ids, numbering,
// ownership and errors are those of JournalStorage, minus the file.
#pragma once

#include <mutex>
#include <string>

#include "search/journal_replay.h"
#include "search/storage.h"

namespace compsearch::search {

class InMemoryStorage : public Storage {
 public:
  InMemoryStorage();

  int64_t create_new_study(const std::vector<StudyDirection>& directions,
                           const std::string& study_name) override;
  void delete_study(int64_t study_id) override;
  void set_study_user_attr(int64_t study_id, const std::string& key,
                           const nlohmann::json& value) override;
  void set_study_system_attr(int64_t study_id, const std::string& key,
                             const nlohmann::json& value) override;
  int64_t get_study_id_from_name(const std::string& study_name) override;
  FrozenStudy get_study(int64_t study_id) override;
  std::vector<FrozenStudy> get_all_studies() override;

  int64_t create_new_trial(int64_t study_id, const FrozenTrial* template_trial = nullptr) override;
  void set_trial_param(int64_t trial_id, const std::string& name, double internal_value,
                       const Distribution& distribution) override;
  int64_t get_trial_id_from_study_id_trial_number(int64_t study_id, int64_t number) override;
  bool set_trial_state_values(int64_t trial_id, TrialState state,
                              const std::vector<double>* values = nullptr) override;
  void set_trial_intermediate_value(int64_t trial_id, int64_t step, double value) override;
  void set_trial_user_attr(int64_t trial_id, const std::string& key,
                           const nlohmann::json& value) override;
  void set_trial_system_attr(int64_t trial_id, const std::string& key,
                             const nlohmann::json& value) override;
  FrozenTrial get_trial(int64_t trial_id) override;
  std::vector<FrozenTrial> get_all_trials(int64_t study_id,
                                          const std::vector<TrialState>& states = {}) override;
  std::vector<FrozenTrial> get_trials_from(int64_t study_id, int64_t first_number) override;
  void read_trials(int64_t study_id, const std::vector<TrialState>& states,
                   const TrialReader& fn) override;

 private:
  std::string worker_id() const;

  std::mutex mutex_;
  std::string worker_prefix_;
  journal::ReplayState state_;
};

// "<uuid4>-<thread id>", Optuna's worker_id form.
std::string new_worker_prefix();
std::string current_thread_ident();

}  // namespace compsearch::search
