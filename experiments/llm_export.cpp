// compress --format gguf|llama-tensor-types|recipe|safetensors for LLM checkpoints.
#include "experiments/llm_export.h"

#include <cstdio>

#include "common/atomic_file.h"
#include "experiments/llm_commands.h"
#include "experiments/usage_error.h"
#include "llm/checkpoint.h"
#include "llm/llama_export.h"
#include "llm/llm_recipe.h"

namespace compsearch::experiments {

nlohmann::json export_llm(const std::string& model, const std::string& recipe,
                          const std::string& format, const std::string& out) {
  if (format == "gguf") return compress_llm(model, recipe, format, out);
  if (format != "llama-tensor-types" && format != "recipe" && format != "safetensors") {
    throw UsageError(
        "--format for an LLM checkpoint must be gguf, llama-tensor-types, recipe or "
        "safetensors, got '" +
        format + "'");
  }
  // Only the safetensors export needs the weights.
  llm::LlmModel m = llm::load_llm(model, /*with_data=*/format == "safetensors");
  const llm::LlmRecipe r = llm::load_llm_recipe(recipe, m);
  const llm::AppliedRecipe plan = llm::plan_llm_recipe(m, r);
  nlohmann::json summary = {{"format", format}, {"out", out}};
  if (format == "llama-tensor-types") {
    write_file_atomically(out, llm::llama_tensor_types_text(m, plan));
    summary["file_type"] = llm::llama_quantize_file_type(m, plan);
    summary["llama_quantize_command"] = llm::llama_quantize_command(m, plan, "IN.gguf", "OUT.gguf");
  } else if (format == "recipe") {
    write_file_atomically(out, llm::llm_recipe_json(m, plan).dump(2) + "\n");
  } else {
    llm::apply_llm_recipe(m, r);
    llm::write_hf_checkpoint(m, out);
  }
  nlohmann::json counts = nlohmann::json::object();
  for (const auto& t : plan.tensors) {
    const std::string name = llm::tensor_type_name(t.stored);
    counts[name] = counts.value(name, 0) + 1;
  }
  summary["tensors"] = counts;
  summary["size_bytes"] = plan.total_bytes;
  summary["bits_per_weight"] = plan.bits_per_weight();
  return summary;
}

std::string export_llm_text(const nlohmann::json& summary) {
  char buf[256];
  std::snprintf(buf, sizeof buf, "wrote %s (%s): %lld bytes of tensors, %.4f bits per weight\n",
                summary.at("out").get<std::string>().c_str(),
                summary.at("format").get<std::string>().c_str(),
                static_cast<long long>(summary.at("size_bytes").get<int64_t>()),
                summary.at("bits_per_weight").get<double>());
  std::string text = buf;
  if (summary.contains("llama_quantize_command")) {
    text += "apply it with: llama-quantize --tensor-type-file " +
            summary.at("out").get<std::string>() + " IN.gguf OUT.gguf " +
            summary.at("file_type").get<std::string>() + "\nor, equivalently:\n" +
            summary.at("llama_quantize_command").get<std::string>() + "\n";
  }
  return text;
}

}  // namespace compsearch::experiments
