// JournalRedisStorage's keys and Lua append over hiredis (see journal_redis_backend.h).
#include "search/journal_redis_backend.h"

#include <hiredis/hiredis.h>
#include <sys/time.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <optional>
#include <stdexcept>
#include <thread>
#include <vector>

#include "common/log.h"
#include "search/python_json.h"

namespace compsearch::search {
namespace {

// Optuna 3.1's append script, byte for byte (JournalRedisStorage.append_logs).
constexpr const char* kAppendScript =
    "local i = redis.call('incr', string.format('%s:log_number', ARGV[1])) "
    "redis.call('set', string.format('%s:log:%d', ARGV[1], i), ARGV[2])";

constexpr const char* kExpectedUrl =
    "expected redis://[[username]:[password]@]host[:port][/db][?prefix=NAME&reconnect_s=SECONDS]";
constexpr size_t kReadBatch = 1000;
using Clock = std::chrono::steady_clock;

timeval to_timeval(double s) {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(s);
  tv.tv_usec = static_cast<suseconds_t>((s - static_cast<double>(tv.tv_sec)) * 1e6);
  return tv;
}

std::string percent_decode(std::string_view s, const std::string& display) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out.push_back(s[i]);
      continue;
    }
    int v = 0;
    if (i + 2 >= s.size() ||
        std::from_chars(s.data() + i + 1, s.data() + i + 3, v, 16).ptr != s.data() + i + 3) {
      throw std::invalid_argument("storage URL " + display +
                                  ": bad percent escape in the user or password part");
    }
    out.push_back(static_cast<char>(v));
    i += 2;
  }
  return out;
}

// A whole-string integer in [lo, hi], or std::invalid_argument naming `what`.
long long parse_int(std::string_view s, long long lo, long long hi, const std::string& display,
                    const std::string& what) {
  long long v = 0;
  const auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || ptr != s.data() + s.size() || v < lo || v > hi) {
    throw std::invalid_argument("storage URL " + display + ": " + what + " \"" + std::string(s) +
                                "\" is not an integer in [" + std::to_string(lo) + ", " +
                                std::to_string(hi) + "]; " + kExpectedUrl);
  }
  return v;
}

struct ReplyDeleter {
  void operator()(redisReply* r) const {
    if (r) freeReplyObject(r);
  }
};
using Reply = std::unique_ptr<redisReply, ReplyDeleter>;

struct ContextDeleter {
  void operator()(redisContext* c) const {
    if (c) redisFree(c);
  }
};
using Context = std::unique_ptr<redisContext, ContextDeleter>;

// Thrown (internally) when the connection broke: the command may or may not have run.
struct ConnectionLost : std::runtime_error {
  using std::runtime_error::runtime_error;
};

std::string reply_text(const redisReply& r) { return std::string(r.str, r.len); }

class JournalRedisBackend : public JournalBackend {
 public:
  JournalRedisBackend(RedisUrl url, RedisOptions options)
      : url_(std::move(url)), options_(options), log_number_key_(url_.prefix + ":log_number") {
    try {
      connect();
    } catch (const ConnectionLost& e) {
      throw std::runtime_error("journal " + url_.display + ": cannot connect to Redis (" +
                               e.what() + "); expected a running redis-server at " + url_.host +
                               ":" + std::to_string(url_.port));
    }
  }

  const std::string& name() const override { return url_.display; }
  std::string describe(uint64_t position) const override {
    return "log " + std::to_string(position) + " (key " + log_key(position) + ")";
  }
  void read_new(const RecordSink& sink) override;
  void append(const nlohmann::ordered_json& record) override;

 private:
  std::string log_key(uint64_t n) const { return url_.prefix + ":log:" + std::to_string(n); }
  [[noreturn]] void fail(const std::string& what) const {
    throw std::runtime_error("journal " + url_.display + ": " + what);
  }

