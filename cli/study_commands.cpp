// Optuna-compatible study verbs: create-study, ask, tell, trials, best-trials, studies. Each
// mirrors `optuna <verb>` of Optuna 3.1 (optuna/cli.py) on a journal file (--storage PATH, the
// file JournalStorage(JournalFileStorage(PATH)) opens) and prints the same JSON. Every call is a
// fresh process: samplers rebuild their state from the study's trials.
#include <boost/program_options.hpp>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <random>

#include "cli/command.h"
#include "search/in_memory_storage.h"
#include "search/journal_storage.h"
#include "search/optuna_cli_format.h"
#include "search/python_json.h"
#include "search/sampler_factory.h"
#include "search/study.h"

namespace po = boost::program_options;

namespace compsearch::cli {
namespace {

using namespace compsearch::search;

struct Parsed {
  po::variables_map vm;
  std::vector<std::string> values;  // --values, taken out before Boost sees "-1.5" as an option
  bool has_values = false;
};

Parsed parse(const std::vector<std::string>& args, po::options_description& opts,
             const std::string& verb) {
  Parsed p;
  std::vector<std::string> rest;
  for (size_t i = 1; i < args.size(); ++i) {
    if (args[i] == "--values") {
      p.has_values = true;
      while (i + 1 < args.size() && !(args[i + 1].rfind("--", 0) == 0 && args[i + 1].size() > 2 &&
                                      !std::isdigit(static_cast<unsigned char>(args[i + 1][2])))) {
        p.values.push_back(args[++i]);
      }
      continue;
    }
    rest.push_back(args[i]);
  }
  try {
    po::store(po::command_line_parser(rest).options(opts).run(), p.vm);
    po::notify(p.vm);
  } catch (const po::error& e) {
    throw UsageError(e.what());
  }
  (void)verb;
  return p;
}

void add_common(po::options_description& opts, bool study_name_required) {
  opts.add_options()("help,h", "show this help")(
      "storage", po::value<std::string>(),
      "journal file (Optuna's JournalFileStorage path); required")(
      "study-name",
      study_name_required ? po::value<std::string>()->required() : po::value<std::string>(),
      "name of the study");
}

void add_format(po::options_description& opts) {
  opts.add_options()(
      "format,f", po::value<std::string>()->default_value("json"),
      "output format: json or table (Optuna's -f json / -f table output; json is the "
      "default here for every verb)")(
      "flatten", "flatten nested columns (params_x, values_0, ...) as Optuna's --flatten");
}

std::shared_ptr<Storage> open_storage(const po::variables_map& vm) {
  if (!vm.count("storage")) throw UsageError("--storage PATH is required (a journal file)");
  const std::string path = vm["storage"].as<std::string>();
  if (path.find("://") != std::string::npos) {
    throw UsageError("--storage " + path +
                     ": database URLs are not supported; give the path of a journal file");
  }
  return std::make_shared<JournalStorage>(path);
}

void check_format(const po::variables_map& vm) {
  const std::string f = vm["format"].as<std::string>();
  if (f != "json" && f != "table") {
    throw UsageError("--format: invalid choice '" + f + "' (choose from 'json', 'table')");
  }
}

bool help(const po::variables_map& vm, const po::options_description& opts) {
  if (!vm.count("help")) return false;
  std::cout << opts << "\n";
  return true;
}

// Prints records as Optuna's _format_output does for -f json or -f table.
void print(const po::variables_map& vm, const nlohmann::ordered_json& j,
           const std::vector<std::string>& header) {
  if (vm["format"].as<std::string>() == "table") {
    nlohmann::ordered_json rows = j.is_array() ? j : nlohmann::ordered_json::array({j});
    std::cout << optuna_cli_table(rows, header) << std::endl;
  } else {
    std::cout << dump_python_json(j, JsonSeparators::kPython) << std::endl;
  }
}

int run_create_study(const std::vector<std::string>& args) {
  po::options_description opts(
      "usage: compsearch create-study --storage PATH [--study-name NAME] [--directions D ...] "
      "[--skip-if-exists]\n\nCreates a study (as `optuna create-study`) and prints its "
      "name.\n\noptions");
  add_common(opts, false);
  opts.add_options()("direction", po::value<std::string>(), "minimize or maximize (one objective)")(
      "directions", po::value<std::vector<std::string>>()->multitoken(),
      "minimize|maximize for each objective")("skip-if-exists",
                                              "reuse the study when the name exists");
  auto p = parse(args, opts, "create-study");
  if (help(p.vm, opts)) return 0;
  auto storage = open_storage(p.vm);
  std::vector<StudyDirection> dirs;
  if (p.vm.count("direction") && p.vm.count("directions")) {
    throw UsageError("Specify only one of `direction` and `directions`.");
  }
  if (p.vm.count("direction"))
    dirs.push_back(direction_from_string(p.vm["direction"].as<std::string>()));
  if (p.vm.count("directions")) {
    for (const auto& d : p.vm["directions"].as<std::vector<std::string>>()) {
      if (d != "minimize" && d != "maximize") {
        throw UsageError("--directions: invalid choice '" + d +
                         "' (choose from 'minimize', 'maximize')");
      }
      dirs.push_back(direction_from_string(d));
    }
  }
  if (dirs.empty()) dirs.push_back(StudyDirection::kMinimize);
  std::string name;
  if (p.vm.count("study-name")) {
    name = p.vm["study-name"].as<std::string>();
  } else {
    std::string uuid = new_worker_prefix();
    uuid.pop_back();
    name = "no-name-" + uuid;  // Optuna's DEFAULT_STUDY_NAME_PREFIX
  }
  auto study = Study::create(storage, name, dirs, nullptr, p.vm.count("skip-if-exists") > 0);
  std::cout << study->name() << std::endl;
  return 0;
}

// Optuna's default when --sampler is absent: TPESampler for one objective, NSGAIISampler for
// several (optuna.samplers default of create_study/load_study in 3.1).
std::shared_ptr<Sampler> sampler_for(const po::variables_map& vm, size_t n_objectives) {
  nlohmann::json kwargs = nlohmann::json::object();
  if (vm.count("sampler-kwargs")) {
    if (!vm.count("sampler")) {
      throw UsageError(
          "`--sampler_kwargs` is set without `--sampler`. Please specify `--sampler` as well or "
          "omit "
          "`--sampler-kwargs`.");
    }
    const std::string text = vm["sampler-kwargs"].as<std::string>();
    try {
      kwargs = parse_python_json(text);
    } catch (const nlohmann::json::exception& e) {
      throw UsageError("--sampler-kwargs: " + text + " is not JSON: " + e.what());
    }
  }
  std::string cls;
  if (vm.count("sampler"))
    cls = vm["sampler"].as<std::string>();
  else
    cls = n_objectives > 1 ? "NSGAIISampler" : "TPESampler";
  return std::shared_ptr<Sampler>(make_sampler(cls, kwargs));
}

int run_ask(const std::vector<std::string>& args) {
  po::options_description opts(
      "usage: compsearch ask --storage PATH --study-name NAME [--search-space JSON] [--sampler "
      "CLASS] "
      "[--sampler-kwargs JSON]\n\nCreates a trial, samples the search space and prints "
      "{\"number\": N, "
      "\"params\": {...}} (as `optuna ask`). The study is created (minimize, or --directions) when "
      "absent.\n\n"
      "options");
  add_common(opts, false);
  add_format(opts);
  opts.add_options()(
      "search-space", po::value<std::string>(),
      "JSON object: name -> Optuna distribution JSON ({\"name\": \"FloatDistribution\", "
      "\"attributes\": {...}})")("sampler", po::value<std::string>(),
                                 "RandomSampler, GridSampler, NSGAIISampler or TPESampler")(
      "sampler-kwargs", po::value<std::string>(),
      "JSON object of the sampler's keyword arguments, e.g. {\"seed\": 0}")(
      "direction", po::value<std::string>(),
      "deprecated in Optuna: direction of a study created here")(
      "directions", po::value<std::vector<std::string>>()->multitoken(),
      "deprecated in Optuna: directions");
  auto p = parse(args, opts, "ask");
  if (help(p.vm, opts)) return 0;
  check_format(p.vm);
  auto storage = open_storage(p.vm);
  if (!p.vm.count("study-name")) throw UsageError("--study-name is required");
  const std::string name = p.vm["study-name"].as<std::string>();

  std::vector<std::pair<std::string, Distribution>> space;
  if (p.vm.count("search-space")) {
    const std::string text = p.vm["search-space"].as<std::string>();
    nlohmann::ordered_json j;
    try {
      j = parse_python_json_ordered(text);
    } catch (const nlohmann::json::exception& e) {
      throw UsageError("--search-space: not JSON: " + std::string(e.what()));
    }
    if (!j.is_object())
      throw UsageError("--search-space: expected a JSON object of name -> distribution");
    for (auto it = j.begin(); it != j.end(); ++it) {
      try {
        space.emplace_back(it.key(), distribution_from_json(nlohmann::json(it.value())));
      } catch (const std::invalid_argument& e) {
        throw std::invalid_argument("--search-space: parameter \"" + it.key() + "\": " + e.what());
      }
    }
  }
  std::vector<StudyDirection> dirs;
  if (p.vm.count("direction"))
    dirs.push_back(direction_from_string(p.vm["direction"].as<std::string>()));
  if (p.vm.count("directions")) {
    for (const auto& d : p.vm["directions"].as<std::vector<std::string>>())
      dirs.push_back(direction_from_string(d));
  }
  std::unique_ptr<Study> study;
  int64_t study_id;
  try {
    study_id = storage->get_study_id_from_name(name);
  } catch (const StorageKeyError&) {
    study_id = -1;
  }
  std::vector<StudyDirection> study_dirs =
      study_id >= 0
          ? storage->get_study(study_id).directions
          : (dirs.empty() ? std::vector<StudyDirection>{StudyDirection::kMinimize} : dirs);
  if (study_id >= 0 && !dirs.empty() && dirs != study_dirs) {
    throw std::invalid_argument("Cannot overwrite study direction of \"" + name + "\".");
  }
  auto sampler = sampler_for(p.vm, study_dirs.size());
  study = study_id >= 0
              ? std::make_unique<Study>(storage, study_id, sampler)
              : Study::create(storage, name, study_dirs, sampler, /*load_if_exists=*/true);
  Trial trial = study->ask(space);
  std::vector<std::string> header;
  print(p.vm, optuna_cli_ask(trial.number(), trial.params(), p.vm.count("flatten") > 0, &header),
        header);
  return 0;
}

double parse_python_float(const std::string& s) {
  char* end = nullptr;
  double v = std::strtod(s.c_str(), &end);
  if (s.empty() || end != s.c_str() + s.size()) {
    throw UsageError("--values: invalid float value: '" + s + "'");
  }
  return v;
}

int run_tell(const std::vector<std::string>& args) {
  po::options_description opts(
      "usage: compsearch tell --storage PATH --study-name NAME --trial-number N [--values V ...] "
      "[--state complete|pruned|fail] [--skip-if-finished]\n\nFinishes a trial created by ask (as "
      "`optuna tell`).\n\noptions");
  add_common(opts, false);
  opts.add_options()("trial-number", po::value<int64_t>(), "trial number")(
      "values", "objective values (one per direction)")("state", po::value<std::string>(),
                                                        "complete, pruned or fail")(
      "skip-if-finished", "do nothing when the trial is already finished");
  auto p = parse(args, opts, "tell");
  if (help(p.vm, opts)) return 0;
  auto storage = open_storage(p.vm);
  if (!p.vm.count("study-name")) throw UsageError("--study-name is required");
  if (!p.vm.count("trial-number")) throw UsageError("--trial-number is required");
  std::optional<TrialState> state;
  if (p.vm.count("state")) {
    const std::string s = p.vm["state"].as<std::string>();
    if (s != "complete" && s != "pruned" && s != "fail") {
      throw UsageError("--state: invalid choice '" + s +
                       "' (choose from 'complete', 'pruned', 'fail')");
    }
    state = trial_state_from_string(s);
  }
  std::optional<std::vector<double>> values;
  if (p.has_values) {
    if (p.values.empty()) throw UsageError("--values: expected at least one argument");
    values.emplace();
    for (const auto& v : p.values) values->push_back(parse_python_float(v));
  }
  auto study = Study::load(storage, p.vm["study-name"].as<std::string>());
  study->tell(p.vm["trial-number"].as<int64_t>(), values, state,
              p.vm.count("skip-if-finished") > 0);
  return 0;
}

int run_trials(const std::vector<std::string>& args, bool best) {
  po::options_description opts(
      std::string("usage: compsearch ") + (best ? "best-trials" : "trials") +
      " --storage PATH --study-name NAME [--flatten]\n\n" +
      (best ? "Prints the study's Pareto-optimal feasible trials"
            : "Prints every trial of the study") +
      " as `optuna " + (best ? "best-trials" : "trials") + " -f json` does.\n\noptions");
  add_common(opts, false);
  add_format(opts);
  auto p = parse(args, opts, best ? "best-trials" : "trials");
  if (help(p.vm, opts)) return 0;
  check_format(p.vm);
  auto storage = open_storage(p.vm);
  if (!p.vm.count("study-name")) throw UsageError("--study-name is required");
  auto study = Study::load(storage, p.vm["study-name"].as<std::string>());
  const auto trials = study->get_trials();
  std::vector<int64_t> best_numbers;
  if (best) {
    for (const auto& t : best_trials_of(trials, study->directions()))
      best_numbers.push_back(t.number);
  }
  std::vector<std::string> header;
  print(p.vm,
        optuna_cli_trials(trials, study->directions(), p.vm.count("flatten") > 0,
                          best ? &best_numbers : nullptr, &header),
        header);
  return 0;
}

int run_studies(const std::vector<std::string>& args) {
  po::options_description opts(
      "usage: compsearch studies --storage PATH [--flatten]\n\nLists the studies of a journal as "
      "`optuna "
      "studies -f json` does.\n\noptions");
  add_common(opts, false);
  add_format(opts);
  auto p = parse(args, opts, "studies");
  if (help(p.vm, opts)) return 0;
  check_format(p.vm);
  auto storage = open_storage(p.vm);
  std::vector<std::string> header;
  print(p.vm, optuna_cli_studies(*storage, p.vm.count("flatten") > 0, &header), header);
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
