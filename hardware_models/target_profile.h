// Target profiles: the constants a hardware model needs for one device (GPU, NPU or MCU), read from
// JSON files (format "compsearch.target/1"). Presets live in hardware_models/profiles/ and a user's
// own file is read the same way. Every number in a profile is an object {"value": X, "source":
// "..."} so that each constant names where it comes from (a datasheet, a paper, or the calibration
// subset of tests/data/published_latency.json).
#pragma once

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace compsearch::hardware_models {

// kCpu: a host processor an NPU falls back to (costed like an MCU, without memory limits).
enum class TargetClass { kGpu, kNpu, kMcu, kCpu };
const char* target_class_name(TargetClass c);

// A number and where it comes from.
struct Sourced {
  double value = 0.0;
  std::string source;
};

// One arithmetic datapath of the target: the width it computes at and its peak rate.
struct Datapath {
  std::string name;         // "fp32", "fp16", "int8", "int4", "int16", "xnor"
  int bits = 32;            // operand width it accepts: 1 (binary XNOR), 4, 8, 16, 32
  Sourced peak_macs_per_s;  // dense multiply-accumulates per second, whole device
  bool sparse_2_4 = false;  // sparse tensor cores: 2:4 layers execute half the MACs
  // Speed-up sparse kernels reach over dense ones on a compute-bound layer (2 = ideal: the halved
  // MACs run at the dense rate).
  Sourced sparse_2_4_speedup{2.0, "ideal sparse tensor cores"};
  // Fraction of the op utilisation this datapath's kernels reach (e.g. TF32 kernels feed 4-byte
  // operands and run below the int8/fp16 kernels' efficiency). 1 = as the utilisation section says.
  Sourced efficiency{1.0, "as the utilisation section"};
  // Time per input element a layer on this datapath spends preparing its operand: a CPU's int8
  // kernels quantize the float activation they read (compsearch's executor, ONNX Runtime's QDQ
  // path) before the integer GEMM. 0 = free (accelerators that keep int8 activations).
  Sourced per_input_ns{0.0, "not modelled"};
  Sourced energy_pj_per_mac;
};

// How well kernels use the datapath: a layer of `work` MACs computes in
// work / (peak × op_efficiency) + fill_time, i.e. small layers cannot fill a wide machine.
struct Utilisation {
  Sourced conv;       // dense and grouped convolutions
  Sourced depthwise;  // depthwise convolutions
  Sourced gemm;       // Gemm / MatMul
  Sourced fill_time_us;
  Sourced per_output_ns;  // time per output element (requantise, bias, store); MCU kernels pay it
};

struct TargetProfile {
  std::string name;  // "gpu:t4"
  TargetClass target_class = TargetClass::kGpu;
  std::string description;
  std::string file;                 // where it was read from
  std::vector<Datapath> datapaths;  // any order; the model picks the smallest wide enough
  Utilisation utilisation;
  Sourced memory_bandwidth_bytes_per_s;  // off-chip (DRAM / flash / MRAM) bandwidth
  Sourced cache_bytes;                   // activations of a layer that fit here skip DRAM
  Sourced cache_bandwidth_bytes_per_s;
  Sourced layer_overhead_us;      // fixed cost per layer (launch / layer setup)
  Sourced inference_overhead_us;  // fixed cost per inference (runtime, I/O)
  Sourced idle_power_w;           // power while waiting on memory or overhead
  Sourced dram_energy_pj_per_byte;
  Sourced memory_bytes;  // device memory (GPU DRAM); 0 = not checked

  // MCU only.
  Sourced sram_bytes;           // on-chip SRAM available to activations and runtime
  Sourced flash_bytes;          // flash available to weights and code
  Sourced runtime_sram_bytes;   // inference runtime's own RAM
  Sourced runtime_flash_bytes;  // inference runtime's own code and tables
  bool has_mcu_memory = false;

  // NPU only: where unsupported layers run and what moving them costs.
  bool has_npu = false;
  std::string fallback;          // "per_layer" (Ethos-U style) or "rest_of_graph" (Edge TPU style)
  std::string host_profile;      // preset name or path of the host CPU profile
  Sourced transfer_bytes_per_s;  // NPU <-> host link
  Sourced transfer_overhead_us;  // fixed cost per hand-over between NPU and host
  Sourced on_chip_weight_bytes;  // weights beyond this are streamed from the host every inference
  Sourced weight_stream_bytes_per_s;
  Sourced activation_sram_bytes;  // NPU-side SRAM for activations; 0 = not checked

  // GPU only, optional ("llm" section): how llama.cpp runs LLMs on it (llm/cost_model.h),
  // calibrated on published llama.cpp measurements (hardware_models/llm_speed_points.json).
  bool has_llm = false;
  Sourced llm_decode_bandwidth_efficiency;  // share of memory bandwidth a decode step reaches
  Sourced llm_layer_overhead_us;   // fixed time per layer of a decode step or prefill graph
  Sourced llm_prefill_efficiency;  // share of the fp16 datapath's peak, F16/BF16/F32 weights
  Sourced llm_prefill_efficiency_quantized;  // the same for quantized weights (llama.cpp's MMQ)

  const Datapath* find_datapath(const std::string& name) const;
};

// Parses a profile. `source` names the file in error messages. Unknown keys, missing required keys,
// numbers without a "source", and out-of-range values throw std::invalid_argument naming the file,
// the key, the value and what is expected.
TargetProfile profile_from_json(const nlohmann::json& j, const std::string& source = "profile");
nlohmann::json profile_to_json(const TargetProfile& profile);

// The folder holding the preset profiles: $COMPSEARCH_PROFILES_DIR if set, else the source tree's
// hardware_models/profiles.
std::filesystem::path profiles_dir();

// Preset names ("gpu:t4", ...) found in profiles_dir(), sorted.
std::vector<std::string> list_presets();

// A preset name ("gpu:t4") or the path of a profile file. Throws std::invalid_argument naming the
// target and listing the presets when neither exists.
TargetProfile load_profile(const std::string& name_or_path);

// "cpu:host": the machine compsearch runs on, as a profile calibrated from measurements of it
// (scripts/calibrate_host.py, from `compsearch measure`), read from host_profile_path():
// $COMPSEARCH_HOST_PROFILE, else ${XDG_DATA_HOME:-~/.local/share}/compsearch/cpu_host.json.
inline constexpr const char* kHostTarget = "cpu:host";
std::filesystem::path host_profile_path();

}  // namespace compsearch::hardware_models
