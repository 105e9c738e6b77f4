// Training: forward with saved activations, backward passes and parameter I/O for a Graph.
//
// A Trainer compiles a model::Graph into a training plan once: every float initializer read as
// a Conv/Gemm/MatMul weight or bias, a BatchNormalization scale or bias, or an Add/Mul operand
// becomes a TrainableParameter (a master copy owned by the trainer; the Graph is not touched
// until write_parameters()). BatchNormalization running mean and variance are buffers, updated
// by training forwards and written back too. forward() runs a batch and keeps what backward()
// needs (im2col columns, pooling argmax, batch-norm statistics, masks); backward() takes
// dL/d(logits) and leaves dL/d(parameter) in every TrainableParameter::grad. An Optimizer
// (model/optimizer.h) then updates the values; a loss (model/loss.h) gives dL/d(logits).
//
// Differentiable ops: Conv (groups, depthwise), Gemm (alpha, beta, transA, transB), MatMul, Add,
// Sub, Mul (NumPy broadcasting), Relu, Clip, MaxPool, AveragePool, GlobalAveragePool, Pad,
// BatchNormalization, Flatten, Reshape, Concat, Identity/Dropout (identity). Nodes through which
// no gradient flows (Shape/Gather/Unsqueeze/Concat chains computing shapes, Constant) run with
// the executor's single-node evaluator; any other op on a gradient path is an error naming the
// node.
//
// Threads and determinism: OpenMP with `threads` threads (0 = omp_get_max_threads()). A batch of
// at least 2 * threads samples runs as `threads` contiguous slices, each through the graph on
// one thread (one fork per forward and per backward, plus one per layer with an input transform,
// whose hook still sees the whole batch on the calling thread), and the slices' parameter
// gradients are added in slice order. Where slicing could change the result (BatchNormalization
// with batch statistics, an op that mixes samples) and for small batches the ops run one after
// the other, each split over samples, channels or GEMM rows with static schedules, and
// cross-thread sums add per-thread partials in thread order. Either way results are
// bit-identical for a fixed thread count (and agree across thread counts up to float rounding).
// No allocation happens per step once the largest batch has been seen.
//
// Hooks for quantization-aware training (the seams evaluators/ fills with compressors' kernels):
//   * WeightTransform per layer: before each forward the layer computes with
//     effective = forward(master); backward() computes dL/d(effective) and hands it to
//     backward(), which maps it in place to dL/d(master) (straight-through estimators, masks).
//   * InputTransform per layer: the layer's input activation is transformed in place on a
//     private copy (other readers of the value see the original) and its gradient mapped back.
// Layer names follow DESIGN.md (weight initializer name without ".weight", else the node name),
// as model::build_layer_table() reports them.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "model/graph.h"
#include "model/tensor.h"

namespace compsearch::model {

struct TrainableParameter {
  enum class Role { kWeight, kBias, kBatchNormScale, kBatchNormBias, kOther };
  std::string name;   // initializer name in the Graph
  std::string layer;  // layer name for Conv/Gemm/MatMul weights and biases, else ""
  Role role = Role::kOther;
  Tensor value;  // master value, float32, the initializer's shape
  Tensor grad;   // dL/d(value) after backward() (overwritten, not accumulated)
};

// Effective weight of a layer as a function of its master weight (fake quantization, masks).
// `forward` gets the master and writes the effective weight into `effective` (already sized and
// shaped like the master). `backward` gets the master, the effective weight of the last
// forward, and in `grad` dL/d(effective); it must leave dL/d(master) in `grad`. A null
// `backward` passes the gradient unchanged (plain straight-through estimator). Both run on the
// thread that called forward()/backward(), once per call; `backward` must be linear in `grad`
// (as every chain rule is): with batch slicing it gets the gradient summed over the slices.
struct WeightTransform {
  std::function<void(const Tensor& master, Tensor& effective)> forward;
  std::function<void(const Tensor& master, const Tensor& effective, Tensor& grad)> backward;
};

// Transform of a layer's input activation (activation fake quantization). `forward` changes
// `activation` in place (a private copy of the layer's input, whole batch); `training` says
// whether this is a training forward (observers may update their ranges only then). `backward`
// gets the untransformed input and in `grad` dL/d(transformed input); it must leave
// dL/d(untransformed input) in `grad` (e.g. zero outside the quantization range). A null
// `backward` passes the gradient unchanged.
struct InputTransform {
  std::function<void(Tensor& activation, bool training)> forward;
  std::function<void(const Tensor& original, Tensor& grad)> backward;
};

struct TrainerOptions {
  // OpenMP threads for every kernel; 0 = omp_get_max_threads(). Results are deterministic for a
  // fixed value.
  int threads = 0;
  // Initializer names kept constant (no gradient, not in parameters()).
  std::set<std::string> frozen;
  // true: BatchNormalization uses the running statistics in training forwards too (and does not
  // update them), as PyTorch's module.eval() does for BN layers during fine-tuning.
  bool freeze_batch_norm_statistics = false;
};

class Trainer {
 public:
  enum class Mode {
    kTrain,  // batch-norm batch statistics (running averages updated); backward() allowed after
    kEval,   // batch-norm running statistics; nothing saved, backward() not allowed after
  };

