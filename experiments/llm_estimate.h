// `compsearch estimate` for LLMs, the LLM objectives a search can ask for, and the published
// llama.cpp speeds that calibrate the speed model (docs/llm.md, "Cost model"). The formulas are in
// llm/cost_model.h; this file joins them with the target profiles (hardware_models/), which
// llm/ may not use.
#pragma once

#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "hardware_models/target_profile.h"
#include "llm/checkpoint.h"
#include "llm/cost_model.h"
#include "llm/llm_recipe.h"

namespace compsearch::experiments {

// The speed model's numbers of a GPU profile: bandwidth, the fp16 datapath's peak (x 2 FLOP per
// MAC), device memory and the "llm" section. Throws std::invalid_argument naming the profile when
// it is not a GPU, has no fp16 datapath or no "llm" section (and lists the presets that have one).
llm::LlmGpu llm_gpu_from_profile(const hardware_models::TargetProfile& profile);
llm::LlmGpu load_llm_gpu(const std::string& target);
// Presets with an "llm" section, sorted.
std::vector<std::string> llm_gpu_presets();

// ---- Objectives -----------------------------------------------------------------------------
// "size_bytes" (GGUF file bytes as llama-quantize writes them), "vram_mb@gpu:X" (LlmMemory,
// MB = 1e6 bytes) and "decode_tok_s@gpu:X" (LlmSpeed) for a planned recipe. Build one
// LlmObjectives per model and settings (it reads the GGUF metadata and the profiles once), then
// call value() per recipe.
class LlmObjectives {
 public:
  LlmObjectives(const llm::LlmModel& model, llm::LlmRunSettings settings);
  // Whether `name` is an LLM cost objective ("size_bytes", "vram_mb@...", "decode_tok_s@...").
  static bool is_cost_objective(const std::string& name);
  // Throws std::invalid_argument for an unknown objective or target.
  double value(const std::string& name, const llm::AppliedRecipe& plan);

 private:
  const llm::LlmGpu& gpu(const std::string& target);
  const llm::LlmModel& model_;
  llm::LlmRunSettings settings_;
  llm::GgufLayout layout_;
  std::map<std::string, llm::LlmGpu> gpus_;
};

// ---- estimate --------------------------------------------------------------------------------

// A KV cache type llama.cpp accepts (--cache-type-k/-v: f32, f16, bf16, q8_0, q4_0, q4_1,
// iq4_nl, q5_0, q5_1). Throws UsageError naming --kv-type and listing them.
llm::TensorType parse_kv_cache_type(const std::string& name);

struct LlmEstimateRequest {
  std::string model;   // HF directory or .gguf
  std::string recipe;  // compsearch.recipe/1 file, or ""
  std::string type;    // one llama.cpp type for every matrix (--type), or ""
  std::string target;  // GPU preset or profile file
  llm::LlmRunSettings settings;
  double vram_gb = 0;  // --vram-gb: the memory to fit in (GB = 1e9 bytes); 0 = the GPU's own
};

// JSON: {"model", "recipe", "target", "context", "batch", "kv_type", "ubatch", "flash_attention",
// "size_bytes", "bits_per_weight", "metadata_exact", "memory": {"weights_device_bytes",
// "weights_host_bytes", "kv_cache_bytes", "kv_cells", "compute_buffer_bytes", "vram_bytes"},
// "decode": {"bytes_per_step", "step_ms", "tokens_per_s"}, "prefill": {"tokens", "seconds",
// "tokens_per_s", "float_flops", "quantized_flops"}, "fit": {"vram_limit_bytes", "fits",
// "margin_bytes"}, "gpu": {name, bandwidth, peak, efficiencies}}.
struct LlmEstimateResult {
  LlmEstimateRequest request;
  llm::LlmGpu gpu;
  int64_t size_bytes = 0;
  double bits_per_weight = 0;
  bool metadata_exact = false;
  llm::LlmMemory memory;
  llm::LlmSpeed speed;
  double vram_limit_bytes = 0;

  bool fits() const { return static_cast<double>(memory.vram_bytes()) <= vram_limit_bytes; }
  nlohmann::json to_json() const;
  std::string to_text() const;
};

LlmEstimateResult run_llm_estimate(const LlmEstimateRequest& request);

// ---- Published points (hardware_models/llm_speed_points.json) --------------------------------

struct LlmSpeedBoard {
  std::string preset;  // the preset these measurements calibrate
  double bandwidth_bytes_per_s = 0;
  double fp16_flops = 0;
};

struct LlmSpeedPoint {
  std::string id, board, model, file_type, test, source;
  double size_bytes = 0;  // size_gib x 2^30
  llm::TensorType token_embd_type = llm::TensorType::kF16;
  bool decode = true;  // "tgN" (decode) or "ppN" (prefill)
  int64_t tokens = 0;  // N
  double tokens_per_s = 0;
  bool fit = false;
};

struct LlmSpeedPoints {
  std::map<std::string, llm::LlmConfig> models;
  std::map<std::string, LlmSpeedBoard> boards;
  std::vector<LlmSpeedPoint> points;
};

std::filesystem::path llm_speed_points_path();  // profiles_dir()/../llm_speed_points.json
// Throws std::invalid_argument naming the file and the key for malformed entries.
LlmSpeedPoints load_llm_speed_points(const std::filesystem::path& path);

// The board's bandwidth and peak with the preset's calibrated constants (`gpu`).
llm::LlmGpu board_gpu(const LlmSpeedBoard& board, const llm::LlmGpu& gpu);
// tokens/s the model predicts for a point, on `gpu` (board_gpu of the point's board). A tgN point
// decodes at an average context of N / 2; a ppN point prefills N tokens in ceil(N / 512) graphs.
double predict_tokens_per_s(const LlmSpeedPoints& points, const LlmSpeedPoint& point,
                            const llm::LlmGpu& gpu);
// Least-squares fit (relative errors) of a preset's constants on its board's fit points: decode
// (t0 and bandwidth efficiency; t0 >= 0) on the tg points, then one prefill efficiency for float
// and one for quantized weights on the pp points. Constants without fit points stay as in `gpu`.
llm::LlmGpu fit_llm_speed(const LlmSpeedPoints& points, const std::string& board, llm::LlmGpu gpu);

}  // namespace compsearch::experiments
