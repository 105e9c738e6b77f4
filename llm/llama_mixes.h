// llama.cpp's own quantization mixes (Q2_K, Q3_K_M, Q4_K_M, ...) as compsearch recipes, so that
// the file types users know are baselines evaluated, sized and exported like any searched recipe.
//
// A mix is what llama-quantize stores for each tensor when given the file type on the command
// line (no --pure, no importance matrix, no --tensor-type, --output-tensor-type or
// --token-embedding-type). The rules are those of the pinned llama.cpp tree
// (src/llama-quant.cpp: llama_ftype_get_default_type, llama_tensor_get_type_impl and
// tensor_type_fallback) for a dense Llama (no experts, not Falcon); they depend on the layer
// count (use_more_bits, n_layer/8, n_layer/16), on grouped-query attention (heads / kv_heads >= 4)
// and on tied embeddings (token_embd then takes the output tensor's rule).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "llm/checkpoint.h"
#include "llm/llm_recipe.h"

namespace compsearch::llm {

// The mixes, lower case as llama-quantize's ftype names: q2_k, q3_k_s, q3_k_m, q3_k_l, q4_k_s,
// q4_k_m, q5_k_s, q5_k_m, q6_k, q8_0.
const std::vector<std::string>& llama_mix_names();
// Whether `name` (any case) is one of them.
bool is_llama_mix(std::string_view name);

// The mix's base type (llama_ftype_get_default_type): Q4_K for q4_k_m. It is also the type to
// pass to llama-quantize as the file type when applying a --tensor-type-file that names every
// matrix (overrides only apply when the file type is a quantized one).
TensorType llama_mix_base_type(std::string_view mix);

// The recipe llama-quantize applies for `mix` to `model`: the asked type of every matrix, by name
// (norms stay F32). plan_llm_recipe then gives the stored types (after tensor_type_fallback).
// Throws std::invalid_argument for an unknown mix, listing the known ones.
LlmRecipe llama_mix_recipe(const LlmModel& model, std::string_view mix);

}  // namespace compsearch::llm
