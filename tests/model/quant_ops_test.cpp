// QuantizeLinear, DequantizeLinear and the float16 Cast round trip: import + executor against
// the fixtures of scripts/make_qdq_fixtures.py (NumPy references that ONNX Runtime reproduced
// bit for bit when they were generated), plan-time folding of dequantized weights, the fused
// Q -> DQ pair, and the errors for malformed nodes.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <random>

#include "model/executor.h"
#include "model/graph.h"
#include "model/op_util.h"
#include "tests/model/test_util.h"

using namespace compsearch::model;
using compsearch::model::testing::data_dir;

namespace {

nlohmann::json manifest() { return compsearch::model::testing::fixture_manifest("qdq"); }

Tensor decode(const nlohmann::json& t) {
  Shape shape = t.at("shape").get<Shape>();
  const std::string dtype = t.at("dtype");
  if (dtype == "float32") {
    std::vector<float> v;
    for (uint32_t bits : t.at("bits").get<std::vector<uint32_t>>()) {
      float f;
      std::memcpy(&f, &bits, 4);
      v.push_back(f);
    }
    return Tensor::floats(shape, v);
  }
  const DType dt = dtype == "int8"    ? DType::kInt8
                   : dtype == "uint8" ? DType::kUInt8
                                      : DType::kInt32;
  return Tensor::ints(shape, t.at("data").get<std::vector<int64_t>>(), dt);
}

// Runs one manifest case; returns the outputs by name.
std::map<std::string, Tensor> run_case(const nlohmann::json& c, const Graph& g, int threads) {
  std::vector<Tensor> inputs;
  for (const auto& vi : g.inputs) inputs.push_back(decode(c.at("inputs").at(vi.name)));
  const auto outs = Executor(g, {threads}).run(inputs);
  std::map<std::string, Tensor> r;
  for (size_t i = 0; i < outs.size(); ++i) r[g.outputs[i].name] = outs[i];
  return r;
}

// Bitwise float equality (so -0.0, inf and the last ulp all count).
bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * 4) == 0);
}

Node qdq_node(const std::string& op, std::vector<std::string> inputs, const std::string& out,
              int64_t axis = 1) {
  Node n;
  n.name = op + "_" + out;
  n.op_type = op;
  n.inputs = std::move(inputs);
  n.outputs = {out};
  Attribute a;
  a.kind = Attribute::Kind::kInt;
  a.i = axis;
  n.attributes["axis"] = a;
  return n;
}

}  // namespace

TEST_CASE(
    "QuantizeLinear DequantizeLinear and the half Cast reproduce the NumPy and ONNX Runtime "
    "fixtures bit for bit") {
  const auto m = manifest();
  REQUIRE(m.at("cases").size() == 9);
  for (const auto& c : m.at("cases")) {
    const std::string name = c.at("name");
    if (name == "conv_dq_weight") continue;  // float sums: its own test below
    CAPTURE(name);
    const Graph g = load_onnx(data_dir() / "qdq" / c.at("model").get<std::string>());
    for (int threads : {1, 2}) {
      const auto got = run_case(c, g, threads);
      for (const auto& item : c.at("outputs").items()) {
        const std::string out = item.key();  // not a structured binding: clang 14's CAPTURE
        const auto& want_json = item.value();
        CAPTURE(out);
        const Tensor want = decode(want_json);
        REQUIRE(got.count(out));
        const Tensor& y = got.at(out);
        CHECK(y.shape == want.shape);
        CHECK(y.dtype == want.dtype);
        if (want.is_float())
          CHECK(same_bits(y.f32, want.f32));
        else
          CHECK(y.i64 == want.i64);
      }
    }
  }
}

