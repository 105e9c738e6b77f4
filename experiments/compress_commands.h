// The logic behind `compsearch evaluate --recipe`, `compsearch inspect --recipe` and
// `compsearch compress`: apply a recipe to a copy of the model, calibrate activations, score it
// against the uncompressed model, show the effective layer table, export. The CLI files only
// parse flags and print.
#pragma once

#include <filesystem>
#include <ostream>
#include <string>

#include <nlohmann/json.hpp>

#include "compressors/apply.h"
#include "compressors/export.h"
#include "compressors/recipe.h"
#include "evaluators/accuracy.h"
#include "model/dataset.h"
#include "model/graph.h"

namespace compsearch::experiments {

// True when some layer of `graph` gets a_bits 4 or 8 from `recipe` (activation calibration needed).
bool recipe_needs_calibration(const model::Graph& graph, const compressors::Recipe& recipe);

struct RecipeEvaluateOptions {
  int64_t batch_size = 256;
  int threads = 0;
  int64_t limit = -1;                 // only the first `limit` evaluation samples
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
                                     const RecipeEvaluateOptions& options, const std::string& model_label,
                                     const std::string& recipe_label);

// `inspect --recipe`: the effective layer table. JSON: {"model", "recipe", "layers": [{"name",
// "op", "weight_shape", "params", "macs", "effective_macs", "w_bits", "granularity", "prune",
// "a_bits", "pruned_channels", "dropped_inputs", "kept_weights", "stored_weights", "size_bits"}],
// "total_params", "total_macs", "effective_macs", "size_bytes", "reference_size_bytes"}.
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

// Benchmark helper (bench/bench_compressors.cpp): time to apply a recipe to the model and score
// `images` calibration images (Fashion-MNIST train split), for a few representative recipes.
void bench_recipe_candidates(const std::string& model_path, int64_t images, int repeats, std::ostream& out);

}  // namespace compsearch::experiments
