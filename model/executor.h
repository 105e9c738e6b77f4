// Executor: batched CPU inference of a Graph (Eigen GEMMs, OpenMP over the batch).
#pragma once

#include <functional>
#include <vector>

#include "model/graph.h"

namespace compsearch::model {

struct ExecutorOptions {
  int threads = 0;  // 0 = OpenMP default
};

class Executor {
 public:
  // `graph` must outlive the executor. Weight layouts are prepared once here.
  explicit Executor(const Graph& graph, ExecutorOptions options = {});

  // Called with a Conv/Gemm/MatMul node's activation input just before the node computes it;
  // the hook may change it in place (activation fake-quantization) or only observe it
  // (calibration). node_index indexes Graph::nodes.
  using LayerInputHook = std::function<void(size_t node_index, Tensor& activation)>;
  void set_layer_input_hook(LayerInputHook hook);

  // Runs one batch. `inputs` are the graph's real inputs in order (first dim = batch); returns
  // the graph outputs in order. Throws std::invalid_argument when an input shape does not match
  // the model (naming the input, the expected and the given shape).
  std::vector<Tensor> run(const std::vector<Tensor>& inputs) const;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace compsearch::model
