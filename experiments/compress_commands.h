// The logic behind `compsearch evaluate` (with or without --recipe), `compsearch inspect --recipe`
// and `compsearch compress`: apply a recipe to a copy of the model, decide whether activations
// need calibration and load the calibration set, score it against the uncompressed model, show
// the effective layer table, export. The CLI files only parse flags into the requests below and
// print; malformed request values throw experiments::UsageError naming the flag.
#pragma once

#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <ostream>
#include <string>
#include <variant>

#include "compressors/apply.h"
#include "compressors/export.h"
#include "compressors/recipe.h"
#include "evaluators/accuracy.h"
#include "experiments/model_commands.h"
#include "model/dataset.h"
#include "model/graph.h"

namespace compsearch::experiments {

// True when some layer of `graph` gets a_bits 4 or 8 from `recipe` (activation calibration needed).
bool recipe_needs_calibration(const model::Graph& graph, const compressors::Recipe& recipe);

struct RecipeEvaluateOptions {
  evaluators::EvaluationOptions eval;
  int64_t calibration_samples = 512;  // from the calibration set, for 4/8-bit activations
};

// `evaluate --recipe`. JSON keys: accuracy, agreement, kl, size_bytes, macs, samples, plus
// reference_accuracy, reference_size_bytes, reference_macs, calibration_samples, seconds, model,
// data, recipe.
struct RecipeEvaluateResult {
  std::string model, data, recipe;
  evaluators::EvaluationResult result;
  double reference_accuracy = 0.0;
  double size_bytes = 0.0, reference_size_bytes = 0.0;
  int64_t macs = 0, reference_macs = 0;
  int64_t calibration_samples = 0;
  double seconds = 0.0;

  nlohmann::json to_json() const;
  std::string to_text() const;
};

// Applies `recipe` to a copy of `graph`, calibrates 4/8-bit activations on `calibration`, and
// compares the compressed model with `graph` on `data` (labelled).
RecipeEvaluateResult evaluate_recipe(const model::Graph& graph, const compressors::Recipe& recipe,
                                     const model::Dataset& data, const model::Dataset& calibration,
                                     const RecipeEvaluateOptions& options,
                                     const std::string& model_label,
                                     const std::string& recipe_label);

// `inspect --recipe`: the effective layer table. JSON: {"model", "recipe", "layers": [{"name",
// "op", "weight_shape", "params", "macs", "effective_macs", the layer's setting as a recipe file
// writes it (compressors::to_json: "w_bits", "granularity", "a_bits", "prune": {"kind", "ratio"}
// when pruned, "w_calibration" when mse), "pruned_channels", "dropped_inputs", "kept_weights",
// "stored_weights", "size_bits"}], "total_params", "total_macs", "effective_macs", "size_bytes",
// "reference_size_bytes"}.
struct RecipeInspectResult {
  std::string model, recipe_label;
  compressors::CompressedModel compressed;
  nlohmann::json to_json() const;
  std::string to_text() const;
};

RecipeInspectResult inspect_recipe(const model::Graph& graph, const compressors::Recipe& recipe,
                                   const std::string& model_label, const std::string& recipe_label);

// `compress`: applies the recipe, calibrates activations when the recipe quantizes any (needs
// `calibration`), and writes `out` in `format`. Returns a JSON summary (format, out, size_bytes,
// macs, layers quantized).
nlohmann::json compress_model(const model::Graph& graph, const compressors::Recipe& recipe,
                              compressors::ExportFormat format, const std::filesystem::path& out,
                              const model::Dataset* calibration, int64_t calibration_samples);

// Where the images for 4/8-bit activation calibration come from (the --calibration-* flags).
struct CalibrationSource {
  std::string data = "fashion-mnist";  // the built-in name or a dataset JSON file
  std::string split = "train";         // train or test (fashion-mnist)
  int64_t samples = 512;               // >= 1: the first `samples` images
};

// The calibration set `recipe` needs on `graph`: loaded only when some layer quantizes its
// activations to 4 or 8 bits, std::nullopt otherwise.
std::optional<model::Dataset> load_calibration_if_needed(const model::Graph& graph,
                                                         const compressors::Recipe& recipe,
                                                         const CalibrationSource& source);

// `evaluate`: top-1 accuracy of the model as stored, or with `recipe`, of the compressed model
// against the uncompressed one (RecipeEvaluateResult). UsageError: split not train/test,
// batch_size < 1, calibration.samples < 1 (with a recipe).
struct EvaluateRequest {
  std::string model;           // ONNX file
  std::string data;            // "fashion-mnist" or a dataset JSON file (model/dataset.h)
  std::string split = "test";  // train or test
  int64_t batch_size = 256;
  int threads = 0;     // 0 = all cores
  int64_t limit = -1;  // only the first `limit` samples (-1: all)
  std::string recipe;  // compsearch.recipe/1 file; "" = the model as stored
  CalibrationSource calibration;
};

struct EvaluateReport {
  std::variant<EvaluateResult, RecipeEvaluateResult> result;
  nlohmann::json to_json() const;
  std::string to_text() const;
};

EvaluateReport run_evaluate(const EvaluateRequest& request);

// `inspect [--recipe]`: the layer table of the model, or its effective table under `recipe`.
struct InspectRequest {
  std::string model;   // ONNX file
  std::string recipe;  // compsearch.recipe/1 file; "" = the table of the model as stored
};

struct InspectReport {
  std::variant<InspectResult, RecipeInspectResult> result;
  nlohmann::json to_json() const;
  std::string to_text() const;
};

InspectReport run_inspect(const InspectRequest& request);

// `compress`: loads the model and recipe, calibrates when the recipe needs it, writes `out`.
// UsageError: an unknown format, calibration.samples < 1.
struct CompressRequest {
  std::string model;   // ONNX file
  std::string recipe;  // compsearch.recipe/1 file
  std::string format;  // onnx-qdq, onnx or safetensors
  std::string out;
  CalibrationSource calibration;
};

// The compress_model summary and its one-line text form.
struct CompressReport {
  nlohmann::json summary;
  nlohmann::json to_json() const { return summary; }
  std::string to_text() const;
};

CompressReport run_compress(const CompressRequest& request);

// Benchmark helper (bench/bench_compressors.cpp): time to apply a recipe to the model and score
// `images` calibration images (Fashion-MNIST train split), for a few representative recipes.
void bench_recipe_candidates(const std::string& model_path, int64_t images, int repeats,
                             std::ostream& out);

}  // namespace compsearch::experiments
