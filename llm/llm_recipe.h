// Recipes for LLMs: a llama.cpp tensor type per tensor (DESIGN.md, "LLMs").
//
//   {"format": "compsearch.recipe/1",                     optional
//    "default": {"type": "q4_k"},                          optional: every matrix not listed
//    "layers": {"blk.0.ffn_down": {"type": "q6_k"},        GGUF names, or HF aliases
//               "model.layers.1.self_attn.q_proj": {"type": "q8_0"}}}
//
// Types are spelled as llama-quantize spells them (tensor_types.h). Norm weights stay F32: naming
// one with another type is an error, as are unknown keys, unknown tensor names and unknown types
// (each message names the recipe file and key). A matrix with neither a layer entry nor a default
// keeps its weights as loaded. Applying a recipe stores each matrix as llama.cpp would: the asked
// type, or its fallback_type for rows that do not fit the block size, quantized and dequantized
// by ggml.
#pragma once

#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "llm/checkpoint.h"

namespace compsearch::llm {

struct LlmRecipe {
  std::optional<TensorType> default_type;
  std::map<std::string, TensorType> types;  // by GGUF name (aliases resolved)
  std::string source;                       // file name, for messages
};

// Parses and checks a recipe against the model's tensors. Throws std::invalid_argument.
LlmRecipe parse_llm_recipe(const nlohmann::json& j, const LlmModel& model,
                           const std::string& source);
// A recipe file, or the name of one of llama.cpp's mixes (q4_k_m, ...: llm/llama_mixes.h) when no
// file of that name exists.
LlmRecipe load_llm_recipe(const std::filesystem::path& path, const LlmModel& model);

struct AppliedTensor {
  std::string name;
  TensorType asked = TensorType::kF32;   // the recipe's type (or the stored type when unlisted)
  TensorType stored = TensorType::kF32;  // after llama.cpp's fallback
  int64_t bytes = 0;                     // rows * row_bytes(stored, row_length)
};

struct AppliedRecipe {
  std::vector<AppliedTensor> tensors;  // every tensor of the model, in model order
  int64_t total_bytes = 0;
  int64_t total_params = 0;
  double bits_per_weight() const;  // 8 * total_bytes / total_params
};

// The type each tensor ends up stored as and its size, without touching the weights.
AppliedRecipe plan_llm_recipe(const LlmModel& model, const LlmRecipe& recipe);
// plan_llm_recipe, then replaces each listed or defaulted matrix's weights by their ggml
// quantize -> dequantize round trip at the stored type (needs a model loaded with data).
AppliedRecipe apply_llm_recipe(LlmModel& model, const LlmRecipe& recipe);

}  // namespace compsearch::llm
