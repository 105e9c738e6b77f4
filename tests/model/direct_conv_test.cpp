// The direct convolution for tiny reductions (model/direct_conv.h) against the executor's Eigen
// reference kernels (im2col + GEMM Conv, then the MaxPool kernel): odd shapes (stride, asymmetric
// padding, dilation, groups, output channels not a multiple of 16, Cin = 1 and 3), batch 1 and 5,
// 1 and 2 threads, every input/output layout pair (NCHW, NHWC), the fused Relu/Clip and the fused
// MaxPool, within |direct - Eigen| <= 1e-5 * |Eigen| + 1e-6 (the same products summed in another
// order). Then the executor: kAuto plans the kernel (and fuses the pool) on a first layer and gives
// what kEigen gives, and the kernel declines what it does not cover.
#include "model/direct_conv.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <map>
#include <string>

#include "model/executor.h"
#include "model/graph.h"
#include "model/op_kernels.h"
#include "tests/model/test_util.h"
#include "tests/model/training_test_util.h"

using namespace compsearch::model;
using compsearch::model::detail::ActLayout;
using compsearch::model::testing::worst_violation;
using compsearch::model::training_testing::attr_int;
using compsearch::model::training_testing::attr_ints;
using compsearch::model::training_testing::random_tensor;

namespace {

// [N, C, H, W] stored NCHW -> the same shape stored NHWC (to_nhwc), or back.
Tensor relayout(const Tensor& x, bool to_nhwc) {
  Tensor y = x;
  const int64_t n = x.shape[0], c = x.shape[1], hw = x.shape[2] * x.shape[3];
  for (int64_t s = 0; s < n; ++s) {
    for (int64_t ch = 0; ch < c; ++ch) {
      for (int64_t p = 0; p < hw; ++p) {
        const int64_t nchw = (s * c + ch) * hw + p, nhwc = (s * hw + p) * c + ch;
        y.f32[to_nhwc ? nhwc : nchw] = x.f32[to_nhwc ? nchw : nhwc];
      }
    }
  }
  return y;
}

struct ConvCase {
  std::string label;
  int64_t c = 1, h = 9, w = 9, o = 16;
  std::vector<int64_t> kernel = {3, 3};
  std::map<std::string, Attribute> attrs;
  bool bias = true;
  detail::DnnlPostOp post;
  std::map<std::string, Attribute> pool;  // MaxPool attributes; empty: no fused pool
};

Node conv_node(const ConvCase& cc) {
  Node n;
  n.name = cc.label;
  n.op_type = "Conv";
  n.inputs = {"x", "w"};
  if (cc.bias) n.inputs.push_back("b");
  n.outputs = {"y"};
  n.attributes = cc.attrs;
  n.attributes["kernel_shape"] = attr_ints(cc.kernel);
  return n;
}

Node pool_node(const std::map<std::string, Attribute>& attrs) {
  Node n;
  n.name = "pool";
  n.op_type = "MaxPool";
  n.inputs = {"y"};
  n.outputs = {"z"};
  n.attributes = attrs;
  return n;
}

std::vector<ConvCase> cases() {
  const detail::DnnlPostOp none, relu{true, 0.0f, INFINITY}, clip{true, -0.25f, 0.5f};
  const auto pool2 = std::map<std::string, Attribute>{{"kernel_shape", attr_ints({2, 2})},
                                                      {"strides", attr_ints({2, 2})}};
  Attribute same_upper;
  same_upper.kind = Attribute::Kind::kString;
  same_upper.s = "SAME_UPPER";
  // clang-format off
  std::vector<ConvCase> v;
  v.push_back({"Cin 1, 3x3, pad 1 (the CNN's first layer) + Relu", 1, 28, 28, 16, {3, 3},
               {{"pads", attr_ints({1, 1, 1, 1})}}, true, relu, {}});
  v.push_back({"Cin 1, 3x3, pad 1 + Relu + MaxPool 2x2/2", 1, 28, 28, 16, {3, 3},
               {{"pads", attr_ints({1, 1, 1, 1})}}, true, relu, pool2});
  v.push_back({"Cin 3, 3x3 stride 2, asymmetric pads, 20 outputs (a 4-lane tail)", 3, 11, 10, 20,
               {3, 3}, {{"strides", attr_ints({2, 2})}, {"pads", attr_ints({0, 1, 2, 0})}}, true,
               none, {}});
  v.push_back({"Cin 3, 3x3 dilation 2, pad 2, Clip", 3, 13, 12, 32, {3, 3},
               {{"dilations", attr_ints({2, 2})}, {"pads", attr_ints({2, 2, 2, 2})}}, true, clip,
               {}});
  v.push_back({"Cin 1, 5x5 stride (2,1), dilation (1,2), no bias", 1, 17, 19, 8, {5, 5},
               {{"strides", attr_ints({2, 1})}, {"dilations", attr_ints({1, 2})},
                {"pads", attr_ints({1, 3, 0, 2})}}, false, none, {}});
  v.push_back({"Cin 2, group 2 (8 per group), 3x2 kernel", 2, 9, 8, 16, {3, 2},
               {{"group", attr_int(2)}, {"pads", attr_ints({1, 0, 1, 1})}}, true, relu, {}});
  v.push_back({"Cin 6, group 3 (2 in, 12 out per group) + MaxPool 3x3/2 (overlapping windows)", 6,
               15, 14, 36, {3, 3}, {{"group", attr_int(3)}, {"pads", attr_ints({1, 1, 1, 1})}},
               true, relu, {{"kernel_shape", attr_ints({3, 3})}, {"strides", attr_ints({2, 2})}}});
  v.push_back({"Cin 3, 1x1 + MaxPool 2x3 stride (1,2) on an odd size", 3, 7, 9, 24, {1, 1}, {},
               true, none, {{"kernel_shape", attr_ints({2, 3})}, {"strides", attr_ints({1, 2})}}});
  v.push_back({"Cin 3, 3x3 SAME_UPPER stride 2 + Clip + MaxPool 2x2/2", 3, 13, 11, 16, {3, 3},
               {{"auto_pad", same_upper}, {"strides", attr_ints({2, 2})}}, true, clip, pool2});
  // clang-format on
  return v;
}

}  // namespace

