// Internal: evaluates one node on concrete tensors with the executor's kernels. The importer
// uses it to fold constant subgraphs, so folding and inference share one implementation.
#pragma once

#include <cstdint>
#include <vector>

#include "model/graph.h"

namespace compsearch::model::detail {

// Runs `node` (single-threaded) on `inputs` (nullptr for an omitted optional input) and returns
// its outputs. Throws std::runtime_error naming the node on bad shapes or attributes.
std::vector<Tensor> evaluate_node(const Node& node, const std::vector<const Tensor*>& inputs,
                                  int64_t opset);

// IEEE half <-> float (round to nearest even; overflow to inf; subnormals kept). Defined in
// onnx_io.cpp, which needs them for FLOAT16 tensors; the executor's Cast to FLOAT16 uses them too.
uint16_t float_to_half(float f);
float half_to_float(uint16_t h);

}  // namespace compsearch::model::detail
