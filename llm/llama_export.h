// Exports of an LLM recipe for other tools (docs/llm.md, "Export formats"):
//
//   llama-tensor-types  the file llama-quantize --tensor-type-file reads: one `regex=type` token
//                       per matrix (`^blk\.0\.ffn_down\.weight$=q8_0`), nothing else. llama.cpp
//                       (tools/quantize/quantize.cpp, parse_tensor_type_file) reads it as
//                       whitespace-separated tokens with no comments; the tensor name is lowered
//                       and matched with std::regex_search, the type parsed case-insensitively
//                       against ggml_type_name. Each line names the type the tensor is stored as
//                       (after llama.cpp's fallback), so llama-quantize has nothing to fall back.
//   recipe              the compsearch.recipe/1 file naming every matrix's type.
//   safetensors         a Hugging Face checkpoint directory (config.json, model.safetensors) with
//                       the dequantized weights (F32) under HF names, q/k rows in HF's order.
#pragma once

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

#include "llm/checkpoint.h"
#include "llm/llm_recipe.h"

namespace compsearch::llm {

// The --tensor-type-file text: one "^<gguf name>\.weight$=<stored type>\n" per matrix, in model
// order. Norms are not listed (llama-quantize never quantizes them: they stay F32).
std::string llama_tensor_types_text(const LlmModel& model, const AppliedRecipe& plan);

// The file type to give llama-quantize with that file. Overrides only apply when the file type's
// base type is quantized (llama_tensor_get_type: `if (ggml_is_quantized(default_type))`), and
// every matrix is named, so the choice does not change any tensor: the mix whose base type is the
// recipe's most used quantized type by bytes ("Q4_K_M" for q4_k), Q8_0 when nothing is quantized.
// It only sets general.file_type in the output.
std::string llama_quantize_file_type(const LlmModel& model, const AppliedRecipe& plan);

// The equivalent command line: llama-quantize --tensor-type '<regex>=<type>' ... IN OUT FTYPE,
// each pattern single-quoted for a POSIX shell.
std::string llama_quantize_command(const LlmModel& model, const AppliedRecipe& plan,
                                   const std::string& in_gguf, const std::string& out_gguf);

// {"format": "compsearch.recipe/1", "layers": {name: {"type": asked}}} for every matrix; parsing
// it back (parse_llm_recipe) gives the same plan.
nlohmann::json llm_recipe_json(const LlmModel& model, const AppliedRecipe& plan);

// Writes `model` (loaded with data; apply_llm_recipe first for dequantized weights) as a Hugging
// Face checkpoint in `dir` (created): config.json and model.safetensors (F32, HF names with
// ".weight", attn_q/attn_k rows back in HF's rotate-half order; no lm_head with tied embeddings).
// load_llm(dir) reads back the same weights.
void write_hf_checkpoint(const LlmModel& model, const std::filesystem::path& dir);

}  // namespace compsearch::llm
