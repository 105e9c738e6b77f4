// `compsearch hw list` and `compsearch hw show TARGET`: the hardware targets and their constants,
// each with the source it comes from.
#include <iostream>

#include "cli/command.h"
#include "cli/options.h"
#include "experiments/estimate_commands.h"

namespace po = boost::program_options;

namespace compsearch::cli {
namespace {

int run_hw(const std::vector<std::string>& args) {
  VerbOptions o(
      "usage: compsearch hw list [--json]\n"
      "       compsearch hw show TARGET [--json]\n\n"
      "list: the preset targets (gpu:*, npu:*, mcu:*; cpu:* are NPU fallback hosts).\n"
      "show: every constant of a target (a preset name or a profile file) with its "
      "source.\n\noptions");
  o.add()("json", "print JSON")("action", po::value<std::string>(), "list or show (positional)")(
      "target", po::value<std::string>(), "target for show (positional)");
  o.positional("action", 1).positional("target", 1);
  if (!o.parse(args)) return 0;
  const std::string action = o.required<std::string>("action", "missing action: list or show");
  const bool json = o.has("json");
  if (action == "list") {
    if (json) {
      std::cout << experiments::hw_list_json().dump(2) << "\n";
    } else {
      std::cout << experiments::hw_list_text();
    }
    return 0;
  }
  if (action == "show") {
    const std::string target =
        o.required<std::string>("target", "hw show needs a TARGET (see compsearch hw list)");
    if (json) {
      std::cout << experiments::hw_show_json(target).dump(2) << "\n";
    } else {
      std::cout << experiments::hw_show_text(target);
    }
    return 0;
  }
  throw UsageError("unknown action '" + action + "'; expected list or show");
}

const CommandRegistration kRegistration("hw", "list hardware targets or show one's constants",
                                        run_hw);

}  // namespace
}  // namespace compsearch::cli
