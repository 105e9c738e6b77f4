// Reading and writing target profiles (compsearch.target/1). See target_profile.h.
#include "hardware_models/target_profile.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <set>
#include <sstream>
#include <stdexcept>

#include "common/json_nesting.h"

#ifndef COMPSEARCH_PROFILES_DIR_DEFAULT
#define COMPSEARCH_PROFILES_DIR_DEFAULT "hardware_models/profiles"
#endif

namespace compsearch::hardware_models {

namespace {

constexpr const char* kFormat = "compsearch.target/1";

[[noreturn]] void fail(const std::string& source, const std::string& key, const std::string& what) {
  throw std::invalid_argument(source + ": key '" + key + "': " + what);
}

std::string dump_short(const nlohmann::json& v) {
  std::string s = v.dump();
  return s.size() > 60 ? s.substr(0, 57) + "..." : s;
}

void check_keys(const nlohmann::json& j, const std::string& source, const std::string& where,
                const std::set<std::string>& allowed) {
  if (!j.is_object()) fail(source, where, "expected an object, got " + dump_short(j));
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (!allowed.count(it.key())) {
      std::string list;
      for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
      fail(source, where.empty() ? it.key() : where + "." + it.key(),
           "unknown key; allowed keys are: " + list);
    }
  }
}

// A sourced number: {"value": X, "source": "..."}; `min` is the smallest value allowed.
Sourced read_sourced(const nlohmann::json& j, const std::string& source, const std::string& key,
                     double min, bool strictly_positive) {
  if (!j.is_object() || !j.contains("value") || !j.contains("source")) {
    fail(source, key,
         "expected {\"value\": number, \"source\": \"where the number comes from\"}, got " +
             dump_short(j));
  }
  check_keys(j, source, key, {"value", "source", "note"});
  if (!j["value"].is_number())
    fail(source, key + ".value", "expected a number, got " + dump_short(j["value"]));
  if (!j["source"].is_string() || j["source"].get<std::string>().empty()) {
    fail(source, key + ".source", "expected a non-empty string naming where the number comes from");
  }
  Sourced s{j["value"].get<double>(), j["source"].get<std::string>()};
  if (!std::isfinite(s.value) || s.value < min || (strictly_positive && s.value <= 0.0)) {
    std::ostringstream os;
    os << "value " << s.value << " out of range; expected " << (strictly_positive ? "> " : ">= ")
       << min;
    fail(source, key + ".value", os.str());
  }
  return s;
}

Sourced opt_sourced(const nlohmann::json& j, const std::string& source, const std::string& key,
                    double min, bool strictly_positive, Sourced fallback) {
  if (!j.contains(key)) return fallback;
  return read_sourced(j[key], source, key, min, strictly_positive);
}

Sourced req_sourced(const nlohmann::json& j, const std::string& source, const std::string& key,
                    double min, bool strictly_positive, const std::string& prefix = "") {
  if (!j.contains(key)) fail(source, prefix + key, "required key is missing");
  return read_sourced(j[key], source, prefix + key, min, strictly_positive);
}

std::string req_string(const nlohmann::json& j, const std::string& source, const std::string& key) {
  if (!j.contains(key)) fail(source, key, "required key is missing");
  if (!j[key].is_string()) fail(source, key, "expected a string, got " + dump_short(j[key]));
  return j[key].get<std::string>();
}

nlohmann::json sourced_json(const Sourced& s) { return {{"value", s.value}, {"source", s.source}}; }

const Sourced kZero{0.0, "not applicable"};

}  // namespace

const char* target_class_name(TargetClass c) {
  switch (c) {
    case TargetClass::kGpu:
      return "gpu";
    case TargetClass::kNpu:
      return "npu";
    case TargetClass::kMcu:
      return "mcu";
    case TargetClass::kCpu:
      return "cpu";
  }
  return "?";
}

const Datapath* TargetProfile::find_datapath(const std::string& n) const {
  for (const auto& d : datapaths) {
    if (d.name == n) return &d;
  }
  return nullptr;
}

