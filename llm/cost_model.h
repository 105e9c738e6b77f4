// The LLM cost model (docs/llm.md, "Cost model"): the exact size of the GGUF file llama-quantize
// writes for a recipe, and what running it with llama.cpp on one GPU (all layers offloaded) takes:
// memory (weights, KV cache, compute buffer; what stays in host memory) and speed (decode
// tokens/s, prefill time). The speed constants of a GPU come from a target profile's "llm"
// section (hardware_models/profiles, calibrated on published llama.cpp measurements:
// hardware_models/llm_speed_points.json); experiments/llm_estimate.h turns a preset name into an
// LlmGpu. Objectives for a search: size_bytes (gguf_file_bytes), vram_mb@gpu:X (LlmMemory),
// decode_tok_s@gpu:X (LlmSpeed), evaluated by name in experiments/llm_estimate.h.
//
// File size. llama-quantize (src/llama-quant.cpp) copies every key/value of its input, sets
// general.quantization_version and general.file_type, drops the general.split.* keys, and writes
// ggml's GGUF layout: header, key/values, tensor infos, zero padding to general.alignment (32 when
// absent), then every tensor's data padded to the alignment. The metadata does not depend on the
// tensor types (a tensor info stores its type as one u32), so gguf_layout() builds it once, with
// ggml's own gguf writer (gguf_get_meta_size), and GgufLayout::file_bytes adds the padded tensor
// bytes of any plan: exact, and cheap enough for a search's inner loop.
//
// A GGUF source's metadata is its own (vocabulary included), and tensors a recipe does not touch
// (norms, tensors the model does not know) keep their stored size, as llama-quantize keeps them.
// A Hugging Face source has no GGUF metadata: the layout assumes the key/values compsearch's own
// export writes (llm/gguf_export.h: the llama.* hyperparameters, no vocabulary) plus
// general.file_type, so it is exact for `llama-quantize` run on `compsearch compress --format
// gguf`'s F16/F32 output, and low by the tokenizer (token strings, scores, types, merges: a few
// MB for a 32k-150k vocabulary) against a file from llama.cpp's convert_hf_to_gguf.py.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "llm/checkpoint.h"
#include "llm/llm_recipe.h"

namespace compsearch::llm {

// Key/values llama-quantize adds beyond general.file_type and general.quantization_version: with
// --imatrix, quantize.imatrix.file and quantize.imatrix.dataset (strings, cut to 127 bytes as
// llama-quantize cuts them) and quantize.imatrix.entries_count / chunks_count (u32).
struct GgufSizeOptions {
  std::vector<std::pair<std::string, std::string>> string_kv;
  std::vector<std::pair<std::string, uint32_t>> u32_kv;
};

// What of a GGUF file does not depend on the tensor types.
struct GgufLayout {
  int64_t metadata_bytes = 0;         // header, key/values, tensor infos, padding to the alignment
  int64_t alignment = 32;             // general.alignment
  bool metadata_from_source = false;  // false: a Hugging Face source (assumed metadata, above)
  // Per model tensor (model order): its bytes when llama-quantize keeps it as stored (a norm of a
  // GGUF source), -1 when the plan sets it.
  std::vector<int64_t> kept_tensor_bytes;
  int64_t other_tensor_bytes = 0;  // source tensors the model does not hold, padded

  // The file's size in bytes for `plan` (plan_llm_recipe of the same model).
  int64_t file_bytes(const AppliedRecipe& plan) const;
};

// Reads the metadata of a GGUF source again (not its tensor data). Throws std::runtime_error
// naming the file when it cannot be read.
GgufLayout gguf_layout(const LlmModel& model, const GgufSizeOptions& options = {});

// gguf_layout(model, options).file_bytes(plan).
int64_t gguf_file_bytes(const LlmModel& model, const AppliedRecipe& plan,
                        const GgufSizeOptions& options = {});

// ---- Running it: llama.cpp with every layer on one GPU (-ngl 99) --------------------------------

struct LlmRunSettings {
  int64_t context = 4096;  // tokens per sequence
  int64_t batch = 1;       // sequences decoded together (llama.cpp n_seq_max / --parallel)
  TensorType kv_type = TensorType::kF16;  // --cache-type-k and -v: f16, q8_0, q4_0, f32, bf16, ...
  int64_t ubatch = 512;                   // n_ubatch: tokens per prefill graph (llama.cpp default)
  bool flash_attention = true;            // llama.cpp's default ("auto") turns it on for CUDA

