// The executor's two kernel families agree: every Conv / Gemm / MatMul shape class that oneDNN
// takes (stride, asymmetric and SAME padding, dilation, groups, depthwise, 1-D, 1x1, a 1-channel
// first layer, transA / transB / alpha / beta / bias row, MatMul over leading dims, fused Relu and
// Clip) gives the Eigen kernels' result within |oneDNN - Eigen| <= 1e-4 * |Eigen| + 1e-5 (the
// tolerance the executor meets against PyTorch: the two sum the same products in different
// orders, and oneDNN may use a Winograd-free direct or GEMM algorithm of its choice), at batch 1
// and 5 and 1 and 2 threads. Each case also checks that oneDNN ran the node (onednn_calls) and
// that the Eigen executor did not.
#include <doctest/doctest.h>

#include <cstdlib>
#include <map>
#include <random>

#include "model/dnnl_ops.h"
#include "model/executor.h"
#include "model/graph.h"
#include "tests/model/test_util.h"

using namespace compsearch::model;
using compsearch::model::testing::worst_violation;

namespace {

constexpr double kRtol = 1e-4, kAtol = 1e-5;

std::vector<float> random_values(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = u(rng);
  return v;
}

Attribute ints(std::vector<int64_t> v) {
  Attribute a;
  a.kind = Attribute::Kind::kInts;
  a.ints = std::move(v);
  return a;
}
Attribute integer(int64_t v) {
  Attribute a;
  a.kind = Attribute::Kind::kInt;
  a.i = v;
  return a;
}
Attribute real(float v) {
  Attribute a;
  a.kind = Attribute::Kind::kFloat;
  a.f = v;
  return a;
}
Attribute text(std::string v) {
  Attribute a;
  a.kind = Attribute::Kind::kString;
  a.s = std::move(v);
  return a;
}

// One node "op" reading x (batch first, `sample` the rest of its shape) and constant weights,
// optionally followed by Relu ("relu") or Clip with constant bounds ("clip6", "clip_sym"), which
// the executor fuses into the node.
struct Case {
  std::string label;
  Graph graph;
  Shape sample;
};

Case make_case(const std::string& label, const std::string& op, Shape sample,
               std::map<std::string, Tensor> weights, std::vector<std::string> inputs,
               std::map<std::string, Attribute> attributes, const std::string& post = "") {
  Case c;
  c.label = label + (post.empty() ? "" : " + " + post);
  c.sample = sample;
  Graph& g = c.graph;
  g.opset_version = 13;
  Shape in_shape = {-1};
  in_shape.insert(in_shape.end(), sample.begin(), sample.end());
  g.inputs.push_back(ValueInfo{"x", DType::kFloat32, in_shape});
  g.initializers = std::move(weights);
  Node n;
  n.name = label;
  n.op_type = op;
  n.inputs = std::move(inputs);
  n.inputs.insert(n.inputs.begin(), "x");
  n.outputs = {post.empty() ? "y" : "z"};
  n.attributes = std::move(attributes);
  g.nodes.push_back(n);
  if (post == "relu") {
    Node r;
    r.name = "relu";
    r.op_type = "Relu";
    r.inputs = {"z"};
    r.outputs = {"y"};
    g.nodes.push_back(r);
  } else if (!post.empty()) {
    const bool six = post == "clip6";
    g.initializers["lo"] = Tensor::floats({}, {six ? 0.0f : -0.5f});
    g.initializers["hi"] = Tensor::floats({}, {six ? 6.0f : 0.5f});
    Node r;
    r.name = "clip";
    r.op_type = "Clip";
    r.inputs = {"z", "lo", "hi"};
    r.outputs = {"y"};
    g.nodes.push_back(r);
  }
  g.outputs.push_back(ValueInfo{"y", DType::kFloat32, {}});
  return c;
}

Tensor random_tensor(Shape shape, uint32_t seed) {
  const int64_t n = shape_numel(shape);
  return Tensor::floats(std::move(shape), random_values(n, seed));
}

// Conv: x [N, C, H, W] (or [N, C, W] when `hw` has one entry), weight [O, C/group, kernel...].
Case conv_case(const std::string& label, int64_t c, std::vector<int64_t> hw, int64_t o,
               std::vector<int64_t> kernel, std::map<std::string, Attribute> attrs,
               bool bias = true, const std::string& post = "") {
  const int64_t group = attrs.count("group") ? attrs.at("group").i : 1;
  Shape w_shape = {o, c / group};
  w_shape.insert(w_shape.end(), kernel.begin(), kernel.end());
  std::map<std::string, Tensor> weights;
  weights["w"] = random_tensor(w_shape, 11);
  std::vector<std::string> inputs = {"w"};
  if (bias) {
    weights["b"] = random_tensor({o}, 12);
    inputs.push_back("b");
  }
  attrs["kernel_shape"] = ints(kernel);
  Shape sample = {c};
  sample.insert(sample.end(), hw.begin(), hw.end());
  return make_case(label, "Conv", sample, std::move(weights), inputs, std::move(attrs), post);
}

std::vector<Case> all_cases() {
  std::vector<Case> cases;
  for (const std::string post : {"", "relu", "clip6", "clip_sym"}) {
    cases.push_back(conv_case("conv 3x3 s1 p1", 3, {9, 9}, 8, {3, 3},
                              {{"pads", ints({1, 1, 1, 1})}}, true, post));
    cases.push_back(conv_case("conv 1-channel 5x5 first layer", 1, {12, 12}, 16, {5, 5},
                              {{"pads", ints({2, 2, 2, 2})}}, true, post));
    cases.push_back(
        conv_case("depthwise 3x3 s2 p1", 8, {9, 9}, 8, {3, 3},
                  {{"group", integer(8)}, {"strides", ints({2, 2})}, {"pads", ints({1, 1, 1, 1})}},
                  true, post));
  }
  cases.push_back(conv_case("conv 3x3 s2 asymmetric pads", 4, {10, 7}, 6, {3, 3},
                            {{"strides", ints({2, 2})}, {"pads", ints({0, 1, 1, 0})}}));
  cases.push_back(conv_case("conv 3x3 dilation 2", 5, {11, 11}, 4, {3, 3},
                            {{"dilations", ints({2, 2})}, {"pads", ints({2, 2, 2, 2})}}));
  cases.push_back(conv_case("conv 3x2 stride (2,1) dilation (1,2)", 4, {9, 10}, 6, {3, 2},
                            {{"strides", ints({2, 1})}, {"dilations", ints({1, 2})}}));
  cases.push_back(conv_case("grouped conv g2", 6, {8, 8}, 4, {3, 3},
                            {{"group", integer(2)}, {"pads", ints({1, 1, 1, 1})}}));
  cases.push_back(conv_case("depthwise multiplier 2", 4, {7, 7}, 8, {3, 3},
                            {{"group", integer(4)}, {"pads", ints({1, 1, 1, 1})}}));
  cases.push_back(conv_case("pointwise 1x1", 16, {6, 6}, 12, {1, 1}, {}));
  cases.push_back(conv_case("conv without bias", 8, {6, 6}, 8, {3, 3}, {}, false));
  cases.push_back(conv_case("conv SAME_UPPER stride 2", 3, {9, 8}, 5, {3, 3},
                            {{"auto_pad", text("SAME_UPPER")}, {"strides", ints({2, 2})}}));
  cases.push_back(conv_case("conv 1-D k5 s2 p2", 4, {20}, 6, {5},
                            {{"strides", ints({2})}, {"pads", ints({2, 2})}}));
  cases.push_back(conv_case("conv 32 channels 3x3", 32, {14, 14}, 32, {3, 3},
                            {{"pads", ints({1, 1, 1, 1})}}, true, "relu"));
  // Gemm: x [N, K] times B [N_out, K] (transB) or [K, N_out]; transA has its own test case.
  for (const std::string post : {"", "relu", "clip_sym"}) {
    cases.push_back(make_case("gemm transB C-row", "Gemm", {7},
                              {{"B", random_tensor({5, 7}, 21)}, {"C", random_tensor({5}, 22)}},
                              {"B", "C"}, {{"transB", integer(1)}}, post));
  }
  cases.push_back(make_case("gemm B [K,N] alpha 0.5 beta 2 C [1,N]", "Gemm", {7},
                            {{"B", random_tensor({7, 5}, 23)}, {"C", random_tensor({1, 5}, 24)}},
                            {"B", "C"}, {{"alpha", real(0.5f)}, {"beta", real(2.0f)}}));
  cases.push_back(make_case("gemm without C", "Gemm", {33}, {{"B", random_tensor({9, 33}, 25)}},
                            {"B"}, {{"transB", integer(1)}}));
  cases.push_back(make_case("gemm beta 0 ignores C", "Gemm", {6},
                            {{"B", random_tensor({6, 4}, 26)}, {"C", random_tensor({4}, 27)}},
                            {"B", "C"}, {{"beta", real(0.0f)}}));
  cases.push_back(make_case("matmul [N,3,7] x [7,5]", "MatMul", {3, 7},
                            {{"B", random_tensor({7, 5}, 28)}}, {"B"}, {}));
  cases.push_back(make_case("matmul [N,7] x [7,5]", "MatMul", {7},
                            {{"B", random_tensor({7, 5}, 29)}}, {"B"}, {}));
  return cases;
}

Tensor batch_of(const Shape& sample, int64_t n, uint32_t seed) {
  Shape s = {n};
  s.insert(s.end(), sample.begin(), sample.end());
  return random_tensor(s, seed);
}

Executor with_kernels(const Graph& g, int threads, ExecutorOptions::Kernels k) {
  ExecutorOptions o;
  o.threads = threads;
  o.kernels = k;
  return Executor(g, o);
}

}  // namespace

