// The op table (op_registry.h), the supported-op list derived from it, and evaluate_node, which
// constant folding at import and at plan time uses: one kernel per op wherever it runs.
#include "model/op_registry.h"

#include <algorithm>
#include <stdexcept>
#include <string>

#include "model/node_eval.h"
#include "model/op_kernels.h"

namespace compsearch::model {

namespace detail {

namespace {

// One row per op type. Traits: see OpSpec.
struct Row : OpSpec {
  Row(std::string_view name, InferFn infer, KernelFn kernel) : OpSpec{name, infer, kernel} {}
  Row& layer() { return OpSpec::layer = true, *this; }
  Row& takes_activation() { return OpSpec::takes_activation = true, *this; }
  Row& activation() { return OpSpec::activation = true, *this; }
  Row& elementwise_unary() { return OpSpec::elementwise_unary = true, *this; }
  Row& elementwise_binary() { return OpSpec::elementwise_binary = true, *this; }
  Row& pooling() { return OpSpec::pooling = true, *this; }
};

std::vector<OpSpec> build_table() {
  std::vector<Row> rows = {
      // ops_linear.cpp
      Row("Conv", infer_conv, conv).layer().takes_activation(),
      Row("Gemm", infer_gemm, gemm).layer().takes_activation(),
      Row("MatMul", infer_matmul, matmul).layer(),
      // ops_elementwise.cpp
      Row("Add", infer_binary, binary).elementwise_binary(),
      Row("Sub", infer_binary, binary).elementwise_binary(),
      Row("Mul", infer_binary, binary).elementwise_binary(),
      Row("Div", infer_binary, binary).elementwise_binary(),
      Row("Relu", infer_same_shape, unary).elementwise_unary().activation(),
      Row("Clip", infer_same_shape, unary).elementwise_unary().activation(),
      Row("Abs", infer_same_shape, unary).elementwise_unary(),
      Row("Sigmoid", infer_same_shape, unary).elementwise_unary(),
      Row("HardSigmoid", infer_same_shape, unary).elementwise_unary(),
      Row("HardSwish", infer_same_shape, unary).elementwise_unary(),
      Row("Tanh", infer_same_shape, unary).elementwise_unary(),
      Row("BatchNormalization", infer_same_shape, batch_norm),
      Row("Softmax", infer_same_shape, softmax),
      // ops_pooling.cpp
      Row("Pad", infer_pad, pad),
      Row("MaxPool", infer_pool, pool).pooling(),
      Row("AveragePool", infer_pool, pool).pooling(),
      Row("GlobalAveragePool", infer_global_average_pool, global_average_pool).pooling(),
      // ops_shape.cpp
      Row("Constant", infer_constant, constant),
      Row("Shape", infer_shape, shape),
      Row("Identity", infer_identity, identity),
      Row("Dropout", infer_same_shape, identity),  // inference: the identity
      Row("Flatten", infer_flatten, flatten),
      Row("Reshape", infer_reshape, reshape),
      Row("Transpose", infer_transpose, transpose),
      Row("Concat", infer_concat, concat),
      Row("Squeeze", infer_squeeze, squeeze_unsqueeze),
      Row("Unsqueeze", infer_unsqueeze, squeeze_unsqueeze),
      Row("Gather", infer_gather, gather),
      Row("Slice", infer_slice, slice),
      Row("Cast", infer_cast, cast),
      // ops_quantization.cpp
      Row("QuantizeLinear", infer_quantize_dequantize, quantize_linear),
      Row("DequantizeLinear", infer_quantize_dequantize, dequantize_linear),
  };
  std::vector<OpSpec> table(rows.begin(), rows.end());
  std::sort(table.begin(), table.end(),
            [](const OpSpec& a, const OpSpec& b) { return a.name < b.name; });
  return table;
}

}  // namespace

const std::vector<OpSpec>& op_table() {
  static const std::vector<OpSpec> table = build_table();
  return table;
}

const OpSpec* find_op(std::string_view op_type) {
  const auto& table = op_table();
  auto it = std::lower_bound(table.begin(), table.end(), op_type,
                             [](const OpSpec& s, std::string_view name) { return s.name < name; });
  return it != table.end() && it->name == op_type ? &*it : nullptr;
}

const OpSpec& op_spec(const Node& node) {
  const OpSpec* spec = find_op(node.op_type);
  if (!spec) fail(node, "op type not supported by the executor");
  return *spec;
}

std::vector<Tensor> evaluate_node(const Node& node, const std::vector<const Tensor*>& inputs,
                                  int64_t opset) {
  const OpSpec& spec = op_spec(node);
  std::vector<Tensor> outs(std::max<size_t>(1, node.outputs.size()));
  OpContext ctx;
  ctx.opset = opset;
  spec.kernel(node, inputs, outs[0], ctx);
  return outs;
}

}  // namespace detail

const std::vector<std::string>& supported_ops() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> out;
    for (const auto& spec : detail::op_table()) out.emplace_back(spec.name);
    return out;
  }();
  return names;
}

}  // namespace compsearch::model
