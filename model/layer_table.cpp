// Layer table: names, weight shapes, parameter and MAC counts of the searchable layers.
#include "model/layer_table.h"

#include <algorithm>
#include <stdexcept>

#include "model/op_util.h"

namespace compsearch::model {

namespace {

// Elements per sample of a value whose dim 0 is the batch (a symbolic dim counts 1), checked.
int64_t per_sample(const Shape& s, const Node& node, const std::string& value) {
  Shape dims;
  for (size_t i = 1; i < s.size(); ++i) dims.push_back(s[i] < 0 ? 1 : s[i]);
  return checked_numel(dims, detail::node_label(node) + ": value '" + value + "'");
}

const Shape& shape_of(const Graph& g, const std::string& name, const Node& node) {
  if (const Tensor* t = g.find_initializer(name)) return t->shape;
  auto it = g.value_info.find(name);
  if (it != g.value_info.end()) return it->second.shape;
  for (const auto& in : g.inputs) {
    if (in.name == name) return in.shape;
  }
  throw std::runtime_error(detail::node_label(node) + ": no shape known for '" + name +
                           "' (run infer_shapes after editing the graph)");
}

std::string layer_name(const std::string& weight_name, const Node& node) {
  const std::string suffix = ".weight";
  if (weight_name.size() > suffix.size() &&
      weight_name.compare(weight_name.size() - suffix.size(), suffix.size(), suffix) == 0) {
    return weight_name.substr(0, weight_name.size() - suffix.size());
  }
  return node.name;
}

}  // namespace

LayerTable build_layer_table(const Graph& graph) {
  LayerTable table;
  for (const auto& [name, t] : graph.initializers) {
    if (t.is_float()) table.total_params += t.numel();
  }
  for (size_t i = 0; i < graph.nodes.size(); ++i) {
    const Node& node = graph.nodes[i];
    const bool conv = node.op_type == "Conv";
    const bool gemm = node.op_type == "Gemm";
    const bool matmul = node.op_type == "MatMul";
    if (!conv && !gemm && !matmul) continue;
    if (node.inputs.size() < 2) continue;
    const Shape& in_shape = shape_of(graph, node.inputs[0], node);
    const Shape& out_shape = shape_of(graph, node.outputs[0], node);
    const Tensor* w = graph.find_initializer(node.inputs[1]);
    // Gemm with a constant A and an activation B (rare) is not a layer either.
    if (!w || !w->is_float()) {
      // MACs still count towards the model total.
      if (matmul || gemm) {
        const Shape& b = shape_of(graph, node.inputs[1], node);
        const int64_t macs = checked_numel(
            {per_sample(out_shape, node, node.outputs[0]), b.size() >= 2 ? b[b.size() - 2] : 1},
            detail::node_label(node) + ": MACs");
        if (__builtin_add_overflow(table.total_macs, macs, &table.total_macs))
          throw std::runtime_error(detail::node_label(node) +
                                   ": the model's total MACs exceed a 64-bit count");
      }
      continue;
    }
    LayerInfo L;
    L.op = node.op_type;
    L.node_index = i;
    L.weight_name = node.inputs[1];
    L.name = layer_name(L.weight_name, node);
    L.weight_shape = w->shape;
    const std::string what = detail::node_label(node) + ": weight '" + L.weight_name + "'";
    L.weight_elements = checked_numel(w->shape, what);
    if (node.inputs.size() > 2 && !node.inputs[2].empty()) {
      if (const Tensor* b = graph.find_initializer(node.inputs[2]); b && b->is_float()) {
        L.bias_name = node.inputs[2];
      }
    }
    L.params = L.weight_elements;
    if (!L.bias_name.empty()) L.params += graph.find_initializer(L.bias_name)->numel();
    L.input_elements = per_sample(in_shape, node, node.inputs[0]);
    L.output_elements = per_sample(out_shape, node, node.outputs[0]);
    const std::string macs_what = detail::node_label(node) + ": MACs of output '" +
                                  node.outputs[0] + "' " + shape_to_string(out_shape);
    if (conv) {
      L.groups = node.attr_int("group", 1);
      L.out_channels = w->shape[0];
      L.in_channels = checked_numel({w->shape[1], L.groups}, what);
      L.kernel_elements = checked_numel(Shape(w->shape.begin() + 2, w->shape.end()), what);
      L.reduction_length = checked_numel({w->shape[1], L.kernel_elements}, what);
      Shape positions;
      for (size_t d = 2; d < out_shape.size(); ++d)
        positions.push_back(std::max<int64_t>(out_shape[d], 1));
      L.output_positions = checked_numel(positions, macs_what);
      L.depthwise = L.groups > 1 && w->shape[1] == 1 && L.groups == L.in_channels;
      L.macs = checked_numel({L.out_channels, L.output_positions, L.reduction_length}, macs_what);
    } else if (gemm) {
      if (w->shape.size() != 2) {
        throw std::runtime_error(detail::node_label(node) + ": weight must be 2-D");
      }
      L.weight_transposed = node.attr_int("transB", 0) == 0;
      L.out_channels = L.weight_transposed ? w->shape[1] : w->shape[0];
      L.in_channels = L.weight_transposed ? w->shape[0] : w->shape[1];
      L.reduction_length = L.in_channels;
      L.output_positions = 1;
      L.macs = checked_numel({L.in_channels, L.out_channels}, macs_what);
    } else {
      if (w->shape.size() != 2) {
        throw std::runtime_error(detail::node_label(node) + ": only 2-D MatMul weights are layers");
      }
      L.weight_transposed = true;
      L.in_channels = w->shape[0];
      L.out_channels = w->shape[1];
      L.reduction_length = L.in_channels;
      // Rows per sample: every dim of A between the batch and the reduction dim.
      Shape rows;
      for (size_t d = 1; d + 1 < in_shape.size(); ++d)
        rows.push_back(in_shape[d] < 0 ? 1 : in_shape[d]);
      L.output_positions = checked_numel(rows, macs_what);
      L.macs = checked_numel({L.output_positions, L.in_channels, L.out_channels}, macs_what);
    }
    if (__builtin_add_overflow(table.total_macs, L.macs, &table.total_macs))
      throw std::runtime_error(macs_what + ": the model's total MACs exceed a 64-bit count");
    table.layers.push_back(std::move(L));
  }
  return table;
}

int find_layer(const LayerTable& table, const std::string& name) {
  for (size_t i = 0; i < table.layers.size(); ++i) {
    if (table.layers[i].name == name) return static_cast<int>(i);
  }
  return -1;
}

}  // namespace compsearch::model
