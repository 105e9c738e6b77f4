// Tensor helpers: element counts, constructors and shape printing.
#include "model/tensor.h"

#include <stdexcept>
#include <string>

namespace compsearch::model {

const char* dtype_name(DType dtype) {
  switch (dtype) {
    case DType::kFloat32:
      return "float32";
    case DType::kInt64:
      return "int64";
    case DType::kInt32:
      return "int32";
    case DType::kInt8:
      return "int8";
    case DType::kUInt8:
      return "uint8";
    case DType::kFloat16:
      return "float16";
    case DType::kBool:
      return "bool";
  }
  return "unknown";
}

int64_t checked_numel(const Shape& dims, std::string_view what) {
  int64_t n = 1;
  bool overflow = false;
  for (int64_t d : dims) {
    if (d < 0) {
      throw std::runtime_error(std::string(what) + ": shape " + shape_to_string(dims) +
                               " has a negative dimension");
    }
    overflow = overflow || __builtin_mul_overflow(n, d, &n);
  }
  for (int64_t d : dims)
    if (d == 0) return 0;  // zero elements, however large the other dims
  if (overflow) {
    throw std::runtime_error(std::string(what) + ": shape " + shape_to_string(dims) +
                             " has more elements than a 64-bit count holds");
  }
  return n;
}

int64_t shape_numel(const Shape& shape) { return checked_numel(shape, "tensor"); }

std::string shape_to_string(const Shape& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

int64_t Tensor::numel() const { return shape_numel(shape); }

Tensor Tensor::floats(Shape shape, std::vector<float> values) {
  if (static_cast<int64_t>(values.size()) != shape_numel(shape)) {
    throw std::invalid_argument("Tensor::floats: shape " + shape_to_string(shape) + " needs " +
                                std::to_string(shape_numel(shape)) + " values, got " +
                                std::to_string(values.size()));
  }
  Tensor t;
  t.dtype = DType::kFloat32;
  t.shape = std::move(shape);
  t.f32 = std::move(values);
  return t;
}

Tensor Tensor::ints(Shape shape, std::vector<int64_t> values, DType dtype) {
  if (static_cast<int64_t>(values.size()) != shape_numel(shape)) {
    throw std::invalid_argument("Tensor::ints: shape " + shape_to_string(shape) + " needs " +
                                std::to_string(shape_numel(shape)) + " values, got " +
                                std::to_string(values.size()));
  }
  Tensor t;
  t.dtype = dtype;
  t.shape = std::move(shape);
  t.i64 = std::move(values);
  return t;
}

Tensor Tensor::zeros(Shape shape) {
  Tensor t;
  t.dtype = DType::kFloat32;
  t.f32.assign(static_cast<size_t>(shape_numel(shape)), 0.0f);
  t.shape = std::move(shape);
  return t;
}

float* prepare_float(Tensor& out, const Shape& shape) {
  out.dtype = DType::kFloat32;
  if (out.shape != shape) out.shape = shape;  // keeps the shape's storage when equal
  out.i64.clear();
  out.f32.resize(static_cast<size_t>(shape_numel(shape)));
  return out.f32.data();
}

}  // namespace compsearch::model