  // Throws std::invalid_argument naming `where` and the setting for values llama.cpp refuses:
  // context, batch or ubatch < 1, a quantized V cache without flash attention.
  void validate(const std::string& where) const;
};

// Memory of a llama.cpp context (src/llama-context.cpp, llama-kv-cache.cpp, llama-model.cpp).
struct LlmMemory {
  int64_t kv_cells = 0;              // per stream: max(context, ...) padded to 256, see kv_cache
  int64_t weights_device_bytes = 0;  // every tensor but token_embd (+ its copy as output if tied)
  int64_t weights_host_bytes = 0;    // token_embd: llama.cpp keeps the input layer on the CPU
  int64_t kv_cache_bytes = 0;        // K and V of every layer for every cell of every stream
  int64_t compute_buffer_bytes = 0;  // the largest stage of the prefill graph (approximation)
  int64_t vram_bytes() const {
    return weights_device_bytes + kv_cache_bytes + compute_buffer_bytes;
  }
};

// The KV cache llama.cpp allocates: n_ctx = context x batch padded to 256; with batch > 1 each of
// the `batch` streams gets n_ctx / batch cells padded to 256 (kv_unified off, llama.cpp's
// default). K and V: per layer, row_bytes(kv_type, kv_heads x head_dim) per cell.
int64_t kv_cache_cells(const LlmRunSettings& settings);
int64_t kv_cache_bytes(const LlmConfig& config, const LlmRunSettings& settings);

LlmMemory llm_memory(const LlmModel& model, const AppliedRecipe& plan,
                     const LlmRunSettings& settings);

// A GPU's numbers as the speed model uses them (from a target profile).
struct LlmGpu {
  std::string name;                        // "gpu:a100"
  double memory_bytes = 0;                 // device memory
  double bandwidth_bytes_per_s = 0;        // nominal DRAM bandwidth
  double peak_flops = 0;                   // dense FP16 tensor-core FLOP/s
  double decode_bandwidth_efficiency = 1;  // share of the bandwidth a decode step reaches
  // Fixed time per layer and graph (kernel launches, synchronisation): a decode step and a prefill
  // graph of a model with L layers pay t0 = L x this.
  double layer_overhead_s = 0;
  double prefill_efficiency = 1;            // share of peak_flops, F16/BF16/F32 weights, attention
  double prefill_efficiency_quantized = 1;  // share of peak_flops, quantized weights
};

// Decode: one step computes one token for each of `batch` sequences at `context` tokens of
// history; it reads the device weights once (token_embd only as one row per token: a lookup)
// and the K and V of every sequence:
//   step_s = t0 + (weights + batch x (KV(context) + embedding row)) / (eff x bandwidth),
//   t0 = layers x layer_overhead (launches per layer: fit on published points, a per-layer t0
//   predicts 13B and 70B models from 7B ones where one fixed t0 does not),
//   decode_tok_s = batch / step_s.
// Prefill of `context` tokens of one sequence is compute-bound, with llama.cpp's two matrix paths
// (cuBLAS for float weights, its own int8 MMQ kernels for quantized ones) at their own efficiency:
//   flops(matrix) = 2 x rows x row_length x context   (the untied token_embd is a lookup: 0)
//   flops(attention) = 4 x layers x heads x head_dim x context x (context + 1) / 2   (causal)
//   prefill_s = ceil(context / ubatch) x t0 + float flops / (eff x peak)
//               + quantized flops / (eff_quantized x peak).
// A mixture-of-experts model would read (and multiply) only its active experts per token; the
// models read here are dense, so every matrix counts.
struct LlmSpeed {
  double decode_bytes_per_step = 0;
  double decode_step_s = 0;
  double decode_tok_s = 0;             // all sequences together
  double prefill_float_flops = 0;      // float-weight matrices and attention
  double prefill_quantized_flops = 0;  // quantized-weight matrices
  double prefill_s = 0;
  double prefill_tok_s = 0;
};

// The formulas on their own (the calibration fits them on published points).
double decode_step_seconds(double bytes_per_step, int64_t layers, const LlmGpu& gpu);
double prefill_seconds(double float_flops, double quantized_flops, int64_t tokens, int64_t ubatch,
                       int64_t layers, const LlmGpu& gpu);
// The K and V a decode step reads for one sequence at `context` positions.
double kv_read_bytes(const LlmConfig& config, TensorType kv_type, int64_t context);
// Bytes one decode step reads for one sequence besides the shared weights: the embedding row and
// the K and V of `context` positions.
double decode_bytes_per_sequence(const LlmModel& model, const AppliedRecipe& plan,
                                 const LlmRunSettings& settings);
// QK^T and AV over a causal prompt of `tokens` tokens.
double attention_flops(const LlmConfig& config, int64_t tokens);
// Whether llama.cpp multiplies weights of this type with its quantized kernels.
bool is_quantized_type(TensorType type);

LlmSpeed llm_speed(const LlmModel& model, const AppliedRecipe& plan, const LlmGpu& gpu,
                   const LlmRunSettings& settings);

}  // namespace compsearch::llm
