// Channel-pruning propagation: the walk from a producer layer's output through zero-preserving ops
// to the layers that read its channels. See channel_propagation.h for the rules.
#include "model/channel_propagation.h"

#include <cmath>
#include <deque>
#include <map>
#include <string>
#include <utility>

namespace compsearch::model {

namespace {

const Shape* shape_of(const Graph& graph, const std::string& value) {
  auto it = graph.value_info.find(value);
  if (it != graph.value_info.end()) return &it->second.shape;
  for (const auto& in : graph.inputs)
    if (in.name == value) return &in.shape;
  for (const auto& out : graph.outputs)
    if (out.name == value) return &out.shape;
  return nullptr;
}

// Product of the dims of `shape` from `first` on, or -1 when one of them is unknown.
int64_t known_product_from(const Shape& shape, size_t first) {
  int64_t p = 1;
  for (size_t d = first; d < shape.size(); ++d) {
    if (shape[d] <= 0) return -1;
    p *= shape[d];
  }
  return p;
}

// For a Flatten at axis 1 or a Reshape equivalent to one, the number of features each channel of
// the input becomes (the product of the dims after the channel dim); 0 when `node` is not such a
// node or the shapes needed to tell are unknown.
int64_t flatten_features_per_channel(const Graph& graph, const Node& node) {
  if (node.op_type != "Flatten" && node.op_type != "Reshape") return 0;
  const Shape* in = shape_of(graph, node.inputs[0]);
  if (!in || in->size() < 2) return 0;
  const int64_t inner = known_product_from(*in, 2);
  if (inner <= 0) return 0;
  if (node.op_type == "Flatten") {
    int64_t axis = node.attr_int("axis", 1);
    if (axis < 0) axis += static_cast<int64_t>(in->size());
    return axis == 1 ? inner : 0;
  }
  const Shape* out = shape_of(graph, node.outputs[0]);
  const int64_t channels = (*in)[1];
  if (!out || out->size() != 2 || channels <= 0 || (*out)[1] != channels * inner) return 0;
  return inner;
}

// Indices built once per graph for the walks.
struct GraphIndex {
  std::map<size_t, int> layer_of_node;
  std::map<std::string, std::vector<size_t>> consumers_of;  // value -> nodes reading it as input 0

  GraphIndex(const Graph& graph, const LayerTable& table) {
    for (size_t l = 0; l < table.layers.size(); ++l)
      layer_of_node[table.layers[l].node_index] = static_cast<int>(l);
    for (size_t n = 0; n < graph.nodes.size(); ++n) {
      const Node& node = graph.nodes[n];
      if (!node.inputs.empty() && !node.inputs[0].empty())
        consumers_of[node.inputs[0]].push_back(n);
    }
  }
};

std::vector<ChannelConsumer> walk(const Graph& graph, const LayerTable& table,
                                  const GraphIndex& index, int producer) {
  std::vector<ChannelConsumer> found;
  if (producer < 0 || producer >= static_cast<int>(table.layers.size())) return found;
  const LayerInfo& p = table.layers[producer];
  if (p.node_index >= graph.nodes.size() || graph.nodes[p.node_index].outputs.empty()) return found;
  const std::string& start = graph.nodes[p.node_index].outputs[0];
  if (p.op != "Conv") {  // channels on dim 1 only for a rank-2 Gemm / MatMul output
    const Shape* s = shape_of(graph, start);
    if (!s || s->size() != 2) return found;
  }
  // Breadth first; each entry is a value carrying the producer's channels on dim 1, and how many
  // consecutive entries of dim 1 each producer channel has become.
  std::deque<std::pair<std::string, int64_t>> work;
  work.emplace_back(start, 1);
  for (int guard = 0; !work.empty() && guard < 100000; ++guard) {
    const auto [value, k] = work.front();
    work.pop_front();
    auto cit = index.consumers_of.find(value);
    if (cit == index.consumers_of.end()) continue;
    for (size_t n : cit->second) {
      const Node& node = graph.nodes[n];
      if (auto lit = index.layer_of_node.find(n); lit != index.layer_of_node.end()) {
        const LayerInfo& consumer = table.layers[lit->second];
        if (consumer.op == "Gemm" && node.attr_int("transA", 0) != 0) continue;
        const Shape* in_shape = shape_of(graph, value);
        if (consumer.op == "Conv" ? (in_shape && in_shape->size() < 3)
                                  : (!in_shape || in_shape->size() != 2))
          continue;
        if (consumer.in_channels != p.out_channels * k) continue;
        found.push_back({lit->second, k});
        continue;
      }
      if (node.outputs.empty()) continue;
      if (keeps_zero_channel(graph, node)) {
        work.emplace_back(node.outputs[0], k);
      } else if (const int64_t inner = flatten_features_per_channel(graph, node); inner > 0) {
        work.emplace_back(node.outputs[0], k * inner);
      }
    }
  }
  return found;
}

}  // namespace

bool keeps_zero_channel(const Graph& graph, const Node& node) {
  const std::string& op = node.op_type;
  if (op == "Relu" || op == "MaxPool" || op == "AveragePool" || op == "GlobalAveragePool" ||
      op == "Identity" || op == "Dropout")
    return true;
  if (op != "Clip") return false;
  // Zero stays zero only when min <= 0 <= max. Opset < 11 has attributes, later opsets inputs.
  float lo = -INFINITY, hi = INFINITY;
  if (node.has_attr("min")) lo = node.attr_float("min", lo);
  if (node.has_attr("max")) hi = node.attr_float("max", hi);
  for (size_t i = 1; i < node.inputs.size() && i < 3; ++i) {
    if (node.inputs[i].empty()) continue;
    const Tensor* t = graph.find_initializer(node.inputs[i]);
    if (!t || t->numel() != 1) return false;  // a computed bound: cannot tell
    const float v = t->is_float() ? t->f32.at(0) : static_cast<float>(t->i64.at(0));
    (i == 1 ? lo : hi) = v;
  }
  return lo <= 0.0f && hi >= 0.0f;
}

std::vector<ChannelConsumer> channel_consumers(const Graph& graph, const LayerTable& table,
                                               int producer) {
  return walk(graph, table, GraphIndex(graph, table), producer);
}

std::vector<int> channel_sources(const Graph& graph, const LayerTable& table) {
  std::vector<int> sources(table.layers.size(), -1);
  const GraphIndex index(graph, table);
  for (size_t l = 0; l < table.layers.size(); ++l) {
    for (const ChannelConsumer& c : walk(graph, table, index, static_cast<int>(l)))
      sources[c.layer] = static_cast<int>(l);
  }
  return sources;
}

}  // namespace compsearch::model
