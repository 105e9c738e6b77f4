// Trainer backward passes: every op's gradient against central finite differences on small
// graphs, and against PyTorch autograd on networks exported by scripts/make_training_fixtures.py.
#include <doctest/doctest.h>

#include <cmath>

#include "model/executor.h"
#include "model/graph.h"
#include "model/training.h"
#include "tests/model/training_test_util.h"

using namespace compsearch::model;
using namespace compsearch::model::training_testing;

namespace {

void check_fd(const Graph& g, const Tensor& x, int threads = 2, double eps = 5e-3) {
  Trainer trainer(g, TrainerOptions{.threads = threads});
  REQUIRE(!trainer.parameters().empty());
  const Tensor& y = trainer.forward(x, Trainer::Mode::kTrain);
  const Tensor r = random_tensor(y.shape, 99);
  const FdReport rep = finite_difference_check(trainer, x, r, eps);
  INFO(rep.first_failure);
  CHECK(rep.checked > 10);
  // Relu/MaxPool/Clip kinks can make an isolated central difference straddle a kink.
  CHECK(rep.failed <= rep.checked / 50);
}

std::map<std::string, Attribute> conv_attrs(std::vector<int64_t> k, std::vector<int64_t> pads,
                                            std::vector<int64_t> strides, int64_t group = 1,
                                            std::vector<int64_t> dil = {1, 1}) {
  return {{"kernel_shape", attr_ints(k)},
          {"pads", attr_ints(pads)},
          {"strides", attr_ints(strides)},
          {"group", attr_int(group)},
          {"dilations", attr_ints(dil)}};
}

}  // namespace

TEST_CASE(
    "Conv backward (groups, stride, padding, dilation, 1x1, depthwise with multiplier) matches "
    "finite differences") {
  SUBCASE("grouped 3x3, stride 2, asymmetric padding") {
    GraphBuilder b({2, 4, 7, 6});
    auto y = b.node("Conv", {"x", b.init("c1.weight", {6, 2, 3, 3}), b.init("c1.bias", {6})},
                    conv_attrs({3, 3}, {1, 0, 2, 1}, {2, 2}, 2));
    y = b.node("Conv", {y, b.init("c2.weight", {3, 6, 2, 2}), b.init("c2.bias", {3})},
               conv_attrs({2, 2}, {0, 0, 0, 0}, {1, 1}, 1, {2, 1}));
    check_fd(b.finish(y), random_tensor({2, 4, 7, 6}, 5));
  }
  SUBCASE("1x1 direct path and depthwise with channel multiplier 2") {
    GraphBuilder b({3, 2, 5, 5});
    auto y = b.node("Conv", {"x", b.init("pw.weight", {4, 2, 1, 1})},
                    conv_attrs({1, 1}, {0, 0, 0, 0}, {1, 1}));
    y = b.node("Conv", {y, b.init("dw.weight", {8, 1, 3, 3}), b.init("dw.bias", {8})},
               conv_attrs({3, 3}, {1, 1, 1, 1}, {1, 1}, 4));
    y = b.node("Conv", {y, b.init("dw2.weight", {8, 1, 3, 3})},
               conv_attrs({3, 3}, {1, 1, 1, 1}, {2, 2}, 8));
    check_fd(b.finish(y), random_tensor({3, 2, 5, 5}, 6));
  }
  SUBCASE("1-D convolution") {
    GraphBuilder b({2, 3, 9});
    auto y = b.node("Conv", {"x", b.init("c.weight", {4, 3, 3}), b.init("c.bias", {4})},
                    {{"kernel_shape", attr_ints({3})},
                     {"pads", attr_ints({1, 1})},
                     {"strides", attr_ints({2})}});
    check_fd(b.finish(y), random_tensor({2, 3, 9}, 7));
  }
}

TEST_CASE(
    "Gemm and MatMul backward (transB both ways, alpha, beta, broadcast C, batched A) match finite "
    "differences") {
  SUBCASE("Gemm transB=0 with alpha, beta and a row bias") {
    GraphBuilder b({4, 5});
    auto y = b.node("Gemm", {"x", b.init("fc1.weight", {5, 3}), b.init("fc1.bias", {1, 3})},
                    {{"alpha", attr_float(0.7f)}, {"beta", attr_float(1.3f)}});
    y = b.node("Gemm", {y, b.init("fc2.weight", {2, 3}), b.init("fc2.bias", {2})},
               {{"transB", attr_int(1)}});
    check_fd(b.finish(y), random_tensor({4, 5}, 8));
  }
  SUBCASE("Gemm with a scalar C and MatMul on a 3-D activation") {
    GraphBuilder b({2, 3, 4});
    auto y = b.node("MatMul", {"x", b.init("m.weight", {4, 5})});
    y = b.node("Reshape", {y, b.init_values("shape", Tensor::ints({2}, {0, -1}))});
    y = b.node("Gemm", {y, b.init("fc.weight", {3, 15}), b.init("fc.bias", {1})},
               {{"transB", attr_int(1)}});
    check_fd(b.finish(y), random_tensor({2, 3, 4}, 9));
  }
}