TEST_CASE("oneDNN and Eigen kernels agree on every Conv/Gemm/MatMul shape class oneDNN takes") {
  for (const Case& c : all_cases()) {
    CAPTURE(c.label);
    for (const int64_t n : {1, 5}) {
      for (const int threads : {1, 2}) {
        CAPTURE(n);
        CAPTURE(threads);
        const Tensor x = batch_of(c.sample, n, 7 + static_cast<uint32_t>(n));
        Executor eigen = with_kernels(c.graph, threads, ExecutorOptions::Kernels::kEigen);
        Executor onednn = with_kernels(c.graph, threads, ExecutorOptions::Kernels::kOneDnn);
        const Tensor want = eigen.run({x})[0];
        const Tensor got = onednn.run({x})[0];
        CHECK(eigen.onednn_calls() == 0);
        CHECK(onednn.onednn_calls() >= 1);
        REQUIRE(got.shape == want.shape);
        CHECK(worst_violation(got, want, kRtol, kAtol) <= 0.0);
        // Second run of the same shape: the cached primitive and reordered weights give the same
        // bits.
        CHECK(onednn.run({x})[0].f32 == got.f32);
      }
    }
  }
}

TEST_CASE("oneDNN and Eigen agree on Gemm with transA (the batch is then the inner dimension)") {
  const Case c = make_case("gemm transA transB", "Gemm", {3},
                           {{"B", random_tensor({4, 5}, 31)}, {"C", random_tensor({4}, 32)}},
                           {"B", "C"}, {{"transA", integer(1)}, {"transB", integer(1)}}, "relu");
  const Tensor x = batch_of(c.sample, 5, 33);  // A^T [3, 5] times B^T [5, 4]
  Executor eigen = with_kernels(c.graph, 1, ExecutorOptions::Kernels::kEigen);
  Executor onednn = with_kernels(c.graph, 1, ExecutorOptions::Kernels::kOneDnn);
  const Tensor want = eigen.run({x})[0], got = onednn.run({x})[0];
  CHECK(onednn.onednn_calls() == 1);
  REQUIRE(got.shape == Shape{3, 4});
  CHECK(worst_violation(got, want, kRtol, kAtol) <= 0.0);
}

