// `estimate` for LLMs, LLM cost objectives, and the published speed points with their fit.
#include "experiments/llm_estimate.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <iomanip>
#include <sstream>
#include <stdexcept>

#include "experiments/usage_error.h"

namespace compsearch::experiments {

namespace hm = compsearch::hardware_models;

// ---- GPUs
// ----------------------------------------------------------------------------------------

llm::LlmGpu llm_gpu_from_profile(const hm::TargetProfile& p) {
  auto list = [] {
    std::string s;
    for (const auto& n : llm_gpu_presets()) s += (s.empty() ? "" : ", ") + n;
    return s;
  };
  if (p.target_class != hm::TargetClass::kGpu || !p.has_llm) {
    throw std::invalid_argument(
        p.file + ": target " + p.name +
        " has no \"llm\" section (LLM speed constants); targets with one: " + list());
  }
  const hm::Datapath* fp16 = p.find_datapath("fp16");
  if (fp16 == nullptr) {
    throw std::invalid_argument(p.file + ": target " + p.name +
                                " has no fp16 datapath, which the LLM prefill model needs");
  }
  llm::LlmGpu g;
  g.name = p.name;
  g.memory_bytes = p.memory_bytes.value;
  g.bandwidth_bytes_per_s = p.memory_bandwidth_bytes_per_s.value;
  g.peak_flops = 2.0 * fp16->peak_macs_per_s.value;
  g.decode_bandwidth_efficiency = p.llm_decode_bandwidth_efficiency.value;
  g.layer_overhead_s = p.llm_layer_overhead_us.value * 1e-6;
  g.prefill_efficiency = p.llm_prefill_efficiency.value;
  g.prefill_efficiency_quantized = p.llm_prefill_efficiency_quantized.value;
  return g;
}

llm::LlmGpu load_llm_gpu(const std::string& target) {
  return llm_gpu_from_profile(hm::load_profile(target));
}

std::vector<std::string> llm_gpu_presets() {
  std::vector<std::string> out;
  for (const auto& name : hm::list_presets()) {
    if (name.starts_with("gpu:") && hm::load_profile(name).has_llm) out.push_back(name);
  }
  return out;
}

// ---- Objectives
// ----------------------------------------------------------------------------------

namespace {

constexpr const char* kVramPrefix = "vram_mb@";
constexpr const char* kDecodePrefix = "decode_tok_s@";

}  // namespace

LlmObjectives::LlmObjectives(const llm::LlmModel& model, llm::LlmRunSettings settings)
    : model_(model), settings_(settings), layout_(llm::gguf_layout(model)) {
  settings_.validate("LLM objectives");
}

bool LlmObjectives::is_cost_objective(const std::string& name) {
  return name == "size_bytes" || name.starts_with(kVramPrefix) || name.starts_with(kDecodePrefix);
}

const llm::LlmGpu& LlmObjectives::gpu(const std::string& target) {
  auto it = gpus_.find(target);
  if (it == gpus_.end()) it = gpus_.emplace(target, load_llm_gpu(target)).first;
  return it->second;
}

double LlmObjectives::value(const std::string& name, const llm::AppliedRecipe& plan) {
  if (name == "size_bytes") return static_cast<double>(layout_.file_bytes(plan));
  if (name.starts_with(kVramPrefix)) {
    gpu(name.substr(std::string(kVramPrefix).size()));  // the target must exist
    return static_cast<double>(llm::llm_memory(model_, plan, settings_).vram_bytes()) / 1e6;
  }
  if (name.starts_with(kDecodePrefix)) {
    const auto& g = gpu(name.substr(std::string(kDecodePrefix).size()));
    return llm::llm_speed(model_, plan, g, settings_).decode_tok_s;
  }
  throw std::invalid_argument("unknown LLM objective '" + name +
                              "'; expected size_bytes, vram_mb@TARGET or decode_tok_s@TARGET");
}

// ---- estimate
// ------------------------------------------------------------------------------------

llm::TensorType parse_kv_cache_type(const std::string& name) {
  using T = llm::TensorType;
  static const T kAllowed[] = {T::kF32,  T::kF16,    T::kBF16, T::kQ8_0, T::kQ4_0,
                               T::kQ4_1, T::kIQ4_NL, T::kQ5_0, T::kQ5_1};
  std::string list;
  for (T t : kAllowed) {
    list += (list.empty() ? "" : ", ") + llm::tensor_type_name(t);
    if (llm::tensor_type_name(t) == name) return t;
  }
  throw UsageError("--kv-type: '" + name + "' is not a llama.cpp KV cache type; expected one of " +
                   list);
}

LlmEstimateResult run_llm_estimate(const LlmEstimateRequest& req) {
  req.settings.validate("estimate");
  if (!req.recipe.empty() && !req.type.empty()) {
    throw std::invalid_argument("estimate: give --recipe or --type, not both");
  }
  if (req.vram_gb < 0) {
    throw std::invalid_argument("estimate: --vram-gb must be >= 0, got " +
                                std::to_string(req.vram_gb));
  }
  LlmEstimateResult r;
  r.request = req;
  r.gpu = load_llm_gpu(req.target);
  const llm::LlmModel model = llm::load_llm(req.model, /*with_data=*/false);
  llm::LlmRecipe recipe;
  if (!req.recipe.empty()) {
    recipe = llm::load_llm_recipe(req.recipe, model);
  } else if (!req.type.empty()) {
    recipe.default_type = llm::parse_tensor_type(req.type, "--type");
    recipe.source = "--type";
  }
  const llm::AppliedRecipe plan = llm::plan_llm_recipe(model, recipe);
  const llm::GgufLayout layout = llm::gguf_layout(model);
  r.size_bytes = layout.file_bytes(plan);
  r.bits_per_weight = plan.bits_per_weight();
  r.metadata_exact = layout.metadata_from_source;
  r.memory = llm::llm_memory(model, plan, req.settings);
  r.speed = llm::llm_speed(model, plan, r.gpu, req.settings);
  r.vram_limit_bytes = req.vram_gb > 0 ? req.vram_gb * 1e9 : r.gpu.memory_bytes;
  return r;
}

nlohmann::json LlmEstimateResult::to_json() const {
  const auto& s = request.settings;
  nlohmann::json recipe = nullptr;
  if (!request.recipe.empty()) recipe = request.recipe;
  if (!request.type.empty()) recipe = request.type;
  const double margin = vram_limit_bytes - static_cast<double>(memory.vram_bytes());
  return {
      {"model", request.model},
      {"recipe", recipe},
      {"target", gpu.name},
      {"context", s.context},
      {"batch", s.batch},
      {"kv_type", llm::tensor_type_name(s.kv_type)},
      {"ubatch", s.ubatch},
      {"flash_attention", s.flash_attention},
      {"size_bytes", size_bytes},
      {"bits_per_weight", bits_per_weight},
      {"metadata_exact", metadata_exact},
      {"memory",
       {{"weights_device_bytes", memory.weights_device_bytes},
        {"weights_host_bytes", memory.weights_host_bytes},
        {"kv_cache_bytes", memory.kv_cache_bytes},
        {"kv_cells", memory.kv_cells},
        {"compute_buffer_bytes", memory.compute_buffer_bytes},
        {"vram_bytes", memory.vram_bytes()}}},
      {"decode",
       {{"bytes_per_step", speed.decode_bytes_per_step},
        {"step_ms", speed.decode_step_s * 1e3},
        {"tokens_per_s", speed.decode_tok_s}}},
      {"prefill",
       {{"tokens", s.context},
        {"seconds", speed.prefill_s},
        {"tokens_per_s", speed.prefill_tok_s},
        {"float_flops", speed.prefill_float_flops},
        {"quantized_flops", speed.prefill_quantized_flops}}},
      {"fit", {{"vram_limit_bytes", vram_limit_bytes}, {"fits", fits()}, {"margin_bytes", margin}}},
      {"gpu",
       {{"bandwidth_bytes_per_s", gpu.bandwidth_bytes_per_s},
        {"peak_flops", gpu.peak_flops},
        {"decode_bandwidth_efficiency", gpu.decode_bandwidth_efficiency},
        {"layer_overhead_us", gpu.layer_overhead_s * 1e6},
        {"prefill_efficiency", gpu.prefill_efficiency},
        {"prefill_efficiency_quantized", gpu.prefill_efficiency_quantized}}}};
}

std::string LlmEstimateResult::to_text() const {
  const auto& s = request.settings;
  auto gb = [](double bytes) {
    std::ostringstream os;
    os << std::fixed << std::setprecision(3) << bytes / 1e9 << " GB";
    return os.str();
  };
  std::ostringstream os;
  os << std::setprecision(4);
  os << request.model << " on " << gpu.name << ", context " << s.context << " x batch " << s.batch
     << ", KV " << llm::tensor_type_name(s.kv_type) << "\n";
  os << "GGUF file: " << size_bytes << " bytes (" << bits_per_weight << " bits per weight"
     << (metadata_exact ? "" : "; metadata assumed: no vocabulary") << ")\n";
  os << "VRAM: " << gb(static_cast<double>(memory.vram_bytes())) << " = weights "
     << gb(static_cast<double>(memory.weights_device_bytes)) << " + KV cache "
     << gb(static_cast<double>(memory.kv_cache_bytes)) << " (" << memory.kv_cells
     << " cells) + compute buffer " << gb(static_cast<double>(memory.compute_buffer_bytes))
     << "; token_embd in host memory: " << gb(static_cast<double>(memory.weights_host_bytes))
     << "\n";
  const double margin = vram_limit_bytes - static_cast<double>(memory.vram_bytes());
  os << "fits in " << gb(vram_limit_bytes) << ": " << (fits() ? "yes" : "no") << " ("
     << gb(std::abs(margin)) << (fits() ? " to spare" : " too much") << ")\n";
  os << "decode: " << speed.decode_tok_s << " tokens/s (" << speed.decode_step_s * 1e3
     << " ms per step of " << s.batch << " token(s))\n";
  os << "prefill of " << s.context << " tokens: " << speed.prefill_s << " s ("
     << speed.prefill_tok_s << " tokens/s)\n";
  return os.str();
}

// ---- Published points
// ------------------------------------------------------------------------------

std::filesystem::path llm_speed_points_path() {
  return hm::profiles_dir().parent_path() / "llm_speed_points.json";
}

namespace {

template <typename T>
T req(const nlohmann::json& j, const std::string& key, const std::string& where) {
  if (!j.is_object() || !j.contains(key)) {
    throw std::invalid_argument(where + ": missing key '" + key + "'");
  }
  try {
    return j.at(key).get<T>();
  } catch (const nlohmann::json::exception&) {
    throw std::invalid_argument(where + "." + key + ": wrong type (" + j.at(key).dump() + ")");
  }
}

constexpr int64_t kPrefillUbatch = 512;  // llama-bench's default n_ubatch

int64_t matmul_params(const llm::LlmConfig& c) {
  int64_t params = 0;
  for (const auto& t : llm::llm_model_from_config(c, "published model").tensors) {
    if (t.is_matrix() && (t.role != llm::TensorRole::kTokenEmbd || c.tied_embeddings)) {
      params += t.params();
    }
  }
  return params;
}

// Decode bytes per step (one sequence at the point's average context), or prefill float and
// quantized FLOPs.
struct PointWork {
  double bytes = 0, float_flops = 0, quantized_flops = 0;
  int64_t graphs = 1;
};

PointWork point_work(const LlmSpeedPoints& pts, const LlmSpeedPoint& p) {
  const llm::LlmConfig& c = pts.models.at(p.model);
  PointWork w;
  if (p.decode) {
    const double embd = static_cast<double>(c.vocab) *
                        static_cast<double>(llm::row_bytes(p.token_embd_type, c.hidden));
    w.bytes = p.size_bytes - embd +
              static_cast<double>(llm::row_bytes(p.token_embd_type, c.hidden)) +
              llm::kv_read_bytes(c, llm::TensorType::kF16, p.tokens / 2);
    return w;
  }
  w.graphs = (p.tokens + kPrefillUbatch - 1) / kPrefillUbatch;
  w.float_flops = llm::attention_flops(c, p.tokens);
  const double matmul = 2.0 * static_cast<double>(matmul_params(c)) * static_cast<double>(p.tokens);
  (p.file_type == "f16" || p.file_type == "bf16" || p.file_type == "f32" ? w.float_flops
                                                                         : w.quantized_flops) +=
      matmul;
  return w;
}

}  // namespace

LlmSpeedPoints load_llm_speed_points(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) throw std::invalid_argument(path.string() + ": cannot open");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw std::invalid_argument(path.string() + ": not JSON (" + e.what() + ")");
  }
  const std::string file = path.string();
  if (req<std::string>(j, "format", file) != "compsearch.llm_speed_points/1") {
    throw std::invalid_argument(file + ": format: expected compsearch.llm_speed_points/1");
  }
  LlmSpeedPoints out;
  const auto models = req<nlohmann::json>(j, "models", file);
  for (const auto& [name, m] : models.items()) {
    const std::string where = file + ": models." + name;
    llm::LlmConfig c;
    c.hidden = req<int64_t>(m, "hidden", where);
    c.intermediate = req<int64_t>(m, "intermediate", where);
    c.layers = req<int64_t>(m, "layers", where);
    c.heads = req<int64_t>(m, "heads", where);
    c.kv_heads = req<int64_t>(m, "kv_heads", where);
    c.head_dim = req<int64_t>(m, "head_dim", where);
    c.vocab = req<int64_t>(m, "vocab", where);
    c.tied_embeddings = req<bool>(m, "tied_embeddings", where);
    out.models[name] = c;
  }
  const auto boards = req<nlohmann::json>(j, "boards", file);
  for (const auto& [name, b] : boards.items()) {
    const std::string where = file + ": boards." + name;
    out.boards[name] = {req<std::string>(b, "preset", where),
                        req<double>(b, "bandwidth_bytes_per_s", where),
                        req<double>(b, "fp16_flops", where)};
  }
  const auto points = req<nlohmann::json>(j, "points", file);
  for (size_t i = 0; i < points.size(); ++i) {
    const auto& q = points[i];
    const std::string where = file + ": points[" + std::to_string(i) + "]";
    LlmSpeedPoint p;
    p.id = req<std::string>(q, "id", where);
    p.board = req<std::string>(q, "board", where);
    p.model = req<std::string>(q, "model", where);
    p.file_type = req<std::string>(q, "file_type", where);
    p.test = req<std::string>(q, "test", where);
    p.source = req<std::string>(q, "source", where);
    p.size_bytes = req<double>(q, "size_gib", where) * 1073741824.0;
    p.token_embd_type =
        llm::parse_tensor_type(req<std::string>(q, "token_embd_type", where), where);
    p.tokens_per_s = req<double>(q, "tokens_per_s", where);
    p.fit = req<bool>(q, "fit", where);
    if (!out.models.contains(p.model))
      throw std::invalid_argument(where + ": unknown model " + p.model);
    if (!out.boards.contains(p.board))
      throw std::invalid_argument(where + ": unknown board " + p.board);
    const bool tg = p.test.starts_with("tg"), pp = p.test.starts_with("pp");
    try {
      p.tokens = (tg || pp) ? std::stoll(p.test.substr(2)) : 0;
    } catch (const std::exception&) {
      p.tokens = 0;
    }
    if (p.tokens <= 0) {
      throw std::invalid_argument(where + ".test: expected tgN or ppN, got '" + p.test + "'");
    }
    p.decode = tg;
    out.points.push_back(p);
  }
  return out;
}