TEST_CASE(
    "Elementwise, pooling, BatchNormalization, Concat and Pad backward match finite differences") {
  SUBCASE("Add/Sub/Mul with broadcasting, Relu, Clip") {
    GraphBuilder b({2, 3, 4, 4});
    auto c = b.node("Conv", {"x", b.init("c.weight", {3, 3, 3, 3}), b.init("c.bias", {3})},
                    conv_attrs({3, 3}, {1, 1, 1, 1}, {1, 1}));
    auto s = b.node("Add", {c, "x"});
    auto k = b.node("Mul", {s, b.init("scale", {3, 1, 1})});
    auto r = b.node("Relu", {k});
    auto m = b.node("Mul", {r, c});
    auto d = b.node("Sub", {m, b.node("GlobalAveragePool", {c})});
    auto cl = b.node("Clip", {d, b.init_values("lo", Tensor::floats({}, {-0.5f})),
                              b.init_values("hi", Tensor::floats({}, {0.8f}))});
    check_fd(b.finish(cl), random_tensor({2, 3, 4, 4}, 10));
  }
  SUBCASE("MaxPool with overlapping padded windows, AveragePool ceil mode both count modes") {
    GraphBuilder b({2, 2, 7, 7});
    auto c = b.node("Conv", {"x", b.init("c.weight", {3, 2, 3, 3}), b.init("c.bias", {3})},
                    conv_attrs({3, 3}, {1, 1, 1, 1}, {1, 1}));
    auto mp = b.node("MaxPool", {c},
                     {{"kernel_shape", attr_ints({3, 3})},
                      {"pads", attr_ints({1, 1, 1, 1})},
                      {"strides", attr_ints({2, 2})}});
    auto ap = b.node("AveragePool", {c},
                     {{"kernel_shape", attr_ints({3, 3})},
                      {"pads", attr_ints({1, 1, 1, 1})},
                      {"strides", attr_ints({2, 2})},
                      {"count_include_pad", attr_int(1)}});
    auto ap2 = b.node("AveragePool", {c},
                      {{"kernel_shape", attr_ints({2, 2})},
                       {"strides", attr_ints({2, 2})},
                       {"ceil_mode", attr_int(1)}});
    auto cat = b.node("Concat", {mp, ap}, {{"axis", attr_int(1)}});
    auto f1 = b.node("Flatten", {cat});
    auto f2 = b.node("Flatten", {ap2});
    auto y = b.node("Concat", {f1, f2}, {{"axis", attr_int(1)}});
    check_fd(b.finish(y), random_tensor({2, 2, 7, 7}, 11));
  }
  SUBCASE("BatchNormalization with batch statistics on 4-D and 2-D inputs, Pad") {
    GraphBuilder b({4, 2, 5, 5});
    auto c = b.node("Conv", {"x", b.init("c.weight", {3, 2, 3, 3}), b.init("c.bias", {3})},
                    conv_attrs({3, 3}, {0, 0, 0, 0}, {1, 1}));
    b.init_values("bn.running_mean", Tensor::zeros({3}));
    b.init_values("bn.running_var", Tensor::floats({3}, {1, 1, 1}));
    auto bn = b.node("BatchNormalization", {c, b.init("bn.weight", {3}), b.init("bn.bias", {3}),
                                            "bn.running_mean", "bn.running_var"});
    auto p = b.node("Pad", {bn, b.init_values("pads", Tensor::ints({8}, {0, 0, 1, 0, 0, 0, 0, 2})),
                            b.init_values("padv", Tensor::floats({}, {0.25f}))});
    auto f = b.node("Flatten", {p});
    auto fc = b.node("Gemm", {f, b.init("fc.weight", {4, 3 * 4 * 5}), b.init("fc.bias", {4})},
                     {{"transB", attr_int(1)}});
    b.init_values("bn2.running_mean", Tensor::zeros({4}));
    b.init_values("bn2.running_var", Tensor::floats({4}, {1, 1, 1, 1}));
    auto bn2 = b.node("BatchNormalization",
                      {fc, b.init("bn2.weight", {4}), b.init("bn2.bias", {4}), "bn2.running_mean",
                       "bn2.running_var"},
                      {{"epsilon", attr_float(1e-3f)}});
    check_fd(b.finish(bn2), random_tensor({4, 2, 5, 5}, 12), 2, 2e-3);
  }
}

