// A throwaway redis-server for the Redis storage tests: started on a free port with its data in
// a temporary directory (`--appendonly yes --save ''`, so a restart keeps every record), stopped
// (SIGTERM) and its directory removed at scope exit. Tests skip (COMPSEARCH_SKIP_TEST) when
// redis_server_path() is empty.
#pragma once

#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "search_test_util.h"

namespace compsearch::search::testing {

// The redis-server executable (Debian's redis-server package), or "" when absent.
inline std::string redis_server_path() {
  for (const char* p : {"/usr/bin/redis-server", "/usr/local/bin/redis-server"}) {
    if (::access(p, X_OK) == 0) return p;
  }
  return "";
}

// A TCP port nothing listens on now (bound to port 0, then released).
inline int free_tcp_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw std::runtime_error("socket() failed");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    ::close(fd);
    throw std::runtime_error("cannot find a free port");
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

inline bool tcp_port_open(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return ok;
}

class RedisServer {
 public:
  // `extra` are more redis-server arguments ("--requirepass", "secret").
  explicit RedisServer(std::vector<std::string> extra = {})
      : port_(free_tcp_port()), extra_(std::move(extra)) {
    start();
  }
  ~RedisServer() { stop(); }
  RedisServer(const RedisServer&) = delete;
  RedisServer& operator=(const RedisServer&) = delete;

  int port() const { return port_; }
  std::string url(const std::string& suffix = "") const {
    return "redis://127.0.0.1:" + std::to_string(port_) + suffix;
  }
  const std::filesystem::path& dir() const { return dir_.path; }

  void start() {
    std::vector<std::string> args{redis_server_path(),
                                  "--port",
                                  std::to_string(port_),
                                  "--bind",
                                  "127.0.0.1",
                                  "--dir",
                                  dir_.path.string(),
                                  "--appendonly",
                                  "yes",
                                  "--save",
                                  "",
                                  "--logfile",
                                  (dir_.path / "redis.log").string()};
    args.insert(args.end(), extra_.begin(), extra_.end());
    pid_ = ::fork();
    if (pid_ < 0) throw std::runtime_error("fork failed");
    if (pid_ == 0) {
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!tcp_port_open(port_)) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        throw std::runtime_error("redis-server exited at start; see " +
                                 (dir_.path / "redis.log").string());
      }
      if (std::chrono::steady_clock::now() > deadline)
        throw std::runtime_error("redis-server did not listen on port " + std::to_string(port_));
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }

  // SIGTERM: Redis flushes its append-only file and exits. kill_hard(): SIGKILL.
  void stop() { signal_and_wait(SIGTERM); }
  void kill_hard() { signal_and_wait(SIGKILL); }
  void restart() {
    stop();
    start();
  }

 private:
  void signal_and_wait(int sig) {
    if (pid_ <= 0) return;
    ::kill(pid_, sig);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
  }

  TempDir dir_;
  int port_;
  std::vector<std::string> extra_;
  pid_t pid_ = -1;
};

// redis-cli's text for one command against `server` (`redis-cli --raw`), "" when absent.
inline std::string redis_cli(const RedisServer& server, const std::string& args) {
  return run_command("redis-cli -h 127.0.0.1 -p " + std::to_string(server.port()) + " --raw " +
                     args)
      .output;
}

}  // namespace compsearch::search::testing
