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

namespace compsearch::bench {

struct MachineInfo {
  std::string cpu_model = "unknown CPU";  // /proc/cpuinfo "model name"
  unsigned hardware_threads = 0;          // logical CPUs (std::thread::hardware_concurrency)
  unsigned physical_cores = 0;   // distinct (physical id, core id) pairs; 0 if not reported
  std::vector<std::string> isa;  // the SIMD extensions the kernels can use, as the CPU reports them
  std::string os;                // uname: "Linux 6.1.0-18-amd64"
  double load_average[3] = {0, 0, 0};  // 1, 5 and 15 minutes: other processes share the cores
};

// Reads /proc/cpuinfo, /proc/loadavg and uname now (the load average changes during a run).
inline MachineInfo machine_info() {
  MachineInfo m;
  m.hardware_threads = std::thread::hardware_concurrency();
  std::ifstream cpu("/proc/cpuinfo");
  std::string line, flags, physical_id;
  std::vector<std::string> cores;
  auto value = [](const std::string& l) {
    const size_t colon = l.find(':');
    return colon == std::string::npos ? std::string()
                                      : l.substr(l.find_first_not_of(" \t", colon + 1));
  };
  while (std::getline(cpu, line)) {
    if (line.rfind("model name", 0) == 0 && m.cpu_model == "unknown CPU") m.cpu_model = value(line);
    if ((line.rfind("flags", 0) == 0 || line.rfind("Features", 0) == 0) && flags.empty())
      flags = " " + value(line) + " ";
    if (line.rfind("physical id", 0) == 0) physical_id = value(line);
    if (line.rfind("core id", 0) == 0) {
      const std::string id = physical_id + "/" + value(line);
      bool seen = false;
      for (const auto& c : cores) seen = seen || c == id;
      if (!seen) cores.push_back(id);
    }
  }
  m.physical_cores = static_cast<unsigned>(cores.size());
  for (const char* f : {"sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw",
                        "avx512_vnni", "avx_vnni", "amx_tile", "asimd", "asimdhp", "sve", "sve2"}) {
    if (flags.find(" " + std::string(f) + " ") != std::string::npos) m.isa.push_back(f);
  }
  utsname u{};
  if (uname(&u) == 0) m.os = std::string(u.sysname) + " " + u.release;
  std::ifstream load("/proc/loadavg");
  load >> m.load_average[0] >> m.load_average[1] >> m.load_average[2];
  return m;
}

// "machine: <CPU>, <n> hardware threads (<c> cores), ISA avx2 fma ..., <OS>, load average 1.2 0.9
// 0.7"
inline std::string describe(const MachineInfo& m) {
  std::ostringstream s;
  s.precision(3);
  s << "machine: " << m.cpu_model << ", " << m.hardware_threads << " hardware threads";
  if (m.physical_cores) s << " (" << m.physical_cores << " cores)";
  s << ", ISA";
  if (m.isa.empty()) s << " unknown";
  for (const auto& f : m.isa) s << " " << f;
  if (!m.os.empty()) s << ", " << m.os;
  s << ", load average " << m.load_average[0] << " " << m.load_average[1] << " "
    << m.load_average[2];
  return s.str();
}

inline std::string machine_line() { return describe(machine_info()); }

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