TEST_CASE("oneDNN's fused Clip bounds hold exactly and Relu leaves no negative value") {
  for (const Case& c : all_cases()) {
    const bool relu = c.label.find("+ relu") != std::string::npos;
    const bool clip = c.label.find("+ clip_sym") != std::string::npos;
    if (!relu && !clip) continue;
    CAPTURE(c.label);
    Executor onednn = with_kernels(c.graph, 2, ExecutorOptions::Kernels::kOneDnn);
    const Tensor y = onednn.run({batch_of(c.sample, 4, 3)})[0];
    REQUIRE(onednn.onednn_calls() >= 1);
    float lo = 1e30f, hi = -1e30f;
    for (float v : y.f32) {
      lo = std::min(lo, v);
      hi = std::max(hi, v);
    }
    if (relu) CHECK(lo == 0.0f);  // random weights: some outputs are clamped to exactly 0
    if (clip) {
      CHECK(lo == -0.5f);
      CHECK(hi == 0.5f);
    }
  }
}

TEST_CASE("One oneDNN executor serves several batch sizes and thread splits") {
  const Case c = conv_case("conv 3x3 s1 p1", 3, {9, 9}, 8, {3, 3}, {{"pads", ints({1, 1, 1, 1})}},
                           true, "relu");
  Executor onednn = with_kernels(c.graph, 2, ExecutorOptions::Kernels::kOneDnn);
  Executor eigen = with_kernels(c.graph, 2, ExecutorOptions::Kernels::kEigen);
  for (const int64_t n : {1, 2, 7, 1, 64, 2}) {
    CAPTURE(n);
    const Tensor x = batch_of(c.sample, n, static_cast<uint32_t>(100 + n));
    CHECK(worst_violation(onednn.run({x})[0], eigen.run({x})[0], kRtol, kAtol) <= 0.0);
  }
}

