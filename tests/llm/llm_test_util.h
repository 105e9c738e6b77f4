// Helpers for the llm tests: fresh temporary folders, a safetensors writer, and the committed
// fixture (scripts/make_tiny_llama.py, scripts/make_llm_reference.py).
#pragma once

#include <dlfcn.h>
#include <doctest/doctest.h>
#include <ggml.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "llm/checkpoint.h"
#include "llm/llm_recipe.h"

namespace compsearch::testing {

inline std::filesystem::path fresh_dir(const std::string& name) {
  const auto dir = std::filesystem::temp_directory_path() /
                   ("compsearch_llm_" + name + "_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

struct RawTensor {
  std::string name, dtype;
  std::vector<int64_t> shape;
  std::string bytes;
};

// A safetensors file as the format specifies it (offsets relative to the end of the header).
inline void write_safetensors(const std::filesystem::path& path,
                              const std::vector<RawTensor>& tensors) {
  nlohmann::json header = nlohmann::json::object();
  uint64_t offset = 0;
  for (const auto& t : tensors) {
    header[t.name] = {{"dtype", t.dtype},
                      {"shape", t.shape},
                      {"data_offsets", {offset, offset + t.bytes.size()}}};
    offset += t.bytes.size();
  }
  const std::string text = header.dump();
  const uint64_t len = text.size();
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(&len), 8);
  out << text;
  for (const auto& t : tensors) out << t.bytes;
}

inline std::string f32_bytes(const std::vector<float>& v) {
  std::string s(v.size() * 4, '\0');
  std::memcpy(s.data(), v.data(), s.size());
  return s;
}

inline std::filesystem::path llm_fixture(const std::string& name) {
  return std::filesystem::path(COMPSEARCH_TEST_DATA) / "llm" / name;
}

// llama.cpp's llama-quantize, built by llm/CMakeLists.txt (may be absent: skip then).
inline std::filesystem::path llama_quantize() {
  return std::filesystem::path(COMPSEARCH_BINARY_DIR) / "llm" / "llama-quantize";
}

// Runs `llama-quantize ARGS INPUT OUT NAME` (NAME: a llama.cpp type or mix, also the output's file
// name; INPUT: the F16 fixture unless given); returns the output file.
inline std::filesystem::path run_llama_quantize(
    const std::string& args, const std::string& name,
    const std::filesystem::path& input = llm_fixture("tiny_llama.f16.gguf")) {
  const std::filesystem::path out = fresh_dir("llama_quantize") / (name + ".gguf");
  const std::filesystem::path log = out.parent_path() / (name + ".log");
  const std::string cmd = llama_quantize().string() + " " + args + " " + input.string() + " " +
                          out.string() + " " + name + " > " + log.string() + " 2>&1";
  REQUIRE_MESSAGE(std::system(cmd.c_str()) == 0, "failed: " << cmd << " (log " << log << ")");
  return out;
}

// llama.cpp's llama-perplexity, built by llm/CMakeLists.txt (may be absent: skip then).
inline std::filesystem::path llama_perplexity() {
  return std::filesystem::path(COMPSEARCH_BINARY_DIR) / "llm" / "llama-perplexity";
}

// Runs `llama-perplexity ARGS` from the folder of the libggml-base we link (it loads its CPU
// backend from the working directory); returns its log (stdout and stderr).
inline std::string run_llama_perplexity(const std::string& args, const std::string& name) {
  Dl_info info{};
  REQUIRE(dladdr(reinterpret_cast<void*>(&ggml_type_size), &info) != 0);
  const std::filesystem::path backends = std::filesystem::path(info.dli_fname).parent_path();
  const std::filesystem::path log = fresh_dir("llama_perplexity") / (name + ".log");
  const std::string cmd = "cd " + backends.string() + " && " + llama_perplexity().string() + " " +
                          args + " > " + log.string() + " 2>&1";
  const int rc = std::system(cmd.c_str());
  std::ifstream in(log);
  std::stringstream ss;
  ss << in.rdbuf();
  REQUIRE_MESSAGE(rc == 0, "failed (" << rc << "): " << cmd << "\n" << ss.str());
  return ss.str();
}

// A GGUF written by llama-quantize (`theirs`, loaded with data) against compsearch's `plan` of
// the same recipe and `ours`, the source with that recipe applied: every tensor has the planned
// stored type and bit-identical weights.
inline void check_matches_llama_quantize(const llm::LlmModel& theirs, const llm::LlmModel& ours,
                                         const llm::AppliedRecipe& plan) {
  REQUIRE(theirs.tensors.size() == ours.tensors.size());
  for (size_t i = 0; i < ours.tensors.size(); ++i) {
    CAPTURE(ours.tensors[i].name);
    CHECK(llm::tensor_type_name(theirs.tensors[i].stored_type) ==
          llm::tensor_type_name(plan.tensors[i].stored));
    CHECK(theirs.tensors[i].data == ours.tensors[i].data);
  }
}

}  // namespace compsearch::testing
