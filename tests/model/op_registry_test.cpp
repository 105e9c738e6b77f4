// The op table (model/op_registry.h): one row per supported op, read by the importer's op check,
// shape inference, constant folding and the executor.
#include "model/op_registry.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <set>
#include <string>

#include "model/node_eval.h"

using namespace compsearch::model;

TEST_CASE("The op table lists each supported op once, sorted, and supported_ops() is its names") {
  const auto& table = detail::op_table();
  // The 35 ops of the importer's list before the table existed (a reference typed by hand).
  const std::set<std::string> expected = {"Abs",         "Add",
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
  REQUIRE(table.size() == expected.size());
  const auto& names = supported_ops();
  REQUIRE(names.size() == table.size());
  for (size_t i = 0; i < table.size(); ++i) {
    CHECK(names[i] == table[i].name);
    CHECK(expected.count(names[i]) == 1);
    CHECK(static_cast<bool>(table[i].infer));
    CHECK(static_cast<bool>(table[i].kernel));
    if (i > 0) CHECK(table[i - 1].name < table[i].name);
    CHECK(detail::find_op(table[i].name) == &table[i]);
  }
}

TEST_CASE("The op table's traits drive the planner's fusions and layouts") {
  auto spec = [](const char* op) {
    const detail::OpSpec* s = detail::find_op(op);
    REQUIRE(s != nullptr);
    return *s;
  };
  for (const char* op : {"Conv", "Gemm", "MatMul"}) CHECK(spec(op).layer);
  CHECK(spec("Conv").takes_activation);
  CHECK(spec("Gemm").takes_activation);
  CHECK_FALSE(spec("MatMul").takes_activation);  // no fused clamp in the MatMul kernel
  CHECK(spec("Relu").activation);
  CHECK(spec("Clip").activation);
  CHECK_FALSE(spec("Sigmoid").activation);
  for (const char* op : {"MaxPool", "AveragePool", "GlobalAveragePool"}) CHECK(spec(op).pooling);
  for (const char* op : {"Add", "Sub", "Mul", "Div"}) CHECK(spec(op).elementwise_binary);
  for (const auto& s : detail::op_table()) {
    if (s.activation) CHECK(s.elementwise_unary);
    if (s.takes_activation) CHECK(s.layer);
    CHECK_FALSE((s.layer && (s.pooling || s.elementwise_unary || s.elementwise_binary)));
  }
}

TEST_CASE("An op outside the table is reported with the node's name and op type") {
  CHECK_FALSE(detail::find_op("LSTM"));
  CHECK_FALSE(detail::find_op("conv"));  // ONNX op types are case-sensitive
  Node node;
  node.name = "rnn0";
  node.op_type = "LSTM";
  CHECK_THROWS_WITH(detail::op_spec(node),
                    "node 'rnn0' (LSTM): op type not supported by the executor");
  CHECK_THROWS_WITH(detail::evaluate_node(node, {}, 13),
                    "node 'rnn0' (LSTM): op type not supported by the executor");
}

TEST_CASE("evaluate_node runs a row's kernel: Relu and Shape on hand values") {
  Node relu;
  relu.name = "r";
  relu.op_type = "Relu";
  relu.inputs = {"x"};
  relu.outputs = {"y"};
  const Tensor x = Tensor::floats({1, 4}, {-1.5f, 0.0f, 2.0f, -0.25f});
  auto y = detail::evaluate_node(relu, {&x}, 13);
  REQUIRE(y.size() == 1);
  CHECK(y[0].shape == Shape{1, 4});
  CHECK(y[0].f32 == std::vector<float>{0.0f, 0.0f, 2.0f, 0.0f});
  Node shape;
  shape.name = "s";
  shape.op_type = "Shape";
  shape.inputs = {"x"};
  shape.outputs = {"n"};
  shape.attributes["start"].i = 1;
  auto n = detail::evaluate_node(shape, {&x}, 15);
  CHECK(n[0].i64 == std::vector<int64_t>{4});
}
