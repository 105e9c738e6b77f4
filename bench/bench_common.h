// What every benchmark program shares: the machine it ran on (STYLE.md: each benchmark prints the
// machine, the peer and the ratio) and the `--help` / usage-error handling of its command line.
// Header-only, since each bench/*.cpp is an executable of its own.
#pragma once

#include <sys/utsname.h>

#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>
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
