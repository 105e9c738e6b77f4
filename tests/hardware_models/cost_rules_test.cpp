// Hardware-model rules (DESIGN.md "Hardware models") on hand-sized layers and a synthetic target,
// so every expected number is computed by hand in the test: executing precision, compute/memory/
// overhead structure, sparsity rules, binary layers, NPU fallbacks, weight streaming, MCU memory
// and deployability, batch size, and no allocation in a warm estimate.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "allocation_counter.h"
#include "hardware_models/hardware_model.h"
#include "test_recipes.h"

namespace hm = compsearch::hardware_models;
namespace cp = compsearch::compressors;
using hm::testing::setting;

namespace {

nlohmann::json sourced(double v) { return {{"value", v}, {"source", "test"}}; }

// A synthetic target: int8 at 1e9 MAC/s, fp32 at 2.5e8, optional int4/xnor/sparse; efficiency 0.5,
// no fill time, 1 GB/s memory, no cache, 10 us per layer, no per-inference overhead.
nlohmann::json target_json(const std::string& cls = "gpu") {
  nlohmann::json j = {{"format", "compsearch.target/1"},
                      {"name", "test:" + cls},
                      {"class", cls},
                      {"datapaths",
                       {{{"name", "int8"},
                         {"bits", 8},
                         {"peak_macs_per_s", sourced(1e9)},
                         {"energy_pj_per_mac", sourced(1.0)}},
                        {{"name", "fp32"},
                         {"bits", 32},
                         {"peak_macs_per_s", sourced(2.5e8)},
                         {"energy_pj_per_mac", sourced(4.0)}}}},
                      {"utilisation",
                       {{"conv", sourced(0.5)},
                        {"depthwise", sourced(0.25)},
                        {"gemm", sourced(0.5)},
                        {"fill_time_us", sourced(0.0)}}},
                      {"memory_bandwidth_bytes_per_s", sourced(1e9)},
                      {"layer_overhead_us", sourced(10.0)},
                      {"inference_overhead_us", sourced(0.0)},
                      {"idle_power_w", sourced(0.0)},
                      {"dram_energy_pj_per_byte", sourced(0.0)}};
  if (cls == "mcu") {
    j["mcu"] = {{"sram_bytes", sourced(4096)},
                {"flash_bytes", sourced(7000)},
                {"runtime_sram_bytes", sourced(1024)},
                {"runtime_flash_bytes", sourced(2048)}};
  }
  return j;
}

hm::TargetProfile profile(const nlohmann::json& j) { return hm::profile_from_json(j, "test.json"); }

compsearch::model::LayerInfo conv(const std::string& name, int64_t in, int64_t out, int64_t k,
                                  int64_t hw, int64_t groups = 1) {
  compsearch::model::LayerInfo L;
  L.name = name;
  L.op = "Conv";
  L.weight_shape = {out, in / groups, k, k};
  L.weight_elements = out * (in / groups) * k * k;
  L.kernel_elements = k * k;
  L.reduction_length = (in / groups) * k * k;
  L.output_positions = hw * hw;
  L.macs = out * hw * hw * L.reduction_length;
  L.input_elements = in * hw * hw;
  L.output_elements = out * hw * hw;
  L.out_channels = out;
  L.in_channels = in;
  L.groups = groups;
  L.depthwise = groups > 1 && groups == in;
  L.params = L.weight_elements;
  return L;
}

// Two convolutions: a (8 -> 16, 3x3, 4x4 map) feeding b (16 -> 16, 1x1), b's channel source a.
hm::Workload two_layers() {
  compsearch::model::LayerTable t;
  t.layers = {conv("a", 8, 16, 3, 4), conv("b", 16, 16, 1, 4)};
  hm::Workload w = hm::workload_from_table(t);
  w.channel_source[1] = 0;
  return w;
}

cp::Recipe recipe(const cp::LayerSetting& all) {
  cp::Recipe r;
  r.default_setting = all;
  return r;
}

}  // namespace

