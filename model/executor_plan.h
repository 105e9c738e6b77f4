// Internal to the model library: the executor's plan (steps over value slots, fused and with
// their oneDNN primitives) as planner.cpp builds it and executor.cpp runs it.
#pragma once

#include <atomic>
#include <cmath>
#include <deque>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include "model/dnnl_ops.h"
#include "model/executor.h"
#include "model/op_registry.h"

namespace compsearch::model {

namespace detail {

struct Step {
  size_t node_index;
  const detail::OpSpec* spec = nullptr;  // the node's row of the op table
  std::vector<int> inputs;               // slot per input, -1 for an omitted one
  std::vector<int> outputs;              // slot per output, -1 for an unused one
  std::vector<int> release;              // value slots whose last reader is this step
  bool hooked = false;                   // Conv/Gemm/MatMul with a non-constant activation input
  bool skip = false;                     // a Relu/Clip fused into the step before it
  bool clamp = false;                    // this step applies a fused Relu/Clip
  float lo = -INFINITY, hi = INFINITY;
  bool fake_quantize = false;  // a QuantizeLinear that also does its DequantizeLinear (fused pair)
  // Conv/Gemm/MatMul with constant weights that oneDNN can run (with the fused Relu/Clip).
  std::shared_ptr<detail::DnnlOp> dnnl;
  // How input 0 / output 0 are stored (see DnnlOp::set_layouts). A step with either not NCHW
  // always runs its oneDNN op (converting around the Eigen kernel only if oneDNN declines a shape).
  ActLayout in_layout = ActLayout::kNchw, out_layout = ActLayout::kNchw;
  // ExecutorOptions::int8: this layer runs on integer kernels (dnnl was made with these
  // parameters) and reads the float input of the QuantizeLinear -> DequantizeLinear pair it
  // absorbed. Where the integer op cannot run (a layer-input hook is set, or oneDNN declines the
  // shape), that pair is applied here (node int8_qdq_node on slots int8_qdq_inputs) and the float
  // kernel runs on the folded float weight, as in the float plan.
  std::shared_ptr<const DnnlInt8> int8;
  // A node run after this step's own inside it, or -1: a MaxPool fused into a direct convolution
  // (fuse_direct_conv_max_pool), or a depthwise convolution fused into a 1x1 one
  // (DnnlOp::fuse_depthwise). The step's output is then that node's; fused_inputs are its input
  // slots (input 0, this step's output, is never materialised by the fused kernel), fused_clamp
  // its own fused Relu/Clip, fused_hooked whether a layer-input hook must see its input (the fused
  // kernel then does not run: the step's own kernel, the hook and the node's kernel do).
  int64_t fused_node = -1;
  std::vector<int> fused_inputs;
  bool fused_clamp = false;
  float fused_lo = -INFINITY, fused_hi = INFINITY;
  bool fused_hooked = false;
  // A fused 1x1 -> depthwise pair (dnnl is the fused kernel): the two ops unfused, blocked in and
  // out, which run with the hook between them when a layer-input hook is set.
  std::shared_ptr<detail::DnnlOp> pair_first, pair_second;
  size_t int8_qdq_node = 0;
  std::vector<int> int8_qdq_inputs;
};

struct Workspace {
  std::vector<Tensor> values;
  std::vector<std::vector<float>> free_buffers;
  Tensor hooked_input;
  Tensor scratch_output;
  // By batch size (the last few seen), by slot: the float count of each value in the last run.
  std::vector<std::pair<int64_t, std::vector<size_t>>> last_sizes;
  std::vector<size_t>& last_size_for(int64_t batch) {
    for (auto& [b, sizes] : last_sizes)
      if (b == batch) return sizes;
    if (last_sizes.size() >= 4) last_sizes.erase(last_sizes.begin());
    last_sizes.emplace_back(batch, std::vector<size_t>(values.size(), 0));
    return last_sizes.back().second;
  }
  detail::DnnlScratch dnnl_scratch;
  Tensor layout_copy;
  Tensor int8_input;  // an int8 step's input, fake-quantized (its float fallback)
  Tensor pool_input;  // a fused step's first node's output (fused_node; its own-kernel path)
  std::vector<Tensor> slice_inputs;  // a batch slice's inputs (Executor::run's batch split)
};

}  // namespace detail

struct Executor::Impl {
  const Graph* graph = nullptr;
  ExecutorOptions options;
  int threads = 1;
  ExecutorOptions::Kernels kernels = ExecutorOptions::Kernels::kAuto;
  int64_t declared_batch = -1;
  // Slots: [0, n_inputs) graph inputs, then initializers, then computed values.
  std::vector<const Tensor*> constant_slots;  // by slot; nullptr for non-constants
  // Values of nodes whose inputs are all constant (DequantizeLinear of int8 weights in a QDQ
  // graph built in memory), computed once here; a deque keeps the pointers above stable.
  std::deque<Tensor> folded;
  size_t n_inputs = 0;
  size_t n_slots = 0;
  std::vector<detail::Step> steps;
  std::vector<int> output_slots;
  std::vector<char> is_output;  // by slot
  // Some step mixes samples (a QuantizeLinear / DequantizeLinear with per-axis scales along the
  // batch axis): the batch cannot be split into slices that run independently.
  bool batch_coupled = false;
  // Floating-point operations of the Conv/Gemm/MatMul steps per sample, from the inferred shapes;
  // 0 when a shape is unknown (the run then uses every thread it was given).
  double flops_per_sample = 0;
  // A batch (each thread's slice of it) runs in chunks of at most this many samples, so that the
  // activations of a chunk stay in cache from one step to the next; 0: whole (planner.cpp).
  int64_t chunk_samples = 0;
  LayerInputHook hook;
  mutable std::atomic<int64_t> onednn_calls{0};
  mutable std::atomic<int64_t> int8_calls{0};
  mutable std::mutex times_mutex;
  mutable std::vector<double> step_ms;      // ExecutorOptions::time_steps: by step, the last run
  mutable std::vector<char> step_ran_int8;  // ... and whether it ran integer kernels
  mutable std::vector<std::string> step_kernel;  // ... and which kernel (StepTime::kernel)
  mutable std::mutex pool_mutex;
  mutable std::vector<std::unique_ptr<detail::Workspace>> pool;

  std::unique_ptr<detail::Workspace> acquire() const {
    std::lock_guard<std::mutex> lock(pool_mutex);
    if (pool.empty()) {
      auto ws = std::make_unique<detail::Workspace>();
      ws->values.resize(n_slots);
      return ws;
    }
    auto ws = std::move(pool.back());
    pool.pop_back();
    return ws;
  }
  void give_back(std::unique_ptr<detail::Workspace> ws) const {
    std::lock_guard<std::mutex> lock(pool_mutex);
    pool.push_back(std::move(ws));
  }
};

}  // namespace compsearch::model
