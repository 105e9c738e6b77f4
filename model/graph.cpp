// Graph IR helpers, the supported op list, constant folding and shape inference.
//
// Shape inference tracks, next to each value's shape, the integer contents of small 1-D int64
// values where known (the Shape -> Gather -> Unsqueeze -> Concat -> Reshape chains of PyTorch
// exports). The batch dimension (dim 0 of a Shape op's input) is kept symbolic there, so folding
// never freezes the batch size into a Reshape.
#include "model/graph.h"

#include <algorithm>
#include <limits>
#include <set>
#include <stdexcept>
#include <unordered_map>

#include "model/node_eval.h"
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

const std::vector<std::string>& supported_ops() {
  static const std::vector<std::string> ops = {"Abs",         "Add",
                                               "AveragePool", "BatchNormalization",
                                               "Cast",        "Clip",
                                               "Concat",      "Constant",
                                               "Conv",        "DequantizeLinear",
                                               "Div",         "Dropout",
                                               "Flatten",     "Gather",
                                               "Gemm",        "GlobalAveragePool",
                                               "HardSigmoid", "HardSwish",
                                               "Identity",    "MatMul",
                                               "MaxPool",     "Mul",
                                               "Pad",         "QuantizeLinear",
                                               "Relu",        "Reshape",
                                               "Shape",       "Sigmoid",
                                               "Slice",       "Softmax",
                                               "Squeeze",     "Sub",
                                               "Tanh",        "Transpose",
                                               "Unsqueeze"};
  return ops;
}

namespace {

constexpr int64_t kUnknown = std::numeric_limits<int64_t>::min();

struct Analysis {
  const Graph& graph;
  std::unordered_map<std::string, ValueInfo> info;                // shape + dtype of every value
  std::unordered_map<std::string, Tensor> constants;              // fully known values
  std::unordered_map<std::string, std::vector<int64_t>> partial;  // 1-D ints, kUnknown holes

  explicit Analysis(const Graph& g) : graph(g) {}