  // Compiles `graph` (copied: the trainer does not keep a reference). The first graph input is
  // the image batch [N, ...]; the first graph output is what backward() differentiates. Throws
  // std::runtime_error naming the node for an op on a gradient path that has no backward, and
  // std::invalid_argument for bad options.
  explicit Trainer(const Graph& graph, TrainerOptions options = {});
  ~Trainer();
  Trainer(Trainer&&) noexcept;
  Trainer& operator=(Trainer&&) noexcept;

  // Trainable parameters in Graph::nodes order (weight before bias). Values may be edited
  // between steps (the optimizer does); shapes must not change.
  std::vector<TrainableParameter>& parameters();
  const std::vector<TrainableParameter>& parameters() const;
  // Index into parameters() of initializer `name`, or -1.
  int find_parameter(const std::string& name) const;

  // Layer names (Conv/Gemm/MatMul whose weight is an initializer) in node order.
  const std::vector<std::string>& layer_names() const;
  // Hooks; an empty transform (both functions null) removes the hook. Throw
  // std::invalid_argument naming an unknown layer.
  void set_weight_transform(const std::string& layer, WeightTransform transform);
  void set_input_transform(const std::string& layer, InputTransform transform);
  // The effective weight the layer used in the last forward (the master without a transform).
  const Tensor& effective_weight(const std::string& layer) const;

  // Runs one batch `input` [N, ...] (N may change between calls) and returns the first graph
  // output (e.g. logits [N, classes]); the reference stays valid until the next forward().
  // Throws std::invalid_argument when the sample shape does not match the model's input.
  const Tensor& forward(const Tensor& input, Mode mode = Mode::kTrain);
  // All graph outputs of the last forward, in Graph::outputs order.
  const std::vector<Tensor>& outputs() const;

  // Back-propagates `grad_output` = dL/d(first output) (shape of the last forward's output)
  // through the last kTrain forward and overwrites every TrainableParameter::grad. Throws
  // std::logic_error when the last forward was not kTrain.
  void backward(const Tensor& grad_output);

  // Copies the parameter values and batch-norm running statistics into the initializers of the
  // same names in `graph` (normally the graph the trainer was built from). Throws
  // std::invalid_argument when one is missing or has another shape.
  void write_parameters(Graph& graph) const;
  // Copies values (and running statistics) from `graph` into the trainer, e.g. to restart.
  void read_parameters(const Graph& graph);

  int threads() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

// Folds every BatchNormalization (inference form, running statistics) that directly follows a
// Conv or Gemm whose output has no other reader into that layer's weight and bias, and removes
// the BN node: W' = W * gamma / sqrt(var + eps) per output channel, b' = (b - mean) * gamma /
// sqrt(var + eps) + beta (a missing bias is created as "<layer>.bias"). Returns the number of BN
// nodes folded. Inference results are unchanged up to float rounding.
int fold_batch_norms(Graph& graph);

}  // namespace compsearch::model
