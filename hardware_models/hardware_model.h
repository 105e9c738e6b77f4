// Hardware models: latency, energy and memory of a compressed model on one target (DESIGN.md
// "Hardware models"). One interface, three implementations (GpuModel, NpuModel, McuModel) sharing
// one per-layer cost core:
//
//   layer latency = max(compute, memory) + fixed per-layer overhead
//   compute = effective MACs / (peak MAC rate of the executing datapath × utilisation(op, size))
//   memory  = weight bytes at their stored size / memory bandwidth
//             + activation bytes / (cache bandwidth if they fit the cache, else memory bandwidth)
//
// The executing datapath is the smallest one the target has that is at least max(w_bits, a_bits)
// (16- and 32-bit values are IEEE floats, so they need a floating datapath). Binary layers
// (w_bits 1) use an XNOR datapath when the target has one, else run as int8. Channel pruning cuts
// MACs and bytes everywhere (and in the consumers fed by the pruned channels); N:M 2:4 halves the
// MACs only on datapaths with sparse tensor cores and on eligible layers, else it cuts bytes only;
// unstructured sparsity cuts stored bytes, never compute.
//
// Use: compile() once per (model, batch) to precompute the per-layer, per-target constants, then
// estimate() per recipe; estimate() does not allocate once `out` has been used for that model.
#pragma once

#include <array>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "compressors/recipe.h"
#include "hardware_models/target_profile.h"
#include "model/layer_table.h"

namespace compsearch::model {
struct Graph;
}

namespace compsearch::hardware_models {

// The layers of a model as the hardware models see them: the layer table plus, for each layer, the
// layer whose output channels are its input channels (directly or through ops that keep a zero
// channel zero: model::channel_sources, the rule compressors use too), or -1. Channel pruning of
// that producer shrinks this layer's MACs and weights too (DESIGN.md rule 3).
struct Workload {
  model::LayerTable table;
  std::vector<int> channel_source;
};

// No propagation information: every channel_source is -1.
Workload workload_from_table(const model::LayerTable& table);
// Propagation found by walking the graph backwards from each layer's data input.
Workload workload_from_graph(const model::Graph& graph, const model::LayerTable& table);

enum class Bound { kCompute, kMemory, kOverhead };
const char* bound_name(Bound b);

struct LayerEstimate {
  int layer = 0;            // index into the workload's layer table
  double latency_ms = 0.0;  // for the whole batch
  double energy_mj = 0.0;
  double compute_ms = 0.0;
  double memory_ms = 0.0;
  double overhead_ms = 0.0;  // per-layer overhead plus NPU <-> host transfers
  Bound bound = Bound::kCompute;
  std::string precision;           // executing datapath name ("int8", "fp32", "xnor"); owned,
                                   // so it outlives the hardware model and profile
  bool on_host = false;            // NPU fallback: this layer runs on the host CPU
  double macs = 0.0;               // MACs the datapath executes, whole batch
  double weight_bytes = 0.0;       // stored weight bytes (DESIGN.md rule 9) incl. scales and bias
  double activation_bytes = 0.0;   // input + output activation bytes, whole batch
  double dynamic_energy_mj = 0.0;  // MAC and DRAM energy, without the idle power share
};

struct Estimate {
  std::string target;
  int batch = 1;
  double latency_ms = 0.0;  // whole batch, including the per-inference overhead
  double energy_mj = 0.0;
  bool deployable = true;
  std::vector<std::string> reasons;  // why not deployable (empty when deployable)
  std::vector<std::string> notes;    // how it runs (fallbacks, datapath substitutions)
  std::vector<LayerEstimate> layers;
  bool has_mcu_memory = false;
  double sram_kb = 0.0;   // peak SRAM (activations + scratch + runtime), KiB
  double flash_kb = 0.0;  // weights + runtime, KiB
  double weight_bytes = 0.0;
};

// Per-layer constants for one target and batch, precomputed by compile().
struct CompiledLayer {
  enum class Op { kConv, kDepthwise, kGemm };
  Op op = Op::kConv;
  double macs = 0.0;  // per sample, dense
  double weight_elements = 0.0;
  double out_channels = 1.0;
  double reduction_length = 0.0;
  double input_elements = 0.0;    // per sample
  double output_elements = 0.0;   // per sample
  double scratch_elements = 0.0;  // im2col buffer of MCU kernels
  double has_bias = 0.0;
  int64_t nm_axis = 0;  // input channels per group (Conv) or input features
  int channel_source = -1;
  bool nm4_eligible = false;           // runs of 4 fit the reduction rows (2:4 sparse tensor cores)
  double per_output_ms = 0.0;          // per-output-element time of the whole batch, dense
  std::array<double, 8> ms_per_mac{};  // per datapath: 1e3 / (peak × utilisation)
};

struct CompiledModel {
  const TargetProfile* profile = nullptr;
  int batch = 1;
  const Workload* workload = nullptr;
  std::vector<CompiledLayer> layers;
  std::shared_ptr<const CompiledModel> host;  // NPU fallback host, compiled for the same workload
};

class HardwareModel {
 public:
  explicit HardwareModel(TargetProfile profile);
  virtual ~HardwareModel() = default;
  const TargetProfile& profile() const { return profile_; }