  const Tensor* constant(const std::string& name) const {
    if (name.empty()) return nullptr;
    auto it = constants.find(name);
    if (it != constants.end()) return &it->second;
    return graph.find_initializer(name);
  }
  bool has_info(const std::string& name) const { return info.count(name) != 0; }
  const ValueInfo& value(const Node& node, size_t input) const {
    if (input >= node.inputs.size() || node.inputs[input].empty()) {
      throw std::runtime_error(node_label(node) + ": missing required input #" +
                               std::to_string(input));
    }
    auto it = info.find(node.inputs[input]);
    if (it == info.end()) {
      throw std::runtime_error(node_label(node) + ": input '" + node.inputs[input] +
                               "' is not produced by any earlier node, initializer or graph "
                               "input (file truncated or corrupt, or nodes not in topological "
                               "order)");
    }
    return it->second;
  }
  // Integer contents of input `i` if known, possibly with kUnknown holes.
  std::optional<std::vector<int64_t>> ints_of(const Node& node, size_t i) const {
    if (i >= node.inputs.size() || node.inputs[i].empty()) return std::nullopt;
    if (const Tensor* t = constant(node.inputs[i]); t && !t->is_float()) return t->i64;
    auto it = partial.find(node.inputs[i]);
    if (it != partial.end()) return it->second;
    return std::nullopt;
  }
};

Shape shape_after_reshape(const Node& node, const Shape& in, std::vector<int64_t> target) {
  const bool allowzero = node.attr_int("allowzero", 0) != 0;
  Shape out(target.size());
  int infer_at = -1;
  int64_t known_out = 1;
  bool out_unknown = false;
  for (size_t i = 0; i < target.size(); ++i) {
    int64_t d = target[i];
    if (d == kUnknown) {
      // A batch-derived entry: the matching input dimension (dim 0) when it lines up.
      d = (i == 0 && !in.empty()) ? in[0] : -2;
    } else if (d == 0 && !allowzero) {
      if (i >= in.size()) {
        throw std::runtime_error(node_label(node) + ": shape entry 0 at position " +
                                 std::to_string(i) + " has no input dimension to copy");
      }
      d = in[i];
    } else if (d == -1) {
      if (infer_at >= 0) throw std::runtime_error(node_label(node) + ": more than one -1 in shape");
      infer_at = static_cast<int>(i);
      continue;
    }
    out[i] = d;
    if (d < 0)
      out_unknown = true;
    else
      known_out *= d;
  }
  int64_t known_in = 1;
  int unknown_in = 0;
  for (int64_t d : in) {
    if (d < 0)
      ++unknown_in;
    else
      known_in *= d;
  }
  if (infer_at >= 0) {
    if (unknown_in == 0 && !out_unknown) {
      if (known_out == 0 || known_in % known_out != 0) {
        throw std::runtime_error(node_label(node) + ": cannot reshape " + shape_to_string(in) +
                                 " to " + shape_to_string(target));
      }
      out[infer_at] = known_in / known_out;
    } else if (unknown_in == 1 && out_unknown && known_out != 0 && known_in % known_out == 0) {
      out[infer_at] = known_in / known_out;  // the unknown (batch) dims cancel
    } else {
      out[infer_at] = -1;
    }
  } else if (unknown_in == 0 && !out_unknown && known_in != known_out) {
    throw std::runtime_error(node_label(node) + ": cannot reshape " + shape_to_string(in) + " (" +
                             std::to_string(known_in) + " elements) to " + shape_to_string(target));
  }
  for (auto& d : out) {
    if (d < 0) d = -1;
  }
  return out;
}

std::vector<int64_t> axes_input_or_attr(const Analysis& a, const Node& node, int64_t opset,
                                        size_t input_index) {
  if (opset >= 13 && node.inputs.size() > input_index && !node.inputs[input_index].empty()) {
    auto v = a.ints_of(node, input_index);
    if (!v) {
      throw std::runtime_error(node_label(node) + ": axes must be a constant");
    }
    return *v;
  }
  return node.attr_ints("axes", {});
}

// Shapes (and known integer contents) of one node's outputs.
void infer_node(Analysis& a, const Node& node, int64_t opset) {
  const std::string& op = node.op_type;
  auto set = [&](size_t out, Shape shape, DType dtype) {
    if (out >= node.outputs.size() || node.outputs[out].empty()) return;
    a.info[node.outputs[out]] = ValueInfo{node.outputs[out], dtype, std::move(shape)};
  };
  if (op == "Constant") {
    auto it = node.attributes.find("value");
    if (it == node.attributes.end() || !it->second.t) {
      if (node.has_attr("value_float")) {
        a.constants[node.outputs[0]] = Tensor::floats({}, {node.attr_float("value_float", 0)});
      } else if (node.has_attr("value_int")) {
        a.constants[node.outputs[0]] = Tensor::ints({}, {node.attr_int("value_int", 0)});
      } else if (node.has_attr("value_ints")) {
        auto v = node.attr_ints("value_ints", {});
        a.constants[node.outputs[0]] = Tensor::ints({static_cast<int64_t>(v.size())}, v);
      } else if (node.has_attr("value_floats")) {
        auto v = node.attributes.at("value_floats").floats;
        a.constants[node.outputs[0]] = Tensor::floats({static_cast<int64_t>(v.size())}, v);
      } else {
        throw std::runtime_error(node_label(node) + ": needs a 'value' tensor attribute");
      }
    } else {
      a.constants[node.outputs[0]] = *it->second.t;
    }
    const Tensor& t = a.constants[node.outputs[0]];
    set(0, t.shape, t.dtype);
    return;
  }
  const ValueInfo& x = a.value(node, 0);
  const Shape& xs = x.shape;
  if (op == "Conv") {
    const ValueInfo& w = a.value(node, 1);
    if (xs.size() < 3 || w.shape.size() != xs.size()) {
      throw std::runtime_error(node_label(node) + ": input " + shape_to_string(xs) +
                               " and weight " + shape_to_string(w.shape) +
                               " must both be [N, C, spatial...]");
    }
    const int64_t groups = node.attr_int("group", 1);
    if (xs[1] >= 0 && xs[1] != w.shape[1] * groups) {
      throw std::runtime_error(node_label(node) + ": input has " + std::to_string(xs[1]) +
                               " channels, weight " + shape_to_string(w.shape) + " with group " +
                               std::to_string(groups) + " expects " +
                               std::to_string(w.shape[1] * groups));
    }
    std::vector<int64_t> spatial(xs.begin() + 2, xs.end());
    std::vector<int64_t> kernel(w.shape.begin() + 2, w.shape.end());
    Shape out = {xs[0], w.shape[0]};
    if (std::all_of(spatial.begin(), spatial.end(), [](int64_t d) { return d >= 0; })) {
      auto g = detail::window_geometry(node, spatial, kernel);
      if (spatial.size() == 2) out.push_back(g.out_h);
      out.push_back(g.out_w);
    } else {
      out.insert(out.end(), spatial.size(), -1);
    }
    set(0, out, DType::kFloat32);
  } else if (op == "MaxPool" || op == "AveragePool") {
    if (xs.size() < 3) throw std::runtime_error(node_label(node) + ": input must be [N, C, ...]");
    auto kernel = node.attr_ints("kernel_shape", {});
    std::vector<int64_t> spatial(xs.begin() + 2, xs.end());
    auto g = detail::window_geometry(node, spatial, kernel);
    Shape out = {xs[0], xs[1]};
    if (spatial.size() == 2) out.push_back(g.out_h);
    out.push_back(g.out_w);
    set(0, out, DType::kFloat32);
  } else if (op == "GlobalAveragePool") {
    Shape out = xs;
    for (size_t i = 2; i < out.size(); ++i) out[i] = 1;
    set(0, out, DType::kFloat32);
  } else if (op == "Gemm") {
    const Shape& bs = a.value(node, 1).shape;
    if (xs.size() != 2 || bs.size() != 2) {
      throw std::runtime_error(node_label(node) + ": A " + shape_to_string(xs) + " and B " +
                               shape_to_string(bs) + " must be 2-D");
    }
    const bool ta = node.attr_int("transA", 0) != 0, tb = node.attr_int("transB", 0) != 0;
    const int64_t k1 = ta ? xs[0] : xs[1], k2 = tb ? bs[1] : bs[0];
    if (k1 >= 0 && k2 >= 0 && k1 != k2) {
      throw std::runtime_error(node_label(node) + ": A " + shape_to_string(xs) + " and B " +
                               shape_to_string(bs) + " have different inner sizes");
    }
    set(0, {ta ? xs[1] : xs[0], tb ? bs[0] : bs[1]}, DType::kFloat32);
  } else if (op == "MatMul") {
    const Shape& bs = a.value(node, 1).shape;
    if (xs.size() < 2 || bs.size() < 2) {
      throw std::runtime_error(node_label(node) + ": operands " + shape_to_string(xs) + " and " +
                               shape_to_string(bs) + " must have rank >= 2");
    }
    const int64_t k1 = xs.back(), k2 = bs[bs.size() - 2];
    if (k1 >= 0 && k2 >= 0 && k1 != k2) {
      throw std::runtime_error(node_label(node) + ": operands " + shape_to_string(xs) + " and " +
                               shape_to_string(bs) + " have different inner sizes");
    }
    Shape ab(xs.begin(), xs.end() - 2), bb(bs.begin(), bs.end() - 2);
    Shape out = detail::broadcast_shapes(ab, bb, node);
    out.push_back(xs[xs.size() - 2]);
    out.push_back(bs.back());
    set(0, out, DType::kFloat32);
  } else if (op == "Add" || op == "Sub" || op == "Mul" || op == "Div") {
    const ValueInfo& y = a.value(node, 1);
    set(0, detail::broadcast_shapes(xs, y.shape, node), x.dtype);
  } else if (op == "Pad") {
    std::vector<int64_t> pads;
    if (opset >= 11) {
      auto v = a.ints_of(node, 1);
      if (!v) throw std::runtime_error(node_label(node) + ": pads must be a constant");
      pads = *v;
    } else {
      pads = node.attr_ints("pads", {});
    }
    if (pads.size() != 2 * xs.size()) {
      throw std::runtime_error(node_label(node) + ": " + std::to_string(pads.size()) +
                               " pads for rank " + std::to_string(xs.size()));
    }
    Shape out = xs;
    for (size_t i = 0; i < xs.size(); ++i) {
      if (xs[i] >= 0) out[i] = xs[i] + pads[i] + pads[i + xs.size()];
    }
    set(0, out, x.dtype);
  } else if (op == "Relu" || op == "Abs" || op == "Clip" || op == "Sigmoid" ||
             op == "HardSigmoid" || op == "HardSwish" || op == "Tanh" ||
             op == "BatchNormalization" || op == "Softmax" || op == "Identity" || op == "Dropout") {
    set(0, xs, x.dtype);
    if (op == "Identity") {
      if (auto v = a.ints_of(node, 0)) a.partial[node.outputs[0]] = *v;
    }
  } else if (op == "Flatten") {
    const int64_t rank = static_cast<int64_t>(xs.size());
    int64_t axis = node.attr_int("axis", 1);
    if (axis < 0) axis += rank;
    if (axis < 0 || axis > rank) {
      throw std::runtime_error(node_label(node) + ": axis out of range for " + shape_to_string(xs));
    }
    int64_t outer = 1, inner = 1;
    for (int64_t i = 0; i < rank; ++i) {
      int64_t& p = i < axis ? outer : inner;
      p = (xs[i] < 0 || p < 0) ? -1 : p * xs[i];
    }
    set(0, {outer, inner}, x.dtype);
  } else if (op == "Reshape") {
    auto target = a.ints_of(node, 1);
    if (!target) {
      throw std::runtime_error(node_label(node) +
                               ": the target shape must be computable at load time (a constant "
                               "or a Shape/Gather/Unsqueeze/Concat chain)");
    }
    set(0, shape_after_reshape(node, xs, *target), x.dtype);
  } else if (op == "Transpose") {
    const int64_t rank = static_cast<int64_t>(xs.size());
    std::vector<int64_t> perm = node.attr_ints("perm", {});
    if (perm.empty()) {
      for (int64_t i = rank - 1; i >= 0; --i) perm.push_back(i);
    }
    if (static_cast<int64_t>(perm.size()) != rank) {
      throw std::runtime_error(node_label(node) + ": perm has " + std::to_string(perm.size()) +
                               " entries for rank " + std::to_string(rank));
    }
    Shape out(rank);
    for (int64_t i = 0; i < rank; ++i) out[i] = xs[detail::normalize_axis(perm[i], rank, node)];
    set(0, out, x.dtype);
  } else if (op == "Concat") {
    const int64_t rank = static_cast<int64_t>(xs.size());
    const int64_t axis = detail::normalize_axis(node.attr_int("axis", 0), rank, node);
    Shape out = xs;
    std::vector<int64_t> values;
    bool values_known = rank == 1;
    for (size_t i = 0; i < node.inputs.size(); ++i) {
      const Shape& s = a.value(node, i).shape;
      if (static_cast<int64_t>(s.size()) != rank) {
        throw std::runtime_error(node_label(node) + ": inputs of different ranks " +
                                 shape_to_string(xs) + " and " + shape_to_string(s));
      }
      if (i > 0) out[axis] = (out[axis] < 0 || s[axis] < 0) ? -1 : out[axis] + s[axis];
      if (values_known) {
        auto v = a.ints_of(node, i);
        if (v)
          values.insert(values.end(), v->begin(), v->end());
        else
          values_known = false;
      }
    }
    set(0, out, x.dtype);
    if (values_known && x.dtype != DType::kFloat32) a.partial[node.outputs[0]] = values;
  } else if (op == "Shape") {
    const int64_t rank = static_cast<int64_t>(xs.size());
    int64_t start = node.attr_int("start", 0), end = node.attr_int("end", rank);
    if (start < 0) start += rank;
    if (end < 0) end += rank;
    start = std::clamp<int64_t>(start, 0, rank);
    end = std::clamp<int64_t>(end, start, rank);
    std::vector<int64_t> dims;
    for (int64_t i = start; i < end; ++i) {
      // dim 0 is the batch: never frozen into a constant (see the file comment).
      dims.push_back(i == 0 || xs[i] < 0 ? kUnknown : xs[i]);
    }
    set(0, {static_cast<int64_t>(dims.size())}, DType::kInt64);
    a.partial[node.outputs[0]] = dims;
  } else if (op == "Gather") {
    const ValueInfo& idx = a.value(node, 1);
    const int64_t rank = static_cast<int64_t>(xs.size());
    const int64_t axis = detail::normalize_axis(node.attr_int("axis", 0), rank, node);
    Shape out(xs.begin(), xs.begin() + axis);
    out.insert(out.end(), idx.shape.begin(), idx.shape.end());
    out.insert(out.end(), xs.begin() + axis + 1, xs.end());
    set(0, out, x.dtype);
    auto data = a.ints_of(node, 0);
    const Tensor* ind = a.constant(node.inputs[1]);
    if (data && ind && rank == 1) {
      std::vector<int64_t> v;
      for (int64_t i : ind->i64) {
        const int64_t j = i < 0 ? i + static_cast<int64_t>(data->size()) : i;
        if (j < 0 || j >= static_cast<int64_t>(data->size())) {
          throw std::runtime_error(node_label(node) + ": index " + std::to_string(i) +
                                   " out of range");
        }
        v.push_back((*data)[j]);
      }
      a.partial[node.outputs[0]] = v;
    }
  } else if (op == "Unsqueeze") {
    auto axes = axes_input_or_attr(a, node, opset, 1);
    const int64_t rank = static_cast<int64_t>(xs.size() + axes.size());
    std::vector<bool> inserted(rank, false);
    for (int64_t ax : axes) inserted[detail::normalize_axis(ax, rank, node)] = true;
    Shape out;
    size_t j = 0;
    for (int64_t i = 0; i < rank; ++i) out.push_back(inserted[i] ? 1 : xs[j++]);
    set(0, out, x.dtype);
    if (auto v = a.ints_of(node, 0)) a.partial[node.outputs[0]] = *v;
  } else if (op == "Squeeze") {
    auto axes = axes_input_or_attr(a, node, opset, 1);
    const int64_t rank = static_cast<int64_t>(xs.size());
    std::vector<bool> removed(rank, false);
    if (axes.empty()) {
      for (int64_t i = 0; i < rank; ++i) removed[i] = xs[i] == 1;
    }
    for (int64_t ax : axes) removed[detail::normalize_axis(ax, rank, node)] = true;
    Shape out;
    for (int64_t i = 0; i < rank; ++i) {
      if (!removed[i]) out.push_back(xs[i]);
    }
    set(0, out, x.dtype);
    if (auto v = a.ints_of(node, 0)) a.partial[node.outputs[0]] = *v;
  } else if (op == "Slice") {
    auto starts = a.ints_of(node, 1), ends = a.ints_of(node, 2);
    if (!starts || !ends) {
      throw std::runtime_error(node_label(node) + ": starts and ends must be constants");
    }
    const int64_t rank = static_cast<int64_t>(xs.size());
    std::vector<int64_t> axes, steps(starts->size(), 1);
    if (auto v = a.ints_of(node, 3))
      axes = *v;
    else
      for (int64_t i = 0; i < static_cast<int64_t>(starts->size()); ++i) axes.push_back(i);
    if (auto v = a.ints_of(node, 4)) steps = *v;
    Shape out = xs;
    std::vector<int64_t> lo(rank, 0), st(rank, 1);
    for (size_t i = 0; i < axes.size(); ++i) {
      const int64_t ax = detail::normalize_axis(axes[i], rank, node);
      const int64_t dim = xs[ax];
      if (dim < 0) {
        out[ax] = -1;
        continue;
      }
      const int64_t step = steps[i];
      if (step == 0) throw std::runtime_error(node_label(node) + ": step 0");
      int64_t s = (*starts)[i], e = (*ends)[i];
      if (s < 0) s += dim;
      if (e < 0) e += dim;
      if (step > 0) {
        s = std::clamp<int64_t>(s, 0, dim);
        e = std::clamp<int64_t>(e, 0, dim);
        out[ax] = e > s ? (e - s + step - 1) / step : 0;
      } else {
        s = std::clamp<int64_t>(s, -1, dim - 1);
        e = std::clamp<int64_t>(e, -1, dim - 1);
        out[ax] = s > e ? (s - e - step - 1) / (-step) : 0;
      }
      lo[ax] = s;
      st[ax] = step;
    }
    set(0, out, x.dtype);
    auto data = a.ints_of(node, 0);
    if (data && rank == 1 && out[0] >= 0) {
      std::vector<int64_t> v;
      for (int64_t i = 0; i < out[0]; ++i) v.push_back((*data)[lo[0] + i * st[0]]);
      a.partial[node.outputs[0]] = v;
    }
  } else if (op == "Cast") {
    const int64_t to = node.attr_int("to", 1);
    // TensorProto.DataType: 1 float, 10 float16, 11 double, 6 int32, 7 int64, 3 int8, 2 uint8
    DType dt = DType::kInt64;
    if (to == 1 || to == 11)
      dt = DType::kFloat32;
    else if (to == 10)
      dt = DType::kFloat16;
    else if (to == 9)
      dt = DType::kBool;
    else if (to == 6)
      dt = DType::kInt32;
    else if (to == 3)
      dt = DType::kInt8;
    else if (to == 2)
      dt = DType::kUInt8;
    set(0, xs, dt);
    if (dt != DType::kFloat32 && dt != DType::kFloat16) {
      if (auto v = a.ints_of(node, 0)) a.partial[node.outputs[0]] = *v;
    }
  } else if (op == "QuantizeLinear" || op == "DequantizeLinear") {
    // The integer type is the zero point's (uint8 when it is omitted). Scale layout and axis are
    // checked where the node runs (folding or the executor), with the concrete shapes.
    DType dt = DType::kFloat32;
    if (op == "QuantizeLinear") {
      dt = DType::kUInt8;
      if (node.inputs.size() > 2 && !node.inputs[2].empty()) dt = a.value(node, 2).dtype;
      if (dt != DType::kUInt8 && dt != DType::kInt8) {
        throw std::runtime_error(node_label(node) + ": zero point must be int8 or uint8, got " +
                                 dtype_name(dt));
      }
    }
    set(0, xs, dt);
  } else {
    throw std::runtime_error(node_label(node) + ": no shape inference for this op");
  }
}

bool fully_known(const std::vector<int64_t>& v) {
  return std::none_of(v.begin(), v.end(), [](int64_t d) { return d == kUnknown; });
}

// One pass over the nodes: shapes for every value; with `fold`, nodes whose inputs are all
// known are evaluated and replaced by initializers.
void analyze(Graph& graph, bool fold) {
  Analysis a(graph);
  for (const auto& in : graph.inputs) a.info[in.name] = in;
  for (const auto& [name, t] : graph.initializers) a.info[name] = ValueInfo{name, t.dtype, t.shape};
  std::vector<Node> kept;
  kept.reserve(graph.nodes.size());
  for (const Node& node : graph.nodes) {
    infer_node(a, node, graph.opset_version);
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
