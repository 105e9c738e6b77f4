// Experiment config (`compsearch search --config X.json`): what to compress, what to search, what
// to measure and where to store the study. docs/search.md documents every key; presets live in
// experiments/configs/. Parsing validates everything at once and rejects unknown keys with an
// error naming the file, the key (as a JSON path), the value and what is allowed.
#pragma once

#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace compsearch::experiments {

// Choices of one per-layer parameter; empty = the parameter is not searched (default used).
struct LayerChoices {
  std::vector<int> w_bits;               // subset of {1..8, 16, 32}
  std::vector<std::string> granularity;  // "per_tensor", "per_channel", "group:G"
  std::vector<std::string> prune_kind;   // "none", "unstructured", "channel", "N:M"
  std::vector<int> a_bits;               // subset of {4, 8, 16, 32}
};

struct RatioRange {
  double low = 0.0, high = 0.0, step = 0.0;  // prune ratio grid [low, high] by step (step > 0)
};

struct DistillationChoices {
  std::vector<int> epochs;          // kd.epochs; empty = no distillation searched
  std::vector<double> temperature;  // kd.temperature
  std::vector<double> alpha;        // kd.alpha
  std::vector<double> lr;           // kd.lr
  int64_t samples = 0;              // training images per fine-tuning epoch (not searched; 0 = all)
};

struct TieGroup {
  std::vector<std::string> layers;  // explicit names
  std::string regex;                // or every layer whose name matches (ECMAScript, full match)
};

struct SpaceConfig {
  LayerChoices choices;                                               // for every searched layer
  std::vector<std::pair<std::string, LayerChoices>> layer_overrides;  // per layer name
  RatioRange prune_ratio{0.25, 0.75, 0.25};
  DistillationChoices distillation;
  std::vector<std::string> freeze;    // layers kept at fp32, never searched
  std::vector<TieGroup> tie;          // layers sharing every parameter
  bool keep_first_last_8bit = false;  // first and last layer: w_bits and a_bits >= 8
};

struct DataConfig {
  std::string source;                 // "fashion-mnist", a dataset JSON path, or "" (data-free)
  int64_t validation_samples = 5000;  // carved from the training split
  uint64_t validation_seed = 0;
  int64_t subset_samples = 512;       // fidelity level 1 (0: skip that level)
  int64_t calibration_samples = 512;  // activation ranges, sensitivity table
  bool report_test = true;            // test accuracy of the final front
};

struct ObjectiveConfig {
  std::string metric;  // "accuracy", "size_bytes", "latency_ms@mcu:stm32f746", ...
  bool maximize = false;
};

struct ConstraintConfig {
  std::string metric;
  bool less_equal = true;  // "<=" (true) or ">=" (false)
  double bound = 0.0;
  std::string text;  // as written, for messages
};

struct EvaluatorConfig {
  std::string kind = "accuracy";     // accuracy | fidelity | weight_error | external
  std::vector<std::string> command;  // external only
  double timeout_s = 600.0;          // external only
  // accuracy / fidelity: candidates with <=8-bit weights and 4/8-bit activations run on integer
  // kernels where the CPU has them (evaluators::EvaluationOptions::int8).
  bool int8 = false;
};

struct FidelityConfig {
  bool proxy = true;   // level 0: additive proxy from the sensitivity table
  bool subset = true;  // level 1: data.subset_samples of the validation split
  // Validation samples each sensitivity-table entry is measured on (0: the whole split).
  int64_t sensitivity_samples = 0;
  std::string pruner = "MedianPruner";  // Optuna class name (single-objective studies)
  nlohmann::json pruner_kwargs = nlohmann::json::object();
  // Multi-objective studies: a candidate whose subset accuracy is below the best COMPLETE trial
  // of no larger cost by more than this is stopped (Optuna cannot report there).
  double dominance_margin = 0.02;
};

struct SamplerConfig {
  std::string name = "nsga2";  // nsga2 | tpe | random | exact (or an Optuna class name)
  uint64_t seed = 0;
  nlohmann::json kwargs = nlohmann::json::object();
};

struct BudgetConfig {
  int64_t trials = 100;  // the study's total (re-running continues to it)
  double timeout_s = 0;  // 0: none
  int jobs = 1;
};

struct ExperimentConfig {
  std::filesystem::path source;  // the config file
  std::string study_name;
  std::filesystem::path model;  // resolved against the config file's folder
  DataConfig data;
  SpaceConfig space;
  std::vector<std::string> targets;
  std::vector<ObjectiveConfig> objectives;
  std::vector<ConstraintConfig> constraints;
  EvaluatorConfig evaluator;
  FidelityConfig fidelity;
  SamplerConfig sampler;
  BudgetConfig budget;
  std::string storage;  // journal path (resolved against the working directory) or redis:// URL
  int batch = 1;        // batch size the hardware models cost

  nlohmann::json to_json() const;
};

// "8h", "10m", "30s", "1h30m", "90" (seconds); throws std::invalid_argument naming `key`.
double parse_duration_s(const std::string& text, const std::string& key);

// "sram_kb@mcu:stm32f746 <= 320"; throws std::invalid_argument naming `key`.
ConstraintConfig parse_constraint(const std::string& text, const std::string& key);

// Parses and validates; relative paths in the file resolve against `base_dir`. Reports every
// problem found, one per line, in one std::invalid_argument.
ExperimentConfig config_from_json(const nlohmann::json& j, const std::string& source,
                                  const std::filesystem::path& base_dir);
ExperimentConfig load_config(const std::filesystem::path& path);
// The JSON of a config file, nesting-checked; parse errors name the file (std::invalid_argument).
nlohmann::json read_config_json(const std::filesystem::path& path);

}  // namespace compsearch::experiments