  // Precomputes per-layer constants. The workload must outlive the result. batch >= 1.
  virtual CompiledModel compile(const Workload& workload, int batch) const;

  // Costs `settings` (one per layer of the compiled workload, in order) into `out`: each layer
  // where the target runs it (cost_on_target), a layer nothing can run marks the estimate not
  // deployable with a reason, then the totals (sum of the layers + the per-inference overhead)
  // and the target's own checks (finish). Allocates nothing once `out` has been used for this
  // model and recipe (reason and note texts reuse their storage).
  void estimate(const CompiledModel& compiled,
                const std::vector<const compressors::LayerSetting*>& settings, Estimate& out) const;

  // Convenience: resolve the recipe, compile and estimate.
  Estimate estimate(const Workload& workload, const compressors::Recipe& recipe, int batch) const;

  // Index of the datapath a layer with these settings executes on, or -1 when none can.
  int executing_datapath(const compressors::LayerSetting& s) const;

  // Shared per-layer cost core (see the file comment): fills every field of `le` for layer `i`
  // of `c` run on `datapath`. `source_setting` is the setting of the layer's channel source.
  void cost_layer(const CompiledModel& c, int i, const compressors::LayerSetting& s,
                  const compressors::LayerSetting* source_setting, int datapath,
                  LayerEstimate& le) const;
  // Recomputes latency, bound and energy of `le` from its parts (after a caller changed them).
  void finalize_layer(LayerEstimate& le) const;

 protected:
  // What estimate() carries from layer to layer (on its stack, so estimating allocates nothing).
  struct Pass {
    double peak_activation_bytes = 0.0;  // largest input + output of one layer run on the target
                                         // itself (not on a fallback host)
    double peak_live_bytes = 0.0;        // the same plus the layer's im2col scratch (MCU SRAM)
    // Fallback state of NPUs.
    bool cut = false;               // rest_of_graph: the graph was cut, the rest runs on the host
    bool previous_on_host = false;  // where the previous layer ran
    double device_weight_bytes = 0.0;  // weights of the layers run on the target so far
    int host_layers = 0;
    // Reason and note texts written so far (estimate() trims out.reasons / out.notes to these).
    size_t reasons = 0;
    size_t notes = 0;
  };

  // Costs layer `i` where this target runs it, filling and finalising `le`; returns false when
  // nothing can run it (estimate() then records the layer as having no datapath). The default
  // runs it on executing_datapath(s) with cost_layer.
  virtual bool cost_on_target(const CompiledModel& c, int i, const compressors::LayerSetting& s,
                              const compressors::LayerSetting* source_setting, Pass& pass,
                              LayerEstimate& le) const;
  // After the layers and the per-inference overhead: the target's memory checks and notes.
  virtual void finish(const CompiledModel& c, Pass& pass, Estimate& out) const = 0;

