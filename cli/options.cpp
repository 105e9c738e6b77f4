// VerbOptions: parse, --help and UsageError for every verb (cli/options.h).
#include "cli/options.h"

#include <iostream>
#include <stdexcept>

#include "model/executor.h"

namespace po = boost::program_options;

namespace compsearch::cli {

VerbOptions::VerbOptions(const std::string& usage) : opts_(usage) {
  opts_.add_options()("help,h", "show this help");
}

VerbOptions& VerbOptions::positional(const char* name, int max_count) {
  positional_.add(name, max_count);
  return *this;
}

bool VerbOptions::parse(const std::vector<std::string>& args) {
  const std::vector<std::string> rest(args.begin() + (args.empty() ? 0 : 1), args.end());
  try {
    po::store(po::command_line_parser(rest).options(opts_).positional(positional_).run(), vm_);
    po::notify(vm_);
  } catch (const po::error& e) {
    throw UsageError(e.what());
  }
  if (has("help")) {
    std::cout << opts_ << "\n";
    return false;
  }
  return true;
}

int threads_flag(const VerbOptions& options) {
  const int threads = options.get<int>("threads");
  try {
    model::resolve_threads(threads, "--threads");
  } catch (const std::invalid_argument& e) {
    throw UsageError(e.what());
  }
  return threads;
}

}  // namespace compsearch::cli