TEST_CASE("The QDQ fixtures cover ties saturation and per-axis layouts") {
  // Guards the fixtures themselves: the corner cases the op tests rely on are really in them.
  const auto m = manifest();
  for (const auto& c : m.at("cases")) {
    const std::string name = c.at("name");
    if (name == "q_uint8_per_tensor") {
      // scale 0.5, zero point 10: -1.25 -> -2.5 -> -2 + 10 = 8; 1.25 -> 2.5 -> 2 + 10 = 12;
      // 0.75 -> 1.5 -> 2 + 10 = 12; 122.25 -> 244.5 -> 244 + 10 = 254;
      // 122.75 -> 245.5 -> 246 + 10 = 256 -> 255; -6.25 -> -12.5 -> -12 + 10 = -2 -> 0.
      const auto y = decode(c.at("outputs").at("y")).i64;
      CHECK(y ==
            std::vector<int64_t>{0, 0, 8, 8, 10, 10, 10, 12, 12, 14, 14, 210, 254, 255, 255, 0});
    } else if (name == "q_int8_per_axis") {
      const auto y = decode(c.at("outputs").at("y")).i64;
      CHECK(y[0] == 127);            // 1000 / 0.5 saturates
      CHECK(y[1] == -128);           // -1000 / 0.5 saturates
      CHECK(y[4 + 2] == -3);         // 0.125 / 0.25 = 0.5 -> 0 (even), + zero point -3
      CHECK(y[8 + 1] == 5 + 2);      // 3 / 2 = 1.5 -> 2 (even), + zero point 5
      CHECK(y[12 + 4 + 0] == -128);  // -33.375 / 0.25 = -133.5 -> -134 - 3 saturates
    }
  }
}

TEST_CASE("DequantizeLinear on int8 weights is folded into a float initializer at load") {
  const auto m = manifest();
  const nlohmann::json* c = nullptr;
  for (const auto& k : m.at("cases")) {
    if (k.at("name") == "conv_dq_weight") c = &k;
  }
  REQUIRE(c);
  const Graph g = load_onnx(data_dir() / "qdq" / "conv_dq_weight.onnx");
  REQUIRE(g.nodes.size() == 1);
  CHECK(g.nodes[0].op_type == "Conv");
  REQUIRE(g.find_initializer("w"));
  CHECK(g.find_initializer("w")->dtype == DType::kFloat32);
  CHECK(same_bits(g.find_initializer("w")->f32, decode(c->at("outputs").at("w")).f32));
  CHECK(!g.find_initializer("w_q"));  // the int8 source is gone once nothing reads it
  const auto y = run_case(*c, g, 1).at("y");
  CHECK(testing::worst_violation(y, decode(c->at("outputs").at("y")), 1e-5, 1e-5) <= 0);
}

TEST_CASE(
    "The executor folds DequantizeLinear of an in-memory graph once and matches the float "
    "weights") {
  // A QDQ graph built in memory (as compressors::make_qdq_graph does) never passes through the
  // importer's folding: the executor's plan folds it, and the result equals the same Gemm with
  // the dequantized float weight written out by hand: (q - zp) * scale per output row.
  Graph g;
  g.opset_version = 13;
  g.inputs = {ValueInfo{"x", DType::kFloat32, {-1, 3}}};
  g.outputs = {ValueInfo{"y", DType::kFloat32, {-1, 2}}};
  g.initializers["wq"] = Tensor::ints({2, 3}, {-128, 0, 127, 5, -5, 1}, DType::kInt8);
  g.initializers["ws"] = Tensor::floats({2}, {0.5f, 0.25f});
  g.initializers["wz"] = Tensor::ints({2}, {0, 1}, DType::kInt8);
  g.nodes.push_back(qdq_node("DequantizeLinear", {"wq", "ws", "wz"}, "w", 0));
  Node gemm;
  gemm.name = "fc";
  gemm.op_type = "Gemm";
  gemm.inputs = {"x", "w"};
  gemm.outputs = {"y"};
  Attribute tb;
  tb.kind = Attribute::Kind::kInt;
  tb.i = 1;
  gemm.attributes["transB"] = tb;
  g.nodes.push_back(gemm);
  infer_shapes(g);
  Graph f = g;
  f.nodes.erase(f.nodes.begin());
  f.initializers = {{"w", Tensor::floats({2, 3}, {-64.0f, 0.0f, 63.5f, 1.0f, -1.5f, 0.0f})}};
  const Tensor x = Tensor::floats({2, 3}, {1.0f, 2.0f, 3.0f, -1.0f, 0.5f, 4.0f});
  const Tensor a = Executor(g, {1}).run({x})[0];
  const Tensor b = Executor(f, {1}).run({x})[0];
  CHECK(a.shape == Shape{2, 2});
  CHECK(a.f32 == b.f32);
  CHECK(a.f32[0] == doctest::Approx(-64.0f + 3 * 63.5f));
}

