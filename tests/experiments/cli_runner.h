// Runs the built `compsearch` executable (build/cli/compsearch) the way a user does and captures
// its exit code, stdout and stderr. The test targets depend on the executable
// (tests/CMakeLists.txt), so it is always the current build.
#pragma once

#include <doctest/doctest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace compsearch::testing {

struct CliRun {
  int rc = -1;
  std::string out, err;
};

inline std::filesystem::path compsearch_binary() {
  return std::filesystem::path(COMPSEARCH_BINARY_DIR) / "cli" / "compsearch";
}

// `args` is pasted into a shell command line after the binary: quote what needs quoting.
inline CliRun run_compsearch(const std::string& args) {
  namespace fs = std::filesystem;
  const fs::path bin = compsearch_binary();
  REQUIRE_MESSAGE(fs::exists(bin), "build the compsearch target first: " << bin);
  static int counter = 0;
  const fs::path dir =
      fs::temp_directory_path() /
      ("compsearch_cli_run_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
  fs::create_directories(dir);
  const std::string cmd = bin.string() + " " + args + " > " + (dir / "out").string() + " 2> " +
                          (dir / "err").string() + " < /dev/null";
  const int status = std::system(cmd.c_str());
  auto slurp = [](const fs::path& p) {
    std::ifstream in(p);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  };
  CliRun r;
  r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.out = slurp(dir / "out");
  r.err = slurp(dir / "err");
  fs::remove_all(dir);
  return r;
}

// Single-quotes `s` for the shell.
inline std::string shell_quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

}  // namespace compsearch::testing
