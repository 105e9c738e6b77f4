// Small hand-built graphs for channel-pruning propagation (model/channel_propagation.h): a
// convolution `conv1`, a chain of ops chosen by the test, and a consumer layer `head`. Shared by
// the model tests (which consumers the rule finds) and the hardware-model tests (compressors and
// hardware models agree on them).
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "model/graph.h"
#include "model/layer_table.h"
#include "tests/compressors/test_graphs.h"

namespace compsearch::testing {

inline model::Attribute float_attr(float v) {
  model::Attribute a;
  a.kind = model::Attribute::Kind::kFloat;
  a.f = v;
  return a;
}

// Adds nodes reading `value` (conv1's output, [1, 4, 4, 4]) and returns the value `head` reads.
using ChainBuilder = std::function<std::string(model::Graph& g, const std::string& value)>;

// x[1,2,4,4] -> conv1 (4 out, 3x3, pad 1, bias) -> chain -> head -> y. `head` is a 1x1 Conv with 3
// outputs when the chain ends on a rank-4 value, else a Gemm (transB = 1, 3 outputs, bias) over
// the features of the rank-2 value. Channel o of conv1 has L2 norm growing with o (channels 0 and
// 1 are the ones a 50% channel pruning removes).
inline model::Graph channel_chain(const ChainBuilder& chain) {
  model::Graph g;
  g.name = "channel_chain";
  g.opset_version = 13;
  g.inputs = {model::ValueInfo{"x", model::DType::kFloat32, {1, 2, 4, 4}}};
  std::vector<float> w(4 * 2 * 3 * 3);
  for (size_t i = 0; i < w.size(); ++i)
    w[i] = 0.1f * static_cast<float>(i / 18 + 1) * (i % 2 ? -1.0f : 1.0f);
  g.initializers["conv1.weight"] = model::Tensor::floats({4, 2, 3, 3}, w);
  g.initializers["conv1.bias"] = model::Tensor::floats({4}, {0.1f, 0.2f, 0.3f, 0.4f});
  auto conv = node("Conv", {"x", "conv1.weight", "conv1.bias"}, {"c1"});
  conv.attributes["kernel_shape"] = ints_attr({3, 3});
  conv.attributes["pads"] = ints_attr({1, 1, 1, 1});
  g.nodes.push_back(conv);
  const std::string last = chain(g, "c1");
  model::infer_shapes(g);
  const model::Shape shape = g.value_info.at(last).shape;
  if (shape.size() == 4) {
    const int64_t in = shape[1];
    std::vector<float> hw(3 * in);
    for (size_t i = 0; i < hw.size(); ++i) hw[i] = 0.01f * static_cast<float>(i % 5) - 0.02f;
    g.initializers["head.weight"] = model::Tensor::floats({3, in, 1, 1}, hw);
    auto head = node("Conv", {last, "head.weight"}, {"y"});
    head.attributes["kernel_shape"] = ints_attr({1, 1});
    g.nodes.push_back(head);
    g.outputs = {model::ValueInfo{"y", model::DType::kFloat32, {1, 3, shape[2], shape[3]}}};
  } else {
    const int64_t in = shape.at(1);
    std::vector<float> hw(3 * in);
    for (size_t i = 0; i < hw.size(); ++i) hw[i] = 0.01f * static_cast<float>(i % 7) - 0.02f;
    g.initializers["head.weight"] = model::Tensor::floats({3, in}, hw);
    g.initializers["head.bias"] = model::Tensor::floats({3}, {0.0f, 0.5f, -0.5f});
    auto head = node("Gemm", {last, "head.weight", "head.bias"}, {"y"});
    head.attributes["transB"] = int_attr(1);
    g.nodes.push_back(head);
    g.outputs = {model::ValueInfo{"y", model::DType::kFloat32, {shape[0], 3}}};
  }
  model::infer_shapes(g);
  return g;
}

// A chain of one op with no attributes (Relu, Identity, Dropout, Sigmoid, ...).
inline ChainBuilder one_op(const std::string& op) {
  return [op](model::Graph& g, const std::string& v) {
    g.nodes.push_back(node(op, {v}, {v + "_" + op}));
    return v + "_" + op;
  };
}

// Clip with constant initializer bounds (opset 11+ inputs); an empty bound is omitted.
inline ChainBuilder clip_inputs(const std::string& lo, const std::string& hi) {
  return [lo, hi](model::Graph& g, const std::string& v) {
    std::vector<std::string> in = {v, "", ""};
    if (!lo.empty()) {
      g.initializers["clip_lo"] = model::Tensor::floats({}, {std::stof(lo)});
      in[1] = "clip_lo";
    }
    if (!hi.empty()) {
      g.initializers["clip_hi"] = model::Tensor::floats({}, {std::stof(hi)});
      in[2] = "clip_hi";
    }
    while (!in.empty() && in.back().empty()) in.pop_back();
    g.nodes.push_back(node("Clip", in, {v + "_clip"}));
    return v + "_clip";
  };
}

inline ChainBuilder flatten_at(int64_t axis) {
  return [axis](model::Graph& g, const std::string& v) {
    auto f = node("Flatten", {v}, {v + "_flat"});
    f.attributes["axis"] = int_attr(axis);
    g.nodes.push_back(f);
    return v + "_flat";
  };
}

inline ChainBuilder reshape_to(std::vector<int64_t> shape) {
  return [shape](model::Graph& g, const std::string& v) {
    g.initializers["shape"] = model::Tensor::ints({static_cast<int64_t>(shape.size())}, shape);
    g.nodes.push_back(node("Reshape", {v, "shape"}, {v + "_reshape"}));
    return v + "_reshape";
  };
}

// The builders one after another.
inline ChainBuilder then(std::vector<ChainBuilder> steps) {
  return [steps](model::Graph& g, const std::string& v) {
    std::string cur = v;
    for (const auto& s : steps) cur = s(g, cur);
    return cur;
  };
}

}  // namespace compsearch::testing
