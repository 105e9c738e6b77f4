// The Redis journal backend: Optuna 3.1's JournalRedisStorage
// (optuna/storages/_journal/redis.py) byte for byte, so compsearch and Python Optuna workers
// share one study on one Redis server.
//
// Layout (prefix "" by default, as Optuna's): `<prefix>:log_number` holds the number of the
// last record (-1 before the first; Optuna sets it with SETNX before every append), and
// `<prefix>:log:<n>` holds record n (0, 1, ...) as json.dumps(record) writes it (Python's
// default separators ", " and ": ", ASCII only). A record is appended by Optuna's Lua script, run
// with EVAL, which numbers and stores it atomically, so writers need no lock. Readers GET
// `<prefix>:log_number` and read records up to it (Optuna one GET each, we MGET in batches).
// Optuna's pickled `<prefix>:snapshot` is neither read nor written: the records stay complete,
// and an Optuna worker that finds a snapshot replays the records after it, ours included.
//
// Connection: hiredis, synchronous. A connection that drops (server restarted, network) is
// reopened with bounded, logged retries (`reconnect_s`); an append whose reply was lost is not
// repeated when the record is found on the server after reconnecting, so a retry never
// duplicates a record. With `appendonly yes` a restarted server keeps every record, and the
// study goes on; a server that comes back with fewer records than this worker has read (no
// AOF, or writes lost before the last fsync) is an error, not a silent fork of the study.
#pragma once

#include <memory>
#include <string>

#include "search/journal_backend.h"

namespace compsearch::search {

// redis://[[username]:[password]@]host[:port][/db][?prefix=NAME&reconnect_s=SECONDS], as
// redis-py's Redis.from_url reads the first part (password percent-decoded; port 6379, db 0 by
// default) plus the journal's key prefix (Optuna's `prefix` argument, "" by default).
struct RedisUrl {
  std::string host = "localhost";
  int port = 6379;
  int db = 0;
  std::string username;
  std::string password;
  std::string prefix;
  double reconnect_s = 60.0;  // how long to keep retrying a dropped connection
  std::string display;        // the URL as messages show it: password replaced by "***"
};

// Throws std::invalid_argument naming the URL (password hidden) and the expected form.
RedisUrl parse_redis_url(const std::string& url);

struct RedisOptions {
  double connect_timeout_s = 5.0;
  double command_timeout_s = 30.0;
  // How long a reader waits for a record numbered below `<prefix>:log_number` but not yet
  // stored (only a non-atomic writer, e.g. Optuna with use_cluster=True, leaves such a gap;
  // Optuna waits forever) before skipping it with a warning.
  double missing_record_wait_s = 10.0;
};

// Connects at once: throws std::runtime_error naming the URL when the server cannot be
// reached, refuses the password, needs one that the URL lacks, or has no such db.
std::unique_ptr<JournalBackend> make_journal_redis_backend(const RedisUrl& url,
                                                           RedisOptions options = {});

}  // namespace compsearch::search