TEST_CASE("COMPSEARCH_EXECUTOR_KERNELS picks the kernels of an executor left on kAuto") {
  const Case c = make_case("gemm", "Gemm", {7}, {{"B", random_tensor({5, 7}, 21)}}, {"B"},
                           {{"transB", integer(1)}});
  const Tensor x = batch_of(c.sample, 3, 1);
  const char* before = std::getenv("COMPSEARCH_EXECUTOR_KERNELS");
  const std::string saved = before ? before : "";
  ::setenv("COMPSEARCH_EXECUTOR_KERNELS", "eigen", 1);
  Executor eigen(c.graph, ExecutorOptions{1});
  eigen.run({x});
  CHECK(eigen.onednn_calls() == 0);
  ::setenv("COMPSEARCH_EXECUTOR_KERNELS", "onednn", 1);
  Executor onednn(c.graph, ExecutorOptions{1});
  onednn.run({x});
  CHECK(onednn.onednn_calls() == 1);
  ::setenv("COMPSEARCH_EXECUTOR_KERNELS", "fast", 1);
  CHECK_THROWS_WITH_AS(Executor(c.graph, ExecutorOptions{1}),
                       doctest::Contains("COMPSEARCH_EXECUTOR_KERNELS='fast': expected auto, "
                                         "eigen or onednn"),
                       std::invalid_argument);
  if (before)
    ::setenv("COMPSEARCH_EXECUTOR_KERNELS", saved.c_str(), 1);
  else
    ::unsetenv("COMPSEARCH_EXECUTOR_KERNELS");
}

