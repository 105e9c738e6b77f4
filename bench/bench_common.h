// What every benchmark program shares: the machine it ran on (STYLE.md: each benchmark prints the
// machine, the peer and the ratio) and the `--help` / usage-error handling of its command line.
// Header-only, since each bench/*.cpp is an executable of its own.
#pragma once

#include <fcntl.h>
#include <spawn.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "common/machine_info.h"

namespace compsearch::bench {

using compsearch::describe;
using compsearch::machine_info;
using compsearch::machine_line;
using compsearch::MachineInfo;

// Starts `args` (args[0] a path) with stdout and stderr going to `log` (appended to, or truncated
// with `append` false) and returns its pid; throws std::runtime_error when it cannot start.
inline pid_t spawn_logged(const std::vector<std::string>& args, const std::string& log,
                          bool append = true) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, log.c_str(),
                                   O_WRONLY | O_CREAT | (append ? O_APPEND : O_TRUNC), 0644);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) throw std::runtime_error("cannot start " + args[0]);
  return pid;
}

// True when the command line asks for help (--help or -h anywhere): prints `usage` to stdout, and
// the caller returns 0 without starting the benchmark.
inline bool help_requested(int argc, char** argv, std::string_view usage) {
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    if (a == "--help" || a == "-h") {
      std::cout << usage;
      if (!usage.empty() && usage.back() != '\n') std::cout << '\n';
      return true;
    }
  }
  return false;
}

// A command line the program cannot run: names the problem, prints the usage to stderr and exits
// with status 2 (a usage error, as the compsearch CLI does).
[[noreturn]] inline void usage_error(const std::string& problem, std::string_view usage) {
  std::cerr << problem << "\n" << usage;
  if (!usage.empty() && usage.back() != '\n') std::cerr << '\n';
  std::exit(2);
}

}  // namespace compsearch::bench