TEST_CASE("The direct convolution matches the Eigen Conv (and MaxPool) kernels on odd shapes") {
  // Every instruction set this CPU runs (AVX-512F, AVX2+FMA, the baseline), the best one last.
  std::vector<std::string> isas = detail::direct_conv_isas();
  REQUIRE(!isas.empty());
  std::reverse(isas.begin(), isas.end());
  for (const std::string& isa : isas) {
    CAPTURE(isa);
    REQUIRE(detail::use_direct_conv_isa(isa));
    REQUIRE(std::string(detail::direct_conv_isa()) == isa);
    uint32_t seed = 1;
    for (const ConvCase& cc : cases()) {
      CAPTURE(cc.label);
      const int64_t group = cc.attrs.count("group") ? cc.attrs.at("group").i : 1;
      const Tensor w = random_tensor({cc.o, cc.c / group, cc.kernel[0], cc.kernel[1]}, ++seed);
      const Tensor b = random_tensor({cc.o}, ++seed);
      const Node node = conv_node(cc);
      const Node pool = pool_node(cc.pool);
      for (const int64_t batch : {int64_t{1}, int64_t{5}}) {
        CAPTURE(batch);
        const Tensor x = random_tensor({batch, cc.c, cc.h, cc.w}, ++seed);
        // Reference: Eigen's Conv with the clamp, then the MaxPool kernel.
        detail::OpContext ctx;
        ctx.clamp = cc.post.clamp;
        ctx.lo = cc.post.lo;
        ctx.hi = cc.post.hi;
        Tensor want;
        std::vector<const Tensor*> in = {&x, &w};
        if (cc.bias) in.push_back(&b);
        detail::conv(node, in, want, ctx);
        if (!cc.pool.empty()) {
          Tensor conv_out = want;
          detail::pool(pool, {&conv_out}, want, detail::OpContext{});
        }
        for (const bool nhwc_in : {false, true}) {
          for (const bool nhwc_out : {false, true}) {
            for (const int threads : {1, 2}) {
              CAPTURE(nhwc_in);
              CAPTURE(nhwc_out);
              CAPTURE(threads);
              auto op = detail::make_direct_conv(node, &w, cc.bias ? &b : nullptr, cc.post);
              REQUIRE(op);
              CHECK_FALSE(op->onednn());
              if (!cc.pool.empty()) REQUIRE(detail::fuse_direct_conv_max_pool(*op, pool));
              op->set_layouts(nhwc_in ? ActLayout::kNhwc : ActLayout::kNchw,
                              nhwc_out ? ActLayout::kNhwc : ActLayout::kNchw);
              detail::DnnlScratch scratch;
              Tensor got;
              REQUIRE(op->run(nhwc_in ? relayout(x, true) : x, got, threads, scratch));
              REQUIRE(got.shape == want.shape);
              if (nhwc_out) got = relayout(got, false);
              CHECK(worst_violation(got, want, 1e-5, 1e-6) <= 0.0);
              // The clamp holds exactly.
              if (cc.post.clamp) {
                CHECK(*std::min_element(got.f32.begin(), got.f32.end()) >= cc.post.lo);
                CHECK(*std::max_element(got.f32.begin(), got.f32.end()) <= cc.post.hi);
              }
            }
          }
        }
      }
    }
  }
}

