// Applying a recipe to a model: the compressed copy of the graph, channel-pruning propagation to
// consumers (DESIGN.md rule 3), stored-size accounting (rule 9) and effective MACs.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "compressors/activation_quant.h"
#include "compressors/recipe.h"
#include "compressors/weight_kernels.h"
#include "model/graph.h"
#include "model/layer_table.h"

namespace compsearch::compressors {

// Rule 9 for one layer, in bits, and its effective MACs after channel pruning and propagation.
struct LayerCost {
  std::string name;
  std::vector<int64_t> pruned_channels;  // own output channels removed (channel pruning)
  std::vector<int64_t> dropped_inputs;   // input channels (Conv, over all groups) or input features
                                         // (Gemm/MatMul) that a pruned producer makes always zero
  int64_t kept_weights = 0;    // dense weights left once pruned channels and dropped inputs go
  int64_t stored_weights = 0;  // weights actually stored (kept minus unstructured / N:M zeros)
  int64_t weight_bits = 0;     // bits per stored weight x stored weights
  int64_t scale_bits = 0;      // 16 per quantization group (the fp16 scale, or alpha for 1 bit)
  int64_t index_bits = 0;      // unstructured: min(bitmap, 16 per non-zero); N:M: 2 per kept
  int64_t bias_bits = 0;       // fp32 bias of the kept output channels
  int64_t total_bits = 0;
  int64_t effective_macs = 0;  // per sample
};

// Rule 9 and effective MACs from counts. Conventions where DESIGN.md leaves room: quantization
// groups are counted over the kept output channels with full-length reduction rows (the rows the
// scales were computed on); unstructured pruning stores kept - floor(ratio * kept) weights and
// pays index overhead only when it removes at least one weight; N:M stores kept * N / M.
LayerCost layer_cost(const model::LayerInfo& layer, const LayerSetting& setting,
                     const std::vector<int64_t>& pruned_channels,
                     const std::vector<int64_t>& dropped_inputs);

struct ModelCost {
  std::vector<LayerCost> layers;  // layer-table order
  int64_t other_param_bits = 0;   // float initializers outside the layers, kept at 32 bits
  int64_t total_bits = 0;
  int64_t effective_macs = 0;  // per sample, including MatMuls that are not layers
  double size_bytes() const { return static_cast<double>(total_bits) / 8.0; }
};

// Input channels / features of each layer that are always zero because a producer's output
// channels were pruned and only ops that keep a zero channel zero lie between them (the rule is
// model::channel_consumers, model/channel_propagation.h). Keyed by layer name; sorted indices.
std::map<std::string, std::vector<int64_t>> propagate_pruned_channels(
    const model::Graph& graph, const model::LayerTable& table,
    const std::map<std::string, std::vector<int64_t>>& pruned_channels);

// The whole model's cost for given pruned channel sets (from apply_recipe).
ModelCost model_cost(const model::Graph& graph, const model::LayerTable& table,
                     const Recipe& recipe,
                     const std::map<std::string, std::vector<int64_t>>& pruned_channels);

// A compressed copy of a model. `activations` maps node indices (layers with a_bits < 32) to
// their fake-quantization parameters; it is empty until calibrate_activations fills it.
struct CompressedModel {
  model::Graph graph;
  model::LayerTable table;  // of the original model
  Recipe recipe;
  ModelCost cost;
  std::map<std::string, std::vector<int64_t>> pruned_channels;
  std::map<std::string, QuantizedWeights> quantized;  // with ApplyOptions::keep_quantized
  std::map<size_t, ActivationQuantParams> activations;
  bool needs_calibration() const;  // some layer has a_bits 4 or 8 and no parameters yet
};

struct ApplyOptions {
  bool keep_quantized = false;  // keep integer weights and scales (for export)
};

// Validates `recipe` against `table` (validate_recipe) and applies it to a copy of `graph`:
// prune, then quantize / binarize / half-round each layer's weight; channel pruning also zeroes
// the bias. The original graph is not touched. Activation parameters for a_bits 16 are set here;
// 4 and 8 bits need calibrate_activations (evaluators/).
CompressedModel apply_recipe(const model::Graph& graph, const model::LayerTable& table,
                             const Recipe& recipe, const ApplyOptions& options = {});

}  // namespace compsearch::compressors
