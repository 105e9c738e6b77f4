// JournalStorage and Optuna's symlink lock (see journal_storage.h).
#include "search/journal_storage.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <exception>
#include <optional>
#include <thread>

#include "common/heap_pages.h"
#include "common/log.h"
#include "search/in_memory_storage.h"
#include "search/python_json.h"

namespace compsearch::search {
namespace {

std::string errno_text() { return std::strerror(errno); }

double wall_now_s() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

double mtime_s(const struct stat& st) {
  return static_cast<double>(st.st_mtim.tv_sec) + 1e-9 * static_cast<double>(st.st_mtim.tv_nsec);
}

// Unique name for the rename-then-unlink release, as Optuna's `<lock><uuid4>.rename`.
std::string rename_path(const std::string& lock_path) {
  std::string uuid = new_worker_prefix();
  uuid.pop_back();  // trailing '-'
  return lock_path + uuid + ".rename";
}

// Deletes a stale lock moved aside: Optuna's lock is a symlink (unlink), but a lock some other
// tool took with mkdir is an empty directory (rmdir), which unlink alone would leave behind.
void remove_broken_lock(const std::string& aside) {
  if (::unlink(aside.c_str()) == 0) return;
  if ((errno == EISDIR || errno == EPERM) && ::rmdir(aside.c_str()) == 0) return;
  log_warning("journal lock: cannot remove the broken lock moved to ", aside, ": ", errno_text());
}

struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

void write_all(int fd, const std::string& data, const std::string& path) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw std::runtime_error("journal " + path + ": write failed: " + errno_text());
    }
    done += static_cast<size_t>(n);
  }
}

// The record a journal's last line holds when it lacks only its newline: a JSON object (a torn
// line never parses as one: its closing brace is the last byte written). nullopt otherwise.
std::optional<nlohmann::json> complete_record(std::string_view tail) {
  if (tail.find_first_not_of(" \t\r") == std::string_view::npos) return std::nullopt;
  try {
    nlohmann::json log = parse_python_json(tail);
    if (log.is_object()) return log;
  } catch (const std::exception&) {
  }
  return std::nullopt;
}

}  // namespace

// Waiting for the lock: Optuna's first back-off (1 ms, doubling), capped at 50 ms rather than
// Optuna's 1 s so that a worker notices a released lock quickly (locks are held for one append).
constexpr double kLockFirstWait_s = 0.001;
constexpr double kLockMaxWait_s = 0.05;

JournalFileLock::JournalFileLock(std::string journal_path, double grace_period_s)
    : journal_path_(std::move(journal_path)),
      lock_path_(journal_path_ + ".lock"),
      grace_period_s_(grace_period_s) {}

void JournalFileLock::acquire() {
  double sleep_s = kLockFirstWait_s;
  std::optional<std::pair<ino_t, double>> seen;  // the lock instance we are waiting on
  auto seen_since = std::chrono::steady_clock::now();
  while (true) {
    if (::symlink(journal_path_.c_str(), lock_path_.c_str()) == 0) return;
    if (errno != EEXIST) {
      throw std::runtime_error("journal lock " + lock_path_ +
                               ": cannot create the lock symlink: " + errno_text());
    }
    struct stat st {};
    if (::lstat(lock_path_.c_str(), &st) == 0) {
      const std::pair<ino_t, double> key{st.st_ino, mtime_s(st)};
      const auto now = std::chrono::steady_clock::now();
      if (!seen || *seen != key) {
        seen = key;
        seen_since = now;
      }
      const double age_s = wall_now_s() - key.second;
      const double observed_s = std::chrono::duration<double>(now - seen_since).count();
      if (age_s > grace_period_s_ || observed_s > grace_period_s_) {
        // Break the stale lock: move it aside (only one breaker wins the rename), make sure we
        // moved the stale instance and not a fresh lock taken meanwhile, then delete it.
        const std::string aside = rename_path(lock_path_);
        if (::rename(lock_path_.c_str(), aside.c_str()) == 0) {
          struct stat moved {};
          if (::lstat(aside.c_str(), &moved) == 0 && moved.st_ino != key.first) {
            // A fresh lock: put it back (link fails harmlessly if yet another one exists).
            if (::link(aside.c_str(), lock_path_.c_str()) != 0) {
              log_warning("journal lock ", lock_path_, " changed while being broken");
            }
            ::unlink(aside.c_str());
          } else {
            remove_broken_lock(aside);
            log_warning("broke the stale journal lock ", lock_path_, " (held for ",
                        std::max(age_s, observed_s), " s, grace period ", grace_period_s_, " s)");
          }
        }
        seen.reset();
        continue;
      }
    }
    std::this_thread::sleep_for(std::chrono::duration<double>(sleep_s));
    sleep_s = std::min(sleep_s * 2, kLockMaxWait_s);
  }
}