  // Opens ctx_, authenticates, selects the db. Throws ConnectionLost when the server cannot be
  // reached, std::runtime_error when it answers with an error (a wrong password, no such db).
  void connect();
  void reconnect();  // retries connect() for up to url_.reconnect_s, logging each failure
  Reply send(const std::vector<std::string>& args);  // one command; ConnectionLost on I/O error
  // Sends all, then reads all replies (one round trip); ConnectionLost on I/O error.
  std::vector<Reply> send_pipelined(const std::vector<std::vector<std::string>>& commands);
  // send() after reconnecting as often as needed: for commands that are safe to repeat.
  Reply command(const std::vector<std::string>& args);
  // Throws once the connection has kept breaking for longer than reconnect_s since first_loss
  // (a server that accepts connections and drops them would otherwise be retried forever).
  void give_up_after_reconnect_s(Clock::time_point first_loss, const std::string& what,
                                 const std::string& error) const;
  std::optional<long long> server_log_number();
  bool stored_since(uint64_t from, const std::string& text);  // append()'s lost-reply check

  RedisUrl url_;
  RedisOptions options_;
  std::string log_number_key_;
  Context ctx_;
  uint64_t next_ = 0;  // the first record not read yet
};

void JournalRedisBackend::connect() {
  ctx_.reset();
  Context c(redisConnectWithTimeout(url_.host.c_str(), url_.port,
                                    to_timeval(options_.connect_timeout_s)));
  if (!c) throw ConnectionLost("cannot allocate a hiredis context");
  if (c->err) throw ConnectionLost(c->errstr);
  redisSetTimeout(c.get(), to_timeval(options_.command_timeout_s));
  redisEnableKeepAlive(c.get());
  ctx_ = std::move(c);
  if (!url_.password.empty() || !url_.username.empty()) {
    std::vector<std::string> auth{"AUTH"};
    if (!url_.username.empty()) auth.push_back(url_.username);
    auth.push_back(url_.password);
    Reply r = send(auth);
    if (r->type == REDIS_REPLY_ERROR) {
      ctx_.reset();
      fail("authentication failed (" + reply_text(*r) +
           "); expected the user and password the server was configured with "
           "(redis://[username]:password@host:port/db)");
    }
  }
  Reply ping = send({"PING"});
  // A server just restarted answers LOADING while it reads its append-only file: wait for it.
  const auto loading_since = std::chrono::steady_clock::now();
  while (ping->type == REDIS_REPLY_ERROR && reply_text(*ping).rfind("LOADING", 0) == 0 &&
         std::chrono::steady_clock::now() - loading_since <
             std::chrono::duration<double>(options_.command_timeout_s)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    ping = send({"PING"});
  }
  if (ping->type == REDIS_REPLY_ERROR) {
    const std::string text = reply_text(*ping);
    ctx_.reset();
    if (text.rfind("NOAUTH", 0) == 0) {
      fail("the server requires a password (" + text +
           "); give it in the URL: redis://:PASSWORD@host:port/db");
    }
    fail("PING failed: " + text);
  }
  if (url_.db != 0) {
    Reply r = send({"SELECT", std::to_string(url_.db)});
    if (r->type == REDIS_REPLY_ERROR) {
      const std::string text = reply_text(*r);
      ctx_.reset();
      fail("cannot select db " + std::to_string(url_.db) + " (" + text +
           "); expected a db number the server has (`databases` in redis.conf, 16 by default)");
    }
  }
}

void JournalRedisBackend::reconnect() {
  const auto start = std::chrono::steady_clock::now();
  double wait_s = 0.1;
  for (int attempt = 1;; ++attempt) {
    try {
      connect();
      if (attempt > 1) {
        log_warning("journal ", url_.display, ": reconnected to Redis after ", attempt,
                    " attempts");
      }
      return;
    } catch (const ConnectionLost& e) {
      const double elapsed_s =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      if (elapsed_s + wait_s > url_.reconnect_s) {
        fail("lost the connection to Redis and could not reconnect in " + std::to_string(attempt) +
             " attempts over " + std::to_string(elapsed_s) + " s (last error: " + e.what() +
             "; reconnect_s=" + std::to_string(url_.reconnect_s) + ")");
      }
      log_warning("journal ", url_.display, ": cannot reach Redis (", e.what(), "), attempt ",
                  attempt, "; retrying in ", wait_s, " s");
      std::this_thread::sleep_for(std::chrono::duration<double>(wait_s));
      wait_s = std::min(wait_s * 2, 2.0);
    }
  }
}

