// Executor: batched CPU inference of a Graph (oneDNN and Eigen kernels, OpenMP over the batch).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "model/graph.h"

namespace compsearch::model {

// The most threads an executor or trainer runs: far above any core count it meets, far below what
// makes OpenMP fail to start threads (a thread count of 100,000 crashed in thread creation).
constexpr int kMaxThreads = 1024;

// `threads` as ExecutorOptions / TrainerOptions take it (0 = omp_get_max_threads()), resolved.
// Throws std::invalid_argument("<what>: value N out of range; expected 0 (all cores) to 1024").
int resolve_threads(int threads, const std::string& what);

// Whether ExecutorOptions::int8 can run integer kernels on this CPU (VNNI or AMX).
bool int8_kernels_available();

struct ExecutorOptions {
  // 0 = OpenMP default; at most kMaxThreads. Without a hook, a batch of at least `threads` samples
  // is split into `threads` slices that run the whole graph in parallel; smaller batches
  // parallelise inside the ops (GEMM rows/columns, convolution samples, pooling planes).
  int threads = 0;
  // Opt-in: with a hook set, still split the batch over threads. The hook is then called
  // concurrently from several threads, each time with a slice of the batch, so it must be
  // thread-safe and must not assume it sees the whole batch (fake-quantization with fixed
  // parameters and min/max observers under a mutex qualify).
  bool hook_per_slice = false;
  // Which kernels run Conv, Gemm and MatMul with constant weights. kAuto: oneDNN where it measured
  // faster than Eigen for the op's shape and thread count (model/executor.cpp, prefer_onednn),
  // Eigen elsewhere, and a Conv with a tiny reduction (a first layer on 1-2 channels) on the
  // executor's direct kernel (model/direct_conv.h); kOneDnn: oneDNN wherever it takes the node;
  // kEigen: never oneDNN. The environment variable COMPSEARCH_EXECUTOR_KERNELS=auto|eigen|onednn
  // overrides kAuto (for benchmarks of whole pipelines that build their executors themselves).
  enum class Kernels { kAuto, kEigen, kOneDnn };
  Kernels kernels = Kernels::kAuto;
  // Integer execution: a Conv/Gemm/MatMul that reads a QuantizeLinear -> DequantizeLinear pair
  // (uint8, one scale and zero point; no other reader) and whose weight is the DequantizeLinear of
  // int8 integers with zero point 0 (per tensor or per output channel) runs as u8 x s8 with 32-bit
  // accumulation on oneDNN instead of in float on dequantized
  // values. The arithmetic differs from the float path only by float rounding of the
  // accumulation (docs/compression.md gives the measured accuracy difference). Applies to QDQ
  // graphs built in memory (compressors::make_qdq_graph) and to loaded QDQ .onnx files, whose
  // weight DequantizeLinear nodes the importer folds but keeps the integers of
  // (Graph::dequantized_origins; a weight edited since then runs in float). Off with
  // Kernels::kEigen, and on CPUs without a 32-bit int8 dot product (VNNI or AMX; see
  // int8_kernels_available), where oneDNN's integer kernels saturate.
  bool int8 = false;
  // Measure each step's wall time (Executor::step_times). The batch is then never split over
  // threads (kernels still use the threads inside each step), so the times add up to the run.
  bool time_steps = false;
};

class Executor {
 public:
  // `graph` must outlive the executor and its initializers must not change while it lives:
  // oneDNN's copies of the weights in its blocked layouts are made on the first run of each input
  // shape and kept. Weight layouts are prepared once here, nodes that read
  // only initializers (DequantizeLinear of int8 weights in a QDQ graph built in memory) are
  // evaluated once here, and QuantizeLinear -> DequantizeLinear pairs with the same constant
  // parameters run as one float pass.
  explicit Executor(const Graph& graph, ExecutorOptions options = {});

  // Called with a Conv/Gemm/MatMul node's activation input just before the node computes it;
  // the hook may change it in place (activation fake-quantization) or only observe it
  // (calibration). node_index indexes Graph::nodes. The hook gets a copy (other readers of the
  // value are unaffected), always sees the whole batch, and is called from the thread that
  // called run(), one layer at a time; kernels are then parallel inside each op.
  using LayerInputHook = std::function<void(size_t node_index, Tensor& activation)>;
  void set_layer_input_hook(LayerInputHook hook);

  // Runs one batch. `inputs` are the graph's real inputs in order (first dim = batch); returns
  // the graph outputs in order. Throws std::invalid_argument when an input shape does not match
  // the model (naming the input, the expected and the given shape).
  std::vector<Tensor> run(const std::vector<Tensor>& inputs) const;

  // How many node evaluations oneDNN has done so far (Conv/Gemm/MatMul, and the poolings of a
  // channels-last chain; each step of each run and batch slice counted): tests and benchmarks
  // check with it which kernels ran.
  int64_t onednn_calls() const;
  // How many of those ran integer kernels (ExecutorOptions::int8).
  int64_t int8_calls() const;

  // With ExecutorOptions::time_steps: the plan's steps in run order, each with the graph node it
  // computes and its wall time in the last run (a fused Relu/Clip or QuantizeLinear ->
  // DequantizeLinear pair is timed with the step that absorbed it; folded constants have no
  // step). Times are 0 before the first run or without time_steps. A step's time includes what
  // runs around its kernel (the layer-input hook, an int8 step's input quantization). With
  // concurrent run() calls, each step shows one of them.
  struct StepTime {
    size_t node_index = 0;
    double ms = 0.0;
    bool int8 = false;  // ran on integer kernels in the last run (ExecutorOptions::int8)
    bool fused_activation = false;  // includes a Relu/Clip
    // The kernel that ran: "oneDNN " + its implementation and layouts (DnnlOp::kernel, e.g.
    // "oneDNN jit_fp32_wino_2x3:avx512_core blocked>blocked"), "direct ..." (model/direct_conv.h)
    // or "executor" (the executor's own Eigen/loop kernel).
    std::string kernel;
  };
  std::vector<StepTime> step_times() const;

  // Internal state (prepared plan, buffer pool); public only so executor.cpp's helpers can name it.
  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace compsearch::model
