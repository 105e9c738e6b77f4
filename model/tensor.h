// Tensor: the dense value type shared by the graph IR, the executor and the compressors.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace compsearch::model {

using Shape = std::vector<int64_t>;

// Element types we read and write. Float tensors hold their values in `f32`; every integer type
// holds its values widened in `i64` (shape tensors, indices, and the int8/uint8 weights that the
// QDQ export writes), and `dtype` says how the tensor is serialised.
enum class DType { kFloat32, kInt64, kInt32, kInt8, kUInt8, kFloat16, kBool };

const char* dtype_name(DType dtype);

struct Tensor {
  DType dtype = DType::kFloat32;
  Shape shape;
  std::vector<float> f32;
  std::vector<int64_t> i64;

  // Number of elements (product of the shape; 1 for a scalar).
  int64_t numel() const;
  bool is_float() const { return dtype == DType::kFloat32 || dtype == DType::kFloat16; }

  static Tensor floats(Shape shape, std::vector<float> values);
  static Tensor ints(Shape shape, std::vector<int64_t> values, DType dtype = DType::kInt64);
  static Tensor zeros(Shape shape);
};

// The one element count of the project: the product of `dims` (1 for none, 0 when a dim is 0),
// checked. Throws std::runtime_error("<what>: shape [..] has a negative dimension") or
// ("<what>: shape [..] has more elements than a 64-bit count holds"), `what` naming the tensor,
// value or file. Every product of dims (element counts, MACs, bytes) goes through it.
int64_t checked_numel(const Shape& dims, std::string_view what);
// checked_numel(shape, "tensor"), for shapes that are already known to be valid.
int64_t shape_numel(const Shape& shape);
// Makes `out` a float tensor of `shape`, reusing its storage; returns its data.
float* prepare_float(Tensor& out, const Shape& shape);
std::string shape_to_string(const Shape& shape);  // "[1, 3, 224, 224]"

}  // namespace compsearch::model
