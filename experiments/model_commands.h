// The logic behind `compsearch inspect` and `compsearch evaluate`: each returns a result struct
// with a JSON form (the keys users and tests rely on) and a printable table. The CLI files only
// parse flags and print. Both take an already loaded (and possibly transformed) Graph, so a
// command that first applies a recipe to a copy of the graph reuses them unchanged.
#pragma once

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

#include "evaluators/accuracy.h"
#include "model/dataset.h"
#include "model/executor.h"
#include "model/graph.h"
#include "model/layer_table.h"

namespace compsearch::experiments {

// `inspect`: the layer table. JSON: {"model", "layers": [{"name", "op", "weight_shape",
// "params", "macs", "input_elements", "output_elements"}], "total_params", "total_macs"}.
struct InspectResult {
  std::string model;  // file name or label shown in the header
  model::LayerTable table;

  nlohmann::json to_json() const;
  std::string to_text() const;  // aligned table with a totals line
};

InspectResult inspect_graph(const model::Graph& graph, const std::string& model_label);

// `evaluate`: top-1 accuracy of the graph on a labelled dataset.
// JSON: {"model", "data", "accuracy", "correct", "samples", "seconds", "images_per_second"}.
struct EvaluateResult {
  std::string model;
  std::string data;
  double accuracy = 0.0;  // correct / samples
  int64_t correct = 0;
  int64_t samples = 0;
  double seconds = 0.0;

  nlohmann::json to_json() const;
  std::string to_text() const;
};

// Throws std::invalid_argument when the data is unlabelled, does not fit the model input, or the
// model output is not [batch, classes].
EvaluateResult evaluate_graph(const model::Graph& graph, const model::Dataset& data,
                              const evaluators::EvaluationOptions& options,
                              const std::string& model_label);

}  // namespace compsearch::experiments