TEST_CASE("Executing precision is the smallest datapath at least max(w_bits, a_bits)") {
  auto j = target_json();
  j["datapaths"].push_back({{"name", "int4"},
                            {"bits", 4},
                            {"peak_macs_per_s", sourced(2e9)},
                            {"energy_pj_per_mac", sourced(0.5)}});
  j["datapaths"].push_back({{"name", "fp16"},
                            {"bits", 16},
                            {"peak_macs_per_s", sourced(5e8)},
                            {"energy_pj_per_mac", sourced(2.0)}});
  const hm::GpuModel m(profile(j));
  auto name = [&](int w, int a) {
    const int d = m.executing_datapath(setting(w, a));
    return d < 0 ? std::string("none") : m.profile().datapaths[d].name;
  };
  CHECK(name(3, 8) == "int8");  // a W3A8 layer computes as int8
  CHECK(name(4, 4) == "int4");
  CHECK(name(2, 4) == "int4");
  CHECK(name(8, 4) == "int8");
  CHECK(name(8, 16) == "fp16");  // 16-bit activations are IEEE half
  CHECK(name(16, 8) == "fp16");
  CHECK(name(8, 32) == "fp32");
  CHECK(name(1, 8) == "int8");  // binary without an XNOR datapath runs as int8
  j["datapaths"].push_back({{"name", "xnor"},
                            {"bits", 1},
                            {"peak_macs_per_s", sourced(1e11)},
                            {"energy_pj_per_mac", sourced(0.1)}});
  const hm::GpuModel x(profile(j));
  CHECK(x.profile().datapaths[x.executing_datapath(setting(1, 8))].name == "xnor");
  CHECK(x.profile().datapaths[x.executing_datapath(setting(2, 8))].name == "int8");
}

TEST_CASE(
    "Layer latency is max(compute, memory) plus the fixed overhead, with hand-computed parts") {
  const hm::GpuModel m(profile(target_json()));
  const auto w = two_layers();
  const auto e = m.estimate(w, recipe(setting(8, 8)), 1);
  REQUIRE(e.layers.size() == 2);
  // Layer a: 16*16*72 = 18432 MACs at 1e9 * 0.5 -> 36.864 us.
  const auto& a = e.layers[0];
  CHECK(a.macs == 18432);
  CHECK(a.compute_ms == doctest::Approx(18432 / 5e8 * 1e3));
  // Weights 1152 x 8 bits + 16 fp16 scales (per_channel) = 9216 + 256 bits = 1184 bytes;
  // activations (128 + 256) x 1 byte = 384 bytes; both over 1 GB/s (no cache).
  CHECK(a.weight_bytes == doctest::Approx(1184));
  CHECK(a.activation_bytes == doctest::Approx(384));
  CHECK(a.memory_ms == doctest::Approx((1184 + 384) / 1e9 * 1e3));
  CHECK(a.overhead_ms == doctest::Approx(0.010));
  CHECK(a.latency_ms == doctest::Approx(std::max(a.compute_ms, a.memory_ms) + 0.010));
  CHECK(a.bound == hm::Bound::kCompute);
  CHECK(a.precision == "int8");
  // Layer b: 16*16*16 = 4096 MACs -> 8.192 us compute; 256*8 + 16*16 = 2304 bits = 288 B weights
  // + 512 B activations -> 0.8 us memory; the 10 us overhead bounds it.
  CHECK(e.layers[1].compute_ms == doctest::Approx(4096 / 5e8 * 1e3));
  CHECK(e.layers[1].bound == hm::Bound::kOverhead);
  CHECK(e.latency_ms == doctest::Approx(e.layers[0].latency_ms + e.layers[1].latency_ms));
  // Energy: MACs x pJ/MAC (no idle power, no DRAM energy in this target).
  CHECK(e.energy_mj == doctest::Approx((18432 + 4096) * 1.0 * 1e-9));
}