llm::LlmGpu board_gpu(const LlmSpeedBoard& board, const llm::LlmGpu& gpu) {
  llm::LlmGpu g = gpu;
  g.bandwidth_bytes_per_s = board.bandwidth_bytes_per_s;
  g.peak_flops = board.fp16_flops;
  return g;
}

double predict_tokens_per_s(const LlmSpeedPoints& pts, const LlmSpeedPoint& p,
                            const llm::LlmGpu& gpu) {
  const PointWork w = point_work(pts, p);
  const int64_t layers = pts.models.at(p.model).layers;
  if (p.decode) return 1.0 / llm::decode_step_seconds(w.bytes, layers, gpu);
  return static_cast<double>(p.tokens) / llm::prefill_seconds(w.float_flops, w.quantized_flops,
                                                              p.tokens, kPrefillUbatch, layers,
                                                              gpu);
}

llm::LlmGpu fit_llm_speed(const LlmSpeedPoints& pts, const std::string& board, llm::LlmGpu gpu) {
  const LlmSpeedBoard& b = pts.boards.at(board);
  gpu = board_gpu(b, gpu);
  // Decode: time = layers x t_layer + k x bytes, least squares weighted by 1 / time^2 (relative
  // errors); t_layer >= 0.
  double a00 = 0, a01 = 0, a11 = 0, b0 = 0, b1 = 0;
  int n = 0;
  for (const auto& p : pts.points) {
    if (p.board != board || !p.fit || !p.decode) continue;
    const double t = 1.0 / p.tokens_per_s, x = point_work(pts, p).bytes, w = 1.0 / (t * t);
    const auto l = static_cast<double>(pts.models.at(p.model).layers);
    a00 += w * l * l, a01 += w * l * x, a11 += w * x * x, b0 += w * l * t, b1 += w * x * t;
    ++n;
  }
  if (n >= 2) {
    const double det = a00 * a11 - a01 * a01;
    double t_layer = (b0 * a11 - a01 * b1) / det, k = (a00 * b1 - a01 * b0) / det;
    if (t_layer < 0) t_layer = 0, k = b1 / a11;
    gpu.layer_overhead_s = t_layer;
    gpu.decode_bandwidth_efficiency = 1.0 / (k * b.bandwidth_bytes_per_s);
  } else if (n == 1) {
    gpu.decode_bandwidth_efficiency =
        1.0 / ((b1 - gpu.layer_overhead_s * b0) / a11 * b.bandwidth_bytes_per_s);
  }
  // Prefill: float points first (their FLOPs are all float), then quantized ones.
  for (const bool quantized : {false, true}) {
    double num = 0, den = 0;
    for (const auto& p : pts.points) {
      if (p.board != board || !p.fit || p.decode) continue;
      const PointWork w = point_work(pts, p);
      if ((w.quantized_flops > 0) != quantized) continue;
      const double t = static_cast<double>(p.tokens) / p.tokens_per_s;
      double rest =
          t - static_cast<double>(w.graphs * pts.models.at(p.model).layers) * gpu.layer_overhead_s;
      const double x = quantized ? w.quantized_flops : w.float_flops;
      if (quantized) rest -= w.float_flops / (gpu.prefill_efficiency * gpu.peak_flops);
      num += x * rest / (t * t);
      den += x * x / (t * t);
    }
    if (den <= 0) continue;
    (quantized ? gpu.prefill_efficiency_quantized : gpu.prefill_efficiency) =
        1.0 / (num / den * gpu.peak_flops);
  }
  return gpu;
}

}  // namespace compsearch::experiments
