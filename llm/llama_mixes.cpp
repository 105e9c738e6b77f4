// llama.cpp's file-type mixes, transcribed from src/llama-quant.cpp of the pinned tree (see the
// header). Each rule below cites the branch of llama_tensor_get_type_impl it comes from.
#include "llm/llama_mixes.h"

#include <algorithm>
#include <cctype>
#include <stdexcept>

namespace compsearch::llm {

namespace {

enum class Mix {
  kQ2_K,
  kQ3_K_S,
  kQ3_K_M,
  kQ3_K_L,
  kQ4_K_S,
  kQ4_K_M,
  kQ5_K_S,
  kQ5_K_M,
  kQ6_K,
  kQ8_0
};

struct MixInfo {
  const char* name;
  Mix mix;
  TensorType base;  // llama_ftype_get_default_type
};

constexpr MixInfo kMixes[] = {
    {"q2_k", Mix::kQ2_K, TensorType::kQ2_K},     {"q3_k_s", Mix::kQ3_K_S, TensorType::kQ3_K},
    {"q3_k_m", Mix::kQ3_K_M, TensorType::kQ3_K}, {"q3_k_l", Mix::kQ3_K_L, TensorType::kQ3_K},
    {"q4_k_s", Mix::kQ4_K_S, TensorType::kQ4_K}, {"q4_k_m", Mix::kQ4_K_M, TensorType::kQ4_K},
    {"q5_k_s", Mix::kQ5_K_S, TensorType::kQ5_K}, {"q5_k_m", Mix::kQ5_K_M, TensorType::kQ5_K},
    {"q6_k", Mix::kQ6_K, TensorType::kQ6_K},     {"q8_0", Mix::kQ8_0, TensorType::kQ8_0},
};

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

const MixInfo* find_mix(std::string_view name) {
  const std::string key = lower(name);
  for (const MixInfo& m : kMixes) {
    if (key == m.name) return &m;
  }
  return nullptr;
}

const MixInfo& mix_at(std::string_view name) {
  if (const MixInfo* m = find_mix(name)) return *m;
  std::string known;
  for (const MixInfo& m : kMixes) known += std::string(known.empty() ? "" : ", ") + m.name;
  throw std::invalid_argument("unknown llama.cpp mix '" + std::string(name) +
                              "', expected one of " + known);
}

// llama_tensor_get_type_impl's use_more_bits: the first and last eighth of the layers and every
// third layer in between.
bool use_more_bits(int64_t i_layer, int64_t n_layers) {
  return i_layer < n_layers / 8 || i_layer >= 7 * n_layers / 8 || (i_layer - n_layers / 8) % 3 == 2;
}

// The type llama_tensor_get_type_impl picks for one tensor (before tensor_type_fallback, which
// plan_llm_recipe applies). In a dense model the weights are visited sorted by layer
// (llama_model_loader::weight_name_comparer) and each layer has one attn_v and one ffn_down, so
// the counters i_attention_wv and i_ffn_down equal the layer index, n_attention_wv and n_ffn_down
// the layer count.
TensorType mix_type(const MixInfo& mix, const LlmModel& model, const LlmTensor& t) {
  const LlmConfig& c = model.config;
  const TensorType base = mix.base;
  const Mix m = mix.mix;
  const int64_t i = t.layer, n = c.layers;
  switch (t.role) {
    case TensorRole::kOutput:
    case TensorRole::kTokenEmbd:
      // "for arches that share the same tensor between the token embeddings and the output, we
      // quantize the token embeddings with the quantization of the output tensor"; an untied
      // token_embd keeps the base type for these file types.
      if (t.role == TensorRole::kTokenEmbd && !c.tied_embeddings) return base;
      if (t.row_length() % block_weights(base) != 0) return TensorType::kQ8_0;
      return base != TensorType::kQ8_0 ? TensorType::kQ6_K : base;
    case TensorRole::kAttnV: {
      // category_is_attn_v branch.
      TensorType type = base;
      const bool gqa4 = c.kv_heads > 0 && c.heads / c.kv_heads >= 4;  // hparams.n_gqa() >= 4
      if (m == Mix::kQ2_K) {
        type = gqa4 ? TensorType::kQ4_K : TensorType::kQ3_K;
      } else if (m == Mix::kQ3_K_M) {
        type = i < 2 ? TensorType::kQ5_K : TensorType::kQ4_K;
      } else if (m == Mix::kQ3_K_L) {
        type = TensorType::kQ5_K;
      } else if ((m == Mix::kQ4_K_M || m == Mix::kQ5_K_M) && use_more_bits(i, n)) {
        type = TensorType::kQ6_K;
      } else if (m == Mix::kQ4_K_S && i < 4) {
        type = TensorType::kQ5_K;
      }
      // LLM_TYPE_70B (src/models/llama.cpp: 80 layers with grouped-query attention): attn_v is
      // 8x smaller than attn_q, so it takes more bits.
      const bool is_70b = n == 80 && c.heads != c.kv_heads;
      if (is_70b && (type == TensorType::kQ3_K || type == TensorType::kQ4_K)) {
        type = TensorType::kQ5_K;
      }
      return type;
    }
    case TensorRole::kFfnDown:
      // FFN_DOWN branch (arch != LLM_ARCH_FALCON).
      if (m == Mix::kQ2_K) return TensorType::kQ3_K;
      if (m == Mix::kQ3_K_M) return i < n / 16 ? TensorType::kQ5_K : TensorType::kQ4_K;
      if (m == Mix::kQ3_K_L) return TensorType::kQ5_K;
      if (m == Mix::kQ4_K_M && use_more_bits(i, n)) return TensorType::kQ6_K;
      if (m == Mix::kQ5_K_M && use_more_bits(i, n)) return TensorType::kQ6_K;
      if (m == Mix::kQ4_K_S && i < n / 8) return TensorType::kQ5_K;
      return base;
    case TensorRole::kAttnOutput:
      // ATTENTION_OUTPUT branch (not Falcon, n_expert != 8).
      if (m == Mix::kQ2_K) return TensorType::kQ3_K;
      if (m == Mix::kQ3_K_M) return TensorType::kQ4_K;
      if (m == Mix::kQ3_K_L) return TensorType::kQ5_K;
      return base;
    default:
      // attn_q, attn_k, ffn_gate, ffn_up: no rule for these file types without experts.
      return base;
  }
}

}  // namespace

const std::vector<std::string>& llama_mix_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> v;
    for (const MixInfo& m : kMixes) v.push_back(m.name);
    return v;
  }();
  return names;
}

bool is_llama_mix(std::string_view name) { return find_mix(name) != nullptr; }

TensorType llama_mix_base_type(std::string_view mix) { return mix_at(mix).base; }

LlmRecipe llama_mix_recipe(const LlmModel& model, std::string_view mix) {
  const MixInfo& info = mix_at(mix);
  LlmRecipe r;
  r.source = std::string(info.name) + " (llama.cpp mix)";
  for (const LlmTensor& t : model.tensors) {
    if (t.is_matrix()) r.types[t.name] = mix_type(info, model, t);
  }
  return r;
}

}  // namespace compsearch::llm
