// llama.cpp tensor types through ggml's own type traits and quantization.
#include "llm/tensor_types.h"

#include <ggml.h>

#include <algorithm>
#include <cctype>
#include <stdexcept>

#include "common/check.h"

namespace compsearch::llm {

namespace {

ggml_type to_ggml(TensorType type) { return static_cast<ggml_type>(static_cast<int32_t>(type)); }

const ggml_type_traits& traits(TensorType type) {
  COMPSEARCH_CHECK(is_known_ggml_type(static_cast<int32_t>(type)),
                   "ggml type " + std::to_string(static_cast<int32_t>(type)));
  return *ggml_get_type_traits(to_ggml(type));
}

void check_row_length(TensorType type, int64_t row_length) {
  if (row_length <= 0 || row_length % block_weights(type) != 0) {
    throw std::invalid_argument("tensor type " + tensor_type_name(type) + " needs rows of a " +
                                "multiple of " + std::to_string(block_weights(type)) +
                                " weights, got " + std::to_string(row_length) +
                                " (llama.cpp stores fallback_type() for such rows)");
  }
}

}  // namespace

const std::vector<TensorType>& recipe_tensor_types() {
  static const std::vector<TensorType> kTypes = {
      TensorType::kF32,    TensorType::kF16,  TensorType::kBF16, TensorType::kQ8_0,
      TensorType::kQ6_K,   TensorType::kQ5_1, TensorType::kQ5_K, TensorType::kQ5_0,
      TensorType::kQ4_1,   TensorType::kQ4_K, TensorType::kQ4_0, TensorType::kIQ4_NL,
      TensorType::kIQ4_XS, TensorType::kQ3_K, TensorType::kQ2_K};
  return kTypes;
}

bool is_known_ggml_type(int32_t type) {
  if (type < 0 || type >= GGML_TYPE_COUNT) return false;
  const ggml_type_traits* t = ggml_get_type_traits(static_cast<ggml_type>(type));
  return t != nullptr && t->blck_size > 0 && t->type_size > 0 && t->type_name != nullptr;
}

std::string tensor_type_name(TensorType type) {
  if (!is_known_ggml_type(static_cast<int32_t>(type))) {
    return "ggml_type_" + std::to_string(static_cast<int32_t>(type));
  }
  std::string name = ggml_type_name(to_ggml(type));
  for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return name;
}

TensorType parse_tensor_type(std::string_view name, std::string_view where) {
  std::string lower(name);
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  std::string allowed;
  for (TensorType t : recipe_tensor_types()) {
    if (tensor_type_name(t) == lower) return t;
    allowed += (allowed.empty() ? "" : ", ") + tensor_type_name(t);
  }
  throw std::invalid_argument(std::string(where) + ": unknown tensor type '" + std::string(name) +
                              "', expected one of " + allowed);
}

int64_t block_weights(TensorType type) { return traits(type).blck_size; }

int64_t block_bytes(TensorType type) { return static_cast<int64_t>(traits(type).type_size); }

double bits_per_weight(TensorType type) {
  return 8.0 * static_cast<double>(block_bytes(type)) / static_cast<double>(block_weights(type));
}

int64_t row_bytes(TensorType type, int64_t n) {
  check_row_length(type, n);
  return static_cast<int64_t>(ggml_row_size(to_ggml(type), n));
}

TensorType fallback_type(TensorType type, int64_t row_length) {
  const int64_t block = block_weights(type);
  if (row_length % block == 0) return type;
  TensorType fallback = type;
  switch (type) {
    case TensorType::kIQ4_XS:
      fallback = TensorType::kIQ4_NL;
      break;
    case TensorType::kQ2_K:
    case TensorType::kQ3_K:
      fallback = TensorType::kQ4_0;
      break;
    case TensorType::kQ4_K:
      fallback = TensorType::kQ5_0;
      break;
    case TensorType::kQ5_K:
      fallback = TensorType::kQ5_1;
      break;
    case TensorType::kQ6_K:
      fallback = TensorType::kQ8_0;
      break;
    default:  // a 32-block type: nothing smaller to demote to; F16 below
      COMPSEARCH_CHECK(block <= 32, "no fallback for " + tensor_type_name(type));
      break;
  }
  return row_length % block_weights(fallback) == 0 ? fallback : TensorType::kF16;
}

std::vector<uint8_t> quantize_rows(TensorType type, std::span<const float> weights, int64_t rows,
                                   int64_t row_length, std::span<const float> importance) {
  check_row_length(type, row_length);
  COMPSEARCH_CHECK(static_cast<int64_t>(weights.size()) == rows * row_length, "weights size");
  COMPSEARCH_CHECK(importance.empty() || static_cast<int64_t>(importance.size()) == row_length,
                   "importance size");
  if (ggml_quantize_requires_imatrix(to_ggml(type)) && importance.empty()) {
    throw std::invalid_argument("tensor type " + tensor_type_name(type) +
                                " needs an importance matrix");
  }
  const int64_t rb = row_bytes(type, row_length);
  std::vector<uint8_t> out(static_cast<size_t>(rb * rows));
  ggml_quantize_init(to_ggml(type));  // once, outside the parallel region (it allocates tables)
  // Chunks of whole rows, as llama-quantize splits its work; ggml_quantize_chunk is thread-safe.
  const int64_t rows_per_chunk = std::max<int64_t>(1, 65536 / row_length);
  const int64_t chunks = (rows + rows_per_chunk - 1) / rows_per_chunk;
  const float* imatrix = importance.empty() ? nullptr : importance.data();
#pragma omp parallel for schedule(dynamic)
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t first = c * rows_per_chunk;
    const int64_t n = std::min(rows_per_chunk, rows - first);
    ggml_quantize_chunk(to_ggml(type), weights.data(), out.data(), first * row_length, n,
                        row_length, imatrix);
  }
  return out;
}

void dequantize(TensorType type, const void* data, int64_t n, float* out) {
  check_row_length(type, n);
  const ggml_type_traits& t = traits(type);
  if (type == TensorType::kF32) {
    std::copy_n(static_cast<const float*>(data), n, out);
    return;
  }
  COMPSEARCH_CHECK(t.to_float != nullptr, "no to_float for " + tensor_type_name(type));
  t.to_float(data, out, n);
}

std::vector<float> quantize_round_trip(TensorType type, std::span<const float> weights,
                                       int64_t rows, int64_t row_length,
                                       std::span<const float> importance) {
  if (type == TensorType::kF32) return {weights.begin(), weights.end()};
  const std::vector<uint8_t> q = quantize_rows(type, weights, rows, row_length, importance);
  std::vector<float> out(weights.size());
  const int64_t rb = row_bytes(type, row_length);
  const ggml_to_float_t to_float = traits(type).to_float;
  COMPSEARCH_CHECK(to_float != nullptr, "no to_float for " + tensor_type_name(type));
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r)
    to_float(q.data() + r * rb, out.data() + r * row_length, row_length);
  return out;
}

}  // namespace compsearch::llm
