// Applying a recipe to a copy of a graph, channel-pruning propagation and size accounting.
#include "compressors/apply.h"
#include "compressors/size_rule.h"

#include <algorithm>
#include <cmath>
#include <deque>
#include <set>
#include <stdexcept>

namespace compsearch::compressors {

namespace {

// Ops that map an all-zero channel to an all-zero channel, keeping channels on dim 1.
bool keeps_zero_channel(const model::Graph& graph, const model::Node& node) {
  const std::string& op = node.op_type;
  if (op == "Relu" || op == "MaxPool" || op == "AveragePool" || op == "GlobalAveragePool" || op == "Identity" ||
      op == "Dropout")
    return true;
  if (op == "Clip") {
    // Zero stays zero only when min <= 0 <= max.
    float lo = -INFINITY, hi = INFINITY;
    if (node.has_attr("min")) lo = node.attr_float("min", lo);
    if (node.has_attr("max")) hi = node.attr_float("max", hi);
    for (size_t i = 1; i < node.inputs.size() && i < 3; ++i) {
      if (node.inputs[i].empty()) continue;
      const model::Tensor* t = graph.find_initializer(node.inputs[i]);
      if (!t || t->numel() != 1) return false;  // a computed bound: cannot tell
      const float v = t->is_float() ? t->f32.at(0) : static_cast<float>(t->i64.at(0));
      (i == 1 ? lo : hi) = v;
    }
    return lo <= 0.0f && hi >= 0.0f;
  }
  return false;
}

const model::Shape* shape_of(const model::Graph& graph, const std::string& value) {
  auto it = graph.value_info.find(value);
  if (it != graph.value_info.end()) return &it->second.shape;
  for (const auto& in : graph.inputs)
    if (in.name == value) return &in.shape;
  for (const auto& out : graph.outputs)
    if (out.name == value) return &out.shape;
  return nullptr;
}

}  // namespace

LayerCost layer_cost(const model::LayerInfo& layer, const LayerSetting& s, const std::vector<int64_t>& pruned_channels,
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
      if (!pruned[o]) kept += (in_per_group - dropped_in_group[o / out_per_group]) * layer.kernel_elements;
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
      c.effective_macs = static_cast<int64_t>(std::llround(static_cast<double>(layer.macs) * kept / layer.weight_elements));
    }
  }
  return c;
}

std::map<std::string, std::vector<int64_t>> propagate_pruned_channels(
    const model::Graph& graph, const model::LayerTable& table,
    const std::map<std::string, std::vector<int64_t>>& pruned_channels) {
  std::map<size_t, const model::LayerInfo*> layer_at_node;
  for (const auto& l : table.layers) layer_at_node[l.node_index] = &l;
  std::map<std::string, std::set<int64_t>> dropped;
  for (const auto& [name, channels] : pruned_channels) {
    if (channels.empty()) continue;
    const int li = model::find_layer(table, name);
    if (li < 0) continue;
    const model::LayerInfo& producer = table.layers[li];
    const model::Node& pnode = graph.nodes.at(producer.node_index);
    const model::Shape* pshape = shape_of(graph, pnode.outputs.at(0));
    // Channels must sit on dim 1: NCHW Conv outputs, [N, F] Gemm / MatMul outputs.
    if (producer.op != "Conv" && (!pshape || pshape->size() != 2)) continue;
    // Breadth-first through zero-preserving ops; each entry carries the zero set on dim 1.
    std::deque<std::pair<std::string, std::vector<int64_t>>> work;
    work.emplace_back(pnode.outputs.at(0), channels);
    int guard = 0;
    while (!work.empty() && ++guard < 10000) {
      auto [value, zeros] = work.front();
      work.pop_front();
      for (size_t ci : graph.consumers(value)) {
        const model::Node& node = graph.nodes[ci];
        auto lit = layer_at_node.find(ci);
        if (lit != layer_at_node.end()) {
          if (node.inputs.at(0) != value) continue;  // the value is not the activation input
          const model::LayerInfo& consumer = *lit->second;
          const model::Shape* in_shape = shape_of(graph, value);
          if (consumer.op == "Gemm" && node.attr_int("transA", 0) != 0) continue;
          if (consumer.op != "Conv" && (!in_shape || in_shape->size() != 2)) continue;
          auto& d = dropped[consumer.name];
          for (int64_t z : zeros)
            if (z < consumer.in_channels) d.insert(z);
          continue;
        }
        if (node.inputs.empty() || node.inputs[0] != value || node.outputs.empty()) continue;
        if (keeps_zero_channel(graph, node)) {
          work.emplace_back(node.outputs[0], zeros);
        } else if (node.op_type == "Flatten" && node.attr_int("axis", 1) == 1) {
          const model::Shape* s = shape_of(graph, value);
          if (!s || s->size() < 2) continue;
          int64_t inner = 1;
          for (size_t d = 2; d < s->size(); ++d) inner *= (*s)[d];
          if (inner <= 0) continue;
          std::vector<int64_t> features;
          for (int64_t z : zeros)
            for (int64_t j = 0; j < inner; ++j) features.push_back(z * inner + j);
          work.emplace_back(node.outputs[0], std::move(features));
        }
      }
    }
  }
  std::map<std::string, std::vector<int64_t>> out;
  for (auto& [name, set] : dropped) out[name] = std::vector<int64_t>(set.begin(), set.end());
  return out;
}

ModelCost model_cost(const model::Graph& graph, const model::LayerTable& table, const Recipe& recipe,
                     const std::map<std::string, std::vector<int64_t>>& pruned_channels) {
  const auto dropped = propagate_pruned_channels(graph, table, pruned_channels);
  ModelCost m;
  int64_t layer_params = 0, layer_macs = 0;
  static const std::vector<int64_t> kNone;
  for (const auto& l : table.layers) {
    auto p = pruned_channels.find(l.name);
    auto d = dropped.find(l.name);
    m.layers.push_back(layer_cost(l, recipe.setting_for(l.name), p == pruned_channels.end() ? kNone : p->second,
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

CompressedModel apply_recipe(const model::Graph& graph, const model::LayerTable& table, const Recipe& recipe,
                             const ApplyOptions& options) {
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
    if (!w || w->dtype != model::DType::kFloat32 || static_cast<int64_t>(w->f32.size()) != l.weight_elements)
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
