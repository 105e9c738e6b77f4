// Importance matrices (issue 13, item 4): the sum of squared activations per input column of
// every matrix product, collected by our decoder on calibration tokens, as llama.cpp's
// llama-imatrix collects them (tools/imatrix/imatrix.cpp of the pinned tree): every position of
// each window of `context` tokens (not only the scored half), for the tensors of the blocks
// (blk.N.*; `output` too with process_output, as its --process-output; a tied token_embd never,
// as there), attn_q/k/v each with the shared attention input, ffn_gate/up with the FFN input.
//
// Files are what llama-imatrix writes by default (GGUF, general.type "imatrix"): per tensor
// "<name>.weight.in_sum2" (F32 [columns, 1]) and "<name>.weight.counts" (F32 [1, 1], the rows
// seen), and the keys imatrix.datasets, imatrix.chunk_count and imatrix.chunk_size. llama-quantize
// --imatrix reads it and hands ggml_quantize_chunk in_sum2 / counts as the importance of each
// column; importance() gives the same numbers, and apply_llm_recipe_imatrix passes them as
// llama-quantize does: to every quantized type (ggml uses it where the type takes one; q8_0 and
// the float types ignore it), nothing for a tensor the matrix does not list.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "llm/checkpoint.h"
#include "llm/llm_recipe.h"

namespace compsearch::llm {

struct Imatrix {
  struct Entry {
    std::vector<double> sum2;  // per input column
    int64_t count = 0;         // rows (tokens) accumulated
  };
  std::map<std::string, Entry> entries;  // by GGUF tensor name without ".weight"
  std::vector<std::string> datasets;     // token files it was computed on
  int64_t chunks = 0;                    // windows
  int64_t chunk_size = 0;                // tokens per window

  // in_sum2 / counts as float, as llama-quantize loads it; empty when `tensor` is not listed.
  std::vector<float> importance(const std::string& tensor) const;
};

// Runs the decoder over floor(n / context) windows (capped by max_windows > 0) and accumulates
// every matrix product's input. Throws std::invalid_argument for context < 2 or too few tokens.
Imatrix collect_imatrix(const LlmModel& model, std::span<const int32_t> tokens, int64_t context,
                        int64_t max_windows = 0, int threads = 0, bool process_output = false,
                        const std::string& dataset = "");

// llama-imatrix's GGUF format (above); written atomically.
void write_imatrix(const Imatrix& imatrix, const std::filesystem::path& path);
// Reads a GGUF imatrix (ours or llama-imatrix's). Throws std::runtime_error naming the file for
// anything else (the legacy .dat format included) or a tensor whose counts are missing.
Imatrix read_imatrix(const std::filesystem::path& path);

// Checks the imatrix against the model: every entry names a matrix whose row length equals its
// column count. Throws std::invalid_argument naming `source` and the tensor.
void check_imatrix(const Imatrix& imatrix, const LlmModel& model, const std::string& source);

// Replaces one matrix's weights by the ggml round trip at `stored` (a type after fallback), with
// the imatrix's importance for that tensor when `imatrix` lists it.
void quantize_tensor_in_place(LlmTensor& tensor, TensorType stored, const Imatrix* imatrix);

// apply_llm_recipe with the importance matrix passed to ggml as llama-quantize passes it.
AppliedRecipe apply_llm_recipe_imatrix(LlmModel& model, const LlmRecipe& recipe,
                                       const Imatrix* imatrix);

}  // namespace compsearch::llm
