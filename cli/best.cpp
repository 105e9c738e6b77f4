// `compsearch best --storage S --study-name N [--budget "METRIC<=X"]... [--maximize M |
// --minimize M]`: the best feasible trial of a study as JSON (experiments/results.h).
#include <iostream>

#include "cli/command.h"
#include "cli/options.h"
#include "experiments/results.h"

namespace po = boost::program_options;

namespace compsearch::cli {
namespace {

int run_best(const std::vector<std::string>& args) {
  VerbOptions o(
      "usage: compsearch best --storage S --study-name N [--budget \"METRIC<=X\"]...\n"
      "                       [--maximize METRIC | --minimize METRIC] [--json]\n\n"
      "Prints the best feasible trial of a study as JSON: COMPLETE, the study's constraints\n"
      "satisfied and every --budget satisfied (e.g. --budget \"latency_ms@mcu:stm32f746<=50\",\n"
      "--budget \"accuracy>=0.85\"). Best means the highest accuracy unless --maximize or\n"
      "--minimize names another metric (without accuracy: the study's first objective).\n"
      "JSON keys: number, state, params, values, metrics, recipe, optimized. Exits 1 naming\n"
      "the budget when no trial satisfies it.\n\noptions");
  o.add()("storage", po::value<std::string>(), "the study's journal file or redis:// URL")(
      "study-name", po::value<std::string>(), "study name")(
      "budget", po::value<std::vector<std::string>>(), "METRIC<=X or METRIC>=X (repeatable)")(
      "maximize", po::value<std::string>(), "metric to maximise (default accuracy)")(
      "minimize", po::value<std::string>(), "metric to minimise")(
      "json", "print JSON (the default; kept for symmetry with other verbs)");
  if (!o.parse(args)) return 0;
  const auto storage = o.required<std::string>("storage");
  const auto name = o.required<std::string>("study-name");
  experiments::BestRequest req;
  if (o.has("maximize") && o.has("minimize"))
    throw UsageError("give --maximize or --minimize, not both");
  if (auto m = o.optional<std::string>("maximize")) req.metric = *m, req.maximize = true;
  if (auto m = o.optional<std::string>("minimize")) req.metric = *m, req.maximize = false;
  if (auto b = o.optional<std::vector<std::string>>("budget"))
    for (const auto& text : *b) req.budgets.push_back(experiments::parse_budget(text));
  const auto study = experiments::load_study_results(storage, name);
  std::cout << experiments::best_trial(study, req).dump(2) << "\n";
  return 0;
}

const CommandRegistration kRegistration("best", "the best feasible trial of a study under budgets",
                                        run_best);

}  // namespace
}  // namespace compsearch::cli
