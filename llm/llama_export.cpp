// The llama-tensor-types, recipe and safetensors exports of an LLM recipe (see the header).
#include "llm/llama_export.h"

#include <algorithm>
#include <map>

#include "common/atomic_file.h"
#include "common/check.h"
#include "llm/safetensors.h"

namespace compsearch::llm {

namespace {

// "^blk\.0\.ffn_down\.weight$": the GGUF name anchored, its dots escaped.
std::string anchored_pattern(const std::string& name) {
  std::string out = "^";
  for (char c : name + ".weight") {
    if (c == '.') out += '\\';
    out += c;
  }
  return out + "$";
}

// The inverse of permute_hf_to_gguf: GGUF row r goes back to HF row hf_row_of_gguf_row(r).
std::vector<float> permute_gguf_to_hf(const std::vector<float>& gguf, int64_t heads,
                                      int64_t head_dim, int64_t cols) {
  COMPSEARCH_CHECK(static_cast<int64_t>(gguf.size()) == heads * head_dim * cols, "q/k shape");
  std::vector<float> out(gguf.size());
  for (int64_t r = 0; r < heads * head_dim; ++r) {
    std::copy_n(gguf.begin() + r * cols, cols,
                out.begin() + hf_row_of_gguf_row(r, head_dim) * cols);
  }
  return out;
}

}  // namespace

std::string llama_tensor_types_text(const LlmModel& model, const AppliedRecipe& plan) {
  COMPSEARCH_CHECK(plan.tensors.size() == model.tensors.size(), "plan of another model");
  std::string out;
  for (size_t i = 0; i < model.tensors.size(); ++i) {
    if (!model.tensors[i].is_matrix()) continue;
    out += anchored_pattern(model.tensors[i].name) + "=" +
           tensor_type_name(plan.tensors[i].stored) + "\n";
  }
  return out;
}

std::string llama_quantize_file_type(const LlmModel& model, const AppliedRecipe& plan) {
  // llama-quantize's file types by base type (llama_ftype_get_default_type); any of a base type's
  // mixes would do, since only the base type matters here.
  static const std::pair<TensorType, const char*> kFileTypes[] = {
      {TensorType::kQ2_K, "Q2_K"},     {TensorType::kQ3_K, "Q3_K_M"},
      {TensorType::kQ4_K, "Q4_K_M"},   {TensorType::kQ5_K, "Q5_K_M"},
      {TensorType::kQ6_K, "Q6_K"},     {TensorType::kQ8_0, "Q8_0"},
      {TensorType::kQ4_0, "Q4_0"},     {TensorType::kQ4_1, "Q4_1"},
      {TensorType::kQ5_0, "Q5_0"},     {TensorType::kQ5_1, "Q5_1"},
      {TensorType::kIQ4_NL, "IQ4_NL"}, {TensorType::kIQ4_XS, "IQ4_XS"}};
  std::map<TensorType, int64_t> bytes;
  for (size_t i = 0; i < model.tensors.size(); ++i) {
    if (model.tensors[i].is_matrix()) bytes[plan.tensors[i].stored] += plan.tensors[i].bytes;
  }
  const char* best = "Q8_0";
  int64_t most = 0;
  for (const auto& [type, name] : kFileTypes) {
    const auto it = bytes.find(type);
    if (it != bytes.end() && it->second > most) {
      most = it->second;
      best = name;
    }
  }
  return best;
}

std::string llama_quantize_command(const LlmModel& model, const AppliedRecipe& plan,
                                   const std::string& in_gguf, const std::string& out_gguf) {
  std::string cmd = "llama-quantize";
  for (size_t i = 0; i < model.tensors.size(); ++i) {
    if (!model.tensors[i].is_matrix()) continue;
    cmd += " --tensor-type '" + anchored_pattern(model.tensors[i].name) + "=" +
           tensor_type_name(plan.tensors[i].stored) + "'";
  }
  return cmd + " " + in_gguf + " " + out_gguf + " " + llama_quantize_file_type(model, plan);
}

nlohmann::json llm_recipe_json(const LlmModel& model, const AppliedRecipe& plan) {
  COMPSEARCH_CHECK(plan.tensors.size() == model.tensors.size(), "plan of another model");
  nlohmann::json layers = nlohmann::json::object();
  for (size_t i = 0; i < model.tensors.size(); ++i) {
    if (model.tensors[i].is_matrix()) {
      layers[model.tensors[i].name] = {{"type", tensor_type_name(plan.tensors[i].asked)}};
    }
  }
  return {{"format", "compsearch.recipe/1"}, {"layers", layers}};
}

void write_hf_checkpoint(const LlmModel& model, const std::filesystem::path& dir) {
  const LlmConfig& c = model.config;
  std::filesystem::create_directories(dir);
  std::vector<std::vector<float>> permuted;  // attn_q / attn_k back in HF's row order
  permuted.reserve(2 * static_cast<size_t>(c.layers));
  std::vector<SafetensorsF32Tensor> tensors;
  for (const LlmTensor& t : model.tensors) {
    if (static_cast<int64_t>(t.data.size()) != t.params()) {
      throw std::invalid_argument(model.path.string() + ": tensor " + t.name +
                                  " was loaded without its weights");
    }
    const std::vector<float>* data = &t.data;
    if (t.role == TensorRole::kAttnQ || t.role == TensorRole::kAttnK) {
      const int64_t heads = t.role == TensorRole::kAttnQ ? c.heads : c.kv_heads;
      permuted.push_back(permute_gguf_to_hf(t.data, heads, c.head_dim, t.row_length()));
      data = &permuted.back();
    }
    tensors.push_back({t.hf_name + ".weight", t.shape, data});
  }
  write_safetensors_f32(dir / "model.safetensors", tensors, {{"format", "pt"}});
  const nlohmann::ordered_json config = {{"architectures", {"LlamaForCausalLM"}},
                                         {"model_type", "llama"},
                                         {"hidden_size", c.hidden},
                                         {"intermediate_size", c.intermediate},
                                         {"num_hidden_layers", c.layers},
                                         {"num_attention_heads", c.heads},
                                         {"num_key_value_heads", c.kv_heads},
                                         {"head_dim", c.head_dim},
                                         {"vocab_size", c.vocab},
                                         {"max_position_embeddings", c.context},
                                         {"rms_norm_eps", c.rms_eps},
                                         {"rope_theta", c.rope_theta},
                                         {"tie_word_embeddings", c.tied_embeddings},
                                         {"hidden_act", "silu"},
                                         {"attention_bias", false},
                                         {"mlp_bias", false},
                                         {"torch_dtype", "float32"}};
  write_file_atomically(dir / "config.json", config.dump(2) + "\n");
}

}  // namespace compsearch::llm