namespace {

Node plain_node(const std::string& op, std::vector<std::string> inputs, const std::string& out,
                std::map<std::string, Attribute> attrs = {}) {
  Node n;
  n.name = op + "_" + out;
  n.op_type = op;
  n.inputs = std::move(inputs);
  n.outputs = {out};
  n.attributes = std::move(attrs);
  return n;
}

// x [N, 3, 12, 12] -> Conv+Relu -> MaxPool 2x2 -> (Conv 3x3 ; Conv 1x1) -> Add -> Relu
// -> AveragePool 3x3 s1 p1 (count_include_pad) -> Conv depthwise + Clip(0, 6) -> MaxPool 3x3 s2
// ceil_mode -> GlobalAveragePool -> Flatten -> Gemm: the values between the convolutions and
// poolings stay channels-last in the oneDNN plan. With c = 16 channels (a multiple of oneDNN's
// channel block) the values around the 3x3 stride-1 Conv (p1 -> c2, and the residual sum c2 + c3
// -> r2) are kept blocked where oneDNN has Winograd kernels, and the AveragePool reads blocked and
// writes NHWC.
Graph channels_last_graph(int64_t c = 8) {
  Graph g;
  g.opset_version = 13;
  g.inputs.push_back(ValueInfo{"x", DType::kFloat32, {-1, 3, 12, 12}});
  g.initializers["w1"] = random_tensor({c, 3, 3, 3}, 41);
  g.initializers["b1"] = random_tensor({c}, 42);
  g.initializers["w2"] = random_tensor({c, c, 3, 3}, 43);
  g.initializers["w3"] = random_tensor({c, c, 1, 1}, 44);
  g.initializers["wd"] = random_tensor({c, 1, 3, 3}, 45);
  g.initializers["lo"] = Tensor::floats({}, {0.0f});
  g.initializers["hi"] = Tensor::floats({}, {6.0f});
  g.initializers["fc"] = random_tensor({5, c}, 46);
  const auto pads1 = ints({1, 1, 1, 1});
  g.nodes = {
      plain_node("Conv", {"x", "w1", "b1"}, "c1",
                 {{"kernel_shape", ints({3, 3})}, {"pads", pads1}}),
      plain_node("Relu", {"c1"}, "r1"),
      plain_node("MaxPool", {"r1"}, "p1",
                 {{"kernel_shape", ints({2, 2})}, {"strides", ints({2, 2})}}),
      plain_node("Conv", {"p1", "w2"}, "c2", {{"kernel_shape", ints({3, 3})}, {"pads", pads1}}),
      plain_node("Conv", {"p1", "w3"}, "c3", {{"kernel_shape", ints({1, 1})}}),
      plain_node("Add", {"c2", "c3"}, "s"),
      plain_node("Relu", {"s"}, "r2"),
      plain_node(
          "AveragePool", {"r2"}, "a1",
          {{"kernel_shape", ints({3, 3})}, {"pads", pads1}, {"count_include_pad", integer(1)}}),
      plain_node("Conv", {"a1", "wd"}, "c4",
                 {{"kernel_shape", ints({3, 3})}, {"pads", pads1}, {"group", integer(c)}}),
      plain_node("Clip", {"c4", "lo", "hi"}, "k"),
      plain_node(
          "MaxPool", {"k"}, "p2",
          {{"kernel_shape", ints({3, 3})}, {"strides", ints({2, 2})}, {"ceil_mode", integer(1)}}),
      plain_node("GlobalAveragePool", {"p2"}, "gap"),
      plain_node("Flatten", {"gap"}, "f"),
      plain_node("Gemm", {"f", "fc"}, "y", {{"transB", integer(1)}}),
  };
  g.outputs.push_back(ValueInfo{"y", DType::kFloat32, {}});
  infer_shapes(g);
  return g;
}

// Runs g on x with a layer-input hook that records and changes each layer's input, under the
// Eigen and the default (oneDNN) plans: both must see the same NCHW activations at the same
// `layers` layers and give the same result. A tensor in another layout handed to the hook (a
// permutation of the Eigen plan's), or an activation a fused kernel skipped, fails the comparison.
void check_hooks_agree(const Graph& g, const Tensor& x, int threads, size_t layers) {
  auto hooked = [&](ExecutorOptions::Kernels k, std::map<size_t, Tensor>& seen) {
    Executor e = with_kernels(g, threads, k);
    e.set_layer_input_hook([&seen](size_t node, Tensor& a) {
      seen[node] = a;
      for (float& v : a.f32) v = v > 0.0f ? 0.5f * v : 2.0f * v;
    });
    return e.run({x})[0];
  };
  std::map<size_t, Tensor> seen_eigen, seen_onednn;
  const Tensor want = hooked(ExecutorOptions::Kernels::kEigen, seen_eigen);
  const Tensor got = hooked(ExecutorOptions::Kernels::kAuto, seen_onednn);
  REQUIRE(seen_eigen.size() == layers);
  REQUIRE(seen_onednn.size() == layers);
  for (const auto& entry : seen_eigen) {
    const auto& node = entry.first;  // not a structured binding: clang 14's CAPTURE
    CAPTURE(node);
    REQUIRE(seen_onednn.at(node).shape == entry.second.shape);
    CHECK(worst_violation(seen_onednn.at(node), entry.second, kRtol, kAtol) <= 0.0);
  }
  CHECK(worst_violation(got, want, kRtol, kAtol) <= 0.0);
}

}  // namespace

