// The study verbs' decisions: storage, directions, sampler, get-or-create on ask, tell's values.
#include "experiments/study_commands.h"

#include <cstdlib>
#include <stdexcept>

#include "experiments/usage_error.h"
#include "search/in_memory_storage.h"
#include "search/open_storage.h"
#include "search/python_json.h"
#include "search/sampler_factory.h"
#include "search/study.h"

namespace compsearch::experiments {

using namespace compsearch::search;

namespace {

StudyDirection direction_choice(const std::string& flag, const std::string& d) {
  if (d != "minimize" && d != "maximize") {
    throw UsageError(flag + ": invalid choice '" + d + "' (choose from 'minimize', 'maximize')");
  }
  return direction_from_string(d);
}

// Python's float(): the whole text must be a number ("1.5", "-2", "1e3", "nan", "inf").
double parse_python_float(const std::string& s) {
  char* end = nullptr;
  const double v = std::strtod(s.c_str(), &end);
  if (s.empty() || end != s.c_str() + s.size()) {
    throw UsageError("--values: invalid float value: '" + s + "'");
  }
  return v;
}

}  // namespace

std::shared_ptr<Storage> open_study_storage(const std::string& storage) {
  if (is_storage_url(storage) && storage.rfind("redis://", 0) != 0) {
    throw UsageError("--storage " + storage +
                     ": database URLs are not supported; give the path of a journal file or a "
                     "redis:// URL");
  }
  try {
    return open_storage(storage);
  } catch (const std::invalid_argument& e) {  // a malformed redis:// URL
    throw UsageError(std::string("--storage: ") + e.what());
  }
}

std::vector<StudyDirection> parse_directions(const std::optional<std::string>& direction,
                                             const std::vector<std::string>& directions) {
  if (direction && !directions.empty()) {
    throw UsageError("Specify only one of `direction` and `directions`.");
  }
  std::vector<StudyDirection> dirs;
  if (direction) dirs.push_back(direction_choice("--direction", *direction));
  for (const auto& d : directions) dirs.push_back(direction_choice("--directions", d));
  return dirs;
}

std::vector<std::pair<std::string, Distribution>> parse_search_space(const std::string& text) {
  nlohmann::ordered_json j;
  try {
    j = parse_python_json_ordered(text);
  } catch (const nlohmann::json::exception& e) {
    throw UsageError("--search-space: not JSON: " + std::string(e.what()));
  }
  if (!j.is_object()) {
    throw UsageError("--search-space: expected a JSON object of name -> distribution");
  }
  std::vector<std::pair<std::string, Distribution>> space;
  for (auto it = j.begin(); it != j.end(); ++it) {
    try {
      space.emplace_back(it.key(), distribution_from_json(nlohmann::json(it.value())));
    } catch (const std::invalid_argument& e) {
      throw UsageError("--search-space: parameter \"" + it.key() + "\": " + e.what());
    }
  }
  return space;
}

std::shared_ptr<Sampler> make_study_sampler(const std::optional<std::string>& sampler,
                                            const std::optional<std::string>& kwargs,
                                            size_t n_objectives) {
  nlohmann::json kw = nlohmann::json::object();
  if (kwargs) {
    if (!sampler) {
      throw UsageError(
          "`--sampler_kwargs` is set without `--sampler`. Please specify `--sampler` as well or "
          "omit `--sampler-kwargs`.");
    }
    try {
      kw = parse_python_json(*kwargs);
    } catch (const nlohmann::json::exception& e) {
      throw UsageError("--sampler-kwargs: " + *kwargs + " is not JSON: " + e.what());
    }
  }
  const std::string cls = sampler ? *sampler : (n_objectives > 1 ? "NSGAIISampler" : "TPESampler");
  try {
    return std::shared_ptr<Sampler>(make_sampler(cls, kw));
  } catch (const std::invalid_argument& e) {
    // An unknown class or a keyword of the wrong name, type or range: the flags are malformed.
    throw UsageError(
        std::string(sampler && kwargs ? "--sampler/--sampler-kwargs: " : "--sampler: ") + e.what());
  }
}

std::string create_study(std::shared_ptr<Storage> storage, const CreateStudyRequest& request) {
  std::vector<StudyDirection> dirs = request.directions;
  if (dirs.empty()) dirs.push_back(StudyDirection::kMinimize);
  std::string name;
  if (request.study_name) {
    name = *request.study_name;
  } else {
    std::string uuid = new_worker_prefix();
    uuid.pop_back();
    name = "no-name-" + uuid;  // Optuna's DEFAULT_STUDY_NAME_PREFIX
  }
  auto study = Study::create(storage, name, dirs, nullptr, request.skip_if_exists);
  return study->name();
}

AskResult ask(std::shared_ptr<Storage> storage, const AskRequest& request) {
  // Everything the flags say is checked before the journal is touched.
  std::vector<std::pair<std::string, Distribution>> space;
  if (request.search_space) space = parse_search_space(*request.search_space);
  int64_t study_id;
  try {
    study_id = storage->get_study_id_from_name(request.study_name);
  } catch (const StorageKeyError&) {
    study_id = -1;
  }
  const std::vector<StudyDirection>& dirs = request.directions;
  const std::vector<StudyDirection> study_dirs =
      study_id >= 0
          ? storage->get_study(study_id).directions
          : (dirs.empty() ? std::vector<StudyDirection>{StudyDirection::kMinimize} : dirs);
  if (study_id >= 0 && !dirs.empty() && dirs != study_dirs) {
    throw std::invalid_argument("Cannot overwrite study direction of \"" + request.study_name +
                                "\".");
  }
  auto sampler = make_study_sampler(request.sampler, request.sampler_kwargs, study_dirs.size());
  std::unique_ptr<Study> study =
      study_id >= 0 ? std::make_unique<Study>(storage, study_id, sampler)
                    : Study::create(storage, request.study_name, study_dirs, sampler,
                                    /*load_if_exists=*/true);
  Trial trial = study->ask(space);
  return AskResult{trial.number(), trial.params()};
}

void tell(std::shared_ptr<Storage> storage, const TellRequest& request) {
  std::optional<TrialState> state;
  if (request.state) {
    const std::string& s = *request.state;
    if (s != "complete" && s != "pruned" && s != "fail") {
      throw UsageError("--state: invalid choice '" + s +
                       "' (choose from 'complete', 'pruned', 'fail')");
    }
    state = trial_state_from_string(s);
  }
  std::optional<std::vector<double>> values;
  if (request.values) {
    if (request.values->empty()) throw UsageError("--values: expected at least one argument");
    values.emplace();
    for (const auto& v : *request.values) values->push_back(parse_python_float(v));
  }
  auto study = Study::load(storage, request.study_name);
  study->tell(request.trial_number, values, state, request.skip_if_finished);
}

void read_study_trials(std::shared_ptr<Storage> storage, const std::string& study_name, bool best,
                       const std::function<void(const StudyTrials&)>& fn) {
  auto study = Study::load(storage, study_name);
  StudyTrials r;
  r.directions = study->directions();
  study->read_trials({}, [&](TrialRefs trials) {
    r.trials = trials;
    if (best) {
      r.only.emplace();
      for (const FrozenTrial* t : best_trial_refs(trials, r.directions))
        r.only->push_back(t->number);
    }
    fn(r);
  });
}

}  // namespace compsearch::experiments