TargetProfile profile_from_json(const nlohmann::json& j, const std::string& source) {
  check_keys(j, source, "",
             {"format", "name", "class", "description", "datapaths", "utilisation",
              "memory_bandwidth_bytes_per_s", "cache_bytes", "cache_bandwidth_bytes_per_s",
              "layer_overhead_us", "inference_overhead_us", "idle_power_w",
              "dram_energy_pj_per_byte", "memory_bytes", "mcu", "npu", "llm", "notes"});
  if (req_string(j, source, "format") != kFormat) {
    fail(source, "format",
         "expected \"" + std::string(kFormat) + "\", got " + dump_short(j["format"]));
  }
  TargetProfile p;
  p.file = source;
  p.name = req_string(j, source, "name");
  const std::string cls = req_string(j, source, "class");
  if (cls == "gpu")
    p.target_class = TargetClass::kGpu;
  else if (cls == "npu")
    p.target_class = TargetClass::kNpu;
  else if (cls == "mcu")
    p.target_class = TargetClass::kMcu;
  else if (cls == "cpu")
    p.target_class = TargetClass::kCpu;
  else
    fail(source, "class", "value \"" + cls + "\" not allowed; expected gpu, npu, mcu or cpu");
  if (j.contains("description")) p.description = req_string(j, source, "description");

  if (!j.contains("datapaths") || !j["datapaths"].is_array() || j["datapaths"].empty()) {
    fail(source, "datapaths", "expected a non-empty array of datapaths");
  }
  std::set<int> seen_bits;
  for (size_t i = 0; i < j["datapaths"].size(); ++i) {
    const auto& d = j["datapaths"][i];
    const std::string key = "datapaths[" + std::to_string(i) + "]";
    check_keys(d, source, key,
               {"name", "bits", "peak_macs_per_s", "sparse_2_4", "sparse_2_4_speedup", "efficiency",
                "per_input_ns", "energy_pj_per_mac"});
    Datapath dp;
    if (!d.contains("name") || !d["name"].is_string())
      fail(source, key + ".name", "expected a string");
    dp.name = d["name"].get<std::string>();
    if (!d.contains("bits") || !d["bits"].is_number_integer()) {
      fail(source, key + ".bits", "expected one of 1, 4, 8, 16, 32");
    }
    dp.bits = d["bits"].get<int>();
    if (dp.bits != 1 && dp.bits != 4 && dp.bits != 8 && dp.bits != 16 && dp.bits != 32) {
      fail(source, key + ".bits",
           "value " + std::to_string(dp.bits) + " not allowed; expected 1, 4, 8, 16 or 32");
    }
    if (!seen_bits.insert(dp.bits).second) {
      fail(source, key + ".bits", "two datapaths of " + std::to_string(dp.bits) + " bits");
    }
    dp.peak_macs_per_s = req_sourced(d, source, "peak_macs_per_s", 0.0, true, key + ".");
    dp.energy_pj_per_mac = req_sourced(d, source, "energy_pj_per_mac", 0.0, false, key + ".");
    if (d.contains("sparse_2_4")) {
      if (!d["sparse_2_4"].is_boolean())
        fail(source, key + ".sparse_2_4", "expected true or false");
      dp.sparse_2_4 = d["sparse_2_4"].get<bool>();
    }
    if (d.contains("efficiency")) {
      dp.efficiency = read_sourced(d["efficiency"], source, key + ".efficiency", 0.0, true);
      if (dp.efficiency.value > 1.0)
        fail(source, key + ".efficiency", "expected a value in (0, 1]");
    }
    if (d.contains("per_input_ns"))
      dp.per_input_ns = read_sourced(d["per_input_ns"], source, key + ".per_input_ns", 0.0, false);
    if (d.contains("sparse_2_4_speedup")) {
      dp.sparse_2_4_speedup =
          read_sourced(d["sparse_2_4_speedup"], source, key + ".sparse_2_4_speedup", 1.0, false);
      if (dp.sparse_2_4_speedup.value > 2.0)
        fail(source, key + ".sparse_2_4_speedup", "expected a value in [1, 2]");
    }
    p.datapaths.push_back(dp);
  }
  if (!seen_bits.count(8) && !seen_bits.count(32)) {
    fail(source, "datapaths",
         "needs an 8-bit or a 32-bit datapath (binary and low-bit layers fall back to int8)");
  }

  if (!j.contains("utilisation")) fail(source, "utilisation", "required key is missing");
  const auto& u = j["utilisation"];
  check_keys(u, source, "utilisation",
             {"conv", "depthwise", "gemm", "fill_time_us", "per_output_ns"});
  p.utilisation.conv = req_sourced(u, source, "conv", 0.0, true, "utilisation.");
  p.utilisation.depthwise = req_sourced(u, source, "depthwise", 0.0, true, "utilisation.");
  p.utilisation.gemm = req_sourced(u, source, "gemm", 0.0, true, "utilisation.");
  p.utilisation.fill_time_us = req_sourced(u, source, "fill_time_us", 0.0, false, "utilisation.");
  p.utilisation.per_output_ns = opt_sourced(u, source, "per_output_ns", 0.0, false, kZero);
  for (const Sourced* s : {&p.utilisation.conv, &p.utilisation.depthwise, &p.utilisation.gemm}) {
    if (s->value > 1.0) fail(source, "utilisation", "efficiencies must be in (0, 1]");
  }

  p.memory_bandwidth_bytes_per_s =
      req_sourced(j, source, "memory_bandwidth_bytes_per_s", 0.0, true);
  p.cache_bytes = opt_sourced(j, source, "cache_bytes", 0.0, false, kZero);
  p.cache_bandwidth_bytes_per_s = opt_sourced(j, source, "cache_bandwidth_bytes_per_s", 0.0, true,
                                              p.memory_bandwidth_bytes_per_s);
  p.layer_overhead_us = req_sourced(j, source, "layer_overhead_us", 0.0, false);
  p.inference_overhead_us = req_sourced(j, source, "inference_overhead_us", 0.0, false);
  p.idle_power_w = req_sourced(j, source, "idle_power_w", 0.0, false);
  p.dram_energy_pj_per_byte = req_sourced(j, source, "dram_energy_pj_per_byte", 0.0, false);
  p.memory_bytes = opt_sourced(j, source, "memory_bytes", 0.0, false, kZero);

  if (j.contains("mcu")) {
    const auto& m = j["mcu"];
    check_keys(m, source, "mcu",
               {"sram_bytes", "flash_bytes", "runtime_sram_bytes", "runtime_flash_bytes"});
    p.has_mcu_memory = true;
    p.sram_bytes = req_sourced(m, source, "sram_bytes", 0.0, true, "mcu.");
    p.flash_bytes = req_sourced(m, source, "flash_bytes", 0.0, true, "mcu.");
    p.runtime_sram_bytes = req_sourced(m, source, "runtime_sram_bytes", 0.0, false, "mcu.");
    p.runtime_flash_bytes = req_sourced(m, source, "runtime_flash_bytes", 0.0, false, "mcu.");
  } else if (p.target_class == TargetClass::kMcu) {
    fail(source, "mcu", "an mcu profile needs the \"mcu\" memory section");
  }

  if (j.contains("npu")) {
    const auto& n = j["npu"];
    check_keys(n, source, "npu",
               {"fallback", "host_profile", "transfer_bytes_per_s", "transfer_overhead_us",
                "on_chip_weight_bytes", "weight_stream_bytes_per_s", "activation_sram_bytes"});
    p.has_npu = true;
    p.fallback = req_string(n, source, "fallback");
    if (p.fallback != "per_layer" && p.fallback != "rest_of_graph") {
      fail(source, "npu.fallback",
           "value \"" + p.fallback + "\" not allowed; expected per_layer or rest_of_graph");
    }
    p.host_profile = req_string(n, source, "host_profile");
    p.transfer_bytes_per_s = req_sourced(n, source, "transfer_bytes_per_s", 0.0, true, "npu.");
    p.transfer_overhead_us = req_sourced(n, source, "transfer_overhead_us", 0.0, false, "npu.");
    p.on_chip_weight_bytes = opt_sourced(n, source, "on_chip_weight_bytes", 0.0, false, kZero);
    p.weight_stream_bytes_per_s =
        opt_sourced(n, source, "weight_stream_bytes_per_s", 0.0, true, p.transfer_bytes_per_s);
    p.activation_sram_bytes = opt_sourced(n, source, "activation_sram_bytes", 0.0, false, kZero);
  } else if (p.target_class == TargetClass::kNpu) {
    fail(source, "npu", "an npu profile needs the \"npu\" fallback section");
  }

  if (j.contains("llm")) {
    const auto& l = j["llm"];
    check_keys(l, source, "llm",
               {"decode_bandwidth_efficiency", "layer_overhead_us", "prefill_efficiency",
                "prefill_efficiency_quantized"});
    if (p.target_class != TargetClass::kGpu) {
      fail(source, "llm", "only a gpu profile has an \"llm\" section");
    }
    p.has_llm = true;
    p.llm_decode_bandwidth_efficiency =
        req_sourced(l, source, "decode_bandwidth_efficiency", 0.0, true, "llm.");
    p.llm_layer_overhead_us = req_sourced(l, source, "layer_overhead_us", 0.0, false, "llm.");
    p.llm_prefill_efficiency = req_sourced(l, source, "prefill_efficiency", 0.0, true, "llm.");
    p.llm_prefill_efficiency_quantized =
        req_sourced(l, source, "prefill_efficiency_quantized", 0.0, true, "llm.");
  }
  return p;
}

