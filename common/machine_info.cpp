// See machine_info.h.
#include "common/machine_info.h"

#include <sys/utsname.h>

#include <fstream>
#include <sstream>
#include <thread>

namespace compsearch {

MachineInfo machine_info() {
  MachineInfo m;
  m.hardware_threads = std::thread::hardware_concurrency();
  std::ifstream cpu("/proc/cpuinfo");
  std::string line, flags, physical_id;
  std::vector<std::string> cores;
  auto value = [](const std::string& l) {
    const size_t colon = l.find(':');
    const size_t start = colon == std::string::npos ? colon : l.find_first_not_of(" \t", colon + 1);
    return start == std::string::npos ? std::string() : l.substr(start);
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

std::string describe(const MachineInfo& m) {
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

}  // namespace compsearch
