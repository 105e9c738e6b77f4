// Layer table: the searchable layers of a graph (DESIGN.md "Layers and names") with their sizes.
#pragma once

#include <string>
#include <vector>

#include "model/graph.h"

namespace compsearch::model {

// One Conv, Gemm or MatMul node whose weight is a constant initializer.
struct LayerInfo {
  std::string name;         // weight initializer name without ".weight", else the node name
  std::string op;           // "Conv", "Gemm" or "MatMul"
  size_t node_index = 0;    // index into Graph::nodes
  std::string weight_name;  // initializer holding the weight
  std::string bias_name;    // initializer holding the bias, "" if none
  Shape weight_shape;       // as stored (Conv [O, I/g, kh, kw]; Gemm B as stored; MatMul [K, N])
  int64_t weight_elements = 0;
  int64_t params = 0;              // weight + bias elements
  int64_t macs = 0;                // per sample (batch 1)
  int64_t input_elements = 0;      // activation elements read, per sample
  int64_t output_elements = 0;     // activation elements written, per sample
  int64_t out_channels = 0;        // O (Conv) or output features (Gemm/MatMul)
  int64_t in_channels = 0;         // input channels (all groups) or input features
  int64_t groups = 1;              // Conv groups, 1 otherwise
  int64_t kernel_elements = 1;     // kh*kw (Conv), 1 otherwise
  int64_t reduction_length = 0;    // weights in one output channel's reduction row
  int64_t output_positions = 1;    // output pixels (Conv) or rows (MatMul) per sample
  bool weight_transposed = false;  // Gemm with transB=0 or MatMul: weight stored [K, N]
  bool depthwise = false;
};

struct LayerTable {
  std::vector<LayerInfo> layers;
  int64_t total_params = 0;  // all float initializer elements of the model (searched or not)
  int64_t total_macs = 0;    // MACs of every Conv/Gemm/MatMul, per sample
};

LayerTable build_layer_table(const Graph& graph);

// Index of the layer named `name` in `table`, or -1.
int find_layer(const LayerTable& table, const std::string& name);

}  // namespace compsearch::model
