// Loading Hugging Face and GGUF Llama checkpoints into one float model in llama.cpp's layout.
#include "llm/checkpoint.h"

#include <gguf.h>

#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <regex>
#include <stdexcept>
#include <utility>

#include "common/check.h"
#include "llm/ggml_handles.h"
#include "llm/safetensors.h"
#include "model/tensor.h"

namespace compsearch::llm {

namespace {

struct RoleNames {
  TensorRole role;
  const char* gguf;  // suffix after "blk.N." (or the whole name for global tensors)
  const char* hf;    // suffix after "model.layers.N." (or the whole name)
};

// Per-block tensors in llama.cpp's order, then the global ones.
constexpr RoleNames kBlockRoles[] = {
    {TensorRole::kAttnNorm, "attn_norm", "input_layernorm"},
    {TensorRole::kAttnQ, "attn_q", "self_attn.q_proj"},
    {TensorRole::kAttnK, "attn_k", "self_attn.k_proj"},
    {TensorRole::kAttnV, "attn_v", "self_attn.v_proj"},
    {TensorRole::kAttnOutput, "attn_output", "self_attn.o_proj"},
    {TensorRole::kFfnNorm, "ffn_norm", "post_attention_layernorm"},
    {TensorRole::kFfnGate, "ffn_gate", "mlp.gate_proj"},
    {TensorRole::kFfnUp, "ffn_up", "mlp.up_proj"},
    {TensorRole::kFfnDown, "ffn_down", "mlp.down_proj"},
};
constexpr RoleNames kGlobalRoles[] = {
    {TensorRole::kTokenEmbd, "token_embd", "model.embed_tokens"},
    {TensorRole::kOutputNorm, "output_norm", "model.norm"},
    {TensorRole::kOutput, "output", "lm_head"},
};

std::string strip_weight(const std::string& name) {
  const std::string suffix = ".weight";
  if (name.size() > suffix.size() && name.ends_with(suffix)) {
    return name.substr(0, name.size() - suffix.size());
  }
  return name;
}

// The tensor skeleton (names, roles, expected shapes) of a model with this config.
std::vector<LlmTensor> expected_tensors(const LlmConfig& c) {
  auto make = [](TensorRole role, int64_t layer, std::string gguf, std::string hf,
                 std::vector<int64_t> shape) {
    LlmTensor t;
    t.role = role;
    t.layer = layer;
    t.name = std::move(gguf);
    t.hf_name = std::move(hf);
    t.shape = std::move(shape);
    t.macs_per_token = t.shape.size() == 2 ? t.shape[0] * t.shape[1] : 0;
    return t;
  };
  std::vector<LlmTensor> out;
  out.push_back(
      make(TensorRole::kTokenEmbd, -1, "token_embd", "model.embed_tokens", {c.vocab, c.hidden}));
  if (!c.tied_embeddings) out.back().macs_per_token = 0;  // a lookup
  const int64_t q_rows = c.heads * c.head_dim, kv_rows = c.kv_heads * c.head_dim;
  for (int64_t l = 0; l < c.layers; ++l) {
    for (const auto& r : kBlockRoles) {
      std::vector<int64_t> shape;
      switch (r.role) {
        case TensorRole::kAttnNorm:
        case TensorRole::kFfnNorm:
          shape = {c.hidden};
          break;
        case TensorRole::kAttnQ:
          shape = {q_rows, c.hidden};
          break;
        case TensorRole::kAttnK:
        case TensorRole::kAttnV:
          shape = {kv_rows, c.hidden};
          break;
        case TensorRole::kAttnOutput:
          shape = {c.hidden, q_rows};
          break;
        case TensorRole::kFfnGate:
        case TensorRole::kFfnUp:
          shape = {c.intermediate, c.hidden};
          break;
        default:
          shape = {c.hidden, c.intermediate};
          break;
      }
      const std::string n = std::to_string(l);
      out.push_back(
          make(r.role, l, "blk." + n + "." + r.gguf, "model.layers." + n + "." + r.hf, shape));
    }
  }
  out.push_back(make(TensorRole::kOutputNorm, -1, "output_norm", "model.norm", {c.hidden}));
  if (!c.tied_embeddings) {
    out.push_back(make(TensorRole::kOutput, -1, "output", "lm_head", {c.vocab, c.hidden}));
  }
  return out;
}

void check_config(const LlmConfig& c, const std::string& where) {
  auto positive = [&](int64_t v, const char* key) {
    if (v <= 0) {
      throw std::runtime_error(where + ": " + key + " must be > 0, got " + std::to_string(v));
    }
  };
  positive(c.hidden, "hidden size");
  positive(c.intermediate, "feed-forward size");
  positive(c.layers, "layer count");
  positive(c.heads, "head count");
  positive(c.kv_heads, "key/value head count");
  positive(c.head_dim, "head dimension");
  positive(c.vocab, "vocabulary size");
  if (c.heads % c.kv_heads != 0) {
    throw std::runtime_error(where + ": head count " + std::to_string(c.heads) +
                             " is not a multiple of the key/value head count " +
                             std::to_string(c.kv_heads));
  }
  if (c.head_dim % 2 != 0) {
    throw std::runtime_error(where + ": head dimension " + std::to_string(c.head_dim) +
                             " must be even (RoPE rotates pairs)");
  }
}

void check_shape(const LlmTensor& t, const std::vector<int64_t>& found, const std::string& where) {
  if (found != t.shape) {
    throw std::runtime_error(where + ": tensor " + t.name + " has shape " +
                             model::shape_to_string(found) + ", the config implies " +
                             model::shape_to_string(t.shape));
  }
}

// ---- Hugging Face ----

nlohmann::json read_json(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error(path.string() + ": cannot open the file");
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error(path.string() + ": not valid JSON: " + e.what());
  }
}

LlmConfig hf_config(const nlohmann::json& j, const std::string& where) {
  auto get_int = [&](const char* key, std::optional<int64_t> fallback) -> int64_t {
    if (j.contains(key) && !j.at(key).is_null()) {
      if (!j.at(key).is_number_integer()) {
        throw std::runtime_error(where + ": key '" + key + "' must be an integer");
      }
      return j.at(key).get<int64_t>();
    }
    if (!fallback) throw std::runtime_error(where + ": missing key '" + key + "'");
    return *fallback;
  };
  auto get_num = [&](const char* key, double fallback) -> double {
    if (!j.contains(key) || j.at(key).is_null()) return fallback;
    if (!j.at(key).is_number()) {
      throw std::runtime_error(where + ": key '" + key + "' must be a number");
    }
    return j.at(key).get<double>();
  };
  const std::string type = j.value("model_type", std::string());
  if (type != "llama" && type != "mistral") {
    throw std::runtime_error(where + ": model_type '" + type +
                             "' is not supported, expected llama or mistral");
  }
  for (const char* key : {"attention_bias", "mlp_bias"}) {
    if (j.contains(key) && j.at(key).is_boolean() && j.at(key).get<bool>()) {
      throw std::runtime_error(where + ": " + key + " true is not supported (no biases)");
    }
  }
  for (const char* key : {"rope_scaling", "sliding_window"}) {
    if (j.contains(key) && !j.at(key).is_null()) {
      throw std::runtime_error(where + ": '" + key +
                               "' is not supported (expected null or absent)");
    }
  }
  if (j.contains("hidden_act") && j.at("hidden_act") != "silu") {
    throw std::runtime_error(where + ": hidden_act " + j.at("hidden_act").dump() +
                             " is not supported, expected \"silu\"");
  }
  LlmConfig c;
  c.architecture = "llama";
  c.hidden = get_int("hidden_size", std::nullopt);
  c.intermediate = get_int("intermediate_size", std::nullopt);
  c.layers = get_int("num_hidden_layers", std::nullopt);
  c.heads = get_int("num_attention_heads", std::nullopt);
  c.kv_heads = get_int("num_key_value_heads", c.heads);
  c.head_dim = get_int("head_dim", c.heads > 0 ? c.hidden / c.heads : 0);
  c.vocab = get_int("vocab_size", std::nullopt);
  c.context = get_int("max_position_embeddings", 2048);
  c.rms_eps = get_num("rms_norm_eps", 1e-6);
  c.rope_theta = get_num("rope_theta", 10000.0);
  c.tied_embeddings = j.value("tie_word_embeddings", false);
  return c;
}

LlmModel load_hf(const std::filesystem::path& dir, bool with_data) {
  LlmModel m;
  m.path = dir;
  m.format = "hf";
  const std::filesystem::path config_path = dir / "config.json";
  m.config = hf_config(read_json(config_path), config_path.string());
  // Which file holds each tensor.
  std::map<std::string, std::filesystem::path> file_of;
  const std::filesystem::path index_path = dir / "model.safetensors.index.json";
  std::vector<std::filesystem::path> files;
  if (std::filesystem::exists(index_path)) {
    const nlohmann::json index = read_json(index_path);
    if (!index.contains("weight_map") || !index.at("weight_map").is_object()) {
      throw std::runtime_error(index_path.string() + ": missing object 'weight_map'");
    }
    for (const auto& [name, file] : index.at("weight_map").items()) {
      if (!file.is_string()) {
        throw std::runtime_error(index_path.string() + ": weight_map['" + name +
                                 "'] must be a file name");
      }
      file_of[name] = dir / file.get<std::string>();
    }
  } else if (std::filesystem::exists(dir / "model.safetensors")) {
    file_of[""] = dir / "model.safetensors";
  } else {
    throw std::runtime_error(dir.string() +
                             ": no model.safetensors or model.safetensors.index.json");
  }
  std::map<std::filesystem::path, SafetensorsFile> headers;
  std::map<std::string, std::pair<const SafetensorsFile*, const SafetensorsEntry*>> entries;
  for (const auto& [name, path] : file_of) {
    if (!headers.contains(path)) headers.emplace(path, read_safetensors_header(path));
  }
  for (const auto& [path, file] : headers) {
    for (const auto& e : file.tensors) {
      if (file_of.size() > 1 || !file_of.contains("")) {
        auto it = file_of.find(e.name);
        if (it == file_of.end() || it->second != path) continue;  // listed in another shard
      }
      entries[e.name] = {&file, &e};
    }
  }
  for (const auto& [name, path] : file_of) {
    if (!name.empty() && !entries.contains(name)) {
      throw std::runtime_error(path.string() + ": tensor '" + name +
                               "' listed in model.safetensors.index.json is not in the file");
    }
  }
  const bool has_lm_head = entries.contains("lm_head.weight");
  if (!has_lm_head && !m.config.tied_embeddings) {
    throw std::runtime_error(dir.string() + ": no lm_head.weight and tie_word_embeddings is false");
  }
  m.config.tied_embeddings = !has_lm_head;
  check_config(m.config, config_path.string());
  m.tensors = expected_tensors(m.config);
  std::map<std::string, bool> used;
  for (auto& t : m.tensors) {
    const std::string key = t.hf_name + ".weight";
    auto it = entries.find(key);
    if (it == entries.end()) throw std::runtime_error(dir.string() + ": missing tensor " + key);
    const auto& [file, entry] = it->second;
    used[key] = true;
    check_shape(t, entry->shape, file->path.string());
    t.stored_type = entry->dtype == "F32"   ? TensorType::kF32
                    : entry->dtype == "F16" ? TensorType::kF16
                                            : TensorType::kBF16;
    if (!with_data) continue;
    t.data = read_safetensors_tensor(*file, *entry);
    if (t.role == TensorRole::kAttnQ) {
      t.data = permute_hf_to_gguf(t.data, m.config.heads, m.config.head_dim, m.config.hidden);
    } else if (t.role == TensorRole::kAttnK) {
      t.data = permute_hf_to_gguf(t.data, m.config.kv_heads, m.config.head_dim, m.config.hidden);
    }
  }
  for (const auto& [name, entry] : entries) {
    if (!used.contains(name) && !name.ends_with("rotary_emb.inv_freq")) {
      throw std::runtime_error(entry.first->path.string() + ": unexpected tensor '" + name +
                               "' (not part of a Llama model without biases)");
    }
  }
  return m;
}

// ---- GGUF ----

std::optional<int64_t> gguf_int(const gguf_context* ctx, const std::string& key,
                                const std::string& where) {
  const int64_t id = gguf_find_key(ctx, key.c_str());
  if (id < 0) return std::nullopt;
  switch (gguf_get_kv_type(ctx, id)) {
    case GGUF_TYPE_UINT8:
      return gguf_get_val_u8(ctx, id);
    case GGUF_TYPE_INT8:
      return gguf_get_val_i8(ctx, id);
    case GGUF_TYPE_UINT16:
      return gguf_get_val_u16(ctx, id);
    case GGUF_TYPE_INT16:
      return gguf_get_val_i16(ctx, id);
    case GGUF_TYPE_UINT32:
      return gguf_get_val_u32(ctx, id);
    case GGUF_TYPE_INT32:
      return gguf_get_val_i32(ctx, id);
    case GGUF_TYPE_UINT64:
      return static_cast<int64_t>(gguf_get_val_u64(ctx, id));
    case GGUF_TYPE_INT64:
      return gguf_get_val_i64(ctx, id);
    default:
      throw std::runtime_error(where + ": key " + key + " is not an integer");
  }
}

std::optional<double> gguf_float(const gguf_context* ctx, const std::string& key,
                                 const std::string& where) {
  const int64_t id = gguf_find_key(ctx, key.c_str());
  if (id < 0) return std::nullopt;
  switch (gguf_get_kv_type(ctx, id)) {
    case GGUF_TYPE_FLOAT32:
      return gguf_get_val_f32(ctx, id);
    case GGUF_TYPE_FLOAT64:
      return gguf_get_val_f64(ctx, id);
    default:
      throw std::runtime_error(where + ": key " + key + " is not a float");
  }
}

LlmModel load_gguf(const std::filesystem::path& path, bool with_data) {
  const std::string where = path.string();
  gguf_init_params params{/*no_alloc=*/true, /*ctx=*/nullptr};
  GgufPtr ctx(gguf_init_from_file(path.c_str(), params));
  if (!ctx) {
    throw std::runtime_error(where +
                             ": not a readable GGUF file (ggml's gguf reader rejected it; "
                             "its message is above)");
  }
  const int64_t arch_id = gguf_find_key(ctx.get(), "general.architecture");
  if (arch_id < 0 || gguf_get_kv_type(ctx.get(), arch_id) != GGUF_TYPE_STRING) {
    throw std::runtime_error(where + ": missing string key general.architecture");
  }
  const std::string arch = gguf_get_val_str(ctx.get(), arch_id);
  if (arch != "llama") {
    throw std::runtime_error(where + ": general.architecture '" + arch +
                             "' is not supported, expected llama");
  }
  auto need_int = [&](const std::string& key) {
    const auto v = gguf_int(ctx.get(), key, where);
    if (!v) throw std::runtime_error(where + ": missing key " + key);
    return *v;
  };
  LlmModel m;
  m.path = path;
  m.format = "gguf";
  LlmConfig& c = m.config;
  c.hidden = need_int("llama.embedding_length");
  c.intermediate = need_int("llama.feed_forward_length");
  c.layers = need_int("llama.block_count");
  c.heads = need_int("llama.attention.head_count");
  c.kv_heads = gguf_int(ctx.get(), "llama.attention.head_count_kv", where).value_or(c.heads);
  c.head_dim = gguf_int(ctx.get(), "llama.rope.dimension_count", where)
                   .value_or(c.heads > 0 ? c.hidden / c.heads : 0);
  c.context = gguf_int(ctx.get(), "llama.context_length", where).value_or(2048);
  c.rms_eps = gguf_float(ctx.get(), "llama.attention.layer_norm_rms_epsilon", where).value_or(1e-5);
  c.rope_theta = gguf_float(ctx.get(), "llama.rope.freq_base", where).value_or(10000.0);
  if (const auto kl = gguf_int(ctx.get(), "llama.attention.key_length", where);
      kl && *kl != c.head_dim) {
    throw std::runtime_error(where + ": llama.attention.key_length " + std::to_string(*kl) +
                             " differs from the rotary dimension " + std::to_string(c.head_dim) +
                             " (partial RoPE is not supported)");
  }
  std::map<std::string, int64_t> index;
  for (int64_t i = 0; i < gguf_get_n_tensors(ctx.get()); ++i) {
    index[gguf_get_tensor_name(ctx.get(), i)] = i;
  }
  if (!index.contains("token_embd.weight")) {
    throw std::runtime_error(where + ": missing tensor token_embd.weight");
  }
  c.vocab = gguf_get_tensor_ne(ctx.get(), index.at("token_embd.weight"))[1];
  c.tied_embeddings = !index.contains("output.weight");
  check_config(c, where);
  m.tensors = expected_tensors(c);
  std::ifstream in;
  if (with_data) {
    in.open(path, std::ios::binary);
    if (!in) throw std::runtime_error(where + ": cannot open the file");
  }
  const size_t data_offset = gguf_get_data_offset(ctx.get());
  for (auto& t : m.tensors) {
    auto it = index.find(t.name + ".weight");
    if (it == index.end())
      throw std::runtime_error(where + ": missing tensor " + t.name + ".weight");
    const int64_t id = it->second;
    const int64_t* ne = gguf_get_tensor_ne(ctx.get(), id);
    std::vector<int64_t> shape =
        t.shape.size() == 2 ? std::vector<int64_t>{ne[1], ne[0]} : std::vector<int64_t>{ne[0]};
    if (ne[2] != 1 || ne[3] != 1 || (t.shape.size() == 1 && ne[1] != 1)) {
      shape = {ne[3], ne[2], ne[1], ne[0]};
    }
    check_shape(t, shape, where);
    const int32_t type = gguf_get_tensor_type(ctx.get(), id);
    if (!is_known_ggml_type(type)) {
      throw std::runtime_error(where + ": tensor " + t.name + " has unknown ggml type " +
                               std::to_string(type));
    }
    t.stored_type = static_cast<TensorType>(type);
    index.erase(it);
    if (!with_data) continue;
    const size_t bytes = gguf_get_tensor_size(ctx.get(), id);
    std::vector<char> raw(bytes);
    in.seekg(static_cast<std::streamoff>(data_offset + gguf_get_tensor_offset(ctx.get(), id)));
    in.read(raw.data(), static_cast<std::streamsize>(bytes));
    if (static_cast<size_t>(in.gcount()) != bytes) {
      throw std::runtime_error(where + ": tensor " + t.name + ": truncated file");
    }
    t.data.resize(static_cast<size_t>(t.params()));
    for (int64_t r = 0; r < t.rows(); ++r) {
      const int64_t rb = row_bytes(t.stored_type, t.row_length());
      dequantize(t.stored_type, raw.data() + r * rb, t.row_length(),
                 t.data.data() + r * t.row_length());
    }
  }
  if (!index.empty()) {
    throw std::runtime_error(where + ": unexpected tensor " + index.begin()->first +
                             " (not part of a llama model without biases or rope_freqs)");
  }
  return m;
}

}  // namespace