  // Adds a printf-formatted reason (and marks `out` not deployable) or note, reusing the storage
  // of the text the previous estimate left in that slot.
  void add_reason(Estimate& out, Pass& pass, const char* format, ...) const
      __attribute__((format(printf, 4, 5)));
  void add_note(Estimate& out, Pass& pass, const char* format, ...) const
      __attribute__((format(printf, 4, 5)));

  TargetProfile profile_;
  std::string no_datapath_on_;            // "where" in the no-datapath reason: the target's name
  std::array<int, 33> int_datapath_{};    // bits required -> datapath for integer values
  std::array<int, 33> float_datapath_{};  // bits required -> datapath for floating values
  int xnor_datapath_ = -1;
  // Reciprocals and copies of profile constants used in the hot path.
  double ms_per_memory_byte_ = 0.0;
  double ms_per_cache_byte_ = 0.0;
  double cache_bytes_ = 0.0;
  double layer_overhead_ms_ = 0.0;
  double dram_pj_per_byte_ = 0.0;
};

// Every layer on the GPU; not deployable when weights + the largest layer's activations exceed
// the device memory.
class GpuModel : public HardwareModel {
 public:
  using HardwareModel::HardwareModel;

 protected:
  void finish(const CompiledModel& c, Pass& pass, Estimate& out) const override;
};

// Layers one after another on the CPU; peak SRAM and flash checked against the part (class mcu).
class McuModel : public HardwareModel {
 public:
  using HardwareModel::HardwareModel;

 protected:
  void finish(const CompiledModel& c, Pass& pass, Estimate& out) const override;
};

// Ethos-U style (unsupported layers run on the host, with a transfer each time execution changes
// side) or Edge TPU style (everything from the first unsupported layer on runs on the host);
// weights beyond the on-chip cache are streamed from the host every inference.
class NpuModel : public HardwareModel {
 public:
  explicit NpuModel(TargetProfile profile);
  ~NpuModel() override;
  CompiledModel compile(const Workload& workload, int batch) const override;

 protected:
  bool cost_on_target(const CompiledModel& c, int i, const compressors::LayerSetting& s,
                      const compressors::LayerSetting* source_setting, Pass& pass,
                      LayerEstimate& le) const override;
  void finish(const CompiledModel& c, Pass& pass, Estimate& out) const override;

 private:
  std::unique_ptr<HardwareModel> host_;
  bool rest_of_graph_ = false;
};

// The model for a profile's class (gpu -> GpuModel, npu -> NpuModel, mcu/cpu -> McuModel).
std::unique_ptr<HardwareModel> make_hardware_model(const TargetProfile& profile);

// The setting of each layer of `table` (default overlaid by the recipe's layer entry), as
// pointers into `recipe`. Unknown layer names in the recipe throw std::invalid_argument.
std::vector<const compressors::LayerSetting*> resolve_settings(const compressors::Recipe& recipe,
                                                               const model::LayerTable& table);
// Same, into `out` (reusing its storage: no allocation once it has the model's size).
void resolve_settings(const compressors::Recipe& recipe, const model::LayerTable& table,
                      std::vector<const compressors::LayerSetting*>& out);

// Stored bytes of a layer's weights under a setting (DESIGN.md rule 9): weights at their bit width
// (non-zeros for unstructured, kept weights for N:M, kept channels for channel pruning), one fp16
// scale per group (and fp16 alpha for binary), index overhead, fp32 bias. `keep_in` is the fraction
// of input channels left by a pruned producer.
double stored_weight_bytes(const CompiledLayer& layer, const compressors::LayerSetting& s,
                           double keep_in);

// Fraction of output channels a setting keeps: 1 - floor(ratio·O)/O for channel pruning, else 1.
double channel_keep(const CompiledLayer& layer, const compressors::LayerSetting& s);

}  // namespace compsearch::hardware_models
