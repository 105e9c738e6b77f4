// Internal to the model library: what the op-family files (ops_*.cpp) share: the shape-inference
// state, the small checks every kernel makes, and the declarations of each family's kernels and
// shape-inference functions, which op_registry.cpp puts in the op table.
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

#include "model/graph.h"
#include "model/op_registry.h"
#include "model/op_util.h"

namespace compsearch::model::detail {

// Elementwise loops smaller than this stay on one thread (the fork costs more than the work).
constexpr int64_t kParallelGrain = 1 << 15;

// An integer not known at load time (the batch size in a Shape -> ... -> Reshape chain).
constexpr int64_t kUnknown = std::numeric_limits<int64_t>::min();

// Shape inference state over one graph (see graph.cpp): next to each value's shape, the integer
// contents of small 1-D int64 values where known, with kUnknown holes for the batch.
struct ShapeInference {
  const Graph& graph;
  std::unordered_map<std::string, ValueInfo> info;                // shape + dtype of every value
  std::unordered_map<std::string, Tensor> constants;              // fully known values
  std::unordered_map<std::string, std::vector<int64_t>> partial;  // 1-D ints, kUnknown holes

  explicit ShapeInference(const Graph& g) : graph(g) {}

  const Tensor* constant(const std::string& name) const {
    if (name.empty()) return nullptr;
    auto it = constants.find(name);
    if (it != constants.end()) return &it->second;
    return graph.find_initializer(name);
  }
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
  // Records output `out` of `node` (nothing for an omitted output).
  void set(const Node& node, size_t out, Shape shape, DType dtype) {
    if (out >= node.outputs.size() || node.outputs[out].empty()) return;
    info[node.outputs[out]] = ValueInfo{node.outputs[out], dtype, std::move(shape)};
  }
};

[[noreturn]] inline void fail(const Node& node, const std::string& what) {
  throw std::runtime_error(node_label(node) + ": " + what);
}

inline const Tensor& need(const Node& node, const std::vector<const Tensor*>& in, size_t i) {
  if (i >= in.size() || !in[i]) fail(node, "missing required input #" + std::to_string(i));
  return *in[i];
}

inline const Tensor* optional_input(const std::vector<const Tensor*>& in, size_t i) {
  return i < in.size() ? in[i] : nullptr;
}

inline void require_float(const Node& node, const Tensor& t, const char* what) {
  if (!t.is_float())
    fail(node, std::string(what) + " must be a float tensor, got " + dtype_name(t.dtype));
}

inline void prepare_like(Tensor& out, const Shape& shape, DType dtype) {
  out.dtype = dtype;
  out.shape = shape;
  const size_t n = static_cast<size_t>(shape_numel(shape));
  if (out.is_float()) {
    out.i64.clear();
    out.f32.resize(n);
  } else {
    out.f32.clear();
    out.i64.resize(n);
  }
}

inline std::vector<int64_t> int_values(const Node& node, const Tensor& t, const char* what) {
  if (t.is_float()) fail(node, std::string(what) + " must be an integer tensor");
  return t.i64;
}

// Input `i` as one float (an omitted input gives `fallback`).
inline float scalar_input(const Node& node, const std::vector<const Tensor*>& in, size_t i,
                          float fallback) {
  const Tensor* t = optional_input(in, i);
  if (!t) return fallback;
  if (t->numel() != 1) fail(node, "input #" + std::to_string(i) + " must be a scalar");
  return t->is_float() ? t->f32[0] : static_cast<float>(t->i64[0]);
}

template <typename Block>
void apply_clamp(Block&& y, const OpContext& ctx) {
  if (ctx.clamp) y = y.cwiseMax(ctx.lo).cwiseMin(ctx.hi);
}

inline void clamp_range(float* y, int64_t n, const OpContext& ctx) {
  if (!ctx.clamp) return;
  for (int64_t i = 0; i < n; ++i) y[i] = std::min(std::max(y[i], ctx.lo), ctx.hi);
}

using KernelArgs = const std::vector<const Tensor*>&;

// ops_linear.cpp
// Writes the im2col matrix [cg*kh*kw, oh*ow] of channels [c0, c0+cg) of one sample [C, H, W]
// (the executor's Conv and training's convolution backward share it).
void im2col(const float* x, int64_t c0, int64_t cg, const WindowGeometry& g, float* col);
void conv(const Node&, KernelArgs, Tensor&, const OpContext&);
void gemm(const Node&, KernelArgs, Tensor&, const OpContext&);
void matmul(const Node&, KernelArgs, Tensor&, const OpContext&);
void infer_conv(ShapeInference&, const Node&, int64_t);
void infer_gemm(ShapeInference&, const Node&, int64_t);
void infer_matmul(ShapeInference&, const Node&, int64_t);

// ops_elementwise.cpp
void binary(const Node&, KernelArgs, Tensor&, const OpContext&);
void unary(const Node&, KernelArgs, Tensor&, const OpContext&);
void batch_norm(const Node&, KernelArgs, Tensor&, const OpContext&);
void softmax(const Node&, KernelArgs, Tensor&, const OpContext&);
void infer_binary(ShapeInference&, const Node&, int64_t);
void infer_same_shape(ShapeInference&, const Node&, int64_t);

// ops_pooling.cpp
void pad(const Node&, KernelArgs, Tensor&, const OpContext&);
void pool(const Node&, KernelArgs, Tensor&, const OpContext&);
void global_average_pool(const Node&, KernelArgs, Tensor&, const OpContext&);
void infer_pad(ShapeInference&, const Node&, int64_t);
void infer_pool(ShapeInference&, const Node&, int64_t);
void infer_global_average_pool(ShapeInference&, const Node&, int64_t);

// ops_shape.cpp
void constant(const Node&, KernelArgs, Tensor&, const OpContext&);
void shape(const Node&, KernelArgs, Tensor&, const OpContext&);
void identity(const Node&, KernelArgs, Tensor&, const OpContext&);
void flatten(const Node&, KernelArgs, Tensor&, const OpContext&);
void reshape(const Node&, KernelArgs, Tensor&, const OpContext&);
void transpose(const Node&, KernelArgs, Tensor&, const OpContext&);
void concat(const Node&, KernelArgs, Tensor&, const OpContext&);
void squeeze_unsqueeze(const Node&, KernelArgs, Tensor&, const OpContext&);
void gather(const Node&, KernelArgs, Tensor&, const OpContext&);
void slice(const Node&, KernelArgs, Tensor&, const OpContext&);
void cast(const Node&, KernelArgs, Tensor&, const OpContext&);
void infer_constant(ShapeInference&, const Node&, int64_t);
void infer_shape(ShapeInference&, const Node&, int64_t);
void infer_identity(ShapeInference&, const Node&, int64_t);
void infer_flatten(ShapeInference&, const Node&, int64_t);
void infer_reshape(ShapeInference&, const Node&, int64_t);
void infer_transpose(ShapeInference&, const Node&, int64_t);
void infer_concat(ShapeInference&, const Node&, int64_t);
void infer_unsqueeze(ShapeInference&, const Node&, int64_t);
void infer_squeeze(ShapeInference&, const Node&, int64_t);
void infer_gather(ShapeInference&, const Node&, int64_t);
void infer_slice(ShapeInference&, const Node&, int64_t);
void infer_cast(ShapeInference&, const Node&, int64_t);

// ops_quantization.cpp
void quantize_linear(const Node&, KernelArgs, Tensor&, const OpContext&);
void dequantize_linear(const Node&, KernelArgs, Tensor&, const OpContext&);
void infer_quantize_dequantize(ShapeInference&, const Node&, int64_t);

}  // namespace compsearch::model::detail
