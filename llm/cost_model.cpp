// The LLM cost model: GGUF file size through ggml's gguf writer; memory and speed of a llama.cpp
// run on one GPU.
#include "llm/cost_model.h"

#include <ggml.h>
#include <gguf.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <stdexcept>

#include "common/check.h"
#include "llm/gguf_export.h"

namespace compsearch::llm {

namespace {

using GgufPtr = std::unique_ptr<gguf_context, decltype(&gguf_free)>;
using GgmlPtr = std::unique_ptr<ggml_context, decltype(&ggml_free)>;

int64_t pad(int64_t bytes, int64_t alignment) {
  return (bytes + alignment - 1) / alignment * alignment;
}

}  // namespace

int64_t GgufLayout::file_bytes(const AppliedRecipe& plan) const {
  COMPSEARCH_CHECK(plan.tensors.size() == kept_tensor_bytes.size(), "plan of another model");
  int64_t total = metadata_bytes + other_tensor_bytes;
  for (size_t i = 0; i < plan.tensors.size(); ++i) {
    const int64_t kept = kept_tensor_bytes[i];
    total += pad(kept >= 0 ? kept : plan.tensors[i].bytes, alignment);
  }
  return total;
}

GgufLayout gguf_layout(const LlmModel& model, const GgufSizeOptions& options) {
  GgufLayout layout;
  layout.kept_tensor_bytes.assign(model.tensors.size(), -1);
  GgufPtr out(gguf_init_empty(), &gguf_free);
  GgufPtr src(nullptr, &gguf_free);
  const bool from_gguf = model.format == "gguf";
  if (from_gguf) {
    src.reset(gguf_init_from_file(model.path.c_str(), gguf_init_params{true, nullptr}));
    if (!src) throw std::runtime_error(model.path.string() + ": cannot reread the GGUF metadata");
    gguf_set_kv(out.get(), src.get());
  } else {
    set_hf_gguf_metadata(out.get(), model);
  }
  // As llama_model_quantize_impl: the value of general.file_type does not change the size.
  gguf_set_val_u32(out.get(), "general.quantization_version", GGML_QNT_VERSION);
  gguf_set_val_u32(out.get(), "general.file_type", 0);
  for (const char* key : {"split.no", "split.count", "split.tensors.count"}) {
    gguf_remove_key(out.get(), key);
  }
  for (const auto& [key, value] : options.string_kv) {
    gguf_set_val_str(out.get(), key.c_str(), value.substr(0, 127).c_str());
  }
  for (const auto& [key, value] : options.u32_kv) gguf_set_val_u32(out.get(), key.c_str(), value);
  layout.metadata_from_source = from_gguf;
  layout.alignment = static_cast<int64_t>(gguf_get_alignment(out.get()));

  // Tensor infos: descriptors only; their types do not change the metadata's size.
  const size_t n =
      from_gguf ? static_cast<size_t>(gguf_get_n_tensors(src.get())) : model.tensors.size();
  GgmlPtr descriptors(ggml_init({ggml_tensor_overhead() * (n + 1), nullptr, true}), &ggml_free);
  for (size_t i = 0; i < n; ++i) {
    int64_t ne[GGML_MAX_DIMS] = {1, 1, 1, 1};
    std::string name;
    if (from_gguf) {
      const auto id = static_cast<int64_t>(i);
      name = gguf_get_tensor_name(src.get(), id);
      const int64_t* src_ne = gguf_get_tensor_ne(src.get(), id);
      std::copy(src_ne, src_ne + GGML_MAX_DIMS, ne);
      std::string short_name = name;
      if (short_name.ends_with(".weight")) short_name.resize(short_name.size() - 7);
      const LlmTensor* t = model.find(short_name);
      const auto bytes = static_cast<int64_t>(gguf_get_tensor_size(src.get(), id));
      if (t == nullptr) {
        layout.other_tensor_bytes += pad(bytes, layout.alignment);
      } else if (!t->is_matrix()) {
        layout.kept_tensor_bytes[t - model.tensors.data()] = bytes;
      }
    } else {
      const LlmTensor& t = model.tensors[i];
      name = t.name + ".weight";
      ne[0] = t.row_length();
      ne[1] = t.rows();
    }
    ggml_tensor* g = ggml_new_tensor(descriptors.get(), GGML_TYPE_F32, GGML_MAX_DIMS, ne);
    ggml_set_name(g, name.c_str());
    gguf_add_tensor(out.get(), g);
  }
  layout.metadata_bytes = static_cast<int64_t>(gguf_get_meta_size(out.get()));
  return layout;
}

int64_t gguf_file_bytes(const LlmModel& model, const AppliedRecipe& plan,
                        const GgufSizeOptions& options) {
  return gguf_layout(model, options).file_bytes(plan);
}

namespace {

bool is_token_embd(const LlmTensor& t) { return t.role == TensorRole::kTokenEmbd; }

// llama.cpp pads its context to 256 cells (llama_context: GGML_PAD(n_ctx, 256)).
constexpr int64_t kContextPad = 256;

}  // namespace

void LlmRunSettings::validate(const std::string& where) const {
  auto positive = [&](int64_t v, const char* key) {
    if (v < 1) {
      throw std::invalid_argument(where + ": " + key + " must be >= 1, got " + std::to_string(v));
    }
  };
  positive(context, "context");
  positive(batch, "batch");
  positive(ubatch, "ubatch");
  if (!flash_attention && block_weights(kv_type) > 1) {
    throw std::invalid_argument(where + ": a " + tensor_type_name(kv_type) +
                                " V cache needs flash attention (llama.cpp refuses it without)");
  }
}

int64_t kv_cache_cells(const LlmRunSettings& s) {
  const int64_t n_ctx = pad(s.context * s.batch, kContextPad);
  return s.batch == 1 ? n_ctx : pad(n_ctx / s.batch, kContextPad);
}

int64_t kv_cache_bytes(const LlmConfig& c, const LlmRunSettings& s) {
  const int64_t kv_dim = c.kv_heads * c.head_dim;
  if (kv_dim % block_weights(s.kv_type) != 0) {
    throw std::invalid_argument("KV cache type " + tensor_type_name(s.kv_type) +
                                " needs rows of a multiple of " +
                                std::to_string(block_weights(s.kv_type)) +
                                " values; kv_heads x head_dim = " + std::to_string(kv_dim));
  }
  return c.layers * s.batch * kv_cache_cells(s) * 2 * row_bytes(s.kv_type, kv_dim);
}

LlmMemory llm_memory(const LlmModel& model, const AppliedRecipe& plan, const LlmRunSettings& s) {
  COMPSEARCH_CHECK(plan.tensors.size() == model.tensors.size(), "plan of another model");
  const LlmConfig& c = model.config;
  LlmMemory m;
  for (size_t i = 0; i < model.tensors.size(); ++i) {
    const int64_t bytes = plan.tensors[i].bytes;
    if (!is_token_embd(model.tensors[i])) {
      m.weights_device_bytes += bytes;
      continue;
    }
    m.weights_host_bytes += bytes;
    // Tied embeddings: llama.cpp loads token_embd a second time as the output (on the GPU).
    if (c.tied_embeddings) m.weights_device_bytes += bytes;
  }
  m.kv_cells = kv_cache_cells(s);
  m.kv_cache_bytes = kv_cache_bytes(c, s);
  // The compute buffer: ggml-alloc reuses memory between the stages of the worst-case graph
  // llama.cpp reserves (n_ubatch tokens, every one an output), so the buffer is the attention mask
  // (F16 with flash attention, else F32; cells x tokens) plus the largest stage, in F32 per token:
  // the logits and the hidden state; the MLP (gate, up, their product and four hidden-size
  // vectors: input, norm, residual, output); attention (Q, K, V, its output, the same four
  // vectors, and without flash attention the scores of every head over every cell, softmax in
  // place). Checked against llama.cpp's own report (tests/llm/cost_model_test.cpp).
  const int64_t tokens = std::min(s.ubatch, pad(s.context * s.batch, kContextPad));
  const int64_t q_dim = c.heads * c.head_dim, kv_dim = c.kv_heads * c.head_dim;
  int64_t attention = 2 * q_dim + 2 * kv_dim + 4 * c.hidden;
  if (!s.flash_attention) attention += c.heads * m.kv_cells - q_dim;
  const int64_t stage =
      std::max({c.vocab + c.hidden, 3 * c.intermediate + 4 * c.hidden, attention});
  const int64_t mask = m.kv_cells * tokens * (s.flash_attention ? 2 : 4);
  m.compute_buffer_bytes = mask + 4 * tokens * stage;
  return m;
}

double decode_step_seconds(double bytes_per_step, int64_t layers, const LlmGpu& gpu) {
  return static_cast<double>(layers) * gpu.layer_overhead_s +
         bytes_per_step / (gpu.decode_bandwidth_efficiency * gpu.bandwidth_bytes_per_s);
}

double prefill_seconds(double float_flops, double quantized_flops, int64_t tokens, int64_t ubatch,
                       int64_t layers, const LlmGpu& gpu) {
  const auto graphs = static_cast<double>((tokens + ubatch - 1) / ubatch);
  return graphs * static_cast<double>(layers) * gpu.layer_overhead_s +
         float_flops / (gpu.prefill_efficiency * gpu.peak_flops) +
         quantized_flops / (gpu.prefill_efficiency_quantized * gpu.peak_flops);
}

double kv_read_bytes(const LlmConfig& c, TensorType kv_type, int64_t context) {
  return static_cast<double>(c.layers) * static_cast<double>(context) * 2.0 *
         static_cast<double>(row_bytes(kv_type, c.kv_heads * c.head_dim));
}

double decode_bytes_per_sequence(const LlmModel& model, const AppliedRecipe& plan,
                                 const LlmRunSettings& s) {
  double bytes = kv_read_bytes(model.config, s.kv_type, s.context);
  for (size_t i = 0; i < model.tensors.size(); ++i) {
    if (is_token_embd(model.tensors[i])) {
      bytes += static_cast<double>(plan.tensors[i].bytes) / model.tensors[i].rows();
    }
  }
  return bytes;
}

double attention_flops(const LlmConfig& c, int64_t tokens) {
  const auto n = static_cast<double>(tokens);
  return 4.0 * static_cast<double>(c.layers * c.heads * c.head_dim) * n * (n + 1.0) / 2.0;
}

bool is_quantized_type(TensorType type) {
  return type != TensorType::kF32 && type != TensorType::kF16 && type != TensorType::kBF16;
}

LlmSpeed llm_speed(const LlmModel& model, const AppliedRecipe& plan, const LlmGpu& gpu,
                   const LlmRunSettings& s) {
  const LlmMemory memory = llm_memory(model, plan, s);
  LlmSpeed out;
  const auto batch = static_cast<double>(s.batch);
  out.decode_bytes_per_step = static_cast<double>(memory.weights_device_bytes) +
                              batch * decode_bytes_per_sequence(model, plan, s);
  out.decode_step_s = decode_step_seconds(out.decode_bytes_per_step, model.config.layers, gpu);
  out.decode_tok_s = batch / out.decode_step_s;
  out.prefill_float_flops = attention_flops(model.config, s.context);
  const auto tokens = static_cast<double>(s.context);
  for (size_t i = 0; i < model.tensors.size(); ++i) {
    const LlmTensor& t = model.tensors[i];
    if (!t.is_matrix() || (is_token_embd(t) && !model.config.tied_embeddings)) continue;
    const double flops = 2.0 * static_cast<double>(t.params()) * tokens;
    (is_quantized_type(plan.tensors[i].stored) ? out.prefill_quantized_flops
                                               : out.prefill_float_flops) += flops;
  }
  out.prefill_s = prefill_seconds(out.prefill_float_flops, out.prefill_quantized_flops, s.context,
                                  s.ubatch, model.config.layers, gpu);
  out.prefill_tok_s = static_cast<double>(s.context) / out.prefill_s;
  return out;
}

}  // namespace compsearch::llm
