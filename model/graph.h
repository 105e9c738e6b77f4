// Graph IR: an ONNX model in plain structs, loaded from and saved to .onnx files.
//
// The graph keeps nodes in topological order, initializers by name, and the shapes that shape
// inference found for every value (batch dimension = the model's declared input, -1 where
// symbolic). Compressors work on a copy of a Graph; the original stays intact.
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "model/tensor.h"

namespace compsearch::model {

struct Attribute {
  enum class Kind { kInt, kFloat, kString, kInts, kFloats, kStrings, kTensor };
  Kind kind = Kind::kInt;
  int64_t i = 0;
  float f = 0.0f;
  std::string s;
  std::vector<int64_t> ints;
  std::vector<float> floats;
  std::vector<std::string> strings;
  std::shared_ptr<Tensor> t;
};

struct Node {
  std::string name;
  std::string op_type;
  std::string domain;               // "" for the default ONNX domain
  std::vector<std::string> inputs;  // "" marks an omitted optional input
  std::vector<std::string> outputs;
  std::map<std::string, Attribute> attributes;

  bool has_attr(const std::string& key) const { return attributes.count(key) != 0; }
  int64_t attr_int(const std::string& key, int64_t fallback) const;
  float attr_float(const std::string& key, float fallback) const;
  std::string attr_string(const std::string& key, const std::string& fallback) const;
  std::vector<int64_t> attr_ints(const std::string& key, std::vector<int64_t> fallback) const;
};

struct ValueInfo {
  std::string name;
  DType dtype = DType::kFloat32;
  Shape shape;  // -1 for a symbolic/unknown dimension
};

// Where a float initializer came from when the importer folded it out of a DequantizeLinear of
// integer weights (a QDQ file): the node's integer tensor, scale, zero point and axis, so integer
// kernels (ExecutorOptions::int8) can use the integers the file stores.
struct DequantizedOrigin {
  Tensor integers;    // int8 / uint8 values (widened in i64)
  Tensor scale;       // float, one value or one per slice along `axis`
  Tensor zero_point;  // same dtype as `integers`; empty (numel 0) when the node had none
  int64_t axis = 1;   // normalised to [0, rank)
};

struct Graph {
  std::string name;
  int64_t ir_version = 8;
  int64_t opset_version = 13;
  std::string producer_name;
  std::vector<ValueInfo> inputs;  // real inputs only (initializers excluded)
  std::vector<ValueInfo> outputs;
  std::vector<Node> nodes;  // topological order
  std::map<std::string, Tensor> initializers;
  std::map<std::string, ValueInfo> value_info;  // inferred shapes for every intermediate value
  // Float initializers the importer folded out of DequantizeLinear(integer initializer), by name.
  std::map<std::string, DequantizedOrigin> dequantized_origins;

  const Tensor* find_initializer(const std::string& value_name) const;
  Tensor* find_initializer(const std::string& value_name);
  // Index of the node producing `value_name`, or nullopt for inputs and initializers.
  std::optional<size_t> producer(const std::string& value_name) const;
  // Indices of nodes reading `value_name`, in node order.
  std::vector<size_t> consumers(const std::string& value_name) const;
};

// Ops the importer and the executor accept (the list printed when a node is unsupported).
const std::vector<std::string>& supported_ops();

// Reads an .onnx file (raw_data and typed fields, external data beside the file), checks every
// node against supported_ops(), folds constant subgraphs (Shape/Gather/Unsqueeze/Concat chains of
// torchvision exports; DequantizeLinear of int8 weight initializers in QDQ files, which become
// float initializers under the DequantizeLinear's output name, their integers kept in
// Graph::dequantized_origins) and runs shape inference. Throws
// std::runtime_error naming the file and, for an unsupported op, the node, its op type and the
// supported list.
Graph load_onnx(const std::filesystem::path& path);

// Writes a Graph as an ONNX model (opset kept, initializers as raw_data).
void save_onnx(const Graph& graph, const std::filesystem::path& path);

// Re-runs shape inference over `graph` after it was edited (fills value_info).
void infer_shapes(Graph& graph);

}  // namespace compsearch::model
