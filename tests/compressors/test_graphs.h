// Small hand-built graphs shared by the compressor tests.
#pragma once

#include <random>
#include <string>
#include <vector>

#include "model/graph.h"

namespace compsearch::testing {

// A batch of n standard-normal inputs [n, 2, 4, 4] for small_cnn().
inline model::Tensor small_cnn_input(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> v(static_cast<size_t>(n * 2 * 4 * 4));
  for (auto& x : v) x = d(rng);
  return model::Tensor::floats({n, 2, 4, 4}, v);
}

inline model::Attribute ints_attr(std::vector<int64_t> v) {
  model::Attribute a;
  a.kind = model::Attribute::Kind::kInts;
  a.ints = std::move(v);
  return a;
}
inline model::Attribute int_attr(int64_t v) {
  model::Attribute a;
  a.kind = model::Attribute::Kind::kInt;
  a.i = v;
  return a;
}

inline model::Node node(std::string op, std::vector<std::string> in, std::vector<std::string> out) {
  model::Node n;
  n.op_type = op;
  n.name = op + "_" + out.at(0);
  n.inputs = std::move(in);
  n.outputs = std::move(out);
  return n;
}

// x[1,2,4,4] -> conv1 (4 out, 3x3, pad 1, bias) -> `mid` op -> MaxPool 2x2 -> Flatten -> fc
// (Gemm transB=1, weight [3, 16], bias) -> y. Channel o of conv1 has all weights equal to
// (o + 1) * sign so its L2 norm grows with o, except that channel 3 is made the smallest.
inline model::Graph small_cnn(const std::string& mid = "Relu") {
  model::Graph g;
  g.name = "small_cnn";
  g.opset_version = 13;
  g.inputs = {model::ValueInfo{"x", model::DType::kFloat32, {-1, 2, 4, 4}}};
  g.outputs = {model::ValueInfo{"y", model::DType::kFloat32, {-1, 3}}};
  std::vector<float> w(4 * 2 * 3 * 3);
  for (int o = 0; o < 4; ++o)
    for (int i = 0; i < 18; ++i)
      w[o * 18 + i] = (o == 3 ? 0.05f : 0.1f * (o + 1)) * (i % 2 ? -1.0f : 1.0f);
  g.initializers["conv1.weight"] = model::Tensor::floats({4, 2, 3, 3}, w);
  g.initializers["conv1.bias"] = model::Tensor::floats({4}, {0.1f, 0.2f, 0.3f, 0.4f});
  std::vector<float> fw(3 * 16);
  for (size_t i = 0; i < fw.size(); ++i) fw[i] = 0.01f * static_cast<float>(i % 7) - 0.02f;
  g.initializers["fc.weight"] = model::Tensor::floats({3, 16}, fw);
  g.initializers["fc.bias"] = model::Tensor::floats({3}, {0.0f, 0.5f, -0.5f});
  auto conv = node("Conv", {"x", "conv1.weight", "conv1.bias"}, {"c1"});
  conv.attributes["kernel_shape"] = ints_attr({3, 3});
  conv.attributes["pads"] = ints_attr({1, 1, 1, 1});
  g.nodes.push_back(conv);
  if (mid == "ClipPositive") {
    g.initializers["clip_lo"] = model::Tensor::floats({}, {0.5f});
    g.nodes.push_back(node("Clip", {"c1", "clip_lo"}, {"r1"}));
  } else if (mid == "Sigmoid") {
    g.nodes.push_back(node("Sigmoid", {"c1"}, {"r1"}));
  } else {
    g.nodes.push_back(node("Relu", {"c1"}, {"r1"}));
  }
  auto pool = node("MaxPool", {"r1"}, {"p1"});
  pool.attributes["kernel_shape"] = ints_attr({2, 2});
  pool.attributes["strides"] = ints_attr({2, 2});
  g.nodes.push_back(pool);
  auto flat = node("Flatten", {"p1"}, {"f1"});
  flat.attributes["axis"] = int_attr(1);
  g.nodes.push_back(flat);
  auto fc = node("Gemm", {"f1", "fc.weight", "fc.bias"}, {"y"});
  fc.attributes["transB"] = int_attr(1);
  g.nodes.push_back(fc);
  model::infer_shapes(g);
  return g;
}

}  // namespace compsearch::testing
