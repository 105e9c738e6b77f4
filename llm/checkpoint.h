// Llama-family checkpoints: a Hugging Face directory (config.json + model.safetensors, or shards
// listed in model.safetensors.index.json; F32/F16/BF16) or a GGUF file (architecture "llama"; any
// tensor type ggml can dequantize). Either way the model comes out the same: its hyperparameters
// and every tensor under its GGUF name, in llama.cpp's layout, as float.
//
// llama.cpp's layout differs from Hugging Face's in one place: RoPE. HF rotates the two halves of
// each head (x[i] with x[i + d/2]); llama.cpp rotates adjacent pairs (x[2i] with x[2i+1]). Its
// converter (convert_hf_to_gguf.py, LlamaModel.permute) therefore reorders the rows of attn_q and
// attn_k within each head: GGUF row 2i = HF row i, GGUF row 2i+1 = HF row i + d/2. Loading an HF
// checkpoint applies the same permutation, so the decoder computes one way for both sources.
//
// Tensor names: GGUF's without ".weight" (token_embd, blk.N.attn_q, ..., output_norm, output); HF
// names (model.layers.N.self_attn.q_proj) are accepted as aliases wherever a name is looked up.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "llm/tensor_types.h"

namespace compsearch::llm {

struct LlmConfig {
  std::string architecture = "llama";
  int64_t hidden = 0;        // embedding length
  int64_t intermediate = 0;  // feed-forward length
  int64_t layers = 0;
  int64_t heads = 0;
  int64_t kv_heads = 0;
  int64_t head_dim = 0;
  int64_t vocab = 0;
  int64_t context = 0;  // trained context length (max_position_embeddings)
  double rms_eps = 1e-6;
  double rope_theta = 10000.0;
  bool tied_embeddings = false;  // no output tensor: the output projection is token_embd
};

enum class TensorRole {
  kTokenEmbd,
  kAttnNorm,
  kAttnQ,
  kAttnK,
  kAttnV,
  kAttnOutput,
  kFfnNorm,
  kFfnGate,
  kFfnUp,
  kFfnDown,
  kOutputNorm,
  kOutput,
};
std::string role_name(TensorRole role);  // "attn_q", "ffn_down", "token_embd", ...

struct LlmTensor {
  std::string name;     // GGUF name without ".weight": "blk.0.attn_q"
  std::string hf_name;  // HF name without ".weight": "model.layers.0.self_attn.q_proj"
  TensorRole role = TensorRole::kTokenEmbd;
  int64_t layer = -1;                         // block index, -1 for token_embd, output_norm, output
  std::vector<int64_t> shape;                 // [rows, row_length] ([out, in]), or [n] for a norm
  TensorType stored_type = TensorType::kF32;  // as stored in the file (F32/F16/BF16 for HF)
  std::vector<float> data;  // row-major, llama.cpp layout; empty when loaded without data

  int64_t params() const;
  int64_t rows() const { return shape.size() == 2 ? shape[0] : 1; }
  int64_t row_length() const { return shape.back(); }
  bool is_matrix() const { return shape.size() == 2; }
  // Multiply-accumulates per token: rows * row_length for a projection (and for token_embd when
  // the embeddings are tied, since it is then the output projection too), 0 for norms and for an
  // untied token_embd (a lookup). Attention's score and value products, which grow with the
  // context, belong to no tensor and are not counted.
  int64_t macs_per_token = 0;
};

struct LlmModel {
  std::filesystem::path path;
  std::string format;  // "hf" or "gguf"
  LlmConfig config;
  std::vector<LlmTensor> tensors;  // token_embd, then blocks in order, output_norm, output

  // Looks up a tensor by GGUF or HF name (".weight" optional). nullptr when absent.
  const LlmTensor* find(const std::string& name) const;
  LlmTensor* find(const std::string& name);
  // As find, but throws std::invalid_argument naming the model when absent.
  const LlmTensor& at(const std::string& name) const;
};

// Whether `path` is an LLM checkpoint this folder reads: a directory holding config.json, or a
// file whose name ends in .gguf.
bool is_llm_checkpoint(const std::filesystem::path& path);

// Loads the checkpoint (with_data = false: names, shapes and types only, no weights read).
// Throws std::runtime_error naming the file and key for unsupported architectures (anything but
// llama/mistral without rope scaling, biases or sliding windows), missing tensors and shape
// mismatches.
LlmModel load_llm(const std::filesystem::path& path, bool with_data = true);

// A model of this shape with no file behind it: every tensor's name, role and shape, matrices F16
// and norms F32, no data (path = `name`, format "config"). For costing published models
// (llm/cost_model.h) that are not on disk.
LlmModel llm_model_from_config(const LlmConfig& config, const std::string& name);

// The row permutation of attn_q/attn_k from HF's rotate-half order to llama.cpp's pairs:
// returns the HF row index of GGUF row r, for `heads` heads of `head_dim` rows each.
int64_t hf_row_of_gguf_row(int64_t r, int64_t head_dim);
// Applies it to a [heads * head_dim, cols] matrix (row-major).
std::vector<float> permute_hf_to_gguf(const std::vector<float>& hf, int64_t heads, int64_t head_dim,
                                      int64_t cols);

// The HF alias of a GGUF tensor name ("blk.3.ffn_down" -> "model.layers.3.mlp.down_proj") and
// back; std::nullopt for a name of neither form.
std::optional<std::string> hf_name_of(const std::string& gguf_name);
std::optional<std::string> gguf_name_of(const std::string& hf_name);

}  // namespace compsearch::llm