TEST_CASE("The direct convolution declines what it does not cover") {
  const Tensor w1 = random_tensor({16, 1, 3}, 1);  // 1-D
  const Tensor dw = random_tensor({8, 1, 3, 3}, 2);
  const Tensor big = random_tensor({16, 4, 3, 3}, 3);         // reduction 36 > 32
  const Tensor few = random_tensor({4, 3, 3, 3}, 4);          // 4 output channels
  const Tensor pointwise = random_tensor({16, 16, 1, 1}, 8);  // 16 input channels
  const Tensor ok = random_tensor({16, 3, 3, 3}, 5);
  Node conv;
  conv.op_type = "Conv";
  conv.inputs = {"x", "w"};
  conv.outputs = {"y"};
  CHECK_FALSE(detail::make_direct_conv(conv, &w1, nullptr, {}));
  CHECK_FALSE(detail::make_direct_conv(conv, &big, nullptr, {}));
  CHECK_FALSE(detail::make_direct_conv(conv, &few, nullptr, {}));
  CHECK_FALSE(detail::make_direct_conv(conv, &pointwise, nullptr, {}));
  Node depthwise = conv;
  depthwise.attributes["group"] = attr_int(8);
  CHECK_FALSE(detail::make_direct_conv(depthwise, &dw, nullptr, {}));
  auto op = detail::make_direct_conv(conv, &ok, nullptr, {});
  REQUIRE(op);
  // A MaxPool with padding, ceil_mode or dilation is left to its own step.
  for (const auto& entry : std::map<std::string, Attribute>{{"pads", attr_ints({1, 1, 1, 1})},
                                                            {"ceil_mode", attr_int(1)},
                                                            {"dilations", attr_ints({2, 2})}}) {
    const std::string& key = entry.first;  // not a structured binding: clang 14's CAPTURE
    CAPTURE(key);
    std::map<std::string, Attribute> attrs = {{"kernel_shape", attr_ints({2, 2})}, entry};
    CHECK_FALSE(detail::fuse_direct_conv_max_pool(*op, pool_node(attrs)));
  }
  // An input whose channels differ from the weight's: the op declines (the Eigen kernel reports
  // the error).
  detail::DnnlScratch scratch;
  Tensor y;
  CHECK_FALSE(op->run(random_tensor({1, 2, 5, 5}, 6), y, 1, scratch));
}

TEST_CASE("kAuto runs a first layer (and the MaxPool after it) on the direct kernel, as kEigen") {
  // The bundled CNN: Conv(1 -> 16, 3x3) -> Relu -> MaxPool -> Conv(16 -> 32) -> ...
  Graph g = load_onnx(compsearch::model::testing::source_dir() / "models" / "fmnist_cnn.onnx");
  const Tensor x = random_tensor({7, 1, 28, 28}, 7);
  for (const int threads : {1, 2}) {
    CAPTURE(threads);
    ExecutorOptions o;
    o.threads = threads;
    o.time_steps = true;  // lists the planned steps
    Executor auto_exec(g, o);
    o.kernels = ExecutorOptions::Kernels::kEigen;
    Executor eigen(g, o);
    const Tensor got = auto_exec.run({x})[0];
    const Tensor want = eigen.run({x})[0];
    CHECK(worst_violation(got, want, 1e-4, 1e-5) <= 0.0);
    // The first step computes the first Conv and absorbs its Relu and MaxPool: the next step is
    // the second Conv.
    const auto steps = auto_exec.step_times();
    REQUIRE(steps.size() >= 2);
    CHECK(g.nodes[steps[0].node_index].op_type == "Conv");
    CHECK(steps[0].fused_activation);
    CHECK(g.nodes[steps[1].node_index].name == "/conv2/Conv");
    // kOneDnn keeps oneDNN's convolution for it (the first step then feeds the MaxPool step).
    o.kernels = ExecutorOptions::Kernels::kOneDnn;
    Executor onednn(g, o);
    CHECK(worst_violation(onednn.run({x})[0], want, 1e-4, 1e-5) <= 0.0);
    CHECK(g.nodes[onednn.step_times()[1].node_index].op_type == "MaxPool");
  }
}
