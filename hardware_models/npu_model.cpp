// NpuModel: supported layers on the NPU, the others on the host CPU model named by the profile.
// Ethos-U style ("per_layer"): each unsupported layer falls back alone, paying a hand-over (fixed
// cost + activations over the link) whenever execution changes side. Edge TPU style
// ("rest_of_graph"): the compiler cuts the graph at the first unsupported layer and everything
// after it runs on the host. Weights beyond the on-chip cache are streamed from the host every
// inference (why ResNet-50 is slow on an Edge TPU). The per-layer loop is HardwareModel::estimate;
// the NPU supplies where each layer runs and its activation SRAM check.
#include <algorithm>

#include "hardware_models/hardware_model.h"

namespace compsearch::hardware_models {

NpuModel::NpuModel(TargetProfile profile) : HardwareModel(std::move(profile)) {
  TargetProfile host = load_profile(profile_.host_profile);
  if (host.target_class == TargetClass::kNpu) {
    throw std::invalid_argument(profile_.file + ": key 'npu.host_profile': '" +
                                profile_.host_profile +
                                "' is an npu; expected a cpu or mcu profile");
  }
  host_ = make_hardware_model(host);
  rest_of_graph_ = profile_.fallback == "rest_of_graph";
  no_datapath_on_ = profile_.name + " nor on its host " + host_->profile().name;
}

NpuModel::~NpuModel() = default;

CompiledModel NpuModel::compile(const Workload& workload, int batch) const {
  CompiledModel c = HardwareModel::compile(workload, batch);
  c.host = std::make_shared<CompiledModel>(host_->compile(workload, batch));
  return c;
}

bool NpuModel::cost_on_target(const CompiledModel& c, int i, const compressors::LayerSetting& s,
                              const compressors::LayerSetting* source_setting, Pass& pass,
                              LayerEstimate& le) const {
  const int dp = executing_datapath(s);
  const bool on_host = pass.cut || dp < 0;
  if (rest_of_graph_ && dp < 0) pass.cut = true;
  if (on_host) {
    const int hdp = host_->executing_datapath(s);
    if (hdp < 0) return false;
    host_->cost_layer(*c.host, i, s, source_setting, hdp, le);
    le.on_host = true;
    ++pass.host_layers;
  } else {
    cost_layer(c, i, s, source_setting, dp, le);
    // Weights past the on-chip cache come over the host link every inference.
    const double cache = profile_.on_chip_weight_bytes.value;
    if (cache > 0.0) {
      const double before = std::max(pass.device_weight_bytes - cache, 0.0);
      pass.device_weight_bytes += le.weight_bytes;
      const double streamed = std::max(pass.device_weight_bytes - cache, 0.0) - before;
      le.memory_ms += streamed / profile_.weight_stream_bytes_per_s.value * 1e3;
    }
  }
  // The input starts on the NPU side (its transfer is part of the per-inference overhead).
  if (i > 0 && on_host != pass.previous_on_host) {
    const double moved = c.layers[i].input_elements * (s.a_bits / 8.0) * c.batch;
    le.overhead_ms +=
        (profile_.transfer_overhead_us.value * 1e-6 + moved / profile_.transfer_bytes_per_s.value) *
        1e3;
  }
  if (on_host)
    host_->finalize_layer(le);
  else
    finalize_layer(le);
  pass.previous_on_host = on_host;
  return true;
}

void NpuModel::finish(const CompiledModel& c, Pass& pass, Estimate& out) const {
  if (pass.host_layers > 0) {
    add_note(out, pass, "%d of %zu layers run on the host (%s): %s", pass.host_layers,
             c.layers.size(), host_->profile().name.c_str(),
             rest_of_graph_ ? "everything from the first layer the NPU cannot run"
                            : "layers the NPU has no datapath for (it runs int8 only)");
  }
  const double sram = profile_.activation_sram_bytes.value;
  if (sram > 0 && pass.peak_activation_bytes > sram) {
    add_reason(out, pass, "NPU activations need %.1f KiB; %s has %.1f KiB of SRAM",
               pass.peak_activation_bytes / 1024.0, profile_.name.c_str(), sram / 1024.0);
  }
}

}  // namespace compsearch::hardware_models
