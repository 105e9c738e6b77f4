// Shared cost core of the hardware models, workload construction and recipe resolution. See
// hardware_model.h for the cost structure.
#include "hardware_models/hardware_model.h"

#include <algorithm>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <stdexcept>

#include "common/check.h"
#include "compressors/size_rule.h"
#include "model/channel_propagation.h"
#include "model/graph.h"

namespace compsearch::hardware_models {

using compressors::GranularityKind;
using compressors::LayerSetting;
using compressors::PruneKind;

const char* bound_name(Bound b) {
  switch (b) {
    case Bound::kCompute:
      return "compute";
    case Bound::kMemory:
      return "memory";
    case Bound::kOverhead:
      return "overhead";
  }
  return "?";
}

Workload workload_from_table(const model::LayerTable& table) {
  Workload w;
  w.table = table;
  w.channel_source.assign(table.layers.size(), -1);
  return w;
}

Workload workload_from_graph(const model::Graph& graph, const model::LayerTable& table) {
  Workload w;
  w.table = table;
  w.channel_source = model::channel_sources(graph, table);
  return w;
}

void resolve_settings(const compressors::Recipe& recipe, const model::LayerTable& table,
                      std::vector<const LayerSetting*>& out) {
  out.resize(table.layers.size());
  size_t matched = 0;
  const bool any = !recipe.layers.empty();
  for (size_t i = 0; i < table.layers.size(); ++i) {
    const LayerSetting* s = &recipe.default_setting;
    if (any) {
      auto it = recipe.layers.find(table.layers[i].name);
      if (it != recipe.layers.end()) {
        s = &it->second;
        ++matched;
      }
    }
    out[i] = s;
  }
  if (matched != recipe.layers.size()) {
    for (const auto& entry : recipe.layers) {
      const std::string& name = entry.first;  // not a binding: the lambda reads it (clang 14)
      const bool known = std::any_of(table.layers.begin(), table.layers.end(),
                                     [&](const model::LayerInfo& l) { return l.name == name; });
      if (!known) {
        throw std::invalid_argument("recipe: layer '" + name + "' is not a layer of the model");
      }
    }
  }
}

std::vector<const LayerSetting*> resolve_settings(const compressors::Recipe& recipe,
                                                  const model::LayerTable& table) {
  std::vector<const LayerSetting*> out;
  resolve_settings(recipe, table, out);
  return out;
}

double channel_keep(const CompiledLayer& layer, const LayerSetting& s) {
  if (s.prune.kind != PruneKind::kChannel || layer.out_channels <= 0) return 1.0;
  const double cut = std::floor(s.prune.ratio * layer.out_channels);
  return (layer.out_channels - cut) / layer.out_channels;
}

double stored_weight_bytes(const CompiledLayer& layer, const LayerSetting& s, double keep_in) {
  const double wb = s.w_bits;
  const double bias_bits_per_channel = 32.0 * layer.has_bias;
  // Fast path (the common case in a search): no pruning of this layer or its producer.
  if (s.prune.kind == PruneKind::kNone && keep_in == 1.0 &&
      (s.w_bits > 8 || s.granularity.kind != GranularityKind::kGroup)) {
    double bits = wb * layer.weight_elements + bias_bits_per_channel * layer.out_channels;
    if (s.w_bits <= 8)
      bits +=
          16.0 * (s.granularity.kind == GranularityKind::kPerChannel ? layer.out_channels : 1.0);
    return bits * 0.125;
  }
  // Kept counts are whole numbers: floor(ratio x channels) channels go, in this layer and its
  // producer, so these products are exact.
  const double keep_out = channel_keep(layer, s);
  const double n = std::round(layer.weight_elements * keep_out * keep_in);
  const double out_ch = std::round(layer.out_channels * keep_out);
  return compressors::stored_bits(s, n, out_ch, static_cast<int64_t>(layer.reduction_length),
                                  layer.has_bias != 0.0)
             .total() *
         0.125;
}

HardwareModel::HardwareModel(TargetProfile profile)
    : profile_(std::move(profile)), no_datapath_on_(profile_.name) {
  if (profile_.datapaths.size() > 8) {
    throw std::invalid_argument(profile_.file + ": key 'datapaths': at most 8 datapaths");
  }
  int_datapath_.fill(-1);
  float_datapath_.fill(-1);
  for (int b = 1; b <= 32; ++b) {
    int best_int = -1, best_float = -1;
    for (int d = 0; d < int(profile_.datapaths.size()); ++d) {
      const auto& dp = profile_.datapaths[d];
      if (dp.bits == 1 || dp.bits < b) continue;
      // fp32/fp16, TF32 and bf16 datapaths take IEEE float values; int*/xnor take integers only.
      const bool floating =
          dp.name.rfind("fp", 0) == 0 || dp.name.rfind("tf", 0) == 0 || dp.name.rfind("bf", 0) == 0;
      if (best_int < 0 || dp.bits < profile_.datapaths[best_int].bits) best_int = d;
      if (floating && (best_float < 0 || dp.bits < profile_.datapaths[best_float].bits))
        best_float = d;
    }
    int_datapath_[b] = best_int;
    float_datapath_[b] = best_float;
  }
  for (int d = 0; d < int(profile_.datapaths.size()); ++d) {
    if (profile_.datapaths[d].bits == 1) xnor_datapath_ = d;
  }
  ms_per_memory_byte_ = 1e3 / profile_.memory_bandwidth_bytes_per_s.value;
  ms_per_cache_byte_ = 1e3 / profile_.cache_bandwidth_bytes_per_s.value;
  cache_bytes_ = profile_.cache_bytes.value;
  layer_overhead_ms_ = profile_.layer_overhead_us.value * 1e-3;
  dram_pj_per_byte_ = profile_.dram_energy_pj_per_byte.value;
}

int HardwareModel::executing_datapath(const LayerSetting& s) const {
  if (s.w_bits == 1 && xnor_datapath_ >= 0) return xnor_datapath_;
  const int wb = s.w_bits == 1 ? 8 : s.w_bits;  // binary without XNOR runs as int8
  const int b = std::clamp(std::max(wb, s.a_bits), 1, 32);
  // 16- and 32-bit values are IEEE floats (DESIGN.md rules 7 and 8): they need a float datapath.
  return b >= 16 ? float_datapath_[b] : int_datapath_[b];
}

CompiledModel HardwareModel::compile(const Workload& workload, int batch) const {
  if (batch < 1)
    throw std::invalid_argument("batch: value " + std::to_string(batch) +
                                " out of range; expected >= 1");
  CompiledModel c;
  c.profile = &profile_;
  c.batch = batch;
  c.workload = &workload;
  c.layers.resize(workload.table.layers.size());
  const double fill_s = profile_.utilisation.fill_time_us.value * 1e-6;
  for (size_t i = 0; i < c.layers.size(); ++i) {
    const auto& info = workload.table.layers[i];
    auto& L = c.layers[i];
    L.op = info.depthwise
               ? CompiledLayer::Op::kDepthwise
               : (info.op == "Conv" ? CompiledLayer::Op::kConv : CompiledLayer::Op::kGemm);
    L.macs = double(info.macs);
    L.weight_elements = double(info.weight_elements);
    L.out_channels = double(std::max<int64_t>(info.out_channels, 1));
    L.reduction_length = double(info.reduction_length);
    L.input_elements = double(info.input_elements);
    L.output_elements = double(info.output_elements);
    L.has_bias = info.bias_name.empty() ? 0.0 : 1.0;
    if (info.op == "Conv") {
      L.nm_axis = info.weight_shape.size() > 1
                      ? info.weight_shape[1]
                      : info.in_channels / std::max<int64_t>(info.groups, 1);
      // CMSIS-NN style im2col: two columns of one output pixel's reduction row.
      if (!info.depthwise && info.kernel_elements > 1)
        L.scratch_elements = 2.0 * double(info.reduction_length);
    } else {
      L.nm_axis = info.reduction_length;
    }
    L.channel_source = i < workload.channel_source.size() ? workload.channel_source[i] : -1;
    const double op_eff = L.op == CompiledLayer::Op::kConv ? profile_.utilisation.conv.value
                          : L.op == CompiledLayer::Op::kDepthwise
                              ? profile_.utilisation.depthwise.value
                              : profile_.utilisation.gemm.value;
    const double work = L.macs * batch;
    for (size_t d = 0; d < profile_.datapaths.size(); ++d) {
      const double peak = profile_.datapaths[d].peak_macs_per_s.value;
      const double eff = op_eff * profile_.datapaths[d].efficiency.value;
      // Small layers cannot fill a wide machine: a layer takes work / (peak × eff) + fill time,
      // i.e. utilisation = eff × work / (work + eff × peak × fill time).
      const double fill_work = eff * peak * fill_s;
      const double util = work > 0 ? eff * work / (work + fill_work) : eff;
      L.ms_per_mac[d] = 1e3 / (peak * util);
    }
    L.nm4_eligible = L.nm_axis % 4 == 0;
    L.per_output_ms = L.output_elements * batch * profile_.utilisation.per_output_ns.value * 1e-6;
  }
  return c;
}

void HardwareModel::finalize_layer(LayerEstimate& le) const {
  const double busy = std::max(le.compute_ms, le.memory_ms);
  le.latency_ms = busy + le.overhead_ms;
  if (le.overhead_ms >= busy)
    le.bound = Bound::kOverhead;
  else
    le.bound = le.compute_ms >= le.memory_ms ? Bound::kCompute : Bound::kMemory;
  le.energy_mj = le.dynamic_energy_mj + profile_.idle_power_w.value * le.latency_ms;  // W·ms = mJ
}

void HardwareModel::cost_layer(const CompiledModel& c, int i, const LayerSetting& s,
                               const LayerSetting* source_setting, int datapath,
                               LayerEstimate& le) const {
  // Hot path of the search: multiplications by precomputed reciprocals, no allocation.
  const CompiledLayer& L = c.layers[i];
  const Datapath& dp = profile_.datapaths[datapath];
  const double keep_out = channel_keep(L, s);
  const double keep_in = (source_setting && L.channel_source >= 0)
                             ? channel_keep(c.layers[L.channel_source], *source_setting)
                             : 1.0;
  const double batch = c.batch;
  double macs = L.macs * keep_out * keep_in * batch;
  double sparse_slowdown = 1.0;
  if (s.prune.kind == PruneKind::kNM && L.nm4_eligible && s.prune.n == 2 && s.prune.m == 4 &&
      dp.sparse_2_4) {
    macs *= 0.5;  // sparse tensor cores skip the pruned half...
    sparse_slowdown =
        2.0 / dp.sparse_2_4_speedup.value;  // ...at the efficiency sparse kernels reach
  }
  const double wbytes = stored_weight_bytes(L, s, keep_in);
  const double act =
      (L.input_elements * keep_in + L.output_elements * keep_out) * (s.a_bits * 0.125) * batch;
  const bool act_cached = act <= cache_bytes_;
  le.layer = i;
  le.precision = dp.name;
  le.on_host = false;
  le.macs = macs;
  le.weight_bytes = wbytes;
  le.activation_bytes = act;
  le.compute_ms = macs * L.ms_per_mac[datapath] * sparse_slowdown + L.per_output_ms * keep_out +
                  L.input_elements * keep_in * batch * dp.per_input_ns.value * 1e-6;
  le.memory_ms =
      wbytes * ms_per_memory_byte_ + act * (act_cached ? ms_per_cache_byte_ : ms_per_memory_byte_);
  le.overhead_ms = layer_overhead_ms_;
  const double dram_bytes = wbytes + (act_cached ? 0.0 : act);
  le.dynamic_energy_mj =
      (macs * dp.energy_pj_per_mac.value + dram_bytes * dram_pj_per_byte_) * 1e-9;  // pJ -> mJ
  finalize_layer(le);
}

namespace {

// printf into `dst`, reusing its storage (no allocation when its capacity suffices).
void format_into(std::string& dst, const char* format, va_list args) {
  va_list again;
  va_copy(again, args);
  const int n = std::vsnprintf(nullptr, 0, format, args);
  dst.resize(n > 0 ? size_t(n) : 0);
  std::vsnprintf(dst.data(), dst.size() + 1, format, again);
  va_end(again);
}

void add_text(std::vector<std::string>& list, size_t& count, const char* format, va_list args) {
  if (count == list.size()) list.emplace_back();
  format_into(list[count], format, args);
  ++count;
}

}  // namespace

void HardwareModel::add_reason(Estimate& out, Pass& pass, const char* format, ...) const {
  out.deployable = false;
  va_list args;
  va_start(args, format);
  add_text(out.reasons, pass.reasons, format, args);
  va_end(args);
}

void HardwareModel::add_note(Estimate& out, Pass& pass, const char* format, ...) const {
  va_list args;
  va_start(args, format);
  add_text(out.notes, pass.notes, format, args);
  va_end(args);
}

bool HardwareModel::cost_on_target(const CompiledModel& c, int i, const LayerSetting& s,
                                   const LayerSetting* source_setting, Pass&,
                                   LayerEstimate& le) const {
  const int dp = executing_datapath(s);
  if (dp < 0) return false;
  cost_layer(c, i, s, source_setting, dp, le);
  return true;
}

void HardwareModel::estimate(const CompiledModel& c,
                             const std::vector<const LayerSetting*>& settings,
                             Estimate& out) const {
  if (out.target != profile_.name) out.target = profile_.name;
  out.batch = c.batch;
  out.latency_ms = 0.0;
  out.energy_mj = 0.0;
  out.deployable = true;
  out.layers.resize(c.layers.size());
  out.has_mcu_memory = false;
  out.sram_kb = 0.0;
  out.flash_kb = 0.0;
  out.weight_bytes = 0.0;
  Pass pass;
  for (size_t i = 0; i < c.layers.size(); ++i) {
    const LayerSetting& s = *settings[i];
    const int src = c.layers[i].channel_source;
    LayerEstimate& le = out.layers[i];
    if (!cost_on_target(c, int(i), s, src >= 0 ? settings[src] : nullptr, pass, le)) {
      le = LayerEstimate{};
      le.layer = int(i);
      add_reason(out, pass, "layer '%s': no datapath on %s for w_bits %d, a_bits %d",
                 c.workload->table.layers[i].name.c_str(), no_datapath_on_.c_str(), s.w_bits,
                 s.a_bits);
      continue;
    }
    out.latency_ms += le.latency_ms;
    out.energy_mj += le.energy_mj;
    out.weight_bytes += le.weight_bytes;
    if (!le.on_host) {
      pass.peak_activation_bytes = std::max(pass.peak_activation_bytes, le.activation_bytes);
      const double live = le.activation_bytes + c.layers[i].scratch_elements * (s.a_bits / 8.0);
      pass.peak_live_bytes = std::max(pass.peak_live_bytes, live);
    }
  }
  const double fixed_ms = profile_.inference_overhead_us.value * 1e-3;
  out.latency_ms += fixed_ms;
  out.energy_mj += profile_.idle_power_w.value * fixed_ms;
  finish(c, pass, out);
  out.reasons.resize(pass.reasons);  // drop the texts a previous estimate left beyond these
  out.notes.resize(pass.notes);
}

Estimate HardwareModel::estimate(const Workload& workload, const compressors::Recipe& recipe,
                                 int batch) const {
  const auto settings = resolve_settings(recipe, workload.table);
  const CompiledModel c = compile(workload, batch);
  Estimate out;
  estimate(c, settings, out);
  return out;
}

std::unique_ptr<HardwareModel> make_hardware_model(const TargetProfile& profile) {
  switch (profile.target_class) {
    case TargetClass::kGpu:
      return std::make_unique<GpuModel>(profile);
    case TargetClass::kNpu:
      return std::make_unique<NpuModel>(profile);
    case TargetClass::kMcu:
    case TargetClass::kCpu:
      return std::make_unique<McuModel>(profile);
  }
  COMPSEARCH_CHECK(false, "make_hardware_model: unknown target class " +
                              std::to_string(static_cast<int>(profile.target_class)));
}

}  // namespace compsearch::hardware_models