TEST_CASE(
    "Malformed QuantizeLinear and DequantizeLinear nodes are errors naming the node and the "
    "values") {
  Graph g;
  g.opset_version = 13;
  g.inputs = {ValueInfo{"x", DType::kFloat32, {2, 3}}};
  g.outputs = {ValueInfo{"y", DType::kFloat32, {2, 3}}};
  g.initializers["s2"] = Tensor::floats({2}, {0.5f, 1.0f});
  g.initializers["s3"] = Tensor::floats({3}, {0.5f, 1.0f, 2.0f});
  g.initializers["z3"] = Tensor::ints({3}, {0, 0, 0}, DType::kInt8);
  g.initializers["z16"] = Tensor::ints({3}, {0, 0, 0}, DType::kInt32);
  const Tensor x = Tensor::floats({2, 3}, {1, 2, 3, 4, 5, 6});
  auto run_with = [&](std::vector<Node> nodes, int64_t opset = 13) {
    Graph h = g;
    h.opset_version = opset;
    h.nodes = std::move(nodes);
    infer_shapes(h);
    return Executor(h, {1}).run({x});
  };
  SUBCASE("a per-axis scale that does not match the axis") {
    CHECK_THROWS_WITH_AS(run_with({qdq_node("QuantizeLinear", {"x", "s2", ""}, "q"),
                                   qdq_node("DequantizeLinear", {"q", "s2", ""}, "y")}),
                         doctest::Contains("node 'QuantizeLinear_q' (QuantizeLinear): scale has 2 "
                                           "values but axis 1 of input [2, 3] has 3"),
                         std::runtime_error);
  }
  SUBCASE("per-axis quantization before opset 13") {
    CHECK_THROWS_WITH_AS(
        run_with({qdq_node("QuantizeLinear", {"x", "s3", "z3"}, "q"),
                  qdq_node("DequantizeLinear", {"q", "s3", "z3"}, "y")},
                 11),
        doctest::Contains(
            "a 1-D scale [3] (per-axis quantization) needs opset 13, the model is opset 11"),
        std::runtime_error);
  }
  SUBCASE("an int32 zero point on QuantizeLinear") {
    CHECK_THROWS_WITH_AS(
        run_with({qdq_node("QuantizeLinear", {"x", "s3", "z16"}, "q"),
                  qdq_node("DequantizeLinear", {"q", "s3", "z16"}, "y")}),
        doctest::Contains("(QuantizeLinear): zero point must be int8 or uint8, got int32"),
        std::runtime_error);
  }
  SUBCASE("DequantizeLinear of a float tensor") {
    CHECK_THROWS_WITH_AS(run_with({qdq_node("DequantizeLinear", {"x", "s3", ""}, "y")}),
                         doctest::Contains("node 'DequantizeLinear_y' (DequantizeLinear): input "
                                           "must be int8, uint8 or int32, got float32"),
                         std::runtime_error);
  }
}

