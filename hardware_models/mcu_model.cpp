// McuModel: layers run one after another on the CPU (CMSIS-NN / X-CUBE-AI style kernels); weights
// live in flash, activations and scratch buffers in SRAM. Peak SRAM is the largest live set of one
// layer (input + output activations + im2col scratch) plus the runtime's own RAM; flash is the
// stored weights plus the runtime's code. Also the host CPU model of NPU fallbacks (class cpu).
#include <algorithm>
#include <cstdio>

#include "hardware_models/hardware_model.h"

namespace compsearch::hardware_models {

void McuModel::estimate(const CompiledModel& c,
                        const std::vector<const compressors::LayerSetting*>& settings,
                        Estimate& out) const {
  begin(c, out);
  double peak_live = 0.0;
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
    const double live = le.activation_bytes + c.layers[i].scratch_elements * (s.a_bits / 8.0);
    peak_live = std::max(peak_live, live);
  }
  const double fixed_ms = profile_.inference_overhead_us.value * 1e-3;
  out.latency_ms += fixed_ms;
  out.energy_mj += profile_.idle_power_w.value * fixed_ms;
  if (!profile_.has_mcu_memory) return;
  out.has_mcu_memory = true;
  out.sram_kb = (peak_live + profile_.runtime_sram_bytes.value) / 1024.0;
  out.flash_kb = (out.weight_bytes + profile_.runtime_flash_bytes.value) / 1024.0;
  char buf[160];
  if (out.sram_kb * 1024.0 > profile_.sram_bytes.value) {
    out.deployable = false;
    std::snprintf(buf, sizeof buf, "peak SRAM %.1f KiB exceeds the %.1f KiB of %s", out.sram_kb,
                  profile_.sram_bytes.value / 1024.0, profile_.name.c_str());
    out.reasons.push_back(buf);
  }
  if (out.flash_kb * 1024.0 > profile_.flash_bytes.value) {
    out.deployable = false;
    std::snprintf(buf, sizeof buf, "flash %.1f KiB exceeds the %.1f KiB of %s", out.flash_kb,
                  profile_.flash_bytes.value / 1024.0, profile_.name.c_str());
    out.reasons.push_back(buf);
  }
}

}  // namespace compsearch::hardware_models