std::string role_name(TensorRole role) {
  for (const auto& r : kBlockRoles) {
    if (r.role == role) return r.gguf;
  }
  for (const auto& r : kGlobalRoles) {
    if (r.role == role) return r.gguf;
  }
  COMPSEARCH_CHECK(false, "unknown role");
  return {};
}

int64_t LlmTensor::params() const { return model::shape_numel(shape); }

const LlmTensor* LlmModel::find(const std::string& name) const {
  std::string key = strip_weight(name);
  if (auto g = gguf_name_of(key)) key = *g;
  for (const auto& t : tensors) {
    if (t.name == key) return &t;
  }
  return nullptr;
}

LlmTensor* LlmModel::find(const std::string& name) {
  return const_cast<LlmTensor*>(std::as_const(*this).find(name));
}

const LlmTensor& LlmModel::at(const std::string& name) const {
  const LlmTensor* t = find(name);
  if (!t) throw std::invalid_argument(path.string() + ": no tensor named '" + name + "'");
  return *t;
}

bool is_llm_checkpoint(const std::filesystem::path& path) {
  if (std::filesystem::is_directory(path)) return std::filesystem::exists(path / "config.json");
  return path.extension() == ".gguf";
}

LlmModel load_llm(const std::filesystem::path& path, bool with_data) {
  if (std::filesystem::is_directory(path)) return load_hf(path, with_data);
  if (path.extension() == ".gguf") return load_gguf(path, with_data);
  throw std::runtime_error(
      path.string() + ": not an LLM checkpoint (a directory with config.json, or a .gguf file)");
}

