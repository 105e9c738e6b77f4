// `estimate` and `hw` command logic. See estimate_commands.h.
#include "experiments/estimate_commands.h"

#include <cstdio>
#include <sstream>
#include <stdexcept>

#include "experiments/usage_error.h"
#include "hardware_models/arch_zoo.h"
#include "model/graph.h"
#include "model/layer_table.h"

namespace compsearch::experiments {

namespace hm = hardware_models;

hm::Workload load_workload(const std::string& model) {
  if (model.rfind("zoo:", 0) == 0) return hm::build_zoo_model_from_spec(model);
  const model::Graph graph = model::load_onnx(model);
  return hm::workload_from_graph(graph, model::build_layer_table(graph));
}

EstimateResult run_estimate(const std::string& model_label, const hm::Workload& workload,
                            const compressors::Recipe& recipe, const std::string& target,
                            int batch) {
  if (batch < 1)
    throw UsageError("--batch: value " + std::to_string(batch) + " out of range; expected >= 1");
  const auto profile = hm::load_profile(target);
  const auto model = hm::make_hardware_model(profile);
  EstimateResult r;
  r.model = model_label;
  r.workload = workload;
  r.estimate = model->estimate(r.workload, recipe, batch);
  // A stored (fp32) model on a target without floats: say how it runs.
  if (recipe.layers.empty() && recipe.default_setting.w_bits == 32 &&
      model->executing_datapath(recipe.default_setting) >= 0) {
    const auto& dp = profile.datapaths[model->executing_datapath(recipe.default_setting)];
    if (dp.name != "fp32") {
      r.estimate.notes.push_back("no recipe: the stored fp32 model runs on the " + dp.name +
                                 " datapath");
    }
  }
  return r;
}

EstimateResult run_estimate(const EstimateRequest& req) {
  hm::Workload w = load_workload(req.model);
  compressors::Recipe recipe;
  if (!req.recipe.empty()) {
    recipe = compressors::load_recipe(req.recipe);
    compressors::validate_recipe(recipe, w.table);
  }
  return run_estimate(req.model, w, recipe, req.target, req.batch);
}

nlohmann::json EstimateResult::to_json() const {
  const auto& e = estimate;
  nlohmann::json j;
  j["model"] = model;
  j["target"] = e.target;
  j["batch"] = e.batch;
  j["latency_ms"] = e.latency_ms;
  j["energy_mj"] = e.energy_mj;
  j["deployable"] = e.deployable;
  j["reasons"] = e.reasons;
  j["notes"] = e.notes;
  if (e.has_mcu_memory) {
    j["sram_kb"] = e.sram_kb;
    j["flash_kb"] = e.flash_kb;
  }
  j["layers"] = nlohmann::json::array();
  for (const auto& le : e.layers) {
    j["layers"].push_back({{"name", workload.table.layers[le.layer].name},
                           {"latency_ms", le.latency_ms},
                           {"energy_mj", le.energy_mj},
                           {"bound", hm::bound_name(le.bound)},
                           {"precision", std::string(le.precision)},
                           {"on_host", le.on_host},
                           {"macs", le.macs},
                           {"weight_bytes", le.weight_bytes}});
  }
  return j;
}

std::string EstimateResult::to_text() const {
  const auto& e = estimate;
  std::ostringstream os;
  char buf[256];
  os << "model " << model << " on " << e.target << ", batch " << e.batch << "\n";
  std::snprintf(buf, sizeof buf, "%-32s %-9s %-9s %11s %11s %11s %12s\n", "layer", "precision",
                "bound", "latency_ms", "energy_mj", "MMACs", "weight_KiB");
  os << buf;
  for (const auto& le : e.layers) {
    std::string prec(le.precision);
    if (le.on_host) prec += "@host";
    std::snprintf(buf, sizeof buf, "%-32s %-9s %-9s %11.4f %11.4f %11.3f %12.2f\n",
                  workload.table.layers[le.layer].name.c_str(), prec.c_str(),
                  hm::bound_name(le.bound), le.latency_ms, le.energy_mj, le.macs / 1e6,
                  le.weight_bytes / 1024.0);
    os << buf;
  }
  std::snprintf(buf, sizeof buf, "total: latency %.4f ms, energy %.4f mJ", e.latency_ms,
                e.energy_mj);
  os << buf;
  if (e.has_mcu_memory) {
    std::snprintf(buf, sizeof buf, ", peak SRAM %.1f KiB, flash %.1f KiB", e.sram_kb, e.flash_kb);
    os << buf;
  }
  os << "\ndeployable: " << (e.deployable ? "yes" : "no") << "\n";
  for (const auto& r : e.reasons) os << "  reason: " << r << "\n";
  for (const auto& n : e.notes) os << "  note: " << n << "\n";
  return os.str();
}

nlohmann::json hw_list_json() {
  nlohmann::json j = nlohmann::json::array();
  for (const auto& name : hm::list_presets()) {
    const auto p = hm::load_profile(name);
    j.push_back({{"name", p.name},
                 {"class", hm::target_class_name(p.target_class)},
                 {"description", p.description}});
  }
  return j;
}

std::string hw_list_text() {
  std::ostringstream os;
  for (const auto& t : hw_list_json()) {
    char buf[256];
    std::snprintf(buf, sizeof buf, "%-22s %-4s %s\n", t["name"].get<std::string>().c_str(),
                  t["class"].get<std::string>().c_str(),
                  t["description"].get<std::string>().c_str());
    os << buf;
  }
  return os.str();
}

nlohmann::json hw_show_json(const std::string& target) {
  return hm::profile_to_json(hm::load_profile(target));
}

std::string hw_show_text(const std::string& target) {
  const auto p = hm::load_profile(target);
  std::ostringstream os;
  os << p.name << " (" << hm::target_class_name(p.target_class) << "): " << p.description
     << "\nfile: " << p.file << "\n";
  auto line = [&](const std::string& key, const hm::Sourced& s) {
    char buf[128];
    std::snprintf(buf, sizeof buf, "  %-34s %-12.4g ", key.c_str(), s.value);
    os << buf << s.source << "\n";
  };
  for (const auto& d : p.datapaths) {
    line("datapath " + d.name + " (" + std::to_string(d.bits) + "b) MAC/s" +
             (d.sparse_2_4 ? " [2:4]" : ""),
         d.peak_macs_per_s);
    line("datapath " + d.name + " pJ/MAC", d.energy_pj_per_mac);
  }
  line("utilisation conv", p.utilisation.conv);
  line("utilisation depthwise", p.utilisation.depthwise);
  line("utilisation gemm", p.utilisation.gemm);
  line("fill time us", p.utilisation.fill_time_us);
  line("per output element ns", p.utilisation.per_output_ns);
  line("memory bandwidth B/s", p.memory_bandwidth_bytes_per_s);
  line("cache bytes", p.cache_bytes);
  line("cache bandwidth B/s", p.cache_bandwidth_bytes_per_s);
  line("layer overhead us", p.layer_overhead_us);
  line("inference overhead us", p.inference_overhead_us);
  line("idle power W", p.idle_power_w);
  line("DRAM pJ/byte", p.dram_energy_pj_per_byte);
  if (p.memory_bytes.value > 0) line("device memory bytes", p.memory_bytes);
  if (p.has_mcu_memory) {
    line("SRAM bytes", p.sram_bytes);
    line("flash bytes", p.flash_bytes);
    line("runtime SRAM bytes", p.runtime_sram_bytes);
    line("runtime flash bytes", p.runtime_flash_bytes);
  }
  if (p.has_npu) {
    os << "  fallback: " << p.fallback << " to host " << p.host_profile << "\n";
    line("host link B/s", p.transfer_bytes_per_s);
    line("hand-over us", p.transfer_overhead_us);
    if (p.on_chip_weight_bytes.value > 0) {
      line("on-chip weight cache bytes", p.on_chip_weight_bytes);
      line("weight streaming B/s", p.weight_stream_bytes_per_s);
    }
    if (p.activation_sram_bytes.value > 0) line("activation SRAM bytes", p.activation_sram_bytes);
  }
  return os.str();
}

}  // namespace compsearch::experiments