TEST_CASE(
    "A channels-last chain of oneDNN convolutions, poolings and elementwise ops gives the "
    "Eigen result") {
  for (const int64_t c : {8, 16}) {
    const Graph g = channels_last_graph(c);
    for (const int64_t n : {1, 6}) {
      for (const int threads : {1, 2}) {
        CAPTURE(c);
        CAPTURE(n);
        CAPTURE(threads);
        const Tensor x = batch_of({3, 12, 12}, n, 50 + static_cast<uint32_t>(n));
        Executor eigen = with_kernels(g, threads, ExecutorOptions::Kernels::kEigen);
        Executor onednn = with_kernels(g, threads, ExecutorOptions::Kernels::kOneDnn);
        const Tensor want = eigen.run({x})[0], got = onednn.run({x})[0];
        // 4 convolutions, 4 poolings and the Gemm, once per batch slice (a batch this small runs
        // whole, on one thread).
        CHECK(onednn.onednn_calls() == 9);
        REQUIRE(got.shape == want.shape);
        CHECK(worst_violation(got, want, kRtol, kAtol) <= 0.0);
      }
    }
  }
}

// The kernel and layouts each step ran with (ExecutorOptions::time_steps), by output value.
// With `hooked`, a layer-input hook (that changes nothing) is set.
std::map<std::string, std::string> kernels_of(const Graph& g, const Tensor& x,
                                              bool hooked = false) {
  ExecutorOptions o;
  o.threads = 1;
  o.time_steps = true;
  Executor e(g, o);
  if (hooked) e.set_layer_input_hook([](size_t, Tensor&) {});
  e.run({x});
  std::map<std::string, std::string> out;
  for (const auto& t : e.step_times()) out[g.nodes[t.node_index].outputs[0]] = t.kernel;
  return out;
}

