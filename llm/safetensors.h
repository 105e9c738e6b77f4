// Reading Hugging Face safetensors files: an 8-byte little-endian header length, a JSON header
// ({"name": {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}, offsets
// relative to the end of the header), then the raw tensor bytes. F32, F16 and BF16 are read (as
// float); every other dtype, a truncated file, an oversized header, overlapping or out-of-range
// offsets and a byte count that does not match the shape are errors naming the file and tensor.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

namespace compsearch::llm {

struct SafetensorsEntry {
  std::string name;
  std::string dtype;           // "F32", "F16" or "BF16"
  std::vector<int64_t> shape;  // as stored (PyTorch order: [out_features, in_features])
  uint64_t offset = 0;         // absolute file offset of the first byte
  uint64_t bytes = 0;
};

struct SafetensorsFile {
  std::filesystem::path path;
  std::vector<SafetensorsEntry> tensors;  // in file order (by offset)
};

// The largest header accepted (safetensors' own limit is 100 MB).
inline constexpr uint64_t kMaxSafetensorsHeaderBytes = 100'000'000;

// Parses and validates the header. Throws std::runtime_error naming the file (and tensor).
SafetensorsFile read_safetensors_header(const std::filesystem::path& path);
// The tensor's values as float (row-major, as stored).
std::vector<float> read_safetensors_tensor(const SafetensorsFile& file,
                                           const SafetensorsEntry& entry);

// Writes a safetensors file of F32 tensors (in the order given; names must be unique) with
// `metadata` (string values) as __metadata__, atomically. Throws std::runtime_error naming the
// file.
struct SafetensorsF32Tensor {
  std::string name;
  std::vector<int64_t> shape;
  const std::vector<float>* data = nullptr;  // shape's product values, row-major
};
void write_safetensors_f32(const std::filesystem::path& path,
                           const std::vector<SafetensorsF32Tensor>& tensors,
                           const std::map<std::string, std::string>& metadata);

// BF16 bits -> float (exact) and float -> BF16 bits (round to nearest even, NaN kept quiet).
float bf16_bits_to_float(uint16_t bits);
uint16_t float_to_bf16_bits(float x);

}  // namespace compsearch::llm
