// Internal to the executor: Conv, Gemm and MatMul with constant weights run through oneDNN
// primitives (Debian's libdnnl, OpenMP runtime; the ISA is picked at run time).
//
// One DnnlOp per executor step. The plan builds it from the node, its constant weight/bias and
// the Relu/Clip the plan fused into it (an eltwise post-op). Primitives depend on the input shape
// (the batch) and on the thread count, so they are created on the first run of each
// (shape, threads) and kept; weights are reordered into the primitive's preferred (blocked)
// layout once per executor, i.e. once per compressed candidate, and shared by all shapes that want
// the same layout. oneDNN's own primitive cache makes creating the same primitive again (the next
// candidate's executor, same shapes) a lookup.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "model/graph.h"

namespace compsearch::model::detail {

// Bytes of per-workspace scratch (reorder buffers, primitive scratchpads), 64-byte aligned. One per
// concurrent run_steps call: primitives are shared, scratch is not.
class DnnlScratch {
 public:
  void* get(size_t bytes);  // valid until the next get() on this scratch
  ~DnnlScratch();

 private:
  void* data_ = nullptr;
  size_t size_ = 0;
};

// How an [N, C, H, W] activation is stored. kBlocked: oneDNN's nChw16c (AVX-512) or nChw8c
// (otherwise; blocked_channels() says which), element (n, c, h, w) at
// (((n * C/B + c/B) * H + h) * W + w) * B + c % B; only for C a multiple of B, so it holds exactly
// N*C*H*W floats like the others.
enum class ActLayout : uint8_t { kNchw, kNhwc, kBlocked };

// B of ActLayout::kBlocked on this CPU: the channel block oneDNN's kernels for its ISA use.
int64_t blocked_channels();

// out = x (shape [N, C, H, W]) stored in layout `to` instead of `from` (same shape).
void convert_layout(const Tensor& x, ActLayout from, ActLayout to, Tensor& out);

// The fused Relu/Clip, if any: y = clamp(y, lo, hi).
struct DnnlPostOp {
  bool clamp = false;
  float lo = 0.0f, hi = 0.0f;
};

// Integer execution of a layer (ExecutorOptions::int8): its input was fake-quantized to uint8
// per tensor (QuantizeLinear -> DequantizeLinear with one scale and zero point) and its weight is
// the DequantizeLinear of int8 integers with zero point 0, per tensor or per output channel. The op
// quantizes x itself, exactly as QuantizeLinear does (round half to even of x / scale, plus the
// zero point, saturated to [0, 255]), runs u8 x s8 with 32-bit accumulation and writes
// f32 = x_scale * weight_scale[c] * accumulator (+ bias, then the fused clamp).
struct DnnlInt8 {
  float x_scale = 1.0f;
  int32_t x_zero_point = 0;
  std::vector<int8_t> weight;       // the integers, in the weight tensor's layout
  std::vector<float> weight_scale;  // one per output channel, or one for the tensor
};

class DnnlOp {
 public:
  // nullptr when oneDNN does not take this node (weight not constant, an activation times an
  // activation, a Gemm C that does not broadcast as a bias row, an unsupported layout). `weight`
  // and `bias` must outlive the op (they are the graph's initializers or the plan's folded
  // values).
  // With `int8`, the integer kernels (see DnnlInt8); `weight` (the dequantized weight) still gives
  // the shapes.
  static std::unique_ptr<DnnlOp> create(const Node& node, const Tensor* weight, const Tensor* bias,
                                        DnnlPostOp post, const DnnlInt8* int8 = nullptr);
  // MaxPool (no Indices output), AveragePool (no ceil_mode) and GlobalAveragePool on 2-D images,
  // for the plan's channels-last chains (below); nullptr otherwise.
  static std::unique_ptr<DnnlOp> create_pool(const Node& node);
  virtual ~DnnlOp() = default;

  // y = op(x) with `threads` OpenMP threads (the caller has set omp_set_num_threads to it).
  // Returns false, leaving y untouched, when x's shape is not one this op can take (the Eigen
  // kernel then runs and reports the error, if there is one).
  virtual bool run(const Tensor& x, Tensor& y, int threads, DnnlScratch& scratch) const = 0;

