// llama.cpp's tensor types, through ggml itself (the libggml-base that scripts/setup.sh installs):
// names as llama-quantize spells them, block geometry and bits per weight from ggml's type traits,
// llama.cpp's fallback for rows whose length is not a multiple of the block size, and the
// quantize -> dequantize round trip by ggml_quantize_chunk and the type's to_float. Nothing here
// re-implements a ggml kernel, so sizes and reconstructed weights are llama.cpp's by construction.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace compsearch::llm {

// A ggml_type value. The named ones are those a recipe may ask for; a GGUF file may hold any
// ggml type, which is read (dequantized) but not offered as a recipe setting.
enum class TensorType : int32_t {
  kF32 = 0,
  kF16 = 1,
  kQ4_0 = 2,
  kQ4_1 = 3,
  kQ5_0 = 6,
  kQ5_1 = 7,
  kQ8_0 = 8,
  kQ2_K = 10,
  kQ3_K = 11,
  kQ4_K = 12,
  kQ5_K = 13,
  kQ6_K = 14,
  kIQ4_NL = 20,
  kIQ4_XS = 23,
  kBF16 = 30,
};

// The recipe types, in llama-quantize's order of size (largest first).
const std::vector<TensorType>& recipe_tensor_types();

// "q4_k", "iq4_xs", "f16", ... (ggml's type name, lower case); any ggml type, even unnamed above.
std::string tensor_type_name(TensorType type);
// Parses a recipe type (case-insensitive, "Q4_K" or "q4_k"). Throws std::invalid_argument
// "<where>: unknown tensor type 'x', expected one of q8_0, q6_k, ...".
TensorType parse_tensor_type(std::string_view name, std::string_view where);

// Whether ggml knows `type` (a value read from a file); false for removed or unknown ids.
bool is_known_ggml_type(int32_t type);

int64_t block_weights(TensorType type);   // weights per block (1 for F32/F16/BF16, 32, 256)
int64_t block_bytes(TensorType type);     // bytes per block
double bits_per_weight(TensorType type);  // 8 * block_bytes / block_weights
// Bytes of one row of `n` weights (ggml_row_size); n must be a multiple of block_weights.
int64_t row_bytes(TensorType type, int64_t n);

// The type llama.cpp's llama-quantize stores for a tensor whose rows have `row_length` weights
// when `type` was asked for (src/llama-quant.cpp, tensor_type_fallback): a 256-block type falls
// back to a 32-block one (Q2_K/Q3_K -> Q4_0, Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0,
// IQ4_XS -> IQ4_NL), and to F16 when even 32 does not divide the row. `type` itself otherwise.
TensorType fallback_type(TensorType type, int64_t row_length);

// ggml_quantize_chunk over `rows` rows of `row_length` weights (row-major), parallel over rows.
// `importance` (row_length values) or empty. row_length must be a multiple of the block size
// (apply fallback_type first); throws std::invalid_argument otherwise.
std::vector<uint8_t> quantize_rows(TensorType type, std::span<const float> weights, int64_t rows,
                                   int64_t row_length, std::span<const float> importance = {});
// The type's to_float over `n` weights stored in `data` (n a multiple of the block size).
void dequantize(TensorType type, const void* data, int64_t n, float* out);
// quantize_rows then dequantize: the weights llama.cpp computes with after quantizing to `type`.
std::vector<float> quantize_round_trip(TensorType type, std::span<const float> weights,
                                       int64_t rows, int64_t row_length,
                                       std::span<const float> importance = {});

}  // namespace compsearch::llm