nlohmann::json profile_to_json(const TargetProfile& p) {
  nlohmann::json j;
  j["format"] = kFormat;
  j["name"] = p.name;
  j["class"] = target_class_name(p.target_class);
  j["description"] = p.description;
  j["datapaths"] = nlohmann::json::array();
  for (const auto& d : p.datapaths) {
    j["datapaths"].push_back({{"name", d.name},
                              {"bits", d.bits},
                              {"peak_macs_per_s", sourced_json(d.peak_macs_per_s)},
                              {"sparse_2_4", d.sparse_2_4},
                              {"sparse_2_4_speedup", sourced_json(d.sparse_2_4_speedup)},
                              {"efficiency", sourced_json(d.efficiency)},
                              {"per_input_ns", sourced_json(d.per_input_ns)},
                              {"energy_pj_per_mac", sourced_json(d.energy_pj_per_mac)}});
  }
  j["utilisation"] = {{"conv", sourced_json(p.utilisation.conv)},
                      {"depthwise", sourced_json(p.utilisation.depthwise)},
                      {"gemm", sourced_json(p.utilisation.gemm)},
                      {"fill_time_us", sourced_json(p.utilisation.fill_time_us)},
                      {"per_output_ns", sourced_json(p.utilisation.per_output_ns)}};
  j["memory_bandwidth_bytes_per_s"] = sourced_json(p.memory_bandwidth_bytes_per_s);
  j["cache_bytes"] = sourced_json(p.cache_bytes);
  j["cache_bandwidth_bytes_per_s"] = sourced_json(p.cache_bandwidth_bytes_per_s);
  j["layer_overhead_us"] = sourced_json(p.layer_overhead_us);
  j["inference_overhead_us"] = sourced_json(p.inference_overhead_us);
  j["idle_power_w"] = sourced_json(p.idle_power_w);
  j["dram_energy_pj_per_byte"] = sourced_json(p.dram_energy_pj_per_byte);
  j["memory_bytes"] = sourced_json(p.memory_bytes);
  if (p.has_mcu_memory) {
    j["mcu"] = {{"sram_bytes", sourced_json(p.sram_bytes)},
                {"flash_bytes", sourced_json(p.flash_bytes)},
                {"runtime_sram_bytes", sourced_json(p.runtime_sram_bytes)},
                {"runtime_flash_bytes", sourced_json(p.runtime_flash_bytes)}};
  }
  if (p.has_npu) {
    j["npu"] = {{"fallback", p.fallback},
                {"host_profile", p.host_profile},
                {"transfer_bytes_per_s", sourced_json(p.transfer_bytes_per_s)},
                {"transfer_overhead_us", sourced_json(p.transfer_overhead_us)},
                {"on_chip_weight_bytes", sourced_json(p.on_chip_weight_bytes)},
                {"weight_stream_bytes_per_s", sourced_json(p.weight_stream_bytes_per_s)},
                {"activation_sram_bytes", sourced_json(p.activation_sram_bytes)}};
  }
  if (p.has_llm) {
    j["llm"] = {{"decode_bandwidth_efficiency", sourced_json(p.llm_decode_bandwidth_efficiency)},
                {"layer_overhead_us", sourced_json(p.llm_layer_overhead_us)},
                {"prefill_efficiency", sourced_json(p.llm_prefill_efficiency)},
                {"prefill_efficiency_quantized", sourced_json(p.llm_prefill_efficiency_quantized)}};
  }
  return j;
}

