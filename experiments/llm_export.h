// `compsearch compress` for LLM checkpoints: the model under a recipe (a file or a llama.cpp mix
// name) written as a GGUF file, a llama-quantize --tensor-type-file, a recipe file or a Hugging
// Face checkpoint of dequantized weights (llm/gguf_export.h, llm/llama_export.h; docs/llm.md).
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace compsearch::experiments {

// --format: gguf | llama-tensor-types | recipe | safetensors. Returns a JSON summary: {"format",
// "out", "size_bytes" (tensor bytes under the recipe), "bits_per_weight", "tensors" (count per
// stored type)}; llama-tensor-types adds "file_type" (the type to give llama-quantize) and
// "llama_quantize_command" (the same types as --tensor-type flags); gguf and llama-tensor-types
// add "file_bytes" (the exact size of the GGUF file, compsearch's or llama-quantize's). Throws
// UsageError for another format.
nlohmann::json export_llm(const std::string& model, const std::string& recipe,
                          const std::string& format, const std::string& out);

// The text `compress` prints for that summary.
std::string export_llm_text(const nlohmann::json& summary);

}  // namespace compsearch::experiments
