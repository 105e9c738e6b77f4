// The external evaluator (see external_evaluator.h): fork/exec with pipes, poll with a deadline.
#include "evaluators/external_evaluator.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <sstream>
#include <stdexcept>

namespace compsearch::evaluators {

namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr size_t kMaxOutput = 64 << 20;  // a program printing more is not a metrics printer
constexpr size_t kStderrTail = 2000;

std::string tail(const std::string& s, size_t n) {
  return s.size() <= n ? s : "..." + s.substr(s.size() - n);
}

struct RunResult {
  std::string out, err;
  int status = 0;
  bool timed_out = false;
};

// Runs argv with `input` on stdin; collects stdout and stderr until exit or the deadline.
RunResult run_process(const std::vector<std::string>& argv, const std::string& input,
                      double timeout_s) {
  int in[2], out[2], err[2];
  if (pipe2(in, O_CLOEXEC) || pipe2(out, O_CLOEXEC) || pipe2(err, O_CLOEXEC))
    throw std::runtime_error(std::string("cannot create pipes: ") + std::strerror(errno));
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  // Built before fork: the child may only call async-signal-safe functions before exec.
  const std::string cannot_run = "cannot run " + argv[0] + "\n";
  const pid_t pid = fork();
  if (pid < 0) throw std::runtime_error(std::string("cannot fork: ") + std::strerror(errno));
  if (pid == 0) {
    setpgid(0, 0);  // its own process group, so a timeout kills its children too
    dup2(in[0], 0);
    dup2(out[1], 1);
    dup2(err[1], 2);
    execvp(args[0], args.data());
    (void)!write(2, cannot_run.data(), cannot_run.size());
    _exit(127);
  }
  setpgid(pid, pid);
  close(in[0]);
  close(out[1]);
  close(err[1]);
  RunResult r;
  // Write stdin (the program may not read it all: ignore EPIPE).
  signal(SIGPIPE, SIG_IGN);
  size_t written = 0;
  fcntl(in[1], F_SETFL, O_NONBLOCK);
  fcntl(out[0], F_SETFL, O_NONBLOCK);
  fcntl(err[0], F_SETFL, O_NONBLOCK);
  const auto deadline = Clock::now() + std::chrono::duration<double>(timeout_s);
  bool in_open = true, out_open = true, err_open = true;
  char buf[65536];
  while (out_open || err_open) {
    std::vector<pollfd> fds;
    if (in_open) fds.push_back({in[1], POLLOUT, 0});
    if (out_open) fds.push_back({out[0], POLLIN, 0});
    if (err_open) fds.push_back({err[0], POLLIN, 0});
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) {
      r.timed_out = true;
      break;
    }
    if (poll(fds.data(), fds.size(), static_cast<int>(std::min<long long>(left, 1000))) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    for (const auto& f : fds) {
      if (!f.revents) continue;
      if (f.fd == in[1]) {
        const ssize_t n = write(in[1], input.data() + written, input.size() - written);
        if (n > 0) written += static_cast<size_t>(n);
        if (n < 0 && errno != EAGAIN) written = input.size();
        if (written >= input.size()) {
          close(in[1]);
          in_open = false;
        }
        continue;
      }
      std::string& dst = f.fd == out[0] ? r.out : r.err;
      const ssize_t n = read(f.fd, buf, sizeof buf);
      if (n > 0) {
        dst.append(buf, static_cast<size_t>(n));
        if (dst.size() > kMaxOutput) {
          r.timed_out = false;
          kill(-pid, SIGKILL);
          out_open = err_open = false;
          r.err += "\n(output over 64 MiB: stopped)";
        }
      } else if (n == 0 || (n < 0 && errno != EAGAIN)) {
        close(f.fd);
        (f.fd == out[0] ? out_open : err_open) = false;
      }
    }
  }
  if (in_open) close(in[1]);
  if (out_open) close(out[0]);
  if (err_open) close(err[0]);
  if (r.timed_out) kill(-pid, SIGKILL);
  // After both pipes close the program has exited or is about to; wait, but not forever.
  const auto wait_deadline = Clock::now() + std::chrono::seconds(r.timed_out ? 5 : 2);
  while (true) {
    const pid_t w = waitpid(pid, &r.status, WNOHANG);
    if (w == pid) break;
    if (w < 0 && errno != EINTR) break;
    if (Clock::now() > wait_deadline) {
      kill(-pid, SIGKILL);
      waitpid(pid, &r.status, 0);
      if (!r.timed_out) r.timed_out = Clock::now() > deadline;
      break;
    }
    usleep(2000);
  }
  return r;
}

std::string duration_text(double s) {
  std::ostringstream os;
  os << s << " s";
  return os.str();
}

class ExternalEvaluator : public Evaluator {
 public:
  explicit ExternalEvaluator(ExternalEvaluatorOptions o) : o_(std::move(o)) {}
  std::string name() const override { return "external"; }
  std::vector<std::string> metric_names() const override { return o_.metrics; }

  Metrics evaluate(const Candidate& candidate, const ReportFn&) const override {
    const json input = {{"number", candidate.number},
                        {"params", candidate.params},
                        {"recipe", compressors::recipe_to_json(*candidate.recipe)},
                        {"model", o_.model}};
    const std::string who = "external evaluator \"" + o_.command.at(0) + "\"";
    const RunResult r = run_process(o_.command, input.dump() + "\n", o_.timeout_s);
    const std::string err_tail =
        r.err.empty() ? "" : "; its stderr ends: " + tail(r.err, kStderrTail);
    if (r.timed_out)
      throw std::runtime_error(who + " timed out after " + duration_text(o_.timeout_s) +
                               " (killed)" + err_tail);
    if (WIFSIGNALED(r.status))
      throw std::runtime_error(who + " died of signal " + std::to_string(WTERMSIG(r.status)) +
                               " (" + strsignal(WTERMSIG(r.status)) + ")" + err_tail);
    if (WIFEXITED(r.status) && WEXITSTATUS(r.status) != 0)
      throw std::runtime_error(who + " exited with status " +
                               std::to_string(WEXITSTATUS(r.status)) + err_tail);
    // The last line that is a JSON object.
    json metrics;
    std::istringstream lines(r.out);
    std::string line;
    while (std::getline(lines, line)) {
      json j = json::parse(line, nullptr, /*allow_exceptions=*/false);
      if (j.is_object()) metrics = std::move(j);
    }
    if (!metrics.is_object())
      throw std::runtime_error(who +
                               " printed no JSON object of metrics on stdout (expected a "
                               "line like {\"accuracy\": 0.91}); its stdout ends: " +
                               tail(r.out, 500) + err_tail);
    Metrics m;
    for (const auto& [k, v] : metrics.items()) {
      if (!v.is_number())
        throw std::runtime_error(who + ": metric \"" + k + "\" is " + v.dump() +
                                 ", expected a number");
      m[k] = v.get<double>();
    }
    for (const auto& k : o_.metrics)
      if (!m.count(k))
        throw std::runtime_error(who + " did not print metric \"" + k +
                                 "\" (printed: " + metrics.dump() + ")");
    return m;
  }

 private:
  ExternalEvaluatorOptions o_;
};

}  // namespace

std::unique_ptr<Evaluator> make_external_evaluator(ExternalEvaluatorOptions options) {
  if (options.command.empty() || options.command[0].empty())
    throw std::invalid_argument("external evaluator: empty command");
  if (!(options.timeout_s > 0))
    throw std::invalid_argument("external evaluator: timeout must be > 0");
  return std::make_unique<ExternalEvaluator>(std::move(options));
}

}  // namespace compsearch::evaluators