void JournalFileLock::release() {
  const std::string aside = rename_path(lock_path_);
  if (::rename(lock_path_.c_str(), aside.c_str()) != 0) {
    log_warning("journal lock ", lock_path_,
                " was gone at release (broken by another process after the grace period?)");
    return;
  }
  ::unlink(aside.c_str());
}

namespace {

// Optuna's JournalFileStorage: one record per line, appended under the symlink lock.
class JournalFileBackend : public JournalBackend {
 public:
  JournalFileBackend(std::string path, JournalOptions options)
      : path_(std::move(path)), options_(options), lock_(path_, options.lock_grace_period_s) {
    Fd f{::open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644)};
    if (f.fd < 0)
      throw std::runtime_error("journal " + path_ + ": cannot open or create: " + errno_text());
  }

  const std::string& name() const override { return path_; }
  std::string describe(uint64_t position) const override {
    return "a line at byte " + std::to_string(position);
  }
  void read_new(const RecordSink& sink) override;
  void append(const nlohmann::ordered_json& record) override;
  uint64_t unread_bytes() const override {
    struct stat st {};
    if (::stat(path_.c_str(), &st) != 0 || static_cast<uint64_t>(st.st_size) < offset_) return 0;
    return static_cast<uint64_t>(st.st_size) - offset_;
  }

 private:
  std::string path_;
  JournalOptions options_;
  JournalFileLock lock_;
  uint64_t offset_ = 0;  // bytes of complete lines consumed
};

void JournalFileBackend::read_new(const RecordSink& sink) {
  Fd f{::open(path_.c_str(), O_RDONLY)};
  if (f.fd < 0)
    throw std::runtime_error("journal " + path_ + ": cannot open for reading: " + errno_text());
  // Only the bytes after offset_ (up to the size the file has now), in chunks: a 135 MB journal
  // is never held whole, and a re-read after a small append allocates only what it reads.
  // buf[start, end) holds the bytes read and not yet passed on: the line a chunk cut in two
  // moves to the front before the next chunk is read behind it (not zero-filled first).
  constexpr size_t kChunkBytes = size_t{4} << 20;
  struct stat st {};
  if (::fstat(f.fd, &st) != 0)
    throw std::runtime_error("journal " + path_ + ": fstat failed: " + errno_text());
  std::unique_ptr<char[]> buf;
  size_t capacity = 0, start = 0, end = 0;
  off_t pos = static_cast<off_t>(offset_);
  while (pos < st.st_size) {
    const size_t kept = end - start;
    const auto want = static_cast<size_t>(std::min<off_t>(kChunkBytes, st.st_size - pos));
    if (kept + want > capacity) {  // a line longer than a chunk, or the first chunk
      capacity = std::max(kept + want, 2 * capacity);
      std::unique_ptr<char[]> bigger(new char[capacity]);
      if (kept) std::memcpy(bigger.get(), buf.get() + start, kept);
      buf = std::move(bigger);
    } else if (start > 0 && kept) {
      std::memmove(buf.get(), buf.get() + start, kept);
    }
    start = 0;
    end = kept;
    ssize_t n = ::pread(f.fd, buf.get() + end, want, pos);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw std::runtime_error("journal " + path_ + ": read failed: " + errno_text());
    }
    if (n == 0) break;
    end += static_cast<size_t>(n);
    pos += n;
    while (true) {
      const auto* nl = static_cast<const char*>(std::memchr(buf.get() + start, '\n', end - start));
      if (!nl) break;
      const size_t nl_at = static_cast<size_t>(nl - buf.get());
      std::string_view line(buf.get() + start, nl_at - start);
      const uint64_t line_offset = offset_;
      offset_ += nl_at - start + 1;
      start = nl_at + 1;
      sink(line, line_offset);
    }
  }
  const std::string_view data(buf.get(), end);
  // A last line without its newline: a record still being appended (torn: not ours to read
  // yet), or a complete record whose newline is missing, which Optuna 3.1 reads as a record.
  // Read the complete one too; the next writer ends it with a newline (append()).
  if (start < data.size()) {
    const std::string_view tail = std::string_view(data).substr(start);
    if (complete_record(tail)) {
      const uint64_t line_offset = offset_;
      offset_ += data.size() - start;
      sink(tail, line_offset);
    }
  }
}