Reply JournalRedisBackend::send(const std::vector<std::string>& args) {
  return std::move(send_pipelined({args})[0]);
}

std::vector<Reply> JournalRedisBackend::send_pipelined(
    const std::vector<std::vector<std::string>>& commands) {
  if (!ctx_) throw ConnectionLost("not connected");
  auto lost = [&]() -> ConnectionLost {
    const std::string why = ctx_->errstr[0] ? ctx_->errstr : "connection error";
    ctx_.reset();  // hiredis contexts are unusable after an I/O error
    return ConnectionLost(why);
  };
  for (const auto& args : commands) {
    std::vector<const char*> argv;
    std::vector<size_t> argvlen;
    for (const auto& a : args) {
      argv.push_back(a.data());
      argvlen.push_back(a.size());
    }
    if (redisAppendCommandArgv(ctx_.get(), static_cast<int>(args.size()), argv.data(),
                               argvlen.data()) != REDIS_OK) {
      throw lost();
    }
  }
  std::vector<Reply> replies;
  for (size_t i = 0; i < commands.size(); ++i) {
    void* reply = nullptr;
    if (redisGetReply(ctx_.get(), &reply) != REDIS_OK || !reply) throw lost();
    replies.emplace_back(static_cast<redisReply*>(reply));
  }
  return replies;
}

void JournalRedisBackend::give_up_after_reconnect_s(Clock::time_point first_loss,
                                                    const std::string& what,
                                                    const std::string& error) const {
  const double elapsed_s = std::chrono::duration<double>(Clock::now() - first_loss).count();
  if (elapsed_s > url_.reconnect_s) {
    fail("the connection to Redis kept breaking during " + what + " for " +
         std::to_string(elapsed_s) + " s (last error: " + error +
         "; reconnect_s=" + std::to_string(url_.reconnect_s) + ")");
  }
}

Reply JournalRedisBackend::command(const std::vector<std::string>& args) {
  std::optional<Clock::time_point> first_loss;
  while (true) {
    try {
      if (!ctx_) reconnect();
      Reply r = send(args);
      if (r->type == REDIS_REPLY_ERROR) fail(args[0] + " failed: " + reply_text(*r));
      return r;
    } catch (const ConnectionLost& e) {
      if (!first_loss) first_loss = Clock::now();
      give_up_after_reconnect_s(*first_loss, args[0], e.what());
      log_warning("journal ", url_.display, ": lost the connection to Redis during ", args[0], " (",
                  e.what(), "); reconnecting");
    }
  }
}

std::optional<long long> JournalRedisBackend::server_log_number() {
  Reply r = command({"GET", log_number_key_});
  if (r->type == REDIS_REPLY_NIL) return std::nullopt;
  if (r->type != REDIS_REPLY_STRING) fail("GET " + log_number_key_ + ": not a string");
  const std::string text = reply_text(*r);
  long long n = 0;
  const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
  if (ec != std::errc() || ptr != text.data() + text.size() || n < -1) {
    fail("key " + log_number_key_ + " holds \"" + text +
         "\"; expected a log number (an integer >= -1) as Optuna's JournalRedisStorage writes");
  }
  return n;
}