std::filesystem::path profiles_dir() {
  if (const char* env = std::getenv("COMPSEARCH_PROFILES_DIR"); env && *env) return env;
  return COMPSEARCH_PROFILES_DIR_DEFAULT;
}

namespace {
// "gpu:t4" <-> "gpu_t4.json": the class prefix is separated by the first underscore.
std::filesystem::path preset_path(const std::string& name) {
  std::string file = name;
  const auto colon = file.find(':');
  if (colon == std::string::npos) return {};
  file[colon] = '_';
  return profiles_dir() / (file + ".json");
}
}  // namespace

std::vector<std::string> list_presets() {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(profiles_dir(), ec)) {
    if (e.path().extension() != ".json") continue;
    std::string stem = e.path().stem().string();
    const auto us = stem.find('_');
    if (us == std::string::npos) continue;
    stem[us] = ':';
    names.push_back(stem);
  }
  std::sort(names.begin(), names.end());
  return names;
}

std::filesystem::path host_profile_path() {
  if (const char* env = std::getenv("COMPSEARCH_HOST_PROFILE"); env && *env) return env;
  std::filesystem::path base;
  if (const char* xdg = std::getenv("XDG_DATA_HOME"); xdg && *xdg)
    base = xdg;
  else if (const char* home = std::getenv("HOME"); home && *home)
    base = std::filesystem::path(home) / ".local" / "share";
  else
    base = std::filesystem::temp_directory_path();
  return base / "compsearch" / "cpu_host.json";
}