TEST_CASE("Small layers pay the fill time on top of work at the op's efficiency") {
  auto j = target_json();
  j["utilisation"]["fill_time_us"] = sourced(5.0);
  const hm::GpuModel m(profile(j));
  const auto e = m.estimate(two_layers(), recipe(setting(8, 8)), 1);
  CHECK(e.layers[0].compute_ms == doctest::Approx(18432 / 5e8 * 1e3 + 0.005));
  // Depthwise layers use the depthwise efficiency.
  compsearch::model::LayerTable t;
  t.layers = {conv("dw", 16, 16, 3, 4, 16)};
  const auto d = hm::GpuModel(profile(target_json()))
                     .estimate(hm::workload_from_table(t), recipe(setting(8, 8)), 1);
  CHECK(d.layers[0].compute_ms == doctest::Approx(16 * 16 * 9 / (1e9 * 0.25) * 1e3));
}

TEST_CASE("A datapath's per-input cost is paid per input element, on that datapath only") {
  auto j = target_json();
  j["datapaths"][0]["per_input_ns"] = sourced(2.0);  // int8: quantizing the float input
  const hm::GpuModel m(profile(j));
  // Layer a: 8 x 4 x 4 = 128 input elements, 18,432 MACs at 1e9 x 0.5; batch 3.
  const auto e = m.estimate(two_layers(), recipe(setting(8, 8)), 3);
  CHECK(e.layers[0].compute_ms == doctest::Approx(3 * 18432 / 5e8 * 1e3 + 3 * 128 * 2.0 * 1e-6));
  // The fp32 datapath has none.
  const auto f = m.estimate(two_layers(), recipe(setting(32, 32)), 3);
  CHECK(f.layers[0].compute_ms == doctest::Approx(3 * 18432 / 1.25e8 * 1e3));
  // Written back by profile_to_json.
  CHECK(hm::profile_to_json(profile(j))["datapaths"][0]["per_input_ns"]["value"] == 2.0);
}

TEST_CASE("Channel pruning cuts MACs and bytes of the layer and of the consumer it feeds") {
  const hm::GpuModel m(profile(target_json()));
  cp::Recipe r = recipe(setting(8, 8));
  auto pruned = setting(8, 8);
  pruned.prune.kind = cp::PruneKind::kChannel;
  pruned.prune.ratio = 0.3;  // floor(0.3 * 16) = 4 of 16 channels cut -> keep 12/16
  r.layers["a"] = pruned;
  const auto e = m.estimate(two_layers(), r, 1);
  CHECK(e.layers[0].macs == doctest::Approx(18432 * 12.0 / 16));
  CHECK(e.layers[1].macs ==
        doctest::Approx(4096 * 12.0 / 16));  // consumer: 12 of 16 input channels
  // Layer a keeps 12 output channels: 12*72 weights at 8 bits + 12 scales.
  CHECK(e.layers[0].weight_bytes == doctest::Approx((12 * 72 * 8 + 12 * 16) / 8.0));
  // Without a channel source, the consumer is untouched.
  auto w = two_layers();
  w.channel_source[1] = -1;
  CHECK(m.estimate(w, r, 1).layers[1].macs == 4096);
}

TEST_CASE(
    "2:4 halves compute only on sparse datapaths and eligible layers; unstructured cuts bytes "
    "only") {
  auto nm = setting(8, 8);
  nm.prune.kind = cp::PruneKind::kNM;
  nm.prune.n = 2;
  nm.prune.m = 4;
  nm.prune.ratio = 0.5;
  const auto w = two_layers();
  auto j = target_json();
  const hm::GpuModel dense(profile(j));
  j["datapaths"][0]["sparse_2_4"] = true;
  const hm::GpuModel sparse(profile(j));
  const auto es = sparse.estimate(w, recipe(nm), 1);
  const auto ed = dense.estimate(w, recipe(nm), 1);
  CHECK(es.layers[0].macs == 18432 / 2);
  CHECK(es.layers[0].compute_ms == doctest::Approx(18432 / 2 / 5e8 * 1e3));
  CHECK(ed.layers[0].macs == 18432);  // no sparse tensor cores: full compute...
  // ...but the bytes shrink: half the weights at 8 bits + 2 metadata bits each + 16 scales.
  CHECK(ed.layers[0].weight_bytes == doctest::Approx((576 * 8 + 576 * 2 + 16 * 16) / 8.0));
  // Sparse kernels that reach only a 1.25x speed-up.
  j["datapaths"][0]["sparse_2_4_speedup"] = sourced(1.25);
  const auto e125 = hm::GpuModel(profile(j)).estimate(w, recipe(nm), 1);
  CHECK(e125.layers[0].compute_ms == doctest::Approx(18432 / 1.25 / 5e8 * 1e3));
  // Ineligible layer (3 input channels per group is not a multiple of 4): no speed-up.
  compsearch::model::LayerTable t;
  t.layers = {conv("rgb", 3, 16, 3, 4)};
  CHECK(sparse.estimate(hm::workload_from_table(t), recipe(nm), 1).layers[0].macs == 16 * 16 * 27);
  // Unstructured 50%: same MACs; 576 non-zeros at 8 bits + min(bitmap 1152, 16 x 576) + scales.
  auto un = setting(8, 8);
  un.prune.kind = cp::PruneKind::kUnstructured;
  un.prune.ratio = 0.5;
  const auto eu = sparse.estimate(w, recipe(un), 1);
  CHECK(eu.layers[0].macs == 18432);
  CHECK(eu.layers[0].weight_bytes == doctest::Approx((576 * 8 + 1152 + 16 * 16) / 8.0));
}

