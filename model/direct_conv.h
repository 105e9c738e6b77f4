// Internal to the executor: a direct 2-D convolution for layers with a tiny reduction (a first
// layer on 1-3 input channels: C/group <= 4 and C/group x kh x kw <= 32), where im2col + GEMM
// (Eigen) and oneDNN's kernels spend more on packing, reorders and narrow tiles than on the
// arithmetic (bench_executor --ops: the bundled CNN's 1-channel 3x3 conv ran at a seventh of the
// next layer's rate per multiply-add on both).
//
// The kernel keeps 16 output channels in one vector and a few output pixels in flight: per pixel
// block it broadcasts each input tap once and multiply-adds it into every pixel's channel vector,
// so the weights of a 16-channel block (reduction x 16 floats) stay in L1 and nothing is packed.
// Input NCHW or NHWC, output NCHW or NHWC (a channels-last chain, DnnlOp::set_layouts), bias and
// the fused Relu/Clip applied before the store. Written with GCC/Clang vector types and compiled
// three times (AVX-512F, AVX2+FMA, the build's baseline), picked at run time from the CPU, so the
// same binary runs on any x86-64.
//
// It implements the DnnlOp interface (the plan treats it like a oneDNN step) but is not oneDNN:
// DnnlOp::onednn() is false, and ExecutorOptions::Kernels::kOneDnn never plans it.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "model/dnnl_ops.h"

namespace compsearch::model::detail {

// The largest C/group x kh x kw the direct kernel takes (a 3x3 on 3 channels is 27), and the most
// input channels per group: a 1x1 on 16 or 32 channels has a small reduction too, but oneDNN's
// 1x1 kernel runs it faster (MobileNetV2's 112x112 pointwise layers, batch 1: 0.9 ms vs 0.5).
constexpr int64_t kDirectConvMaxReduction = 32;
constexpr int64_t kDirectConvMaxChannels = 4;
// ExecutorOptions::Kernels::kAuto plans it only for at most this many input channels per group:
// oneDNN is 7x slower on a 1-channel layer, but a little faster on a 3-channel one (MobileNetV2's
// 3x3 stride-2 first layer at batch 1: 0.25 ms vs 0.30).
constexpr int64_t kDirectConvPlannedChannels = 2;

// A 2-D Conv with a constant float weight (and bias), at least 8 output channels per group, at
// most kDirectConvMaxChannels input channels per group and a reduction of at most
// kDirectConvMaxReduction; nullptr for anything else (1-D, depthwise, pointwise on many
// channels...).
std::unique_ptr<DnnlOp> make_direct_conv(const Node& node, const Tensor* weight, const Tensor* bias,
                                         DnnlPostOp post);

// Makes a direct convolution `op` (from make_direct_conv) also apply `pool`, the MaxPool reading
// its output (after the fused Relu/Clip; max commutes with the clamp): the convolution rows of each
// pooled row stay in L1 and only the pooled output is written. Only a MaxPool without padding,
// dilation, ceil_mode or Indices output; returns whether it took it. The op's output is then the
// pooled tensor.
bool fuse_direct_conv_max_pool(DnnlOp& op, const Node& pool);

// The instruction set the direct kernel runs: "avx512f", "avx2" or "baseline" (bench output,
// tests); by default the best this CPU runs.
const char* direct_conv_isa();
// Every instruction set of the kernel this CPU runs, best first; use_direct_conv_isa picks one of
// them for every direct convolution from then on (tests run each; false: not runnable here).
std::vector<std::string> direct_conv_isas();
bool use_direct_conv_isa(const std::string& isa);

}  // namespace compsearch::model::detail