  // What ran (or would run) for input shape x with `threads`: oneDNN's implementation name and
  // the layouts in and out, e.g. "jit_fp32_wino_2x3:avx512_core blocked>blocked" ("+reorder"
  // where the primitive wants another layout than the plan keeps); "" before the first run of
  // that shape.
  virtual std::string kernel(const Shape& x, int threads) const = 0;

  // Whether oneDNN has a kernel for input shape x with the layouts set (builds its descriptor,
  // not the primitive); the direct kernel says true.
  virtual bool accepts(const Shape& /*x*/) const { return true; }

  // False for the executor's own direct kernel behind this interface (model/direct_conv.h):
  // Executor::onednn_calls counts only oneDNN's, and kAuto always runs a direct kernel it planned.
  virtual bool onednn() const { return true; }

  // Activation layouts: the plan keeps the activations between oneDNN's 2-D convolutions and
  // poolings (and the elementwise ops between them) in oneDNN's layouts, NHWC or blocked by
  // channels (ActLayout), instead of reordering to NCHW and back around every op; Tensor::shape
  // stays [N, C, H, W]. set_layouts says how x (src) and y (dst) are stored; set by the plan before
  // the first run.
  bool takes_channels_last() const { return channels_last_capable_; }
  // Whether it also takes ActLayout::kBlocked (the direct kernel does not).
  bool takes_blocked() const { return blocked_capable_; }
  // Whether it runs faster on blocked src and dst than on NHWC, for input shape x: a float 3x3
  // stride-1 convolution, which then runs Winograd's algorithm, or one for which oneDNN itself
  // picks a blocked layout (AVX2). The plan keeps the values around such a convolution blocked,
  // and extends the region across convolutions that runs_well_blocked (planner.cpp).
  virtual bool prefers_blocked(const Shape& /*x*/) const { return false; }
  // Whether it has JIT kernels for blocked src and dst as fast as its NHWC ones (1x1 and depthwise
  // float convolutions: jit_1x1, jit_dw), so that the plan may extend a blocked region across it
  // instead of reordering on one side.
  virtual bool runs_well_blocked() const { return false; }

  // A depthwise 3x3 convolution run inside a 1x1 one (oneDNN's depthwise post-op on blocked
  // layouts: the 1x1's output, MobileNet's expanded activation, is never written whole; oneDNN
  // 2.6 has one JIT kernel for some shapes and chains its two kernels through scratchpad rows for
  // the others).
  // can_fuse_depthwise says whether `dw` (weight [C, 1, 3, 3], padding 1, stride 1 or 2, C the
  // 1x1's output channels; bias optional) can run inside this op; fuse_depthwise makes it so: run
  // then writes dw's output (after its own fused Relu/Clip `post`). `weight` and `bias` must
  // outlive the op. Only with blocked src and dst (set_layouts); with others run() declines.
  virtual bool can_fuse_depthwise(const Node& /*dw*/, const Tensor* /*weight*/,
                                  const Tensor* /*bias*/) const {
    return false;
  }
  virtual void fuse_depthwise(const Node& /*dw*/, const Tensor* /*weight*/, const Tensor* /*bias*/,
                              DnnlPostOp /*post*/) {}
  void set_layouts(ActLayout src, ActLayout dst) {
    src_layout_ = src;
    dst_layout_ = dst;
  }

 protected:
  bool channels_last_capable_ = false;
  bool blocked_capable_ = false;
  ActLayout src_layout_ = ActLayout::kNchw, dst_layout_ = ActLayout::kNchw;
};

// Whether oneDNN's u8 x s8 kernels on this CPU multiply-accumulate into 32 bits (VNNI, AMX).
// Without it they pair products into saturating 16-bit sums (vpmaddubsw) and pre-halve the
// weights, so integer results would not be exact: ExecutorOptions::int8 then plans nothing.
bool dnnl_exact_int8();

// Whether oneDNN has Winograd kernels for float convolutions on this CPU (2.6: AVX-512).
bool dnnl_winograd_available();

// "oneDNN 2.6.3 (avx2)": version and the ISA its kernels dispatch to on this CPU.
std::string dnnl_description();

}  // namespace compsearch::model::detail
