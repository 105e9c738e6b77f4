// McuModel: layers run one after another on the CPU (CMSIS-NN / X-CUBE-AI style kernels); weights
// live in flash, activations and scratch buffers in SRAM. Peak SRAM is the largest live set of one
// layer (input + output activations + im2col scratch) plus the runtime's own RAM; flash is the
// stored weights plus the runtime's code. Also the host CPU model of NPU fallbacks (class cpu).
// The per-layer loop is HardwareModel::estimate; the MCU adds its memory report and checks.
#include "hardware_models/hardware_model.h"

namespace compsearch::hardware_models {

void McuModel::finish(const CompiledModel&, Pass& pass, Estimate& out) const {
  if (!profile_.has_mcu_memory) return;
  out.has_mcu_memory = true;
  out.sram_kb = (pass.peak_live_bytes + profile_.runtime_sram_bytes.value) / 1024.0;
  out.flash_kb = (out.weight_bytes + profile_.runtime_flash_bytes.value) / 1024.0;
  if (out.sram_kb * 1024.0 > profile_.sram_bytes.value) {
    add_reason(out, pass, "peak SRAM %.1f KiB exceeds the %.1f KiB of %s", out.sram_kb,
               profile_.sram_bytes.value / 1024.0, profile_.name.c_str());
  }
  if (out.flash_kb * 1024.0 > profile_.flash_bytes.value) {
    add_reason(out, pass, "flash %.1f KiB exceeds the %.1f KiB of %s", out.flash_kb,
               profile_.flash_bytes.value / 1024.0, profile_.name.c_str());
  }
}

}  // namespace compsearch::hardware_models
