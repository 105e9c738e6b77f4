// `compsearch inspect` and `compsearch evaluate` for LLM checkpoints (llm/): the CLI dispatches
// here when --model is a directory with config.json or a .gguf file (llm::is_llm_checkpoint), so
// the verbs stay the same as for ONNX models. Each returns a result with a JSON form (the keys
// users and tests rely on) and a printable table.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "llm/checkpoint.h"
#include "llm/decoder.h"
#include "llm/kld.h"
#include "llm/llm_recipe.h"

namespace compsearch::experiments {

// Whether the CLI's --model names an LLM checkpoint (a directory with config.json, or .gguf).
bool is_llm_model(const std::string& model);

// `inspect MODEL [--recipe R]`. JSON: {"model", "format" ("hf"|"gguf"), "config": {...},
// "tensors": [{"name", "hf_name", "role", "layer", "shape", "params", "macs_per_token",
// "stored_type", and with a recipe "type" (asked), "stored_as" (after fallback), "bytes"}],
// "total_params", "total_macs_per_token", with a recipe "size_bytes" and "bits_per_weight"}.
struct LlmInspectResult {
  std::string model;
  llm::LlmModel checkpoint;  // loaded without weights
  std::optional<llm::AppliedRecipe> plan;

  nlohmann::json to_json() const;
  std::string to_text() const;
};

LlmInspectResult inspect_llm(const std::string& model, const std::string& recipe);

struct LlmEvaluateRequest {
  std::string model;        // HF directory or .gguf
  std::string data;         // NPY of token ids
  int64_t context = 0;      // 0: min(512, trained context, tokens)
  int64_t max_windows = 0;  // 0: all
  int threads = 0;          // 0: all cores
  std::string recipe;       // "" = the weights as loaded
  bool kld = false;         // also KL divergence and ΔNLL against the model as loaded (llm/kld.h)
  std::string imatrix;      // "" or a GGUF importance matrix the recipe quantizes with
};

// `evaluate --model M --data TOKENS.npy`. JSON: {"model", "data", "recipe" (or null), "context",
// "windows", "tokens_scored", "mean_nll", "perplexity", "seconds", "tokens_per_second", with a
// recipe "size_bytes" and "bits_per_weight"; with kld "kld" (mean), "delta_nll", "kld_uncertainty",
// "kld_median", "kld_p99", "kld_max", "same_top", "reference_mean_nll"}.
struct LlmEvaluateResult {
  std::string model, data, recipe;
  llm::PerplexityResult perplexity;
  std::optional<llm::AppliedRecipe> applied;
  int64_t file_bytes = 0;  // with a recipe: the GGUF file llama-quantize would write (cost_model.h)
  std::optional<llm::KldResult> kld;

  nlohmann::json to_json() const;
  std::string to_text() const;
};

LlmEvaluateResult evaluate_llm(const LlmEvaluateRequest& request);

// `calibrate --model M --data T --out imatrix.gguf`: the importance matrix of the model on the
// tokens (llm/imatrix.h), written as llama-imatrix writes it. Returns {"out", "entries", "chunks",
// "chunk_size", "tokens", "seconds"}.
struct LlmCalibrateRequest {
  std::string model, data, out;
  int64_t context = 0;      // 0: min(512, trained context, tokens / 2)
  int64_t max_windows = 0;  // 0: all
  int threads = 0;
  bool process_output = false;
};
nlohmann::json calibrate_llm(const LlmCalibrateRequest& request);

// `compress --model M --recipe R --format gguf --out F`: writes the model with the recipe's types
// (llm/gguf_export.h). Returns {"format": "gguf", "out", "size_bytes", "bits_per_weight",
// "tensors": {type: count}}. UsageError for a format other than gguf.
nlohmann::json compress_llm(const std::string& model, const std::string& recipe,
                            const std::string& format, const std::string& out);

}  // namespace compsearch::experiments
