// The logic behind `compsearch estimate` and `compsearch hw list|show`: results with a JSON form
// (the keys users and tests rely on) and a printable table. The CLI files only parse flags and
// print.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "compressors/recipe.h"
#include "hardware_models/hardware_model.h"

namespace compsearch::experiments {

struct EstimateRequest {
  std::string model;   // an .onnx file or an architecture-zoo spec "zoo:NAME[,key=value...]"
  std::string recipe;  // compsearch.recipe/1 file; "" = the model as stored (fp32)
  std::string target;  // preset name ("mcu:stm32f746") or profile file
  int batch = 1;
};

// `estimate`. JSON: {"model", "target", "batch", "latency_ms", "energy_mj", "deployable",
// "reasons", "notes", "layers": [{"name", "latency_ms", "energy_mj", "bound", "precision",
// "on_host", "macs", "weight_bytes"}], and "sram_kb", "flash_kb" for MCUs}.
struct EstimateResult {
  std::string model;
  hardware_models::Workload workload;
  hardware_models::Estimate estimate;

  nlohmann::json to_json() const;
  std::string to_text() const;
};

// Loads the model (zoo spec or ONNX file), the recipe (validated against the model) and the target.
hardware_models::Workload load_workload(const std::string& model);
EstimateResult run_estimate(const EstimateRequest& request);
// Same, with an in-memory recipe.
EstimateResult run_estimate(const std::string& model_label,
                            const hardware_models::Workload& workload,
                            const compressors::Recipe& recipe, const std::string& target,
                            int batch);

// `hw list`: the preset targets. JSON: [{"name", "class", "description"}].
nlohmann::json hw_list_json();
std::string hw_list_text();
// `hw show TARGET`: the profile with every number's source (JSON is the profile itself).
nlohmann::json hw_show_json(const std::string& target);
std::string hw_show_text(const std::string& target);

}  // namespace compsearch::experiments
