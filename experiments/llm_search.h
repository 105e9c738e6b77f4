// The LLM search (issue 13, items 4 and 5): per-tensor llama.cpp types for a size target.
//
//   sensitivity table   for every matrix tensor x every recipe type (tensor_types.h) whose stored
//                       type (after llama.cpp's fallback) differs from the tensor's precision as
//                       loaded, the KL divergence and ΔNLL (llm/kld.h) on the calibration tokens
//                       when ONLY that tensor takes that type (quantized with the imatrix when
//                       one is given); measured through evaluators/sensitivity.h, so it is cached
//                       after every entry and resumes after kill -9 under a key of the model's
//                       bytes, the tokens, the windows, the imatrix and the types.
//   exact route         the additive proxy (loss = table KLD, cost = the tensor's bytes at that
//                       type) solved for its whole Pareto front by search/exact_solver.h, points
//                       spread evenly along it, each evaluated for real (KLD on the calibration
//                       tokens) as a trial of an Optuna-format study (search::open_storage), so
//                       `trials`, `best --budget "size_bytes<=N" --minimize kld` and `export
//                       --format recipe` work on it. A budget beyond the front goes to NSGA-II.
//
// A trial stores params {tensor: type} (categorical, the tensor's distinct stored types), values
// in the config's objective order, and user attrs: `recipe` (the LLM recipe, llm_recipe.h),
// `kld`, `delta_nll`, `nll`, `kld_p99`, `size_bytes`, `bits_per_weight`, `proxy_kld`, and
// `compsearch.route` ("exact" for front points). The study's user attrs: `compsearch.config`
// (with "llm": true) and `compsearch.reference`.
//
// Config (experiments/configs/tiny_llama.json, docs/llm.md):
//   {"study_name": "...", "model": "LLM_DIR|M.gguf", "data": "CALIB.npy",
//    "llm": {"context": 128, "windows": 16, "threads": 0, "imatrix": "imatrix.gguf",
//            "types": ["q8_0", ...]},
//    "objectives": [["kld", "minimize"], ["size_bytes", "minimize"]],
//    "constraints": ["size_bytes <= 2000000"], "sampler": {"name": "exact", "seed": 0},
//    "budget": {"trials": 24}, "storage": "runs/tiny_llama/study.journal"}
#pragma once

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "evaluators/sensitivity.h"
#include "experiments/experiment_config.h"
#include "experiments/llm_estimate.h"
#include "llm/checkpoint.h"
#include "llm/imatrix.h"
#include "llm/kld.h"

namespace compsearch::experiments {

struct LlmSearchConfig {
  std::filesystem::path source;
  std::string study_name = "llm";
  std::string model;  // resolved against the config file's folder
  std::string data;   // calibration tokens (NPY)
  int64_t context = 128;
  int64_t windows = 0;                 // 0: every window of the calibration tokens
  std::string imatrix;                 // "" = none
  std::vector<llm::TensorType> types;  // empty: recipe_tensor_types()
  // How the model will run, for vram_mb@ / decode_tok_s@ objectives ("llm": {"run": {"context":
  // 4096, "batch": 1, "kv_type": "f16"}}).
  llm::LlmRunSettings run;
  std::vector<ObjectiveConfig> objectives;
  std::vector<ConstraintConfig> constraints;
  SamplerConfig sampler;
  int64_t trials = 24;
  std::string storage;
  int threads = 0;

  nlohmann::json to_json() const;
};

// Whether a config file is an LLM search config (it has the key "llm").
bool is_llm_search_config(const nlohmann::json& j);
// Parses and validates (unknown keys, objectives other than kld/nll/delta_nll and the cost metrics
// of llm_cost_metrics are errors naming the file and key). Relative paths resolve against
// base_dir.
LlmSearchConfig llm_search_config_from_json(const nlohmann::json& j, const std::string& source,
                                            const std::filesystem::path& base_dir);

// The metrics a table entry and a trial measure.
evaluators::Metrics kld_metrics(const llm::KldResult& r);

// The cost metrics of a plan: size_bytes (the GGUF file llama-quantize writes, exact:
// llm/cost_model.h), tensor_bytes (the tensors' data), bits_per_weight, and each of `asked` that is
// a vram_mb@TARGET or decode_tok_s@TARGET objective (experiments/llm_estimate.h, with the
// config's llm.run settings).
evaluators::Metrics llm_cost_metrics(LlmObjectives& costs, const std::vector<std::string>& asked,
                                     const llm::AppliedRecipe& plan);

// The search options of each matrix: the distinct stored types (fallback_type) of `types`, the
// tensor's own precision first (loss 0, nothing to measure).
struct LlmTensorOptions {
  std::string tensor;
  std::vector<llm::TensorType> types;  // [0] = as loaded
  std::vector<int64_t> bytes;          // per type
};
std::vector<LlmTensorOptions> llm_tensor_options(const llm::LlmModel& model,
                                                 const std::vector<llm::TensorType>& types);
// The table key of one entry: "<tensor>|<type>".
std::string llm_option_key(const std::string& tensor, llm::TensorType type);

struct LlmSensitivityRequest {
  const llm::LlmModel* model = nullptr;  // with weights, as loaded
  std::span<const int32_t> tokens;
  int64_t context = 128, windows = 0;
  int threads = 0;
  const llm::Imatrix* imatrix = nullptr;
  std::string imatrix_bytes_key;  // a hash of the imatrix file ("" without one)
  std::string model_key;          // a hash of the checkpoint's files (llm_model_key)
  std::vector<llm::TensorType> types;
  std::filesystem::path cache_dir;  // "" = no cache
};
// A hash of the checkpoint's bytes (config.json and safetensors of an HF directory, or the GGUF).
std::string llm_model_key(const std::string& model);
// A hash of a file's bytes.
std::string file_key(const std::filesystem::path& path);

evaluators::SensitivityTable llm_sensitivity(
    const LlmSensitivityRequest& request,
    const std::function<void(const evaluators::SensitivityProgress&)>& progress = {});

struct LlmSearchCallbacks {
  std::function<void(const std::string& line, bool final)> progress;
  const std::atomic<bool>* stop = nullptr;
};

struct LlmSearchSummary {
  std::string study_name, storage;
  int64_t table_entries = 0, table_measured = 0, enqueued = 0, trials_run = 0;
  double table_seconds = 0.0, seconds = 0.0;
  size_t front_size = 0;  // the proxy's exact front (before spreading to the budget)
  nlohmann::json front = nlohmann::json::array();  // the study's front: number, size_bytes, kld
  // llama.cpp's Q2_K, Q3_K_M, Q4_K_M, Q5_K_M and Q6_K measured like the trials: name -> metrics
  // (also the study's user attr "compsearch.baselines").
  nlohmann::json baselines = nlohmann::json::object();

  nlohmann::json to_json() const;
  std::string to_text() const;
};

LlmSearchSummary run_llm_search(const LlmSearchConfig& config,
                                const LlmSearchCallbacks& callbacks = {});

}  // namespace compsearch::experiments
