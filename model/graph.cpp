// Graph IR helpers, constant folding and shape inference. Each op's inference function is in the
// op table (op_registry.h, defined beside its kernel in ops_*.cpp); this file runs them in node
// order and folds what they find constant.
#include "model/graph.h"

#include <algorithm>
#include <limits>
#include <set>
#include <stdexcept>
#include <unordered_map>

#include "model/node_eval.h"
#include "model/op_kernels.h"
#include "model/op_util.h"

namespace compsearch::model {

using detail::node_label;

int64_t Node::attr_int(const std::string& key, int64_t fallback) const {
  auto it = attributes.find(key);
  return it == attributes.end() ? fallback : it->second.i;
}

float Node::attr_float(const std::string& key, float fallback) const {
  auto it = attributes.find(key);
  return it == attributes.end() ? fallback : it->second.f;
}

std::string Node::attr_string(const std::string& key, const std::string& fallback) const {
  auto it = attributes.find(key);
  return it == attributes.end() ? fallback : it->second.s;
}

std::vector<int64_t> Node::attr_ints(const std::string& key, std::vector<int64_t> fallback) const {
  auto it = attributes.find(key);
  return it == attributes.end() ? fallback : it->second.ints;
}

const Tensor* Graph::find_initializer(const std::string& value_name) const {
  auto it = initializers.find(value_name);
  return it == initializers.end() ? nullptr : &it->second;
}

Tensor* Graph::find_initializer(const std::string& value_name) {
  auto it = initializers.find(value_name);
  return it == initializers.end() ? nullptr : &it->second;
}

std::optional<size_t> Graph::producer(const std::string& value_name) const {
  for (size_t i = 0; i < nodes.size(); ++i) {
    for (const auto& o : nodes[i].outputs) {
      if (o == value_name) return i;
    }
  }
  return std::nullopt;
}

std::vector<size_t> Graph::consumers(const std::string& value_name) const {
  std::vector<size_t> out;
  for (size_t i = 0; i < nodes.size(); ++i) {
    for (const auto& in : nodes[i].inputs) {
      if (in == value_name) {
        out.push_back(i);
        break;
      }
    }
  }
  return out;
}

namespace {

using detail::kUnknown;

bool fully_known(const std::vector<int64_t>& v) {
  return std::none_of(v.begin(), v.end(), [](int64_t d) { return d == kUnknown; });
}

// A DequantizeLinear of an integer initializer (a QDQ file's weight) keeps its integers beside the
// float value it folds to.
void record_dequantized_origin(Graph& graph, const Node& node,
                               const std::vector<const Tensor*>& ins) {
  const Tensor* q = ins.size() > 0 ? ins[0] : nullptr;
  const Tensor* scale = ins.size() > 1 ? ins[1] : nullptr;
  if (!q || !scale || !graph.find_initializer(node.inputs[0])) return;
  if (q->dtype != DType::kInt8 && q->dtype != DType::kUInt8) return;
  if (!scale->is_float()) return;
  DequantizedOrigin origin;
  origin.integers = *q;
  origin.scale = *scale;
  if (ins.size() > 2 && ins[2]) origin.zero_point = *ins[2];
  const int64_t rank = static_cast<int64_t>(q->shape.size());
  origin.axis = node.attr_int("axis", 1);
  if (origin.axis < 0) origin.axis += rank;
  graph.dequantized_origins[node.outputs[0]] = std::move(origin);
}

// One pass over the nodes: shapes for every value; with `fold`, nodes whose inputs are all
// known are evaluated and replaced by initializers.
void analyze(Graph& graph, bool fold) {
  detail::ShapeInference a(graph);
  for (const auto& in : graph.inputs) a.info[in.name] = in;
  for (const auto& [name, t] : graph.initializers) a.info[name] = ValueInfo{name, t.dtype, t.shape};
  std::vector<Node> kept;
  kept.reserve(graph.nodes.size());
  for (const Node& node : graph.nodes) {
    detail::op_spec(node).infer(a, node, graph.opset_version);
    if (!fold) continue;
    bool all_const = true;
    std::vector<const Tensor*> ins;
    for (const auto& name : node.inputs) {
      if (name.empty()) {
        ins.push_back(nullptr);
        continue;
      }
      const Tensor* t = a.constant(name);
      if (!t) {
        all_const = false;
        break;
      }
      ins.push_back(t);
    }
    bool folded = false;
    if (node.op_type == "Constant") {
      folded = true;  // infer_node already stored its value
    } else if (all_const && !node.inputs.empty()) {
      if (node.op_type == "DequantizeLinear" && node.outputs.size() == 1)
        record_dequantized_origin(graph, node, ins);
      auto outs = detail::evaluate_node(node, ins, graph.opset_version);
      for (size_t i = 0; i < outs.size() && i < node.outputs.size(); ++i) {
        if (!node.outputs[i].empty()) a.constants[node.outputs[i]] = std::move(outs[i]);
      }
      folded = true;
    } else if (node.outputs.size() == 1 && a.partial.count(node.outputs[0]) &&
               fully_known(a.partial[node.outputs[0]])) {
      // e.g. Gather(Shape(x), 1): the channel count is static even when the batch is not.
      const auto& v = a.partial[node.outputs[0]];
      a.constants[node.outputs[0]] = Tensor::ints(a.info[node.outputs[0]].shape, v);
      folded = true;
    }
    if (!folded) kept.push_back(node);
  }
  if (fold) {
    std::set<std::string> graph_outputs;
    for (const auto& o : graph.outputs) graph_outputs.insert(o.name);
    std::set<std::string> used;
    for (const Node& n : kept) used.insert(n.inputs.begin(), n.inputs.end());
    used.insert(graph_outputs.begin(), graph_outputs.end());
    for (auto& [name, t] : a.constants) {
      if (used.count(name)) graph.initializers[name] = t;
    }
    // Initializers nothing reads any more (the sources of folded subgraphs) would inflate the
    // parameter count.
    for (auto it = graph.initializers.begin(); it != graph.initializers.end();) {
      it = used.count(it->first) ? std::next(it) : graph.initializers.erase(it);
    }
    // Drop nodes whose results nobody reads (a Shape left behind by a folded Gather).
    std::set<std::string> live = graph_outputs;
    std::vector<Node> alive;
    for (auto it = kept.rbegin(); it != kept.rend(); ++it) {
      const bool needed = std::any_of(it->outputs.begin(), it->outputs.end(),
                                      [&](const std::string& o) { return live.count(o) != 0; });
      if (!needed) continue;
      live.insert(it->inputs.begin(), it->inputs.end());
      alive.push_back(std::move(*it));
    }
    std::reverse(alive.begin(), alive.end());
    graph.nodes = std::move(alive);
    for (auto it = graph.initializers.begin(); it != graph.initializers.end();) {
      it = live.count(it->first) ? std::next(it) : graph.initializers.erase(it);
    }
    for (auto it = graph.dequantized_origins.begin(); it != graph.dequantized_origins.end();) {
      it =
          graph.initializers.count(it->first) ? std::next(it) : graph.dequantized_origins.erase(it);
    }
  }
  graph.value_info.clear();
  for (auto& [name, vi] : a.info) {
    if (!graph.initializers.count(name)) graph.value_info[name] = vi;
  }
  for (auto& out : graph.outputs) {
    auto it = a.info.find(out.name);
    if (it == a.info.end()) {
      throw std::runtime_error("graph output '" + out.name + "' is not produced by any node");
    }
    if (!graph.initializers.count(out.name)) {
      out.shape = it->second.shape;
      out.dtype = it->second.dtype;
    }
  }
}

}  // namespace

void infer_shapes(Graph& graph) { analyze(graph, false); }

namespace detail {
// Used by the importer after it checked every op: folds constants, then infers shapes.
void fold_and_infer(Graph& graph) {
  analyze(graph, true);
  analyze(graph, false);
}
}  // namespace detail

}  // namespace compsearch::model