TargetProfile load_profile(const std::string& name_or_path) {
  if (name_or_path == kHostTarget) {
    const auto path = host_profile_path();
    if (!std::filesystem::is_regular_file(path)) {
      throw std::invalid_argument(
          "target 'cpu:host': no calibrated profile of this machine at " + path.string() +
          "; make one with scripts/calibrate_host.py BUILD_DIR (it measures this machine with "
          "`compsearch measure`, a few minutes) or point COMPSEARCH_HOST_PROFILE at one");
    }
    return load_profile(path.string());
  }
  std::filesystem::path path = preset_path(name_or_path);
  if (path.empty() || !std::filesystem::exists(path)) path = name_or_path;
  if (!std::filesystem::is_regular_file(path)) {
    std::string list;
    for (const auto& n : list_presets()) list += (list.empty() ? "" : ", ") + n;
    throw std::invalid_argument("target '" + name_or_path +
                                "': not a preset and not a profile file; presets are: " + list);
  }
  std::ifstream in(path);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // A value nested 100,000 deep overflowed the stack while its error message was built.
  require_json_nesting_within(text, path.string());
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw std::invalid_argument(path.string() + ": not valid JSON: " + e.what());
  }
  return profile_from_json(j, path.string());
}

}  // namespace compsearch::hardware_models