void JournalFileBackend::append(const nlohmann::ordered_json& record) {
  const std::string line = dump_python_json(record, JsonSeparators::kCompact) + "\n";
  lock_.acquire();
  try {
    Fd f{::open(path_.c_str(), O_RDWR | O_CREAT, 0644)};
    if (f.fd < 0)
      throw std::runtime_error("journal " + path_ + ": cannot open for writing: " + errno_text());
    struct stat st {};
    if (::fstat(f.fd, &st) != 0)
      throw std::runtime_error("journal " + path_ + ": fstat failed: " + errno_text());
    off_t size = st.st_size;
    std::string end_tail;  // "\n" when the last line is a complete record without its newline
    char last = '\n';
    if (size > 0 && ::pread(f.fd, &last, 1, size - 1) != 1) {
      throw std::runtime_error("journal " + path_ + ": read failed: " + errno_text());
    }
    if (last != '\n') {
      // A last line without its newline. We hold the lock, so no live writer is appending: it
      // is either a complete record that lacks only the newline (Optuna reads it: keep it, end
      // it), or a writer died mid-append (cut back to the last newline so the torn bytes never
      // end up in the middle of the file).
      off_t keep = 0;
      char buf[4096];
      for (off_t end = size; end > 0 && keep == 0;) {
        off_t begin = std::max<off_t>(0, end - static_cast<off_t>(sizeof(buf)));
        ssize_t n = ::pread(f.fd, buf, static_cast<size_t>(end - begin), begin);
        if (n <= 0) throw std::runtime_error("journal " + path_ + ": read failed: " + errno_text());
        for (ssize_t i = n - 1; i >= 0; --i) {
          if (buf[i] == '\n') {
            keep = begin + i + 1;
            break;
          }
        }
        end = begin;
      }
      std::string tail(static_cast<size_t>(size - keep), '\0');
      if (::pread(f.fd, tail.data(), tail.size(), keep) != static_cast<ssize_t>(tail.size()))
        throw std::runtime_error("journal " + path_ + ": read failed: " + errno_text());
      if (complete_record(tail)) {
        end_tail = "\n";
      } else {
        if (::ftruncate(f.fd, keep) != 0)
          throw std::runtime_error("journal " + path_ + ": truncate failed: " + errno_text());
        log_warning("journal ", path_, ": removed a torn last line (", size - keep, " bytes)");
        size = keep;
      }
    }
    if (::lseek(f.fd, size, SEEK_SET) < 0)
      throw std::runtime_error("journal " + path_ + ": seek failed: " + errno_text());
    write_all(f.fd, end_tail + line, path_);
    if (options_.fsync && ::fsync(f.fd) != 0)
      throw std::runtime_error("journal " + path_ + ": fsync failed: " + errno_text());
  } catch (...) {
    lock_.release();
    throw;
  }
  lock_.release();
}

}  // namespace

std::unique_ptr<JournalBackend> make_journal_file_backend(std::string path,
                                                          JournalOptions options) {
  return std::make_unique<JournalFileBackend>(std::move(path), options);
}

JournalStorage::JournalStorage(std::string path, JournalOptions options)
    : JournalStorage(make_journal_file_backend(std::move(path), options)) {}

JournalStorage::JournalStorage(std::unique_ptr<JournalBackend> backend)
    : backend_(std::move(backend)), worker_prefix_(new_worker_prefix()) {
  std::lock_guard lock(mutex_);
  sync();
}

std::string JournalStorage::worker_id() const { return worker_prefix_ + current_thread_ident(); }

void JournalStorage::sync() {
  const std::string me = worker_id();
  std::exception_ptr own_error;
  // A large read builds most of its trials on the heap: huge pages spare a fault per 4 KB (where
  // the process allows them: common/heap_pages.h).
  std::optional<HugePageHeap> huge;
  if (huge_page_heap_allowed() && backend_->unread_bytes() >= kHugePageReadBytes) huge.emplace();
  uint64_t records = 0;
  backend_->read_new([&](std::string_view text, uint64_t position) {
    if (text.find_first_not_of(" \t\r") == std::string_view::npos) return;
    if (huge && ++records % 1024 == 0) huge->advise();
    bool own = false;
    try {
      state_.apply_text(text, me, &own);            // simdjson; nlohmann for what it leaves
    } catch (const journal::JournalTextError& e) {  // not JSON, or JSON nested too deep
      log_warning("journal ", backend_->name(), ": skipping ", backend_->describe(position),
                  " that is not JSON (", e.what(), ")");
    } catch (...) {
      if (own) {
        if (!own_error) own_error = std::current_exception();
      } else {
        try {
          throw;
        } catch (const std::exception& e) {
          log_warning("journal ", backend_->name(), ": skipping ", backend_->describe(position),
                      ": ", e.what());
        }
      }
    }
  });
  if (own_error) std::rethrow_exception(own_error);
}

void JournalStorage::write(journal::Op op, nlohmann::ordered_json fields) {
  backend_->append(journal::with_header(op, worker_id(), std::move(fields)));
  sync();
}

