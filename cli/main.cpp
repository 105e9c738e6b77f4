// Entry point: dispatches `compsearch <verb> ...` to the registered subcommands.
#include <algorithm>
#include <cstdio>
#include <exception>
#include <iostream>

#include "cli/command.h"

// project(VERSION) of the top-level CMakeLists.txt, passed by cli/CMakeLists.txt.
#ifndef COMPSEARCH_VERSION
#error "COMPSEARCH_VERSION is defined by cli/CMakeLists.txt from project(VERSION)"
#endif

namespace compsearch::cli {

std::vector<Command>& command_registry() {
  static std::vector<Command> registry;
  return registry;
}

CommandRegistration::CommandRegistration(std::string name, std::string summary, CommandFn fn) {
  command_registry().push_back({std::move(name), std::move(summary), std::move(fn)});
}

}  // namespace compsearch::cli

namespace {

void print_usage(std::ostream& out) {
  auto commands = compsearch::cli::command_registry();
  std::sort(commands.begin(), commands.end(),
            [](const auto& a, const auto& b) { return a.name < b.name; });
  out << "compsearch: find how to compress a neural network for the hardware it must run on.\n\n"
         "usage: compsearch <command> [options]   (compsearch <command> --help for details)\n\n"
         "commands:\n";
  for (const auto& c : commands) {
    out << "  " << c.name << std::string(c.name.size() < 14 ? 14 - c.name.size() : 1, ' ')
        << c.summary << "\n";
  }
}

}  // namespace

int main(int argc, char** argv) {
  using namespace compsearch::cli;
  if (argc < 2) {
    print_usage(std::cerr);
    return 2;
  }
  const std::string verb = argv[1];
  if (verb == "--help" || verb == "-h" || verb == "help") {
    print_usage(std::cout);
    return 0;
  }
  if (verb == "--version") {
    std::cout << "compsearch " << COMPSEARCH_VERSION << "\n";
    return 0;
  }
  const auto& registry = command_registry();
  auto it = std::find_if(registry.begin(), registry.end(),
                         [&](const Command& c) { return c.name == verb; });
  if (it == registry.end()) {
    std::cerr << "compsearch: unknown command '" << verb << "'\n\n";
    print_usage(std::cerr);
    return 2;
  }
  std::vector<std::string> args{"compsearch " + verb};
  for (int i = 2; i < argc; ++i) args.emplace_back(argv[i]);
  try {
    return it->run(args);
  } catch (const UsageError& e) {
    std::cerr << "compsearch " << verb << ": " << e.what() << "\n(see compsearch " << verb
              << " --help)\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "compsearch " << verb << ": error: " << e.what() << "\n";
    return 1;
  }
}