TEST_CASE(
    "A 3x3 stride-1 convolution on 16 channels runs Winograd on blocked layouts where oneDNN has "
    "it, and the chain gives the Eigen and the all-NHWC results") {
  const Graph g = channels_last_graph(16);
  const Tensor x = batch_of({3, 12, 12}, 2, 70);
  const auto kernels = kernels_of(g, x);
  for (const auto& entry : kernels) {
    CAPTURE(entry.first);
    CAPTURE(entry.second);
  }
  const std::string& c2 = kernels.at("c2");
  CAPTURE(c2);
  if (detail::dnnl_winograd_available()) {
    CHECK(c2.find("wino") != std::string::npos);
    CHECK(c2.find("blocked>blocked") != std::string::npos);
    CHECK(c2.find("reorder") == std::string::npos);
    // The 1x1 beside it writes the other operand of the residual sum: blocked too, and the
    // AveragePool after the sum reads blocked.
    CHECK(kernels.at("c3").find("blocked>blocked") != std::string::npos);
    CHECK(kernels.at("a1").find("blocked>") != std::string::npos);
  } else {
    CHECK(c2.find("wino") == std::string::npos);
  }
  // The first layer reads the NCHW graph input.
  CHECK(kernels.at("c1").find("nchw>") != std::string::npos);

  const Tensor want = with_kernels(g, 1, ExecutorOptions::Kernels::kEigen).run({x})[0];
  const Tensor got = with_kernels(g, 1, ExecutorOptions::Kernels::kAuto).run({x})[0];
  CHECK(worst_violation(got, want, kRtol, kAtol) <= 0.0);
  setenv("COMPSEARCH_EXECUTOR_LAYOUTS", "nhwc", 1);
  const auto nhwc_kernels = kernels_of(g, x);
  const Tensor nhwc = with_kernels(g, 1, ExecutorOptions::Kernels::kAuto).run({x})[0];
  unsetenv("COMPSEARCH_EXECUTOR_LAYOUTS");
  CHECK(nhwc_kernels.at("c2").find("blocked") == std::string::npos);
  CHECK(worst_violation(nhwc, want, kRtol, kAtol) <= 0.0);
}

TEST_CASE("convert_layout places element (n, c, h, w) where each layout says") {
  const int64_t b = detail::blocked_channels();
  CHECK((b == 8 || b == 16));
  const int64_t n = 2, c = 2 * b, h = 3, w = 2;
  Tensor x = Tensor::floats({n, c, h, w}, std::vector<float>(static_cast<size_t>(n * c * h * w)));
  for (size_t i = 0; i < x.f32.size(); ++i) x.f32[i] = static_cast<float>(i);  // NCHW index
  using detail::ActLayout;
  Tensor nhwc, blocked, back;
  detail::convert_layout(x, ActLayout::kNchw, ActLayout::kNhwc, nhwc);
  detail::convert_layout(nhwc, ActLayout::kNhwc, ActLayout::kBlocked, blocked);
  detail::convert_layout(blocked, ActLayout::kBlocked, ActLayout::kNchw, back);
  CHECK(back.f32 == x.f32);
  // Element (1, b + 3, 2, 1): NCHW index ((1 * c + b + 3) * h + 2) * w + 1.
  const float v = static_cast<float>(((1 * c + b + 3) * h + 2) * w + 1);
  CHECK(nhwc.f32[static_cast<size_t>(((1 * h + 2) * w + 1) * c + b + 3)] == v);
  // Blocked: channel block 1 of sample 1, pixel (2, 1), lane 3.
  CHECK(blocked.f32[static_cast<size_t>((((1 * 2 + 1) * h + 2) * w + 1) * b + 3)] == v);
}

TEST_CASE("A layer-input hook sees NCHW activations inside a channels-last or blocked chain") {
  for (const int64_t c : {8, 16}) {
    CAPTURE(c);
    check_hooks_agree(channels_last_graph(c), batch_of({3, 12, 12}, 3, 60), 2, 5);
  }
}

