// GpuModel: every layer on the GPU; the batch shares one weight read per layer, so large batches
// amortise weights and per-layer launch overheads (DESIGN.md "Hardware models"). The per-layer
// loop is HardwareModel::estimate; the GPU adds its memory check.
#include "hardware_models/hardware_model.h"

namespace compsearch::hardware_models {

void GpuModel::finish(const CompiledModel&, Pass& pass, Estimate& out) const {
  const double need = out.weight_bytes + pass.peak_activation_bytes;
  if (profile_.memory_bytes.value > 0 && need > profile_.memory_bytes.value) {
    add_reason(out, pass, "weights + activations need %.1f MiB; %s has %.1f MiB", need / 1048576.0,
               profile_.name.c_str(), profile_.memory_bytes.value / 1048576.0);
  }
}

}  // namespace compsearch::hardware_models
