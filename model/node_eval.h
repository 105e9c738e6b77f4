// Internal: evaluates one node on concrete tensors with the executor's kernels. The importer
// uses it to fold constant subgraphs, so folding and inference share one implementation.
#pragma once

#include <vector>

#include "model/graph.h"

namespace compsearch::model::detail {

// Runs `node` (single-threaded) on `inputs` (nullptr for an omitted optional input) and returns
// its outputs. Throws std::runtime_error naming the node on bad shapes or attributes.
std::vector<Tensor> evaluate_node(const Node& node, const std::vector<const Tensor*>& inputs,
                                  int64_t opset);

}  // namespace compsearch::model::detail
