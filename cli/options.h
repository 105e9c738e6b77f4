// VerbOptions: the one Boost.Program_options block every verb uses: its usage text and flags,
// `--help` (printed to stdout), bad or missing flags as UsageError (exit 2), typed access.
//
//   VerbOptions o("usage: compsearch inspect MODEL.onnx [--json]\n\n...\n\noptions");
//   o.add()("json", "print JSON")("model", po::value<std::string>(), "ONNX model (positional)");
//   o.positional("model", 1);
//   if (!o.parse(args)) return 0;  // --help was printed
//   const std::string model = o.required<std::string>("model", "missing MODEL.onnx");
#pragma once

#include <boost/program_options.hpp>
#include <optional>
#include <string>
#include <vector>

#include "cli/command.h"

namespace compsearch::cli {

class VerbOptions {
 public:
  // `usage` heads the --help text (Boost prints the flags below it). --help/-h is added here.
  explicit VerbOptions(const std::string& usage);

  boost::program_options::options_description_easy_init add() { return opts_.add_options(); }
  // The next `max_count` positional arguments fill `name` (-1: all the rest).
  VerbOptions& positional(const char* name, int max_count);

  // Parses args[1...] (args[0] is "compsearch <verb>"). Returns false after printing --help.
  // Unknown flags, missing values and values of the wrong type throw UsageError.
  bool parse(const std::vector<std::string>& args);

  bool has(const char* name) const { return vm_.count(name) > 0; }
  template <class T>
  T get(const char* name) const {
    return vm_[name].as<T>();
  }
  // The flag's value; absent: std::nullopt.
  template <class T>
  std::optional<T> optional(const char* name) const {
    if (!has(name)) return std::nullopt;
    return get<T>(name);
  }
  // The flag's value; absent: UsageError(message), by default "missing --NAME".
  template <class T>
  T required(const char* name, const std::string& message = "") const {
    if (!has(name)) throw UsageError(message.empty() ? std::string("missing --") + name : message);
    return get<T>(name);
  }

 private:
  boost::program_options::options_description opts_;
  boost::program_options::positional_options_description positional_;
  boost::program_options::variables_map vm_;
};

// The verb's --threads value: 0 (all cores) to model::kMaxThreads; otherwise UsageError
// ("--threads: value 100000 out of range; expected 0 (all cores) to 1024", exit 2).
int threads_flag(const VerbOptions& options);

}  // namespace compsearch::cli
