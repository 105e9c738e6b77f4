// `compsearch search`: the compression problem built from an experiment config, and the runner
// that searches it into an Optuna-compatible study.
//
// What a trial stores (so `best`, `report`, `export` and Optuna itself need nothing else):
//   params          the space's parameters (search_space.h)
//   values          the config's objectives, in order
//   user attrs      every metric: evaluator metrics (`accuracy`, `kl`, ...), `size_bytes`,
//                   `size_kb`, `macs`, per target `latency_ms@T`, `energy_mj@T`, and for MCUs
//                   `sram_kb@T`, `flash_kb@T`, `deployable@T`; `recipe` (compsearch.recipe/1);
//                   `fidelity` ({"1": subset value, ...}) for the levels run
//   system attrs    `constraints` (Optuna's convention, <= 0 satisfied), `fail_reason`
// What the study stores (user attrs): `compsearch.config` (the config, paths absolute),
// `compsearch.reference` (metrics of the uncompressed model) and, once a run ends,
// `compsearch.test_accuracy` ({trial number: test accuracy} for the front).
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "compressors/recipe.h"
#include "evaluators/evaluator.h"
#include "evaluators/standard_evaluators.h"
#include "experiments/experiment_config.h"
#include "experiments/search_space.h"
#include "hardware_models/hardware_model.h"
#include "model/dataset.h"
#include "model/graph.h"
#include "search/storage.h"
#include "search/trial.h"

namespace compsearch::experiments {

// The data splits of a search: validation carved (seeded) from the training split, calibration
// from the rest of the training split, test only for the final report.
// `train` (every training image not in the validation split) only when `with_train`: the
// distillation fine-tuning of fidelity level 3 trains on it.
struct DataSplits {
  std::unique_ptr<model::Dataset> validation, calibration, test, train;
};
DataSplits load_splits(const DataConfig& data, bool with_train = false);

// Everything needed to score a recipe; built once per run (or per `best`/`report` call).
class CompressionProblem {
 public:
  // Loads the model, data and hardware targets of `config`. Throws std::invalid_argument /
  // std::runtime_error naming the file or key.
  explicit CompressionProblem(const ExperimentConfig& config, bool load_data = true);

  const ExperimentConfig& config() const { return config_; }
  const model::Graph& graph() const { return graph_; }
  const model::LayerTable& table() const { return table_; }
  const CompressionSpace& space() const { return *space_; }
  const evaluators::Evaluator& evaluator() const { return *evaluator_; }
  // The evaluator the sensitivity table is measured with (fidelity.sensitivity_samples).
  const evaluators::Evaluator& sensitivity_evaluator() const { return *sensitivity_evaluator_; }
  bool has_evaluator() const { return evaluator_ != nullptr; }
  const DataSplits& data() const { return data_; }

  // Cost metrics of a recipe (size, MACs, every target's latency/energy/memory); thread-safe.
  evaluators::Metrics cost_metrics(const compressors::Recipe& recipe) const;
  // Cost and evaluator metrics of the uncompressed model.
  const evaluators::Metrics& reference_metrics() const { return reference_; }
  // Cost metrics alone of the uncompressed model (the names cost_metrics returns).
  const evaluators::Metrics& reference_cost_metrics() const { return reference_costs_; }
  // Test-split accuracy of a recipe (NaN without labelled test data).
  double test_accuracy(const compressors::Recipe& recipe) const;

 private:
  ExperimentConfig config_;
  model::Graph graph_;
  model::LayerTable table_;
  std::unique_ptr<CompressionSpace> space_;
  DataSplits data_;
  std::shared_ptr<evaluators::EvaluationContext> context_;
  std::unique_ptr<evaluators::Evaluator> evaluator_, sensitivity_evaluator_;
  hardware_models::Workload workload_;
  struct Target {
    std::string name;
    std::unique_ptr<hardware_models::HardwareModel> model;
    hardware_models::CompiledModel compiled;
  };
  std::vector<Target> targets_;
  evaluators::Metrics reference_, reference_costs_;
};

struct SearchOverrides {
  std::optional<int64_t> trials;
  std::optional<double> timeout_s;
  std::optional<int> jobs;
  std::optional<std::string> storage, study_name, sampler;
};

// Applies the CLI overrides to a config (validating the sampler name).
void apply_overrides(ExperimentConfig& config, const SearchOverrides& overrides);

struct SearchSummary {
  std::string study_name, storage;
  int64_t trials_total = 0;  // in the study after the run
  int64_t completed = 0, pruned = 0, failed = 0, run_now = 0;
  int64_t front_size = 0;
  double hypervolume = 0.0;
  std::vector<double> hypervolume_reference;  // minimisation form
  double wall_s = 0.0;
  double trials_per_s = 0.0;
  double spearman_subset = NAN;     // subset-level value vs full measurement, over completed trials
  double spearman_proxy = NAN;      // additive proxy vs full measurement, over completed trials
  int64_t sensitivity_options = 0;  // entries of the sensitivity table (0: no proxy)
  double sensitivity_seconds = 0.0;   // time measuring it in this run (0 when read from cache)
  int64_t exact_enqueued = 0;         // exact route: front points enqueued in this run
  std::vector<nlohmann::json> front;  // {number, values, metrics, test_accuracy}
  nlohmann::json to_json() const;
  std::string to_text() const;
};

struct SearchCallbacks {
  std::function<void(const std::string& line, bool final)> progress;  // one status line
  const std::atomic<bool>* stop = nullptr;                            // Ctrl-C
};

// Opens `storage` through search::open_storage (search/open_storage.h): a journal file path
// (parent folders are created) or a redis:// URL.
std::shared_ptr<search::Storage> open_storage(const std::string& storage);

// Where sensitivity tables are cached: beside a journal file, or the working directory for a
// redis:// storage.
std::filesystem::path sensitivity_cache_dir(const std::string& storage);
// "42s", "3m07s", "1h05m"; "?" for NaN or negative.
std::string fmt_duration(double seconds);

// Runs (or resumes) the search of `config` until the study holds config.budget.trials finished
// trials, the timeout passes or `stop` turns true.
SearchSummary run_search(const ExperimentConfig& config, const SearchCallbacks& callbacks = {});

// Hypervolume and front of a finished study (no evaluation): used by run_search and `report`.
// Points are the objectives in minimisation form; the reference point is the uncompressed model's
// cost for minimised cost objectives, 0 for maximised ones, else 1.1 x the worst value seen.
double study_hypervolume(const std::vector<search::FrozenTrial>& trials,
                         const std::vector<search::StudyDirection>& directions,
                         const std::vector<std::string>& objective_names,
                         const evaluators::Metrics& reference,
                         std::vector<double>* reference_point = nullptr);

// Spearman rank correlation (average ranks for ties); NaN for fewer than 3 pairs.
double spearman(const std::vector<double>& a, const std::vector<double>& b);

}  // namespace compsearch::experiments
