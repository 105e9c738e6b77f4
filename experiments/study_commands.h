// The logic behind the Optuna-compatible study verbs (`compsearch create-study`, `ask`, `tell`,
// `trials`, `best-trials`, `studies`): which storage a flag names, which directions and sampler a
// study gets, when `ask` creates the study it asks on. Each function mirrors `optuna <verb>` of
// Optuna 3.1 (optuna/cli.py). The CLI only parses flags into these requests and prints the JSON
// of search/optuna_cli_format.h.
//
// Malformed values (a direction other than minimize/maximize, --search-space or --sampler-kwargs
// that is not JSON or names an unknown distribution, an unknown sampler class, a bad --state or
// --values entry) throw experiments::UsageError naming the flag; a request that is well formed
// but cannot be done (a study that exists or does not, a trial that is finished) throws what
// search/ throws.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "search/distributions.h"
#include "search/sampler.h"
#include "search/storage.h"
#include "search/trial.h"

namespace compsearch::experiments {

// The storage `--storage` names (search::open_storage): a journal file (Optuna's
// JournalFileStorage path) or a redis:// URL (Optuna's JournalRedisStorage). Other database URLs
// ("sqlite:///...") and malformed redis:// URLs are a UsageError.
std::shared_ptr<search::Storage> open_study_storage(const std::string& storage);

// Directions from Optuna's `--direction D` (one objective) and `--directions D ...` flags: at most
// one of the two; each value "minimize" or "maximize" (Optuna's argparse choices). Empty when
// neither is given.
std::vector<search::StudyDirection> parse_directions(const std::optional<std::string>& direction,
                                                     const std::vector<std::string>& directions);

// `--search-space`: a JSON object name -> Optuna distribution JSON, in the text's order.
std::vector<std::pair<std::string, search::Distribution>> parse_search_space(
    const std::string& text);

// `--sampler CLASS --sampler-kwargs JSON`. Without a class, Optuna 3.1's default of
// create_study/load_study: TPESampler for one objective, NSGAIISampler for several (and then
// kwargs are an error, as in Optuna).
std::shared_ptr<search::Sampler> make_study_sampler(const std::optional<std::string>& sampler,
                                                    const std::optional<std::string>& kwargs,
                                                    size_t n_objectives);

// `create-study`: creates the study (with skip_if_exists, an existing one is reused) and returns
// its name. Without a name: Optuna's "no-name-<uuid>"; without directions: minimize.
struct CreateStudyRequest {
  std::optional<std::string> study_name;
  std::vector<search::StudyDirection> directions;
  bool skip_if_exists = false;
};
std::string create_study(std::shared_ptr<search::Storage> storage,
                         const CreateStudyRequest& request);

// `ask`: loads the study, or creates it (with `directions`, default minimize) when absent, as
// Optuna's `ask` does; directions that differ from a stored study's are an error. Then creates a
// trial and samples every parameter of the search space in order.
struct AskRequest {
  std::string study_name;
  std::optional<std::string> search_space;    // --search-space JSON
  std::optional<std::string> sampler;         // --sampler CLASS
  std::optional<std::string> sampler_kwargs;  // --sampler-kwargs JSON
  std::vector<search::StudyDirection> directions;
};
struct AskResult {
  int64_t number = 0;
  std::vector<std::pair<std::string, nlohmann::json>> params;  // in search-space order
};
AskResult ask(std::shared_ptr<search::Storage> storage, const AskRequest& request);

// `tell`: finishes trial `trial_number`. `values` are the --values texts (Python float syntax:
// "1.5", "-2", "nan", "inf"); `state` is "complete", "pruned" or "fail".
struct TellRequest {
  std::string study_name;
  int64_t trial_number = 0;
  std::optional<std::vector<std::string>> values;
  std::optional<std::string> state;
  bool skip_if_finished = false;
};
void tell(std::shared_ptr<search::Storage> storage, const TellRequest& request);

// `trials` (best = false) and `best-trials` (best = true: the Pareto-optimal feasible trials).
struct StudyTrials {
  search::TrialRefs trials;  // every trial of the study, lent (Storage::read_trials)
  std::vector<search::StudyDirection> directions;
  std::optional<std::vector<int64_t>> only;  // best-trials: the numbers to print
};
// Lends the study's trials to `fn` without copying them; `fn` must not call the storage.
void read_study_trials(std::shared_ptr<search::Storage> storage, const std::string& study_name,
                       bool best, const std::function<void(const StudyTrials&)>& fn);

}  // namespace compsearch::experiments