TEST_CASE("Weight-only low-bit layers save bytes, not MACs") {
  const hm::GpuModel m(profile(target_json()));
  const auto w = two_layers();
  const auto e8 = m.estimate(w, recipe(setting(8, 8)), 1);
  const auto e3 = m.estimate(w, recipe(setting(3, 8)), 1);
  CHECK(e3.layers[0].compute_ms == e8.layers[0].compute_ms);
  CHECK(e3.layers[0].weight_bytes == doctest::Approx((1152 * 3 + 16 * 16) / 8.0));
  auto g = setting(4, 8);
  g.granularity = {cp::GranularityKind::kGroup, 32};  // 72-long rows -> 3 groups per channel
  CHECK(m.estimate(w, recipe(g), 1).layers[0].weight_bytes ==
        doctest::Approx((1152 * 4 + 48 * 16) / 8.0));
}

TEST_CASE("Batch multiplies compute and activations but reads the weights once") {
  const hm::GpuModel m(profile(target_json()));
  const auto w = two_layers();
  const auto e1 = m.estimate(w, recipe(setting(8, 8)), 1);
  const auto e4 = m.estimate(w, recipe(setting(8, 8)), 4);
  CHECK(e4.batch == 4);
  CHECK(e4.layers[0].compute_ms == doctest::Approx(4 * e1.layers[0].compute_ms));
  CHECK(e4.layers[0].memory_ms == doctest::Approx((1184 + 4 * 384) / 1e9 * 1e3));
  CHECK_THROWS_WITH_AS(m.compile(w, 0), doctest::Contains("batch: value 0 out of range"),
                       std::invalid_argument);
}

TEST_CASE(
    "NPU layers without a datapath fall back to the host, per layer or for the rest of the graph") {
  const std::string dir = std::string(COMPSEARCH_SOURCE_DIR) + "/hardware_models/profiles/";
  auto j = target_json("npu");
  j["datapaths"].erase(1);  // int8 only
  j["npu"] = {{"fallback", "per_layer"},
              {"host_profile", "cpu:cortex-m55-400"},
              {"transfer_bytes_per_s", sourced(1e8)},
              {"transfer_overhead_us", sourced(100.0)}};
  compsearch::model::LayerTable t;
  t.layers = {conv("a", 8, 16, 3, 4), conv("b", 16, 16, 1, 4), conv("c", 16, 16, 1, 4)};
  const auto w = hm::workload_from_table(t);
  cp::Recipe r = recipe(setting(8, 8));
  r.layers["b"] = setting(32, 32);
  const hm::NpuModel per_layer(profile(j));
  const auto e = per_layer.estimate(w, r, 1);
  CHECK_FALSE(e.layers[0].on_host);
  CHECK(e.layers[1].on_host);
  CHECK(e.layers[1].precision == "fp32");
  CHECK_FALSE(e.layers[2].on_host);
  // Hand-over into b: 100 us + 128... b's input is 16x4x4 fp32 = 1024 bytes at 1e8 B/s = 10.24 us,
  // on top of the host's 20 us layer overhead. Back to the NPU for c: 16x4x4 int8 = 256 B.
  const double host_overhead_ms =
      hm::load_profile("cpu:cortex-m55-400").layer_overhead_us.value * 1e-3;
  CHECK(e.layers[1].overhead_ms == doctest::Approx(host_overhead_ms + 0.100 + 1024 / 1e8 * 1e3));
  CHECK(e.layers[2].overhead_ms == doctest::Approx(0.010 + 0.100 + 256 / 1e8 * 1e3));
  CHECK(e.deployable);
  REQUIRE(e.notes.size() == 1);
  CHECK(e.notes[0].find("1 of 3 layers run on the host") != std::string::npos);
  j["npu"]["fallback"] = "rest_of_graph";
  const auto er = hm::NpuModel(profile(j)).estimate(w, r, 1);
  CHECK_FALSE(er.layers[0].on_host);
  CHECK(er.layers[1].on_host);
  CHECK(er.layers[2].on_host);  // Edge TPU style: everything after the first unsupported layer
  CHECK(er.layers[2].precision == "int8");
}