TEST_CASE(
    "A fused QuantizeLinear DequantizeLinear pair equals the two nodes run one after the other") {
  // qdq_pairs has the fused pair ('fused') and a pair whose integer value is also a graph output
  // (not fusable): run both layouts on random data with one and two threads and big tensors
  // (parallel path), and compare with the unfused per-node evaluation.
  Graph g;
  g.opset_version = 13;
  g.inputs = {ValueInfo{"x", DType::kFloat32, {-1, 4, 64, 64}}};
  g.outputs = {ValueInfo{"y", DType::kFloat32, {-1, 4, 64, 64}}};
  g.initializers["s"] = Tensor::floats({4}, {0.01f, 0.1f, 0.3f, 1.0f});
  g.initializers["z"] = Tensor::ints({4}, {0, 128, 17, 255}, DType::kUInt8);
  g.nodes = {qdq_node("QuantizeLinear", {"x", "s", "z"}, "q"),
             qdq_node("DequantizeLinear", {"q", "s", "z"}, "y")};
  infer_shapes(g);
  Graph h = g;  // same pair, q also an output: the executor must run both nodes
  h.outputs.push_back(ValueInfo{"q", DType::kUInt8, {-1, 4, 64, 64}});
  std::vector<float> v(3 * 4 * 64 * 64);
  uint32_t state = 12345;
  for (auto& e : v) {
    state = state * 1664525u + 1013904223u;
    e = (static_cast<float>(state >> 8) / 16777216.0f - 0.3f) * 300.0f;
  }
  const Tensor x = Tensor::floats({3, 4, 64, 64}, v);
  for (int threads : {1, 2}) {
    const auto fused = Executor(g, {threads}).run({x});
    const auto plain = Executor(h, {threads}).run({x});
    CHECK(same_bits(fused[0].f32, plain[0].f32));
    CHECK(plain[1].dtype == DType::kUInt8);
    // Spot-check against the rule by hand for one value per channel.
    for (int64_t c = 0; c < 4; ++c) {
      const int64_t i = c * 64 * 64 + 7;
      const float s = g.initializers["s"].f32[c];
      const float z = static_cast<float>(g.initializers["z"].i64[c]);
      const float q = std::min(std::max(std::nearbyint(x.f32[i] / s) + z, 0.0f), 255.0f);
      CHECK(plain[1].i64[i] == static_cast<int64_t>(q));
      CHECK(fused[0].f32[i] == (q - z) * s);
    }
  }
}

TEST_CASE("quantize_level equals std::nearbyint(v / s) + z saturated on every kind of float") {
  using compsearch::model::detail::quantize_level;
  auto reference = [](float v, float s, float z, float lo, float hi) {
    const float r = std::nearbyint(v / s) + z;
    return std::min(r >= lo ? r : lo, hi);
  };
  std::vector<float> values = {0.0f,
                               -0.0f,
                               0.5f,
                               1.5f,
                               2.5f,
                               -0.5f,
                               -1.5f,
                               -2.5f,
                               127.5f,
                               128.5f,
                               -128.5f,
                               254.5f,
                               255.5f,
                               1e30f,
                               -1e30f,
                               4194303.5f,
                               8388609.0f,
                               std::numeric_limits<float>::infinity(),
                               -std::numeric_limits<float>::infinity(),
                               std::numeric_limits<float>::quiet_NaN(),
                               std::numeric_limits<float>::denorm_min()};
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(-400.0f, 400.0f);
  for (int i = 0; i < 200000; ++i) values.push_back(u(rng));
  // Exact halves over the whole saturating range.
  for (int k = -1200; k <= 1200; ++k) values.push_back(static_cast<float>(k) * 0.25f);
  struct Case {
    float s, z, lo, hi;
  };
  for (const Case c : {Case{1.0f, 0.0f, 0.0f, 255.0f}, Case{0.5f, 128.0f, 0.0f, 255.0f},
                       Case{0.1f, 0.0f, -128.0f, 127.0f}, Case{3.0f, -7.0f, -128.0f, 127.0f},
                       Case{1.0f, 0.0f, 0.0f, 65535.0f}}) {
    CAPTURE(c.s);
    CAPTURE(c.z);
    int64_t mismatches = 0;
    for (float v : values) {
      const float got = quantize_level(v, c.s, c.z, c.lo, c.hi);
      const float want = reference(v, c.s, c.z, c.lo, c.hi);
      if (!(got == want)) {  // == treats -0 and +0 alike: only the sign of a zero may differ
        if (++mismatches <= 5) {
          CAPTURE(v);
          CHECK(got == want);
        }
      }
    }
    CHECK(mismatches == 0);
  }
}
