// NpuModel: supported layers on the NPU, the others on the host CPU model named by the profile.
// Ethos-U style ("per_layer"): each unsupported layer falls back alone, paying a hand-over (fixed
// cost + activations over the link) whenever execution changes side. Edge TPU style
// ("rest_of_graph"): the compiler cuts the graph at the first unsupported layer and everything after
// it runs on the host. Weights beyond the on-chip cache are streamed from the host every inference
// (why ResNet-50 is slow on an Edge TPU).
#include <algorithm>
#include <cstdio>

#include "hardware_models/hardware_model.h"

namespace compsearch::hardware_models {

NpuModel::NpuModel(TargetProfile profile) : HardwareModel(std::move(profile)) {
  TargetProfile host = load_profile(profile_.host_profile);
  if (host.target_class == TargetClass::kNpu) {
    throw std::invalid_argument(profile_.file + ": key 'npu.host_profile': '" + profile_.host_profile +
                                "' is an npu; expected a cpu or mcu profile");
  }
  host_ = make_hardware_model(host);
}

NpuModel::~NpuModel() = default;

CompiledModel NpuModel::compile(const Workload& workload, int batch) const {
  CompiledModel c = HardwareModel::compile(workload, batch);
  c.host = std::make_shared<CompiledModel>(host_->compile(workload, batch));
  return c;
}

void NpuModel::estimate(const CompiledModel& c,
                        const std::vector<const compressors::LayerSetting*>& settings,
                        Estimate& out) const {
  begin(c, out);
  const bool rest_of_graph = profile_.fallback == "rest_of_graph";
  const double cache = profile_.on_chip_weight_bytes.value;
  const double stream_bw = profile_.weight_stream_bytes_per_s.value;
  bool cut = false;        // rest_of_graph: the graph has been cut, the rest is on the host
  bool prev_host = false;  // the input starts on the NPU side (its transfer is per inference)
  double npu_weights = 0.0, peak_act = 0.0;
  int host_layers = 0;
  for (size_t i = 0; i < c.layers.size(); ++i) {
    const auto& s = *settings[i];
    const int src = c.layers[i].channel_source;
    const auto* src_setting = src >= 0 ? settings[src] : nullptr;
    auto& le = out.layers[i];
    const int dp = executing_datapath(s);
    const bool on_host = cut || dp < 0;
    if (rest_of_graph && dp < 0) cut = true;
    if (on_host) {
      const int hdp = host_->executing_datapath(s);
      if (hdp < 0) {
        le = LayerEstimate{};
        le.layer = int(i);
        out.deployable = false;
        out.reasons.push_back("layer '" + c.workload->table.layers[i].name +
                              "': neither the NPU nor its host has a datapath for it");
        continue;
      }
      host_->cost_layer(*c.host, int(i), s, src_setting, hdp, le);
      le.on_host = true;
      ++host_layers;
    } else {
      cost_layer(c, int(i), s, src_setting, dp, le);
      // Weights past the on-chip cache come over the host link every inference.
      if (cache > 0.0) {
        const double before = std::max(npu_weights - cache, 0.0);
        npu_weights += le.weight_bytes;
        const double streamed = std::max(npu_weights - cache, 0.0) - before;
        le.memory_ms += streamed / stream_bw * 1e3;
      }
      peak_act = std::max(peak_act, le.activation_bytes);
    }
    if (i > 0 && on_host != prev_host) {
      const double moved = c.layers[i].input_elements * (s.a_bits / 8.0) * c.batch;
      le.overhead_ms += (profile_.transfer_overhead_us.value * 1e-6 +
                         moved / profile_.transfer_bytes_per_s.value) * 1e3;
    }
    if (on_host) host_->finalize_layer(le);
    else finalize_layer(le);
    prev_host = on_host;
    out.latency_ms += le.latency_ms;
    out.energy_mj += le.energy_mj;
    out.weight_bytes += le.weight_bytes;
  }
  const double fixed_ms = profile_.inference_overhead_us.value * 1e-3;
  out.latency_ms += fixed_ms;
  out.energy_mj += profile_.idle_power_w.value * fixed_ms;
  if (host_layers > 0) {
    out.notes.push_back(std::to_string(host_layers) + " of " + std::to_string(c.layers.size()) +
                        " layers run on the host (" + host_->profile().name + "): " +
                        (rest_of_graph ? "everything from the first layer the NPU cannot run"
                                       : "layers the NPU has no datapath for (it runs int8 only)"));
  }
  if (profile_.activation_sram_bytes.value > 0 && peak_act > profile_.activation_sram_bytes.value) {
    out.deployable = false;
    char buf[160];
    std::snprintf(buf, sizeof buf, "NPU activations need %.1f KiB; %s has %.1f KiB of SRAM",
                  peak_act / 1024.0, profile_.name.c_str(), profile_.activation_sram_bytes.value / 1024.0);
    out.reasons.push_back(buf);
  }
}

}  // namespace compsearch::hardware_models
