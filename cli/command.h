// Subcommand registry of the compsearch executable. Each cli/<verb>.cpp defines its verb with a
// static CommandRegistration, so main.cpp never changes when a verb is added.
#pragma once

#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

namespace compsearch::cli {

// A verb receives its own arguments (argv[0] is "compsearch <verb>") and returns the exit code.
// Exceptions it throws are printed as "compsearch <verb>: error: <what>" with exit code 1.
using CommandFn = std::function<int(const std::vector<std::string>& args)>;

struct Command {
  std::string name;
  std::string summary;
  CommandFn run;
};

std::vector<Command>& command_registry();

struct CommandRegistration {
  CommandRegistration(std::string name, std::string summary, CommandFn fn);
};

// Thrown for bad command-line usage: printed with a hint to --help, exit code 2.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

}  // namespace compsearch::cli
