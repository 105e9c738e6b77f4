// Recipe: per-layer compression settings (DESIGN.md "Compression semantics" and the
// compsearch.recipe/1 file format). Plain value types shared by compressors, hardware models,
// evaluators and experiments.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

namespace compsearch::model {
struct LayerTable;
struct LayerInfo;
}  // namespace compsearch::model

namespace compsearch::compressors {

enum class PruneKind { kNone, kUnstructured, kChannel, kNM };

struct PruneSpec {
  PruneKind kind = PruneKind::kNone;
  double ratio = 0.0;  // in [0, 1); for N:M it is 1 - n/m
  int n = 0;           // N:M only
  int m = 0;
};

enum class GranularityKind { kPerTensor, kPerChannel, kGroup };

struct Granularity {
  GranularityKind kind = GranularityKind::kPerChannel;
  int64_t group_size = 0;  // kGroup only: G consecutive weights of a reduction row
};

enum class WeightCalibration { kMinMax, kMse };
enum class ActivationCalibration { kMinMax, kPercentile, kMse };
// kPercentile's default: the range drops the 0.01% most extreme activations on each side, the
// default of NVIDIA's pytorch-quantization histogram calibrator.
constexpr double kDefaultActivationPercentile = 99.99;

struct LayerSetting {
  int w_bits = 32;  // 1..8, 16, 32
  Granularity granularity;
  PruneSpec prune;
  int a_bits = 32;  // 4, 8, 16, 32
  WeightCalibration w_calibration = WeightCalibration::kMinMax;
};

// Fine-tuning schedule carried by a recipe (`"distillation"` key). JSON:
//   "optimizer": "adam" | "adamw" | "sgd"   or   {"name": ..., "momentum": 0.9, "nesterov": true,
//                "weight_decay": 1e-4}     (momentum / nesterov for "sgd" only)
//   "schedule":  "constant" | "step" | "cosine"   or   {"name": ..., "warmup_steps": 100,
//                "step_size": 500, "gamma": 0.1}   (step_size / gamma for "step" only; steps are
//                optimizer steps, i.e. batches)
//   "batch_size": training batch (default 128); "samples": training images per epoch, the first
//   `samples` of each epoch's shuffled order (absent = the whole training split).
enum class OptimizerKind { kAdam, kAdamW, kSgd };

struct OptimizerSpec {
  OptimizerKind kind = OptimizerKind::kAdam;
  double momentum = 0.0;      // sgd only, in [0, 1)
  bool nesterov = false;      // sgd only; needs momentum > 0
  double weight_decay = 0.0;  // sgd / adam: L2 added to the gradient; adamw: decoupled
};

enum class ScheduleKind { kConstant, kStep, kCosine };

struct ScheduleSpec {
  ScheduleKind kind = ScheduleKind::kConstant;
  int64_t warmup_steps = 0;  // lr ramps linearly up to `lr` over the first warmup_steps steps
  int64_t step_size = 1000;  // step only: multiply lr by gamma every step_size steps
  double gamma = 0.1;        // step only, in (0, 1]
};

struct DistillationSpec {
  int epochs = 0;
  double temperature = 4.0;
  double alpha = 0.9;  // weight of the distillation term; 1 = label-free
  double lr = 1e-3;
  OptimizerSpec optimizer;
  ScheduleSpec schedule;
  int64_t batch_size = 128;
  int64_t samples = 0;  // 0 = every training image each epoch
};

std::string optimizer_kind_to_string(OptimizerKind k);  // "adam", "adamw", "sgd"
std::string schedule_kind_to_string(ScheduleKind k);    // "constant", "step", "cosine"

struct Recipe {
  LayerSetting default_setting;
  std::map<std::string, LayerSetting> layers;  // fully resolved: default overlaid by the file
  std::optional<DistillationSpec> distillation;
  ActivationCalibration activation_calibration = ActivationCalibration::kMinMax;
  double activation_percentile = kDefaultActivationPercentile;  // kPercentile only

  const LayerSetting& setting_for(const std::string& layer) const;
};

// Parses compsearch.recipe/1 JSON. `source` names the file in error messages. Unknown keys and
// out-of-range values throw std::invalid_argument naming the key, the value and what is allowed.
Recipe recipe_from_json(const nlohmann::json& j, const std::string& source = "recipe");
nlohmann::json recipe_to_json(const Recipe& recipe);
// The one JSON form of a layer's setting, as a recipe file's "default" and "layers" entries
// hold it: {"w_bits", "granularity", "a_bits"}, plus "prune": {"kind", "ratio"} when pruned and
// "w_calibration" when not minmax. Also the setting part of `inspect --recipe --json` layers and
// of the safetensors export's per-layer metadata. nlohmann's ADL hook: `nlohmann::json j = s;`.
void to_json(nlohmann::json& j, const LayerSetting& setting);
Recipe load_recipe(const std::filesystem::path& path);
void save_recipe(const Recipe& recipe, const std::filesystem::path& path);

// Checks a recipe against a model: unknown layer names and N:M on ineligible layers throw
// std::invalid_argument naming the layer and what is allowed.
void validate_recipe(const Recipe& recipe, const model::LayerTable& table);

// N:M eligibility (DESIGN.md rule 4): runs of M must not straddle a kernel position, so the input
// channels per group (Conv, weight_shape[1]) or the input features (Gemm/MatMul) must be
// divisible by M. nm_run_axis_length returns that length.
int64_t nm_run_axis_length(const model::LayerInfo& layer);
bool nm_eligible(const model::LayerInfo& layer, int m);

// "per_tensor", "per_channel", "group:16"; "unstructured", "channel", "2:4".
std::string granularity_to_string(const Granularity& g);
Granularity granularity_from_string(const std::string& s);  // throws std::invalid_argument
std::string prune_kind_to_string(const PruneSpec& p);

}  // namespace compsearch::compressors
