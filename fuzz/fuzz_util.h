// What the libFuzzer harnesses share (scripts/fuzz.sh builds and runs them). A parser may reject
// any input with an exception (that is its documented way to say "bad file"); a crash, a
// sanitizer report, a hang or running out of memory is a finding.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <string_view>

namespace compsearch::fuzz {

// Most parsers read a path: the input goes to a file of this process (one, rewritten for every
// input) whose name ends with `suffix` (".gz" selects gzip in the IDX reader, for one).
inline std::string input_file(const uint8_t* data, size_t size, const std::string& suffix) {
  static const std::string dir = [] {
    const char* d = std::getenv("TMPDIR");
    return std::string(d && *d ? d : "/tmp");
  }();
  const std::string path = dir + "/compsearch-fuzz-" + std::to_string(getpid()) + suffix;
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) std::abort();
  if (size && std::fwrite(data, 1, size, f) != size) std::abort();
  std::fclose(f);
  return path;
}

inline std::string_view text_of(const uint8_t* data, size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

// Runs `parse`; any exception is a rejection, not a finding.
template <class F>
void rejecting_is_fine(F&& parse) {
  try {
    parse();
  } catch (const std::exception&) {
  }
}

}  // namespace compsearch::fuzz
