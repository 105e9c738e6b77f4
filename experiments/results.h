// The results verbs of a finished (or running) search, working from the study alone:
// `compsearch best` (the best feasible trial under budgets), `compsearch report` (one
// self-contained HTML file and/or the front as CSV) and `compsearch export` (a trial's recipe as a
// recipe file, an NNI 3 config_list, or the compressed model). Everything comes from what
// run_search stores (search_runner.h's header comment): trial user attrs (metrics, `recipe`,
// `fidelity`), the `constraints` system attr and the study's `compsearch.config` /
// `compsearch.reference` user attrs.
#pragma once

#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "experiments/experiment_config.h"
#include "search/storage.h"
#include "search/trial.h"

namespace compsearch::experiments {

// A trial's numeric, finite user attribute `name` (a metric as the runner stores it), or nullopt.
std::optional<double> metric_of(const search::FrozenTrial& t, const std::string& name);

// A study as the results verbs read it.
struct StudyResults {
  std::string storage, study_name;
  std::vector<search::StudyDirection> directions;
  std::vector<std::string> objective_names;  // from compsearch.config (else "value0", ...)
  nlohmann::json config;                     // compsearch.config (null when absent)
  nlohmann::json reference;                  // compsearch.reference (object, maybe empty)
  nlohmann::json test_accuracy;              // compsearch.test_accuracy (object, maybe empty)
  nlohmann::json baselines;  // compsearch.baselines (LLM studies: mix name -> metrics; maybe empty)
  std::vector<search::FrozenTrial> trials;  // every trial, number order
};

// Opens `storage` and reads study `study_name`. Throws std::invalid_argument naming the study and
// the studies the storage holds when it is not there.
StudyResults load_study_results(const std::string& storage, const std::string& study_name);

// Every numeric user attr of a trial (its metrics).
nlohmann::json trial_metrics(const search::FrozenTrial& trial);
// {number, state, params (external values), values, metrics, recipe (null when absent)}.
nlohmann::json trial_to_json(const search::FrozenTrial& trial);

// "latency_ms@mcu:stm32f746<=50" (also ">=", spaces allowed). Throws UsageError.
ConstraintConfig parse_budget(const std::string& text);

struct BestRequest {
  std::vector<ConstraintConfig> budgets;
  // The metric to optimise; empty: "accuracy" (maximised) when the study has that objective,
  // else the study's first objective in its direction.
  std::string metric;
  bool maximize = true;
};

// The best feasible trial: COMPLETE, the study's constraints satisfied, every budget satisfied
// (a trial lacking a budget's metric fails it); ties go to the lowest number. trial_to_json plus
// "optimized": {metric, direction}. Throws std::runtime_error naming the budget(s) when no trial
// satisfies them (with the best value each budget's metric reaches among feasible trials), and
// UsageError when a budget or objective names a metric no trial has.
nlohmann::json best_trial(const StudyResults& study, const BestRequest& request);

// The study's Pareto front (search::best_trials_of), number order.
std::vector<search::FrozenTrial> study_front(const StudyResults& study);

// The front as CSV: number, one column per objective value (value:<name>), then every metric
// (sorted union of the front's numeric user attrs); missing cells empty.
std::string front_csv(const StudyResults& study);

// The hypervolume of trials [0, k) for k = 1..trials.size() (study_hypervolume on each prefix).
std::vector<double> hypervolume_history(const StudyResults& study);

// The one self-contained HTML report. `chosen`: the trial whose recipe is shown as a per-layer
// map (default: the front trial of best accuracy, else of best first objective). Throws
// std::invalid_argument when `chosen` is not a COMPLETE trial with a recipe.
std::string report_html(const StudyResults& study, std::optional<int64_t> chosen = std::nullopt);

// HTML-escapes &, <, >, " and '.
std::string html_escape(const std::string& text);

// NNI 3's config lists for a compsearch.recipe/1 JSON: {"quantization": [...], "pruning": [...]}
// (see results.cpp for the keys and where NNI reads them). `layers`: the model's compressible
// layers (names as in the recipe); empty = the layers the recipe lists.
nlohmann::json nni_config(const nlohmann::json& recipe, const std::vector<std::string>& layers);

enum class ExportKind { kRecipe, kNni, kOnnxQdq, kOnnx, kSafetensors };
ExportKind export_kind_from_string(const std::string& s);  // throws UsageError

// Writes trial `number`'s recipe / NNI config / compressed model to `out`; returns a JSON summary
// ({format, out, trial, ...}). Models come from compsearch.config's model; 4/8-bit activations
// calibrate on the config's calibration split, as the search did.
nlohmann::json export_trial(const StudyResults& study, int64_t number, ExportKind kind,
                            const std::filesystem::path& out);

}  // namespace compsearch::experiments