void JournalRedisBackend::read_new(const RecordSink& sink) {
  const auto max = server_log_number();
  const long long last = max.value_or(-1);
  if (static_cast<long long>(next_) > last + 1) {
    fail("the server has " + std::to_string(last + 1) + " records but this worker has read " +
         std::to_string(next_) +
         ": the server lost records (restarted without `appendonly yes`, or killed before its "
         "last fsync; use `appendfsync always` for no loss)");
  }
  while (static_cast<long long>(next_) <= last) {
    const uint64_t first = next_;
    const uint64_t end = std::min<uint64_t>(first + kReadBatch, static_cast<uint64_t>(last) + 1);
    std::vector<std::string> args{"MGET"};
    for (uint64_t n = first; n < end; ++n) args.push_back(log_key(n));
    Reply r = command(args);
    if (r->type != REDIS_REPLY_ARRAY || r->elements != end - first) fail("MGET: unexpected reply");
    for (uint64_t n = first; n < end; ++n) {
      const redisReply* e = r->element[n - first];
      Reply waited;
      if (e->type == REDIS_REPLY_NIL) {
        // Numbered but not stored yet: wait as Optuna does (0.1 s doubling), bounded.
        double wait_s = 0.1, waited_s = 0;
        while (waited_s < options_.missing_record_wait_s) {
          std::this_thread::sleep_for(std::chrono::duration<double>(wait_s));
          waited_s += wait_s;
          wait_s = std::min(wait_s * 2, 10.0);
          waited = command({"GET", log_key(n)});
          if (waited->type != REDIS_REPLY_NIL) break;
        }
        if (!waited || waited->type == REDIS_REPLY_NIL) {
          log_warning("journal ", url_.display, ": skipping ", describe(n),
                      ", which is numbered but was not stored within ", waited_s, " s");
          next_ = n + 1;
          continue;
        }
        e = waited.get();
      }
      if (e->type != REDIS_REPLY_STRING) fail(describe(n) + " is not a string");
      next_ = n + 1;
      sink(std::string_view(e->str, e->len), n);
    }
  }
}

bool JournalRedisBackend::stored_since(uint64_t from, const std::string& text) {
  const auto max = server_log_number();
  for (long long n = static_cast<long long>(from); max && n <= *max;
       n += static_cast<long long>(kReadBatch)) {
    std::vector<std::string> args{"MGET"};
    for (long long k = n; k <= *max && k < n + static_cast<long long>(kReadBatch); ++k)
      args.push_back(log_key(static_cast<uint64_t>(k)));
    Reply r = command(args);
    for (size_t i = 0; i < r->elements; ++i) {
      const redisReply* e = r->element[i];
      if (e->type == REDIS_REPLY_STRING && std::string_view(e->str, e->len) == text) return true;
    }
  }
  return false;
}

void JournalRedisBackend::append(const nlohmann::ordered_json& record) {
  // json.dumps(log): Python's default separators, as Optuna 3.1 writes its Redis records.
  const std::string text = dump_python_json(record, JsonSeparators::kPython);
  std::optional<Clock::time_point> first_loss;
  while (true) {
    try {
      if (!ctx_) reconnect();
      // Optuna's two commands, pipelined: SETNX (a no-op once the key exists), then the script.
      const auto replies = send_pipelined(
          {{"SETNX", log_number_key_, "-1"}, {"EVAL", kAppendScript, "0", url_.prefix, text}});
      for (const auto& r : replies) {
        if (r->type == REDIS_REPLY_ERROR) fail("appending a record failed: " + reply_text(*r));
      }
      return;
    } catch (const ConnectionLost& e) {
      // The script may have run before the connection broke: look for the record (its text
      // names this worker and carries microsecond datetimes, so an equal one is this one).
      if (!first_loss) first_loss = Clock::now();
      give_up_after_reconnect_s(*first_loss, "an append", e.what());
      log_warning("journal ", url_.display, ": lost the connection to Redis while appending (",
                  e.what(), "); reconnecting");
      reconnect();
      if (stored_since(next_, text)) {
        log_warning("journal ", url_.display,
                    ": the record had been stored before the connection broke; not appending "
                    "it again");
        return;
      }
    }
  }
}

}  // namespace