namespace {

// x [N, 3, 12, 12] -> Conv 3x3 3->16 + Relu -> Conv 1x1 16->32 + Clip(0, 6) -> depthwise 3x3
// (stride `stride`, padding 1, bias if `dw_bias`) + Clip(0, 6) -> Conv 1x1 32->16 ->
// GlobalAveragePool -> Flatten -> Gemm: MobileNetV2's inverted residual, whose 1x1 -> depthwise
// pair the plan runs as one oneDNN kernel on blocked layouts.
Graph inverted_residual_graph(int64_t stride, bool dw_bias) {
  Graph g;
  g.opset_version = 13;
  g.inputs.push_back(ValueInfo{"x", DType::kFloat32, {-1, 3, 12, 12}});
  g.initializers["w0"] = random_tensor({16, 3, 3, 3}, 81);
  g.initializers["w1"] = random_tensor({32, 16, 1, 1}, 82);
  g.initializers["b1"] = random_tensor({32}, 83);
  g.initializers["wd"] = random_tensor({32, 1, 3, 3}, 84);
  g.initializers["bd"] = random_tensor({32}, 85);
  g.initializers["w2"] = random_tensor({16, 32, 1, 1}, 86);
  g.initializers["lo"] = Tensor::floats({}, {0.0f});
  g.initializers["hi"] = Tensor::floats({}, {6.0f});
  g.initializers["fc"] = random_tensor({5, 16}, 87);
  const auto pads1 = ints({1, 1, 1, 1});
  std::vector<std::string> dw_inputs = {"k1", "wd"};
  if (dw_bias) dw_inputs.push_back("bd");
  g.nodes = {
      plain_node("Conv", {"x", "w0"}, "c0", {{"kernel_shape", ints({3, 3})}, {"pads", pads1}}),
      plain_node("Relu", {"c0"}, "r0"),
      plain_node("Conv", {"r0", "w1", "b1"}, "c1", {{"kernel_shape", ints({1, 1})}}),
      plain_node("Clip", {"c1", "lo", "hi"}, "k1"),
      plain_node("Conv", dw_inputs, "cd",
                 {{"kernel_shape", ints({3, 3})},
                  {"pads", pads1},
                  {"strides", ints({stride, stride})},
                  {"group", integer(32)}}),
      plain_node("Clip", {"cd", "lo", "hi"}, "kd"),
      plain_node("Conv", {"kd", "w2"}, "c2", {{"kernel_shape", ints({1, 1})}}),
      plain_node("GlobalAveragePool", {"c2"}, "gap"),
      plain_node("Flatten", {"gap"}, "f"),
      plain_node("Gemm", {"f", "fc"}, "y", {{"transB", integer(1)}}),
  };
  g.outputs.push_back(ValueInfo{"y", DType::kFloat32, {}});
  infer_shapes(g);
  return g;
}

}  // namespace

TEST_CASE(
    "A 1x1 -> depthwise pair runs as one oneDNN kernel on blocked layouts and gives the Eigen "
    "result, with and without a layer-input hook") {
  for (const int64_t stride : {1, 2}) {
    for (const bool dw_bias : {true, false}) {
      CAPTURE(stride);
      CAPTURE(dw_bias);
      const Graph g = inverted_residual_graph(stride, dw_bias);
      for (const int64_t n : {1, 3}) {
        CAPTURE(n);
        const Tensor x = batch_of({3, 12, 12}, n, 90 + static_cast<uint32_t>(n));
        const auto kernels = kernels_of(g, x);
        CAPTURE(kernels.at("c1"));
        // The pair is one step, named by the 1x1, that writes the depthwise output (its Clip
        // fused in too); the depthwise node has no step of its own.
        CHECK(kernels.at("c1").find("blocked>blocked+dw") != std::string::npos);
        CHECK(kernels.count("cd") == 0);
        for (const int threads : {1, 2}) {
          CAPTURE(threads);
          const Tensor want =
              with_kernels(g, threads, ExecutorOptions::Kernels::kEigen).run({x})[0];
          const Tensor got = with_kernels(g, threads, ExecutorOptions::Kernels::kAuto).run({x})[0];
          REQUIRE(got.shape == want.shape);
          CHECK(worst_violation(got, want, kRtol, kAtol) <= 0.0);
        }
      }
      // With a hook, the depthwise layer's input (the 1x1's output, never written by the fused
      // kernel) is still seen, in NCHW, and changed by the hook in both plans alike: 4
      // convolutions and the Gemm.
      check_hooks_agree(g, batch_of({3, 12, 12}, 2, 95), 1, 5);
      // ... on oneDNN's kernels, unfused, not on the executor's own (Eigen) ones.
      const std::string k = kernels_of(g, batch_of({3, 12, 12}, 2, 95), true).at("c1");
      CAPTURE(k);
      CHECK(k.find("oneDNN jit_1x1") == 0);
      CHECK(k.find(", hook, ") != std::string::npos);
      CHECK(k.find("+dw") == std::string::npos);
    }
  }
}
