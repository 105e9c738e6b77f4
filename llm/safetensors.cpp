// safetensors header parsing and tensor reading.
#include "llm/safetensors.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "common/atomic_file.h"
#include "common/json_nesting.h"
#include "model/half.h"
#include "model/tensor.h"

namespace compsearch::llm {

namespace {

int64_t dtype_bytes(const std::string& dtype) {
  if (dtype == "F32") return 4;
  if (dtype == "F16" || dtype == "BF16") return 2;
  return 0;
}

[[noreturn]] void fail(const std::filesystem::path& path, const std::string& what) {
  throw std::runtime_error(path.string() + ": " + what);
}

}  // namespace

float bf16_bits_to_float(uint16_t bits) {
  return std::bit_cast<float>(static_cast<uint32_t>(bits) << 16);
}

uint16_t float_to_bf16_bits(float x) {
  const uint32_t u = std::bit_cast<uint32_t>(x);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40u);
  return static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

SafetensorsFile read_safetensors_header(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path, "cannot open the file");
  in.seekg(0, std::ios::end);
  const auto file_size = static_cast<uint64_t>(in.tellg());
  in.seekg(0);
  if (file_size < 8) {
    fail(path, "truncated: " + std::to_string(file_size) +
                   " bytes, a safetensors file starts with an 8-byte header length");
  }
  unsigned char len_bytes[8];
  in.read(reinterpret_cast<char*>(len_bytes), 8);
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | len_bytes[i];
  if (header_len > kMaxSafetensorsHeaderBytes) {
    fail(path, "header length " + std::to_string(header_len) + " bytes exceeds the limit of " +
                   std::to_string(kMaxSafetensorsHeaderBytes) + " (not a safetensors file?)");
  }
  if (header_len > file_size - 8) {
    fail(path, "truncated: the header says " + std::to_string(header_len) +
                   " header bytes, the file has " + std::to_string(file_size - 8) +
                   " after the length");
  }
  std::string text(header_len, '\0');
  in.read(text.data(), static_cast<std::streamsize>(header_len));
  if (json_nesting_depth(text) > kMaxJsonNesting)
    fail(path, "header is JSON nested deeper than " + std::to_string(kMaxJsonNesting) + " levels");
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    fail(path, std::string("header is not valid JSON: ") + e.what());
  }
  if (!header.is_object()) fail(path, "header is not a JSON object");
  const uint64_t data_start = 8 + header_len;
  const uint64_t data_size = file_size - data_start;
  SafetensorsFile file{path, {}};
  for (const auto& [name, info] : header.items()) {
    if (name == "__metadata__") continue;
    const std::string where = "tensor '" + name + "'";
    if (!info.is_object() || !info.contains("dtype") || !info.contains("shape") ||
        !info.contains("data_offsets")) {
      fail(path, where + ": expected an object with dtype, shape and data_offsets");
    }
    SafetensorsEntry e;
    e.name = name;
    try {
      e.dtype = info.at("dtype").get<std::string>();
      e.shape = info.at("shape").get<std::vector<int64_t>>();
      const auto offsets = info.at("data_offsets").get<std::vector<uint64_t>>();
      if (offsets.size() != 2 || offsets[1] < offsets[0]) throw std::out_of_range("offsets");
      e.offset = data_start + offsets[0];
      e.bytes = offsets[1] - offsets[0];
      if (offsets[1] > data_size) {
        fail(path, where + ": data_offsets end " + std::to_string(offsets[1]) +
                       " is past the end of the data (" + std::to_string(data_size) +
                       " bytes): truncated file");
      }
    } catch (const nlohmann::json::exception&) {
      fail(path, where +
                     ": dtype must be a string, shape a list of integers, data_offsets "
                     "[begin, end]");
    } catch (const std::out_of_range&) {
      fail(path, where + ": data_offsets must be [begin, end] with begin <= end");
    }
    const int64_t elem = dtype_bytes(e.dtype);
    if (elem == 0) {
      fail(path, where + ": dtype " + e.dtype + " is not supported, expected F32, F16 or BF16");
    }
    const int64_t numel = model::checked_numel(e.shape, path.string() + ": " + where);
    if (static_cast<uint64_t>(numel * elem) != e.bytes) {
      fail(path, where + ": " + std::to_string(e.bytes) + " bytes for shape " +
                     model::shape_to_string(e.shape) + " of " + e.dtype + " (expected " +
                     std::to_string(numel * elem) + ")");
    }
    file.tensors.push_back(std::move(e));
  }
  std::sort(file.tensors.begin(), file.tensors.end(),
            [](const auto& a, const auto& b) { return a.offset < b.offset; });
  for (size_t i = 1; i < file.tensors.size(); ++i) {
    const auto& prev = file.tensors[i - 1];
    if (prev.offset + prev.bytes > file.tensors[i].offset) {
      fail(path, "tensors '" + prev.name + "' and '" + file.tensors[i].name + "' overlap");
    }
  }
  return file;
}

std::vector<float> read_safetensors_tensor(const SafetensorsFile& file,
                                           const SafetensorsEntry& entry) {
  std::ifstream in(file.path, std::ios::binary);
  if (!in) fail(file.path, "cannot open the file");
  std::vector<char> raw(entry.bytes);
  in.seekg(static_cast<std::streamoff>(entry.offset));
  in.read(raw.data(), static_cast<std::streamsize>(raw.size()));
  if (static_cast<uint64_t>(in.gcount()) != entry.bytes) {
    fail(file.path, "tensor '" + entry.name + "': truncated file");
  }
  const size_t n = entry.bytes / static_cast<size_t>(dtype_bytes(entry.dtype));
  std::vector<float> out(n);
  if (entry.dtype == "F32") {
    std::memcpy(out.data(), raw.data(), entry.bytes);  // little-endian host (x86-64, arm64)
  } else {
    for (size_t i = 0; i < n; ++i) {
      uint16_t bits;
      std::memcpy(&bits, raw.data() + 2 * i, 2);
      out[i] = entry.dtype == "F16" ? model::half_bits_to_float(bits) : bf16_bits_to_float(bits);
    }
  }
  return out;
}

void write_safetensors_f32(const std::filesystem::path& path,
                           const std::vector<SafetensorsF32Tensor>& tensors,
                           const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const SafetensorsF32Tensor& t : tensors) {
    const uint64_t bytes = t.data->size() * sizeof(float);
    if (header.contains(t.name)) fail(path, "tensor '" + t.name + "' written twice");
    header[t.name] = {
        {"dtype", "F32"}, {"shape", t.shape}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // the data starts 8-byte aligned
  replace_file_atomically(path, [&](const std::filesystem::path& tmp) {
    std::ofstream out(tmp, std::ios::binary);
    const uint64_t n = text.size();
    out.write(reinterpret_cast<const char*>(&n), 8);  // little-endian host
    out.write(text.data(), static_cast<std::streamsize>(n));
    for (const SafetensorsF32Tensor& t : tensors) {
      out.write(reinterpret_cast<const char*>(t.data->data()),
                static_cast<std::streamsize>(t.data->size() * sizeof(float)));
    }
    if (!out.flush()) fail(path, "write failed");
  });
}

}  // namespace compsearch::llm
