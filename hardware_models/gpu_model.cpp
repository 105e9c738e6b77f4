// GpuModel: every layer on the GPU; the batch shares one weight read per layer, so large batches
// amortise weights and per-layer launch overheads (DESIGN.md "Hardware models").
#include <cstdio>

#include "hardware_models/hardware_model.h"

namespace compsearch::hardware_models {

void GpuModel::estimate(const CompiledModel& c,
                        const std::vector<const compressors::LayerSetting*>& settings,
                        Estimate& out) const {
  begin(c, out);
  double peak_act = 0.0;
  for (size_t i = 0; i < c.layers.size(); ++i) {
    const auto& s = *settings[i];
    const int src = c.layers[i].channel_source;
    const int dp = executing_datapath(s);
    auto& le = out.layers[i];
    if (dp < 0) {
      le = LayerEstimate{};
      le.layer = int(i);
      out.deployable = false;
      out.reasons.push_back("layer '" + c.workload->table.layers[i].name + "': no datapath on " +
                            profile_.name + " for w_bits " + std::to_string(s.w_bits) + ", a_bits " +
                            std::to_string(s.a_bits));
      continue;
    }
    cost_layer(c, int(i), s, src >= 0 ? settings[src] : nullptr, dp, le);
    out.latency_ms += le.latency_ms;
    out.energy_mj += le.energy_mj;
    out.weight_bytes += le.weight_bytes;
    peak_act = std::max(peak_act, le.activation_bytes);
  }
  const double fixed_ms = profile_.inference_overhead_us.value * 1e-3;
  out.latency_ms += fixed_ms;
  out.energy_mj += profile_.idle_power_w.value * fixed_ms;
  const double need = out.weight_bytes + peak_act;
  if (profile_.memory_bytes.value > 0 && need > profile_.memory_bytes.value) {
    out.deployable = false;
    char buf[160];
    std::snprintf(buf, sizeof buf, "weights + activations need %.1f MiB; %s has %.1f MiB",
                  need / 1048576.0, profile_.name.c_str(), profile_.memory_bytes.value / 1048576.0);
    out.reasons.push_back(buf);
  }
}

}  // namespace compsearch::hardware_models
