// JournalStorage: Optuna's JournalStorage over a JournalBackend (journal_backend.h): by default
// Optuna's JournalFileStorage(path) file format, so Python Optuna 3.1+ and compsearch open, read
// and write one study file, at the same time if need be; or Redis (journal_redis_backend.h,
// opened by open_storage.h from a redis:// URL). The journal logic (records, replay, ownership)
// is one for all backends; what follows describes the file backend.
//
// File: one JSON record per line ({"op_code": N, "worker_id": "<uuid>-<thread>", ...}; see
// journal_replay.h). We write Optuna 4.x's compact separators and read both styles. Every
// append happens under Optuna's symlink lock (`<path>.lock`, a symlink to the journal made with
// symlink(2), released by rename + unlink), so appends of Python and C++ writers never
// interleave. Readers take no lock, as in Optuna: they consume complete lines only.
//
// Crash safety: a lock whose symlink is older than `lock_grace_period_s` (30 s, Optuna 4.3's
// default) is considered abandoned by a killed writer and is broken. A torn last line (a
// writer killed mid-append) is invisible to readers (it has no newline) and the next writer
// cuts the file back to the last newline, under the lock, before appending; a complete line
// that is not JSON (left by a writer that does not repair, e.g. Optuna 3.1 appending after a
// torn line) is skipped with a warning (common/log.h; stderr by default) instead of stopping
// the study.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include "search/journal_backend.h"
#include "search/journal_replay.h"
#include "search/storage.h"

namespace compsearch::search {

struct JournalOptions {
  double lock_grace_period_s = 30.0;
  bool fsync = true;  // fsync each append, as Optuna does
};

// Optuna's JournalFileSymlinkLock with a grace period for stale locks. Throws
// std::runtime_error naming the lock path on unexpected errors (e.g. a missing directory).
class JournalFileLock {
 public:
  JournalFileLock(std::string journal_path, double grace_period_s);
  void acquire();
  void release();
  const std::string& lock_path() const { return lock_path_; }

 private:
  std::string journal_path_;
  std::string lock_path_;
  double grace_period_s_;
};

// The file backend: Optuna's JournalFileStorage. Creates the file when absent; throws
// std::runtime_error naming the path when it cannot.
std::unique_ptr<JournalBackend> make_journal_file_backend(std::string path,
                                                          JournalOptions options = {});

class JournalStorage : public Storage {
 public:
  // The journal file at `path` (make_journal_file_backend).
  explicit JournalStorage(std::string path, JournalOptions options = {});
  // Any backend; reads its records at once, so its errors throw here.
  explicit JournalStorage(std::unique_ptr<JournalBackend> backend);
  // Reads of at least this many bytes advise huge pages for the heap they grow (HugePageHeap),
  // in a process that allows it (huge_page_heap_allowed()).
  static constexpr uint64_t kHugePageReadBytes = uint64_t{8} << 20;

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

  // The journal's name in messages: the file path, or the Redis URL without its password.
  const std::string& name() const { return backend_->name(); }

 private:
  std::string worker_id() const;
  void sync();  // caller holds mutex_
  void write(journal::Op op,
             nlohmann::ordered_json fields);  // caller holds mutex_; appends, then syncs

  std::mutex mutex_;
  std::unique_ptr<JournalBackend> backend_;
  std::string worker_prefix_;
  journal::ReplayState state_;
};

}  // namespace compsearch::search
