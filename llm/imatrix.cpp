// Importance matrices: collection by the decoder, llama-imatrix's GGUF file format, and recipes
// quantized with them.
#include "llm/imatrix.h"

#include <ggml.h>
#include <gguf.h>

#include <memory>
#include <stdexcept>

#include "common/atomic_file.h"
#include "common/check.h"
#include "llm/decoder.h"
#include "llm/ggml_handles.h"

namespace compsearch::llm {

namespace {

constexpr const char* kSum2 = ".weight.in_sum2";
constexpr const char* kCounts = ".weight.counts";

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

std::vector<float> Imatrix::importance(const std::string& tensor) const {
  const auto it = entries.find(tensor);
  if (it == entries.end()) return {};
  std::vector<float> out(it->second.sum2.size(), 1.0f);  // llama-quantize: 1 when never seen
  if (it->second.count > 0) {
    const float count = static_cast<float>(it->second.count);
    for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<float>(it->second.sum2[i]) / count;
  }
  return out;
}

Imatrix collect_imatrix(const LlmModel& model, std::span<const int32_t> tokens, int64_t context,
                        int64_t max_windows, int threads, bool process_output,
                        const std::string& dataset) {
  const WindowPlan plan = plan_windows(static_cast<int64_t>(tokens.size()), context, max_windows);
  Imatrix im;
  im.chunks = plan.windows;
  im.chunk_size = plan.context;
  if (!dataset.empty()) im.datasets.push_back(dataset);
  const MatmulObserver observe = [&](const std::string& tensor, const float* x, int64_t rows,
                                     int64_t cols) {
    // llama-imatrix: block tensors, and output.weight with --process-output (a tied token_embd
    // is never collected).
    if (tensor.rfind("blk.", 0) != 0 && !(process_output && tensor == "output")) return;
    Imatrix::Entry& e = im.entries[tensor];
    if (e.sum2.empty()) e.sum2.assign(static_cast<size_t>(cols), 0.0);
    COMPSEARCH_CHECK(static_cast<int64_t>(e.sum2.size()) == cols, "imatrix column count");
    for (int64_t r = 0; r < rows; ++r) {
      const float* row = x + r * cols;
      for (int64_t j = 0; j < cols; ++j) e.sum2[j] += static_cast<double>(row[j]) * row[j];
    }
    e.count += rows;
  };
  for_each_window(
      model, tokens, plan, threads,
      [](int64_t, std::span<const int32_t>, const std::vector<float>&) {}, observe);
  return im;
}

void write_imatrix(const Imatrix& imatrix, const std::filesystem::path& path) {
  GgufPtr ctx(gguf_init_empty());
  gguf_set_val_str(ctx.get(), "general.type", "imatrix");
  std::vector<const char*> datasets;
  for (const std::string& d : imatrix.datasets) datasets.push_back(d.c_str());
  gguf_set_arr_str(ctx.get(), "imatrix.datasets", datasets.data(), datasets.size());
  gguf_set_val_u32(ctx.get(), "imatrix.chunk_count", static_cast<uint32_t>(imatrix.chunks));
  gguf_set_val_u32(ctx.get(), "imatrix.chunk_size", static_cast<uint32_t>(imatrix.chunk_size));
  size_t bytes = 0;
  for (const auto& [name, e] : imatrix.entries) {
    bytes += 2 * ggml_tensor_overhead() + sizeof(float) * (e.sum2.size() + 1) + 2 * 64;
  }
  ggml_init_params ip{bytes + 1024, nullptr, /*no_alloc=*/false};
  GgmlPtr tensors(ggml_init(ip));
  for (const auto& [name, e] : imatrix.entries) {  // std::map: sorted, as llama-imatrix sorts
    ggml_tensor* sum2 =
        ggml_new_tensor_2d(tensors.get(), GGML_TYPE_F32, static_cast<int64_t>(e.sum2.size()), 1);
    ggml_tensor* counts = ggml_new_tensor_2d(tensors.get(), GGML_TYPE_F32, 1, 1);
    ggml_set_name(sum2, (name + kSum2).c_str());
    ggml_set_name(counts, (name + kCounts).c_str());
    for (size_t j = 0; j < e.sum2.size(); ++j) {
      static_cast<float*>(sum2->data)[j] = static_cast<float>(e.sum2[j]);
    }
    static_cast<float*>(counts->data)[0] = static_cast<float>(e.count);
    gguf_add_tensor(ctx.get(), sum2);
    gguf_add_tensor(ctx.get(), counts);
  }
  replace_file_atomically(path, [&](const std::filesystem::path& tmp) {
    if (!gguf_write_to_file(ctx.get(), tmp.c_str(), /*only_meta=*/false)) {
      throw std::runtime_error(path.string() + ": cannot write the imatrix");
    }
  });
}

Imatrix read_imatrix(const std::filesystem::path& path) {
  ggml_context* data = nullptr;
  gguf_init_params params{/*no_alloc=*/false, &data};
  GgufPtr ctx(gguf_init_from_file(path.c_str(), params));
  if (!ctx) {
    throw std::runtime_error(path.string() +
                             ": not a GGUF imatrix (llama-imatrix's default output; the legacy "
                             ".dat format is not read)");
  }
  GgmlPtr owned(data);
  Imatrix im;
  auto u32 = [&](const char* key) -> int64_t {
    const int64_t id = gguf_find_key(ctx.get(), key);
    return id < 0 ? 0 : gguf_get_val_u32(ctx.get(), id);
  };
  im.chunks = u32("imatrix.chunk_count");
  im.chunk_size = u32("imatrix.chunk_size");
  if (const int64_t id = gguf_find_key(ctx.get(), "imatrix.datasets"); id >= 0) {
    for (size_t i = 0; i < gguf_get_arr_n(ctx.get(), id); ++i) {
      im.datasets.emplace_back(gguf_get_arr_str(ctx.get(), id, i));
    }
  }
  for (int64_t i = 0; i < gguf_get_n_tensors(ctx.get()); ++i) {
    const std::string tname = gguf_get_tensor_name(ctx.get(), i);
    if (!ends_with(tname, kSum2)) continue;
    const std::string name = tname.substr(0, tname.size() - std::string(kSum2).size());
    const ggml_tensor* sum2 = ggml_get_tensor(data, tname.c_str());
    const ggml_tensor* counts = ggml_get_tensor(data, (name + kCounts).c_str());
    if (!sum2 || !counts || sum2->type != GGML_TYPE_F32 || counts->type != GGML_TYPE_F32) {
      throw std::runtime_error(path.string() + ": tensor " + tname +
                               " lacks its F32 counts (expected " + name + kCounts + ")");
    }
    if (sum2->ne[1] != 1 || ggml_nelements(counts) != 1) {
      throw std::runtime_error(path.string() + ": " + name +
                               " has several experts; only dense models are supported");
    }
    Imatrix::Entry& e = im.entries[name];
    const float* v = static_cast<const float*>(sum2->data);
    e.sum2.assign(v, v + sum2->ne[0]);
    e.count = static_cast<int64_t>(static_cast<const float*>(counts->data)[0]);
  }
  if (im.entries.empty()) throw std::runtime_error(path.string() + ": the imatrix has no entries");
  return im;
}

void check_imatrix(const Imatrix& imatrix, const LlmModel& model, const std::string& source) {
  for (const auto& [name, e] : imatrix.entries) {
    const LlmTensor* t = model.find(name);
    if (t == nullptr || !t->is_matrix()) {
      throw std::invalid_argument(source + ": entry " + name + " is not a matrix of the model");
    }
    if (static_cast<int64_t>(e.sum2.size()) != t->row_length()) {
      throw std::invalid_argument(source + ": entry " + name + " has " +
                                  std::to_string(e.sum2.size()) + " columns, the tensor's rows " +
                                  std::to_string(t->row_length()));
    }
  }
}

void quantize_tensor_in_place(LlmTensor& tensor, TensorType stored, const Imatrix* imatrix) {
  if (tensor.data.empty()) {
    throw std::invalid_argument("tensor " + tensor.name + " was loaded without its weights");
  }
  const std::vector<float> importance =
      imatrix != nullptr ? imatrix->importance(tensor.name) : std::vector<float>{};
  tensor.data =
      quantize_round_trip(stored, tensor.data, tensor.rows(), tensor.row_length(), importance);
}

AppliedRecipe apply_llm_recipe_imatrix(LlmModel& model, const LlmRecipe& recipe,
                                       const Imatrix* imatrix) {
  if (imatrix == nullptr) return apply_llm_recipe(model, recipe);
  check_imatrix(*imatrix, model, "imatrix");
  AppliedRecipe plan = plan_llm_recipe(model, recipe);
  for (size_t i = 0; i < model.tensors.size(); ++i) {
    LlmTensor& t = model.tensors[i];
    const bool listed = recipe.types.contains(t.name) || (t.is_matrix() && recipe.default_type);
    if (listed && t.is_matrix()) quantize_tensor_in_place(t, plan.tensors[i].stored, imatrix);
  }
  return plan;
}

}  // namespace compsearch::llm
