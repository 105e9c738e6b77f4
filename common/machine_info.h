// The machine a measurement ran on, as every benchmark and `compsearch measure` print it (STYLE.md:
// numbers say where they come from): CPU, threads, cores, the SIMD extensions the kernels can use,
// OS and load average.
#pragma once

#include <string>
#include <vector>

namespace compsearch {

struct MachineInfo {
  std::string cpu_model = "unknown CPU";  // /proc/cpuinfo "model name"
  unsigned hardware_threads = 0;          // logical CPUs (std::thread::hardware_concurrency)
  unsigned physical_cores = 0;   // distinct (physical id, core id) pairs; 0 if not reported
  std::vector<std::string> isa;  // the SIMD extensions the kernels can use, as the CPU reports them
  std::string os;                // uname: "Linux 6.1.0-18-amd64"
  double load_average[3] = {0, 0, 0};  // 1, 5 and 15 minutes: other processes share the cores
};

// Reads /proc/cpuinfo, /proc/loadavg and uname now (the load average changes during a run).
MachineInfo machine_info();

// "machine: <CPU>, <n> hardware threads (<c> cores), ISA avx2 fma ..., <OS>, load average 1.2 0.9
// 0.7"
std::string describe(const MachineInfo& m);

inline std::string machine_line() { return describe(machine_info()); }

}  // namespace compsearch
