// The seam between JournalStorage (records, replay, trial ownership: journal_storage.h) and the
// place its records live, as Optuna splits JournalStorage from its BaseJournalLogStorage: a file
// (JournalFileStorage's format, journal_storage.cpp) or Redis (JournalRedisStorage's keys,
// journal_redis_backend.h). A backend stores and returns record texts in order; it neither
// parses nor applies them. JournalStorage calls a backend under its own mutex only.
#pragma once

#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace compsearch::search {

class JournalBackend {
 public:
  // One record's text and its position in the journal (a byte offset, a log number), valid for
  // the call only.
  using RecordSink = std::function<void(std::string_view record, uint64_t position)>;

  virtual ~JournalBackend() = default;

  // What messages call the journal: the file's path, or the Redis URL without its password.
  virtual const std::string& name() const = 0;

  // Calls `sink` for every record added since the previous call (all records on the first
  // call), in journal order. A record still being written is not passed on; it comes with a
  // later call once complete. Throws std::runtime_error naming the journal when it cannot read.
  virtual void read_new(const RecordSink& sink) = 0;

  // Appends `record` as one record, atomically with respect to other writers (Python Optuna's
  // included), in the backend's byte format. Throws std::runtime_error naming the journal when
  // the record may not have been written.
  virtual void append(const nlohmann::ordered_json& record) = 0;

  // The position as messages name it: "a line at byte 120", "log 7".
  virtual std::string describe(uint64_t position) const = 0;

  // About how many bytes the next read_new would pass on (0 when unknown).
  virtual uint64_t unread_bytes() const { return 0; }
};

}  // namespace compsearch::search
