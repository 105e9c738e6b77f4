// GGUF export through ggml's gguf writer.
#include "llm/gguf_export.h"

#include <ggml.h>
#include <gguf.h>

#include <memory>
#include <stdexcept>
#include <vector>

#include "common/atomic_file.h"
#include "common/check.h"
#include "llm/ggml_handles.h"

namespace compsearch::llm {

void set_hf_gguf_metadata(gguf_context* ctx, const LlmModel& model) {
  const LlmConfig& c = model.config;
  auto u32 = [&](const char* key, int64_t v) {
    gguf_set_val_u32(ctx, key, static_cast<uint32_t>(v));
  };
  gguf_set_val_str(ctx, "general.architecture", "llama");
  gguf_set_val_str(ctx, "general.name", model.path.filename().string().c_str());
  u32("llama.context_length", c.context);
  u32("llama.embedding_length", c.hidden);
  u32("llama.block_count", c.layers);
  u32("llama.feed_forward_length", c.intermediate);
  u32("llama.attention.head_count", c.heads);
  u32("llama.attention.head_count_kv", c.kv_heads);
  u32("llama.rope.dimension_count", c.head_dim);
  u32("llama.attention.key_length", c.head_dim);
  u32("llama.attention.value_length", c.head_dim);
  u32("llama.vocab_size", c.vocab);
  gguf_set_val_f32(ctx, "llama.rope.freq_base", static_cast<float>(c.rope_theta));
  gguf_set_val_f32(ctx, "llama.attention.layer_norm_rms_epsilon", static_cast<float>(c.rms_eps));
  gguf_set_val_str(ctx, "tokenizer.ggml.model", "none");
}

void write_gguf(const LlmModel& model, const AppliedRecipe& plan,
                const std::filesystem::path& out) {
  COMPSEARCH_CHECK(plan.tensors.size() == model.tensors.size(), "plan of another model");
  GgufPtr ctx(gguf_init_empty());
  if (model.format == "gguf") {
    gguf_init_params params{/*no_alloc=*/true, /*ctx=*/nullptr};
    GgufPtr src(gguf_init_from_file(model.path.c_str(), params));
    if (!src) throw std::runtime_error(model.path.string() + ": cannot reread the GGUF metadata");
    gguf_set_kv(ctx.get(), src.get());
    gguf_remove_key(ctx.get(), "general.file_type");
  } else {
    set_hf_gguf_metadata(ctx.get(), model);
  }
  gguf_set_val_u32(ctx.get(), "general.quantization_version", GGML_QNT_VERSION);

  // Tensor descriptors only (no_alloc); the data lives in `blobs` until the file is written.
  ggml_init_params ip{ggml_tensor_overhead() * (model.tensors.size() + 1), nullptr, true};
  GgmlPtr tensors(ggml_init(ip));
  std::vector<std::vector<uint8_t>> blobs;
  blobs.reserve(model.tensors.size());
  for (size_t i = 0; i < model.tensors.size(); ++i) {
    const LlmTensor& t = model.tensors[i];
    const TensorType type = t.is_matrix() ? plan.tensors[i].stored : TensorType::kF32;
    if (static_cast<int64_t>(t.data.size()) != t.params()) {
      throw std::invalid_argument(model.path.string() + ": tensor " + t.name +
                                  " was loaded without its weights");
    }
    blobs.push_back(quantize_rows(type, t.data, t.rows(), t.row_length()));
    const int64_t ne[2] = {t.row_length(), t.rows()};
    ggml_tensor* g =
        ggml_new_tensor(tensors.get(), static_cast<ggml_type>(type), t.is_matrix() ? 2 : 1, ne);
    const std::string name = t.name + ".weight";
    ggml_set_name(g, name.c_str());
    gguf_add_tensor(ctx.get(), g);
    gguf_set_tensor_data(ctx.get(), name.c_str(), blobs.back().data());
  }
  replace_file_atomically(out, [&](const std::filesystem::path& tmp) {
    if (!gguf_write_to_file(ctx.get(), tmp.c_str(), /*only_meta=*/false)) {
      throw std::runtime_error(out.string() + ": cannot write the GGUF file");
    }
  });
}

}  // namespace compsearch::llm
