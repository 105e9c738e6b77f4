// The executor's op table: for every supported ONNX op type, its shape inference, its kernel and
// the traits the planner's passes read (which fusions and layouts it allows). supported_ops(),
// shape inference (graph.cpp), constant folding and the executor all read this one table, so an
// op is added by one row in op_registry.cpp plus its two functions in an op-family file
// (ops_linear, ops_elementwise, ops_pooling, ops_shape, ops_quantization). Internal to the model
// library.
#pragma once

#include <cmath>
#include <cstdint>
#include <string_view>
#include <vector>

#include "model/graph.h"

namespace compsearch::model::detail {

struct ShapeInference;  // model/op_kernels.h

// What a kernel needs besides its node and tensors, set per step by the executor.
struct OpContext {
  int threads = 1;
  int64_t opset = 13;
  // The batch size declared by the graph's first input (-1: dynamic); Reshape reads it to tell
  // a batch dimension frozen into a constant shape from a real one.
  int64_t declared_batch = -1;
  // A Relu/Clip fused into the Conv/Gemm/MatMul that feeds it: y = clamp(y, lo, hi).
  bool clamp = false;
  float lo = -INFINITY, hi = INFINITY;
  // A QuantizeLinear whose only reader is a matching DequantizeLinear: write the dequantized
  // floats instead of the integers (the pair as one pass, no integer tensor in between).
  bool fake_quantize = false;
};

// Shapes, dtypes and known integer contents of a node's outputs from its inputs'. Throws
// std::runtime_error naming the node on inconsistent shapes or attributes.
using InferFn = void (*)(ShapeInference& a, const Node& node, int64_t opset);
// Computes output 0 of `node` into `out` (whose buffers are reused between runs). `in` holds one
// pointer per node input, nullptr for an omitted optional one.
using KernelFn = void (*)(const Node& node, const std::vector<const Tensor*>& in, Tensor& out,
                          const OpContext& ctx);

struct OpSpec {
  std::string_view name;  // the ONNX op type
  InferFn infer;
  KernelFn kernel;
  // A Conv/Gemm/MatMul: a compressible layer whose activation input the layer-input hook sees,
  // and which runs through oneDNN when its weight is a constant.
  bool layer = false;
  // A following Relu/Clip with constant bounds can be fused into it as a clamp (Conv, Gemm).
  bool takes_activation = false;
  // Relu/Clip: fusable into the layer that produces its input.
  bool activation = false;
  // One input, one value per element: layout-agnostic (may run on channels-last values).
  bool elementwise_unary = false;
  // Add/Sub/Mul/Div: layout-agnostic when both inputs are computed values of one shape.
  bool elementwise_binary = false;
  // MaxPool/AveragePool/GlobalAveragePool: may run through oneDNN pooling, in either layout.
  bool pooling = false;
};

// Every supported op, sorted by name.
const std::vector<OpSpec>& op_table();
// The row of `op_type`; nullptr when the op is not supported.
const OpSpec* find_op(std::string_view op_type);
// The row of `node`'s op; throws std::runtime_error naming the node when it is not supported.
const OpSpec& op_spec(const Node& node);

}  // namespace compsearch::model::detail