RedisUrl parse_redis_url(const std::string& url) {
  RedisUrl u;
  const std::string scheme = "redis://";
  // The display form first, so that no message shows the password.
  auto hide_password = [&](const std::string& s) {
    const size_t at = s.rfind('@');
    const size_t start = s.find("://");
    if (at == std::string::npos || start == std::string::npos || at < start) return s;
    const std::string userinfo = s.substr(start + 3, at - start - 3);
    const size_t colon = userinfo.find(':');
    if (colon == std::string::npos) return s;
    return s.substr(0, start + 3) + userinfo.substr(0, colon) + ":***" + s.substr(at);
  };
  const std::string shown = hide_password(url);
  if (url.rfind(scheme, 0) != 0) {
    throw std::invalid_argument("storage URL " + shown + ": not a redis:// URL; " + kExpectedUrl);
  }
  std::string rest = url.substr(scheme.size());
  std::string query;
  if (const size_t q = rest.find('?'); q != std::string::npos) {
    query = rest.substr(q + 1);
    rest.resize(q);
  }
  std::string path;
  if (const size_t slash = rest.find('/'); slash != std::string::npos) {
    path = rest.substr(slash + 1);
    rest.resize(slash);
  }
  if (const size_t at = rest.rfind('@'); at != std::string::npos) {
    const std::string userinfo = rest.substr(0, at);
    rest = rest.substr(at + 1);
    const size_t colon = userinfo.find(':');
    if (colon == std::string::npos) {
      // redis-py reads "redis://secret@host" as a password alone.
      u.password = percent_decode(userinfo, shown);
    } else {
      u.username = percent_decode(userinfo.substr(0, colon), shown);
      u.password = percent_decode(userinfo.substr(colon + 1), shown);
    }
  }
  std::string port_text;
  if (!rest.empty() && rest[0] == '[') {  // [IPv6]:port
    const size_t close = rest.find(']');
    if (close == std::string::npos)
      throw std::invalid_argument("storage URL " + shown + ": unclosed '[' in the host; " +
                                  kExpectedUrl);
    u.host = rest.substr(1, close - 1);
    if (close + 1 < rest.size()) {
      if (rest[close + 1] != ':')
        throw std::invalid_argument("storage URL " + shown + ": expected ':PORT' after ']'; " +
                                    kExpectedUrl);
      port_text = rest.substr(close + 2);
    }
  } else if (const size_t colon = rest.rfind(':'); colon != std::string::npos) {
    u.host = rest.substr(0, colon);
    port_text = rest.substr(colon + 1);
  } else if (!rest.empty()) {
    u.host = rest;
  }
  if (u.host.empty()) u.host = "localhost";
  if (!port_text.empty() || rest.find(':') != std::string::npos)
    u.port = static_cast<int>(parse_int(port_text, 1, 65535, shown, "port"));
  if (!path.empty()) u.db = static_cast<int>(parse_int(path, 0, 1 << 20, shown, "db"));
  size_t pos = 0;
  while (pos < query.size()) {
    size_t amp = query.find('&', pos);
    if (amp == std::string::npos) amp = query.size();
    const std::string item = query.substr(pos, amp - pos);
    pos = amp + 1;
    const size_t eq = item.find('=');
    const std::string key = item.substr(0, eq);
    const std::string value = eq == std::string::npos ? "" : item.substr(eq + 1);
    if (key == "prefix") {
      u.prefix = value;
    } else if (key == "reconnect_s") {
      char* end = nullptr;
      const double v = std::strtod(value.c_str(), &end);
      if (value.empty() || end != value.c_str() + value.size() || !(v >= 0) || std::isinf(v))
        throw std::invalid_argument("storage URL " + shown + ": reconnect_s \"" + value +
                                    "\" is not a number of seconds >= 0");
      u.reconnect_s = v;
    } else {
      throw std::invalid_argument("storage URL " + shown + ": unknown parameter \"" + key + "\"; " +
                                  kExpectedUrl);
    }
  }
  u.display = "redis://";
  if (!u.username.empty() || !u.password.empty())
    u.display += u.username + (u.password.empty() ? "" : ":***") + "@";
  u.display += (u.host.find(':') != std::string::npos ? "[" + u.host + "]" : u.host) + ":" +
               std::to_string(u.port) + "/" + std::to_string(u.db);
  if (!u.prefix.empty()) u.display += "?prefix=" + u.prefix;
  return u;
}

std::unique_ptr<JournalBackend> make_journal_redis_backend(const RedisUrl& url,
                                                           RedisOptions options) {
  return std::make_unique<JournalRedisBackend>(url, options);
}

}  // namespace compsearch::search
