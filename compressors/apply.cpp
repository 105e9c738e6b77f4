// Applying a recipe to a copy of a graph, channel-pruning propagation and size accounting.
#include "compressors/apply.h"

#include <algorithm>
#include <cmath>
#include <set>
#include <stdexcept>

#include "compressors/size_rule.h"
#include "model/channel_propagation.h"

namespace compsearch::compressors {

LayerCost layer_cost(const model::LayerInfo& layer, const LayerSetting& s,
                     const std::vector<int64_t>& pruned_channels,
                     const std::vector<int64_t>& dropped_inputs) {
  LayerCost c;
  c.name = layer.name;
  c.pruned_channels = pruned_channels;
  c.dropped_inputs = dropped_inputs;
  const int64_t O = layer.out_channels;
  const int64_t kept_out = O - static_cast<int64_t>(pruned_channels.size());
  if (layer.op == "Conv") {
    const int64_t g = std::max<int64_t>(1, layer.groups);
    const int64_t in_per_group = layer.weight_shape.at(1);
    const int64_t out_per_group = O / g;
    std::vector<int64_t> dropped_in_group(g, 0);
    for (int64_t c_in : dropped_inputs) dropped_in_group.at(c_in / in_per_group) += 1;
    std::vector<char> pruned(O, 0);
    for (int64_t o : pruned_channels) pruned.at(o) = 1;
    int64_t kept = 0;
    for (int64_t o = 0; o < O; ++o) {
      if (!pruned[o])
        kept += (in_per_group - dropped_in_group[o / out_per_group]) * layer.kernel_elements;
    }
    c.kept_weights = kept;
  } else {
    c.kept_weights = kept_out * (layer.in_channels - static_cast<int64_t>(dropped_inputs.size()));
  }
  const int64_t kept = c.kept_weights;
  const StoredBits b = stored_bits(s, static_cast<double>(kept), static_cast<double>(kept_out),
                                   layer.reduction_length, !layer.bias_name.empty());
  c.stored_weights = static_cast<int64_t>(b.stored_weights);
  c.weight_bits = static_cast<int64_t>(b.weight);
  c.scale_bits = static_cast<int64_t>(b.scale);
  c.index_bits = static_cast<int64_t>(b.index);
  c.bias_bits = static_cast<int64_t>(b.bias);
  c.total_bits = c.weight_bits + c.scale_bits + c.index_bits + c.bias_bits;
  // MACs are per-weight work times output positions, so they shrink with the kept dense weights.
  if (layer.weight_elements > 0) {
    if (layer.macs % layer.weight_elements == 0) {
      c.effective_macs = layer.macs / layer.weight_elements * kept;
    } else {
      c.effective_macs = static_cast<int64_t>(
          std::llround(static_cast<double>(layer.macs) * kept / layer.weight_elements));
    }
  }
  return c;
}

std::map<std::string, std::vector<int64_t>> propagate_pruned_channels(
    const model::Graph& graph, const model::LayerTable& table,
    const std::map<std::string, std::vector<int64_t>>& pruned_channels) {
  // Which consumers see which producer channels is model::channel_consumers (the one rule, shared
  // with hardware_models); here each pruned channel c becomes the consumer inputs [c·k, (c+1)·k).
  std::map<std::string, std::set<int64_t>> dropped;
  for (const auto& [name, channels] : pruned_channels) {
    if (channels.empty()) continue;
    const int li = model::find_layer(table, name);
    if (li < 0) continue;
    for (const model::ChannelConsumer& c : model::channel_consumers(graph, table, li)) {
      auto& d = dropped[table.layers[c.layer].name];
      for (int64_t z : channels)
        for (int64_t j = 0; j < c.inputs_per_channel; ++j) d.insert(z * c.inputs_per_channel + j);
    }
  }
  std::map<std::string, std::vector<int64_t>> out;
  for (auto& [name, set] : dropped) out[name] = std::vector<int64_t>(set.begin(), set.end());
  return out;
}

ModelCost model_cost(const model::Graph& graph, const model::LayerTable& table,
                     const Recipe& recipe,
                     const std::map<std::string, std::vector<int64_t>>& pruned_channels) {
  const auto dropped = propagate_pruned_channels(graph, table, pruned_channels);
  ModelCost m;
  int64_t layer_params = 0, layer_macs = 0;
  static const std::vector<int64_t> kNone;
  for (const auto& l : table.layers) {
    auto p = pruned_channels.find(l.name);
    auto d = dropped.find(l.name);
    m.layers.push_back(layer_cost(l, recipe.setting_for(l.name),
                                  p == pruned_channels.end() ? kNone : p->second,
                                  d == dropped.end() ? kNone : d->second));
    m.total_bits += m.layers.back().total_bits;
    m.effective_macs += m.layers.back().effective_macs;
    layer_params += l.params;
    layer_macs += l.macs;
  }
  m.other_param_bits = 32 * (table.total_params - layer_params);
  m.total_bits += m.other_param_bits;
  m.effective_macs += table.total_macs - layer_macs;
  return m;
}

bool CompressedModel::needs_calibration() const {
  for (const auto& l : table.layers) {
    const int a = recipe.setting_for(l.name).a_bits;
    if ((a == 4 || a == 8) && !activations.count(l.node_index)) return true;
  }
  return false;
}

CompressedModel apply_recipe(const model::Graph& graph, const model::LayerTable& table,
                             const Recipe& recipe, const ApplyOptions& options) {
  validate_recipe(recipe, table);
  CompressedModel cm;
  cm.graph = graph;
  cm.table = table;
  cm.recipe = recipe;
  for (const auto& l : table.layers) {
    const LayerSetting& s = recipe.setting_for(l.name);
    if (s.a_bits == 16) cm.activations[l.node_index] = activation_quant_params(0, 0, 16);
    if (s.w_bits == 32 && s.prune.kind == PruneKind::kNone) continue;
    model::Tensor* w = cm.graph.find_initializer(l.weight_name);
    if (!w || w->dtype != model::DType::kFloat32 ||
        static_cast<int64_t>(w->f32.size()) != l.weight_elements)
      throw std::runtime_error("layer " + l.name + ": weight initializer '" + l.weight_name +
                               "' is missing or not float32");
    const WeightLayout layout = WeightLayout::from_layer(l);
    QuantizedWeights q;
    const auto res = compress_weights(w->f32, layout, s, options.keep_quantized ? &q : nullptr);
    if (options.keep_quantized && (s.w_bits <= 8)) cm.quantized[l.name] = std::move(q);
    if (!res.pruned_channels.empty()) {
      cm.pruned_channels[l.name] = res.pruned_channels;
      if (!l.bias_name.empty()) {
        model::Tensor* b = cm.graph.find_initializer(l.bias_name);
        for (int64_t o : res.pruned_channels) b->f32.at(o) = 0.0f;
      }
    }
  }
  cm.cost = model_cost(cm.graph, table, recipe, cm.pruned_channels);
  return cm;
}

}  // namespace compsearch::compressors