int64_t JournalStorage::create_new_study(const std::vector<StudyDirection>& directions,
                                         const std::string& name) {
  std::lock_guard lock(mutex_);
  write(journal::Op::kCreateStudy, journal::create_study_log(directions, name));
  return state_.study_id_from_name(name);
}

void JournalStorage::delete_study(int64_t study_id) {
  std::lock_guard lock(mutex_);
  write(journal::Op::kDeleteStudy, {{"study_id", study_id}});
}

void JournalStorage::set_study_user_attr(int64_t study_id, const std::string& key,
                                         const nlohmann::json& value) {
  std::lock_guard lock(mutex_);
  write(journal::Op::kSetStudyUserAttr, {{"study_id", study_id}, {"user_attr", {{key, value}}}});
}

void JournalStorage::set_study_system_attr(int64_t study_id, const std::string& key,
                                           const nlohmann::json& value) {
  std::lock_guard lock(mutex_);
  write(journal::Op::kSetStudySystemAttr,
        {{"study_id", study_id}, {"system_attr", {{key, value}}}});
}

int64_t JournalStorage::get_study_id_from_name(const std::string& name) {
  std::lock_guard lock(mutex_);
  sync();
  return state_.study_id_from_name(name);
}

FrozenStudy JournalStorage::get_study(int64_t study_id) {
  std::lock_guard lock(mutex_);
  sync();
  return state_.study(study_id);
}

std::vector<FrozenStudy> JournalStorage::get_all_studies() {
  std::lock_guard lock(mutex_);
  sync();
  return state_.all_studies();
}

int64_t JournalStorage::create_new_trial(int64_t study_id, const FrozenTrial* template_trial) {
  std::lock_guard lock(mutex_);
  write(journal::Op::kCreateTrial, journal::create_trial_log(study_id, template_trial));
  return *state_.last_created_trial(worker_id());
}

void JournalStorage::set_trial_param(int64_t trial_id, const std::string& name,
                                     double internal_value, const Distribution& distribution) {
  std::lock_guard lock(mutex_);
  write(journal::Op::kSetTrialParam,
        journal::set_trial_param_log(trial_id, name, internal_value, distribution));
}

int64_t JournalStorage::get_trial_id_from_study_id_trial_number(int64_t study_id, int64_t number) {
  std::lock_guard lock(mutex_);
  sync();
  return state_.trial_id_from_number(study_id, number);
}

bool JournalStorage::set_trial_state_values(int64_t trial_id, TrialState state,
                                            const std::vector<double>* values) {
  std::lock_guard lock(mutex_);
  write(journal::Op::kSetTrialStateValues,
        journal::set_trial_state_values_log(trial_id, state, values));
  return !(state == TrialState::kRunning && state_.owned_trial(worker_id()) != trial_id);
}

void JournalStorage::set_trial_intermediate_value(int64_t trial_id, int64_t step, double value) {
  std::lock_guard lock(mutex_);
  write(journal::Op::kSetTrialIntermediateValue,
        {{"trial_id", trial_id}, {"step", step}, {"intermediate_value", value}});
}

void JournalStorage::set_trial_user_attr(int64_t trial_id, const std::string& key,
                                         const nlohmann::json& value) {
  std::lock_guard lock(mutex_);
  write(journal::Op::kSetTrialUserAttr, {{"trial_id", trial_id}, {"user_attr", {{key, value}}}});
}

void JournalStorage::set_trial_system_attr(int64_t trial_id, const std::string& key,
                                           const nlohmann::json& value) {
  std::lock_guard lock(mutex_);
  write(journal::Op::kSetTrialSystemAttr,
        {{"trial_id", trial_id}, {"system_attr", {{key, value}}}});
}

FrozenTrial JournalStorage::get_trial(int64_t trial_id) {
  std::lock_guard lock(mutex_);
  sync();
  return state_.trial(trial_id);
}

std::vector<FrozenTrial> JournalStorage::get_all_trials(int64_t study_id,
                                                        const std::vector<TrialState>& states) {
  std::lock_guard lock(mutex_);
  sync();
  return state_.all_trials(study_id, states);
}

}  // namespace compsearch::search

namespace compsearch::search {

std::vector<FrozenTrial> JournalStorage::get_trials_from(int64_t study_id, int64_t first_number) {
  std::lock_guard lock(mutex_);
  sync();
  return state_.trials_from(study_id, first_number);
}

void JournalStorage::read_trials(int64_t study_id, const std::vector<TrialState>& states,
                                 const TrialReader& fn) {
  std::lock_guard lock(mutex_);
  sync();
  fn(state_.trial_refs(study_id, states));
}

}  // namespace compsearch::search