TEST_CASE("Trainer gradients equal PyTorch autograd on the exported fixture networks") {
  const auto m = manifest();
  REQUIRE(m["grad_cases"].size() == 3);
  for (const auto& c : m["grad_cases"]) {
    const std::string name = c["name"];
    CAPTURE(name);
    const Graph g = load_onnx(fixture_dir() / (name + ".onnx"));
    const Tensor x = fixture(name + ".input.npy");
    const Tensor r = fixture(name + ".upstream.npy");
    const Tensor want_y = fixture(name + ".output.npy");
    for (int threads : {1, 2}) {
      CAPTURE(threads);
      Trainer trainer(g, TrainerOptions{.threads = threads});
      const Tensor& y = trainer.forward(x, Trainer::Mode::kTrain);
      REQUIRE(y.shape == want_y.shape);
      for (size_t i = 0; i < y.f32.size(); ++i) {
        CHECK(y.f32[i] == doctest::Approx(want_y.f32[i]).epsilon(1e-4).scale(1.0));
      }
      trainer.backward(r);
      for (const auto& p : c["params"]) {
        const std::string onnx_name = p["onnx"], torch_name = p["torch"];
        CAPTURE(torch_name);
        const int idx = trainer.find_parameter(onnx_name);
        REQUIRE(idx >= 0);
        const Tensor want = fixture(name + ".grad." + torch_name + ".npy");
        const Tensor& got = trainer.parameters()[idx].grad;
        REQUIRE(got.f32.size() == want.f32.size());
        double worst = 0.0, scale = 0.0;
        for (size_t i = 0; i < want.f32.size(); ++i) {
          worst = std::max(worst, std::fabs(double(got.f32[i]) - double(want.f32[i])));
          scale = std::max(scale, std::fabs(double(want.f32[i])));
        }
        CHECK(worst <= 1e-4 * std::max(1.0, scale));
      }
      // Batch-norm running statistics after one training forward, as PyTorch updates them.
      Graph written = g;
      trainer.write_parameters(written);
      for (const auto& buf : c["running"]) {
        const std::string bname = buf;
        if (bname.find("num_batches") != std::string::npos) continue;
        CAPTURE(bname);
        const Tensor want = fixture(name + ".running." + bname + ".npy");
        const Tensor* got = written.find_initializer(bname);
        REQUIRE(got);
        for (size_t i = 0; i < want.f32.size(); ++i) {
          CHECK(got->f32[i] == doctest::Approx(want.f32[i]).epsilon(1e-5).scale(1.0));
        }
      }
    }
  }
}

TEST_CASE("Trainer gradients on the exported fixture networks match finite differences") {
  for (const std::string name : {"conv_group", "depthwise", "residual"}) {
    CAPTURE(name);
    const Graph g = load_onnx(fixture_dir() / (name + ".onnx"));
    check_fd(g, fixture(name + ".input.npy"), 2, name == "conv_group" ? 2e-3 : 5e-3);
  }
}

TEST_CASE("Eval mode reproduces the executor on the bundled CNN and MLP") {
  for (const std::string model : {"fmnist_cnn", "fmnist_mlp"}) {
    CAPTURE(model);
    const Graph g =
        load_onnx(std::filesystem::path(COMPSEARCH_SOURCE_DIR) / "models" / (model + ".onnx"));
    const Tensor x = random_tensor({5, 1, 28, 28}, 3);
    Executor exec(g, ExecutorOptions{2});
    const Tensor want = exec.run({x})[0];
    Trainer trainer(g, TrainerOptions{.threads = 2});
    const Tensor& got = trainer.forward(x, Trainer::Mode::kEval);
    REQUIRE(got.shape == want.shape);
    for (size_t i = 0; i < want.f32.size(); ++i) {
      CHECK(got.f32[i] == doctest::Approx(want.f32[i]).epsilon(1e-4).scale(1.0));
    }
    CHECK_THROWS_AS(trainer.backward(got), std::logic_error);
  }
}

TEST_CASE("An op without a backward on a gradient path is an error naming the node") {
  GraphBuilder b({2, 4});
  auto y = b.node("Gemm", {"x", b.init("fc.weight", {3, 4})}, {{"transB", attr_int(1)}});
  y = b.node("Softmax", {y}, {{"axis", attr_int(1)}});
  const Graph g = b.finish(y);
  CHECK_THROWS_WITH_AS(Trainer{g},
                       doctest::Contains("node 'Softmax1' (Softmax): has no backward pass"),
                       std::runtime_error);
  // Frozen, the weight no longer needs a gradient, so the graph trains nothing but runs.
  Trainer frozen(g, TrainerOptions{.frozen = {"fc.weight"}});
  CHECK(frozen.parameters().empty());
  CHECK_THROWS_WITH_AS(Trainer(g, TrainerOptions{.frozen = {"nope"}}).threads(),
                       doctest::Contains("'nope'"), std::invalid_argument);
}
