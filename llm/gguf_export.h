// Writing a model under a recipe as a GGUF file that llama.cpp loads: every matrix quantized by
// ggml to the type the recipe stores it as (after llama.cpp's fallback), norms F32, through ggml's
// own GGUF writer (gguf_*).
//
// Metadata: from a GGUF source, all of its key/values (tokenizer included), with
// general.file_type removed (a per-tensor mix has no single llama.cpp file type) and
// general.quantization_version set to 2 as llama-quantize does. From a Hugging Face source, the
// llama.* hyperparameters and no vocabulary (tokenizer.ggml.model "none"): llama.cpp loads and
// runs it on token ids, but cannot tokenize text with it.
//
// Weights are quantized from the float weights as loaded; a source tensor that was already
// quantized is therefore quantized again from its dequantized values.
#pragma once

#include <filesystem>

#include "llm/checkpoint.h"
#include "llm/llm_recipe.h"

struct gguf_context;

namespace compsearch::llm {

// The key/values an export from a Hugging Face source carries (the llama.* hyperparameters,
// general.name, tokenizer.ggml.model "none"); also the metadata the cost model assumes for one.
void set_hf_gguf_metadata(gguf_context* ctx, const LlmModel& model);

// Writes `model` (loaded with data, no recipe applied) with the types of `plan`
// (plan_llm_recipe(model, recipe)) to `out` (written to a temporary name, then renamed). Throws
// std::runtime_error naming the file on a write failure.
void write_gguf(const LlmModel& model, const AppliedRecipe& plan, const std::filesystem::path& out);

}  // namespace compsearch::llm
