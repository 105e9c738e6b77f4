// Subcommand registry of the compsearch executable. Each cli/<verb>.cpp defines its verb with a
// static CommandRegistration, so main.cpp never changes when a verb is added.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "experiments/usage_error.h"

namespace compsearch::cli {

// A verb receives its own arguments (argv[0] is "compsearch <verb>") and returns the exit code.
// Exceptions it throws are printed as "compsearch <verb>: error: <what>" with exit code 1, except
// UsageError (exit code 2).
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

// Bad command-line usage (an unknown or missing flag, a malformed flag value): printed with a hint
// to --help, exit code 2. The same type as experiments::UsageError, so a value the experiments
// layer rejects as malformed is a usage error in every verb.
using UsageError = experiments::UsageError;

}  // namespace compsearch::cli
