// LLM recipes: parsing, planning (types after fallback, sizes) and applying through ggml.
#include "llm/llm_recipe.h"

#include <fstream>
#include <stdexcept>

#include "llm/llama_mixes.h"

namespace compsearch::llm {

namespace {

TensorType entry_type(const nlohmann::json& entry, const std::string& where) {
  if (!entry.is_object())
    throw std::invalid_argument(where + ": expected an object {\"type\": ...}");
  for (const auto& [key, value] : entry.items()) {
    if (key != "type") {
      throw std::invalid_argument(where + ": unknown key '" + key + "', expected type");
    }
  }
  if (!entry.contains("type") || !entry.at("type").is_string()) {
    throw std::invalid_argument(where + ": missing string key 'type'");
  }
  return parse_tensor_type(entry.at("type").get<std::string>(), where + ".type");
}

}  // namespace

LlmRecipe parse_llm_recipe(const nlohmann::json& j, const LlmModel& model,
                           const std::string& source) {
  if (!j.is_object()) throw std::invalid_argument(source + ": a recipe is a JSON object");
  LlmRecipe r;
  r.source = source;
  for (const auto& [key, value] : j.items()) {
    if (key == "format") {
      if (value != "compsearch.recipe/1") {
        throw std::invalid_argument(source + ": format " + value.dump() +
                                    ", expected \"compsearch.recipe/1\"");
      }
    } else if (key == "default") {
      r.default_type = entry_type(value, source + ": default");
    } else if (key == "layers") {
      if (!value.is_object()) throw std::invalid_argument(source + ": layers must be an object");
      for (const auto& [name, entry] : value.items()) {
        const std::string where = source + ": layers." + name;
        const LlmTensor* t = model.find(name);
        if (!t) {
          throw std::invalid_argument(where + ": no such tensor in " + model.path.string() +
                                      " (GGUF names like blk.0.attn_q or HF names like "
                                      "model.layers.0.self_attn.q_proj)");
        }
        const TensorType type = entry_type(entry, where);
        if (!t->is_matrix() && type != TensorType::kF32) {
          throw std::invalid_argument(where + ": norm weights stay f32, got " +
                                      tensor_type_name(type));
        }
        if (r.types.contains(t->name)) {
          throw std::invalid_argument(where + ": tensor " + t->name + " is listed twice");
        }
        r.types[t->name] = type;
      }
    } else {
      throw std::invalid_argument(source + ": unknown key '" + key +
                                  "', expected format, default or layers");
    }
  }
  return r;
}

LlmRecipe load_llm_recipe(const std::filesystem::path& path, const LlmModel& model) {
  if (is_llama_mix(path.string()) && !std::filesystem::exists(path)) {
    return llama_mix_recipe(model, path.string());
  }
  std::ifstream in(path);
  if (!in) {
    std::string mixes;
    for (const std::string& m : llama_mix_names()) mixes += (mixes.empty() ? "" : ", ") + m;
    throw std::invalid_argument(path.string() +
                                ": cannot open the recipe (expected a compsearch.recipe/1 file "
                                "or a llama.cpp mix: " +
                                mixes + ")");
  }
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw std::invalid_argument(path.string() + ": not valid JSON: " + e.what());
  }
  return parse_llm_recipe(j, model, path.string());
}

double AppliedRecipe::bits_per_weight() const {
  return total_params > 0
             ? 8.0 * static_cast<double>(total_bytes) / static_cast<double>(total_params)
             : 0.0;
}

AppliedRecipe plan_llm_recipe(const LlmModel& model, const LlmRecipe& recipe) {
  AppliedRecipe out;
  for (const auto& t : model.tensors) {
    AppliedTensor a;
    a.name = t.name;
    a.asked = t.stored_type;
    if (!t.is_matrix()) {
      a.asked = TensorType::kF32;
    } else if (auto it = recipe.types.find(t.name); it != recipe.types.end()) {
      a.asked = it->second;
    } else if (recipe.default_type) {
      a.asked = *recipe.default_type;
    }
    a.stored = fallback_type(a.asked, t.row_length());
    a.bytes = t.rows() * row_bytes(a.stored, t.row_length());
    out.total_bytes += a.bytes;
    out.total_params += t.params();
    out.tensors.push_back(a);
  }
  return out;
}

AppliedRecipe apply_llm_recipe(LlmModel& model, const LlmRecipe& recipe) {
  AppliedRecipe plan = plan_llm_recipe(model, recipe);
  for (size_t i = 0; i < model.tensors.size(); ++i) {
    LlmTensor& t = model.tensors[i];
    const AppliedTensor& a = plan.tensors[i];
    const bool listed = recipe.types.contains(t.name) || (t.is_matrix() && recipe.default_type);
    if (!listed || !t.is_matrix()) continue;
    if (t.data.empty()) {
      throw std::invalid_argument(model.path.string() + ": tensor " + t.name +
                                  " was loaded without its weights");
    }
    t.data = quantize_round_trip(a.stored, t.data, t.rows(), t.row_length());
  }
  return plan;
}

}  // namespace compsearch::llm
