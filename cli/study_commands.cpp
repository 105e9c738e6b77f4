// Optuna-compatible study verbs: create-study, ask, tell, trials, best-trials, studies. Each
// mirrors `optuna <verb>` of Optuna 3.1 (optuna/cli.py) on a journal file (--storage PATH, the
// file JournalStorage(JournalFileStorage(PATH)) opens) and prints the same JSON. Every call is a
// fresh process: samplers rebuild their state from the study's trials. The decisions live in
// experiments/study_commands.h; this file parses flags and prints.
#include "experiments/study_commands.h"

#include <cctype>
#include <iostream>

#include "cli/command.h"
#include "cli/options.h"
#include "common/heap_pages.h"
#include "search/optuna_cli_format.h"
#include "search/python_json.h"

namespace po = boost::program_options;

namespace compsearch::cli {
namespace {

// `--values -1.5 2` is taken out before Boost sees "-1.5" as an option: everything up to the next
// "--flag" (a "--" followed by a non-digit).
struct ValuesFlag {
  std::vector<std::string> rest;  // the other arguments, args[0] included
  std::optional<std::vector<std::string>> values;
};

ValuesFlag take_values(const std::vector<std::string>& args) {
  ValuesFlag r;
  for (size_t i = 0; i < args.size(); ++i) {
    if (i > 0 && args[i] == "--values") {
      r.values.emplace();
      while (i + 1 < args.size() && !(args[i + 1].rfind("--", 0) == 0 && args[i + 1].size() > 2 &&
                                      !std::isdigit(static_cast<unsigned char>(args[i + 1][2])))) {
        r.values->push_back(args[++i]);
      }
      continue;
    }
    r.rest.push_back(args[i]);
  }
  return r;
}

void add_common(VerbOptions& o) {
  o.add()("storage", po::value<std::string>(),
          "journal file (Optuna's JournalFileStorage path) or redis:// URL; required")(
      "study-name", po::value<std::string>(), "name of the study");
}

void add_format(VerbOptions& o) {
  o.add()("format,f", po::value<std::string>()->default_value("json"),
          "output format: json or table (Optuna's -f json / -f table output; json is the "
          "default here for every verb)")(
      "flatten", "flatten nested columns (params_x, values_0, ...) as Optuna's --flatten");
}

void add_directions(VerbOptions& o, const char* direction_help, const char* directions_help) {
  o.add()("direction", po::value<std::string>(), direction_help)(
      "directions", po::value<std::vector<std::string>>()->multitoken(), directions_help);
}

std::vector<search::StudyDirection> directions_of(const VerbOptions& o) {
  return experiments::parse_directions(
      o.optional<std::string>("direction"),
      o.optional<std::vector<std::string>>("directions").value_or(std::vector<std::string>{}));
}

// The verbs' storage lives until the process exits: a study of 28,000 trials is ~170 MB of small
// objects, and freeing them one by one when the verb returns (0.1 s) buys nothing the exit does
// not do at once. Every write has reached the journal before a verb returns. Being short, the
// verbs may also replay a large journal onto huge pages (common/heap_pages.h).
std::shared_ptr<search::Storage> storage_of(const VerbOptions& o) {
  static auto* const kept_until_exit = new std::vector<std::shared_ptr<search::Storage>>();
  allow_huge_page_heap(true);
  auto storage = experiments::open_study_storage(o.required<std::string>(
      "storage", "--storage PATH is required (a journal file or a redis:// URL)"));
  kept_until_exit->push_back(storage);
  return storage;
}

std::string study_name_of(const VerbOptions& o) {
  return o.required<std::string>("study-name", "--study-name is required");
}

// The -f value; checked before anything runs.
std::string format_of(const VerbOptions& o) {
  const std::string f = o.get<std::string>("format");
  if (f != "json" && f != "table") {
    throw UsageError("--format: invalid choice '" + f + "' (choose from 'json', 'table')");
  }
  return f;
}

// Prints records as Optuna's _format_output does for -f json or -f table.
void print(const std::string& format, const nlohmann::ordered_json& j,
           const std::vector<std::string>& header) {
  if (format == "table") {
    nlohmann::ordered_json rows = j.is_array() ? j : nlohmann::ordered_json::array({j});
    std::cout << search::optuna_cli_table(rows, header) << std::endl;
  } else {
    std::cout << search::dump_python_json(j, search::JsonSeparators::kPython) << std::endl;
  }
}

int run_create_study(const std::vector<std::string>& args) {
  VerbOptions o(
      "usage: compsearch create-study --storage PATH [--study-name NAME] [--directions D ...] "
      "[--skip-if-exists]\n\nCreates a study (as `optuna create-study`) and prints its "
      "name.\n\noptions");
  add_common(o);
  add_directions(o, "minimize or maximize (one objective)", "minimize|maximize for each objective");
  o.add()("skip-if-exists", "reuse the study when the name exists");
  if (!o.parse(args)) return 0;
  auto storage = storage_of(o);
  experiments::CreateStudyRequest req;
  req.directions = directions_of(o);
  req.study_name = o.optional<std::string>("study-name");
  req.skip_if_exists = o.has("skip-if-exists");
  std::cout << experiments::create_study(storage, req) << std::endl;
  return 0;
}

int run_ask(const std::vector<std::string>& args) {
  VerbOptions o(
      "usage: compsearch ask --storage PATH --study-name NAME [--search-space JSON] [--sampler "
      "CLASS] [--sampler-kwargs JSON]\n\nCreates a trial, samples the search space and prints "
      "{\"number\": N, \"params\": {...}} (as `optuna ask`). The study is created (minimize, or "
      "--directions) when absent.\n\noptions");
  add_common(o);
  add_format(o);
  o.add()("search-space", po::value<std::string>(),
          "JSON object: name -> Optuna distribution JSON ({\"name\": \"FloatDistribution\", "
          "\"attributes\": {...}})")("sampler", po::value<std::string>(),
                                     "RandomSampler, GridSampler, NSGAIISampler or TPESampler")(
      "sampler-kwargs", po::value<std::string>(),
      "JSON object of the sampler's keyword arguments, e.g. {\"seed\": 0}");
  add_directions(o, "deprecated in Optuna: direction of a study created here",
                 "deprecated in Optuna: directions");
  if (!o.parse(args)) return 0;
  const std::string format = format_of(o);
  auto storage = storage_of(o);
  experiments::AskRequest req;
  req.study_name = study_name_of(o);
  req.search_space = o.optional<std::string>("search-space");
  req.sampler = o.optional<std::string>("sampler");
  req.sampler_kwargs = o.optional<std::string>("sampler-kwargs");
  req.directions = directions_of(o);
  const auto trial = experiments::ask(storage, req);
  std::vector<std::string> header;
  print(format, search::optuna_cli_ask(trial.number, trial.params, o.has("flatten"), &header),
        header);
  return 0;
}

int run_tell(const std::vector<std::string>& args) {
  VerbOptions o(
      "usage: compsearch tell --storage PATH --study-name NAME --trial-number N [--values V ...] "
      "[--state complete|pruned|fail] [--skip-if-finished]\n\nFinishes a trial created by ask (as "
      "`optuna tell`).\n\noptions");
  add_common(o);
  o.add()("trial-number", po::value<int64_t>(), "trial number")(
      "values", "objective values (one per direction)")("state", po::value<std::string>(),
                                                        "complete, pruned or fail")(
      "skip-if-finished", "do nothing when the trial is already finished");
  ValuesFlag values = take_values(args);
  if (!o.parse(values.rest)) return 0;
  auto storage = storage_of(o);
  experiments::TellRequest req;
  req.study_name = study_name_of(o);
  req.trial_number = o.required<int64_t>("trial-number", "--trial-number is required");
  req.values = std::move(values.values);
  req.state = o.optional<std::string>("state");
  req.skip_if_finished = o.has("skip-if-finished");
  experiments::tell(storage, req);
  return 0;
}

int run_trials(const std::vector<std::string>& args, bool best) {
  const std::string verb = best ? "best-trials" : "trials";
  VerbOptions o("usage: compsearch " + verb + " --storage PATH --study-name NAME [--flatten]\n\n" +
                (best ? "Prints the study's Pareto-optimal feasible trials"
                      : "Prints every trial of the study") +
                " as `optuna " + verb + " -f json` does.\n\noptions");
  add_common(o);
  add_format(o);
  if (!o.parse(args)) return 0;
  const std::string format = format_of(o);
  auto storage = storage_of(o);
  // Written as they are read: no copy of the trials, no document of the output.
  experiments::read_study_trials(
      storage, study_name_of(o), best, [&](const experiments::StudyTrials& t) {
        search::write_optuna_cli_trials(std::cout, t.trials, t.directions, o.has("flatten"),
                                        t.only ? &*t.only : nullptr, format);
      });
  std::cout << std::endl;
  return 0;
}

int run_studies(const std::vector<std::string>& args) {
  VerbOptions o(
      "usage: compsearch studies --storage PATH [--flatten]\n\nLists the studies of a journal as "
      "`optuna studies -f json` does.\n\noptions");
  add_common(o);
  add_format(o);
  if (!o.parse(args)) return 0;
  const std::string format = format_of(o);
  auto storage = storage_of(o);
  std::vector<std::string> header;
  print(format, search::optuna_cli_studies(*storage, o.has("flatten"), &header), header);
  return 0;
}

const CommandRegistration kCreateStudy("create-study",
                                       "create an Optuna-compatible study in a journal file",
                                       run_create_study);
const CommandRegistration kAsk("ask", "create a trial and sample its parameters (Optuna's ask)",
                               run_ask);
const CommandRegistration kTell("tell", "finish a trial with values or a state (Optuna's tell)",
                                run_tell);
const CommandRegistration kTrials("trials", "print a study's trials as Optuna's CLI does",
                                  [](const std::vector<std::string>& a) {
                                    return run_trials(a, false);
                                  });
const CommandRegistration kBestTrials("best-trials", "print a study's Pareto-optimal trials",
                                      [](const std::vector<std::string>& a) {
                                        return run_trials(a, true);
                                      });
const CommandRegistration kStudies("studies", "list the studies of a journal file", run_studies);

}  // namespace
}  // namespace compsearch::cli