TEST_CASE("NPU weights beyond the on-chip cache are streamed from the host each inference") {
  auto j = target_json("npu");
  j["datapaths"].erase(1);
  j["npu"] = {{"fallback", "rest_of_graph"},           {"host_profile", "cpu:desktop-x86"},
              {"transfer_bytes_per_s", sourced(1e8)},  {"transfer_overhead_us", sourced(0.0)},
              {"on_chip_weight_bytes", sourced(1000)}, {"weight_stream_bytes_per_s", sourced(1e6)}};
  const auto e = hm::NpuModel(profile(j)).estimate(two_layers(), recipe(setting(8, 8)), 1);
  // Layer a holds 1184 bytes: 184 past the 1000-byte cache at 1 MB/s = 0.184 ms more memory time;
  // all 288 bytes of layer b stream (0.288 ms).
  CHECK(e.layers[0].memory_ms == doctest::Approx((1184 + 384) / 1e9 * 1e3 + 0.184));
  CHECK(e.layers[1].memory_ms == doctest::Approx((288 + 512) / 1e9 * 1e3 + 0.288));
  CHECK(e.layers[1].bound == hm::Bound::kMemory);
}

TEST_CASE("MCU peak SRAM and flash decide deployability, with the reasons") {
  const hm::McuModel m(profile(target_json("mcu")));
  const auto e = m.estimate(two_layers(), recipe(setting(8, 8)), 1);
  // Peak live set: layer a (128 + 256 activations + 2 x 72 im2col) vs b (256 + 256) -> 528 B,
  // plus 1024 B runtime; flash 1184 + 288 + 2048 runtime.
  CHECK(e.sram_kb == doctest::Approx((528 + 1024) / 1024.0));
  CHECK(e.flash_kb == doctest::Approx((1184 + 288 + 2048) / 1024.0));
  CHECK(e.deployable);
  const auto f = m.estimate(two_layers(), recipe(setting(32, 32)), 1);  // fp32: 4x the bytes
  CHECK_FALSE(f.deployable);
  REQUIRE(f.reasons.size() == 1);
  CHECK(f.reasons[0].find("flash") != std::string::npos);
  CHECK(f.reasons[0].find("exceeds the 6.8 KiB of test:mcu") != std::string::npos);
}

TEST_CASE("A warm recipe resolution and estimate do not allocate") {
  const auto model = hm::make_hardware_model(hm::load_profile("gpu:t4"));
  const auto w = two_layers();
  const auto c = model->compile(w, 1);
  const cp::Recipe r = recipe(setting(8, 8));
  std::vector<const cp::LayerSetting*> settings;
  hm::resolve_settings(r, w.table, settings);
  hm::Estimate out;
  model->estimate(c, settings, out);
  const long before = hm::testing::allocations_so_far();
  for (int i = 0; i < 10; ++i) {
    hm::resolve_settings(r, w.table, settings);
    model->estimate(c, settings, out);
  }
  CHECK(hm::testing::allocations_so_far() == before);
  CHECK(out.layers.size() == 2);
  CHECK(out.latency_ms > 0);
}