LlmModel llm_model_from_config(const LlmConfig& config, const std::string& name) {
  check_config(config, name);
  LlmModel m;
  m.path = name;
  m.format = "config";
  m.config = config;
  m.tensors = expected_tensors(config);
  for (auto& t : m.tensors) t.stored_type = t.is_matrix() ? TensorType::kF16 : TensorType::kF32;
  return m;
}

int64_t hf_row_of_gguf_row(int64_t r, int64_t head_dim) {
  const int64_t head = r / head_dim, k = r % head_dim;
  return head * head_dim + (k % 2) * (head_dim / 2) + k / 2;
}

std::vector<float> permute_hf_to_gguf(const std::vector<float>& hf, int64_t heads, int64_t head_dim,
                                      int64_t cols) {
  COMPSEARCH_CHECK(static_cast<int64_t>(hf.size()) == heads * head_dim * cols, "q/k shape");
  std::vector<float> out(hf.size());
  for (int64_t r = 0; r < heads * head_dim; ++r) {
    std::copy_n(hf.begin() + hf_row_of_gguf_row(r, head_dim) * cols, cols, out.begin() + r * cols);
  }
  return out;
}

namespace {

// Renames `name` from one naming scheme to the other: `from` and `to` pick the RoleNames field
// (gguf or hf), `block_from` matches a per-block name (layer index, role suffix), `block_to` is
// the prefix of the renamed block name.
std::optional<std::string> rename_tensor(const std::string& name, const char* RoleNames::*from,
                                         const char* RoleNames::*to, const std::regex& block_from,
                                         const std::string& block_to) {
  std::smatch m;
  if (std::regex_match(name, m, block_from)) {
    for (const auto& r : kBlockRoles) {
      if (m[2] == r.*from) return block_to + m[1].str() + "." + r.*to;
    }
    return std::nullopt;
  }
  for (const auto& r : kGlobalRoles) {
    if (name == r.*from) return std::string(r.*to);
  }
  return std::nullopt;
}

}  // namespace

std::optional<std::string> hf_name_of(const std::string& gguf_name) {
  static const std::regex kBlock(R"(blk\.(\d+)\.(\w+))");
  return rename_tensor(gguf_name, &RoleNames::gguf, &RoleNames::hf, kBlock, "model.layers.");
}

std::optional<std::string> gguf_name_of(const std::string& hf_name) {
  static const std::regex kLayer(R"(model\.layers\.(\d+)\.(.+))");
  return rename_tensor(hf_name, &RoleNames::hf, &RoleNames::gguf, kLayer, "blk.");
}

}  // namespace compsearch::llm
