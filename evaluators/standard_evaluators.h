// The built-in evaluators over one model and its data: accuracy (labelled), fidelity
// (label-free) and weight_error (data-free). They share an EvaluationContext built once per
// search: the uncompressed model, its layer table, the validation and calibration sets and the
// uncompressed model's outputs on the validation set (so no candidate re-runs the reference).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "evaluators/accuracy.h"
#include "evaluators/evaluator.h"
#include "model/dataset.h"
#include "model/graph.h"
#include "model/layer_table.h"

namespace compsearch::evaluators {

struct EvaluationContext {
  const model::Graph* graph = nullptr;  // uncompressed model (outlives the context)
  model::LayerTable table;
  const model::Dataset* validation = nullptr;   // may be null (data-free)
  const model::Dataset* calibration = nullptr;  // activation ranges; may be null
  // Fidelity level 3: recipes with a distillation block are fine-tuned on this split (the training
  // data without the validation images) and scored again; null = level 3 off.
  const model::Dataset* train = nullptr;
  int64_t subset_samples = 0;  // fidelity level 1 size (0: skip the subset level)
  int64_t calibration_samples = 512;
  EvaluationOptions options;  // options.limit > 0: score on the first `limit` validation samples

  // Filled by prepare_context():
  std::vector<float> reference_outputs;  // [validation samples, classes]
  int64_t classes = 0;
  EvaluationResult reference;  // the uncompressed model on the validation set
  // Activation statistics of the uncompressed model on the calibration set (when there is one):
  // candidates take their activation ranges from them instead of re-running calibration.
  std::shared_ptr<const ReferenceActivations> reference_activations;
};

// Runs the uncompressed model once on the validation set (when there is one).
void prepare_context(EvaluationContext& context);

// kind: "accuracy", "fidelity" or "weight_error". Throws std::invalid_argument for an unknown kind
// or when the context lacks what the kind needs (labels, data).
std::unique_ptr<Evaluator> make_standard_evaluator(
    const std::string& kind, std::shared_ptr<const EvaluationContext> context);

// Data-free proxy: sum over layers of ||w - ŵ||² divided by the sum of ||w||² (0 = lossless).
double relative_weight_error(const model::Graph& original, const model::Graph& compressed,
                             const model::LayerTable& table);

}  // namespace compsearch::evaluators
