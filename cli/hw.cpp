// `compsearch hw list` and `compsearch hw show TARGET`: the hardware targets and their constants,
// each with the source it comes from.
#include <boost/program_options.hpp>

#include <iostream>

#include "cli/command.h"
#include "experiments/estimate_commands.h"

namespace po = boost::program_options;

namespace compsearch::cli {
namespace {

int run_hw(const std::vector<std::string>& args) {
  po::options_description opts(
      "usage: compsearch hw list [--json]\n"
      "       compsearch hw show TARGET [--json]\n\n"
      "list: the preset targets (gpu:*, npu:*, mcu:*; cpu:* are NPU fallback hosts).\n"
      "show: every constant of a target (a preset name or a profile file) with its source.\n\noptions");
  opts.add_options()("help,h", "show this help")("json", "print JSON")(
      "action", po::value<std::string>(), "list or show (positional)")(
      "target", po::value<std::string>(), "target for show (positional)");
  po::positional_options_description pos;
  pos.add("action", 1).add("target", 1);
  po::variables_map vm;
  try {
    std::vector<std::string> rest(args.begin() + 1, args.end());
    po::store(po::command_line_parser(rest).options(opts).positional(pos).run(), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    throw UsageError(e.what());
  }
  if (vm.count("help")) {
    std::cout << opts << "\n";
    return 0;
  }
  if (!vm.count("action")) throw UsageError("missing action: list or show");
  const std::string action = vm["action"].as<std::string>();
  const bool json = vm.count("json") > 0;
  if (action == "list") {
    if (json) std::cout << experiments::hw_list_json().dump(2) << "\n";
    else std::cout << experiments::hw_list_text();
    return 0;
  }
  if (action == "show") {
    if (!vm.count("target")) throw UsageError("hw show needs a TARGET (see compsearch hw list)");
    const std::string target = vm["target"].as<std::string>();
    if (json) std::cout << experiments::hw_show_json(target).dump(2) << "\n";
    else std::cout << experiments::hw_show_text(target);
    return 0;
  }
  throw UsageError("unknown action '" + action + "'; expected list or show");
}

const CommandRegistration kRegistration("hw", "list hardware targets or show one's constants", run_hw);

}  // namespace
}  // namespace compsearch::cli
