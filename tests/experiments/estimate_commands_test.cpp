// `compsearch estimate` and `compsearch hw` logic: the JSON keys users rely on, recipe files,
// ONNX models (with channel-pruning propagation found in the graph) and error paths.
#include "experiments/estimate_commands.h"

#include <doctest/doctest.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "model/graph.h"
#include "model/layer_table.h"
#include "tests/experiments/cli_runner.h"

namespace ex = compsearch::experiments;
namespace hm = compsearch::hardware_models;

namespace {

std::string write_temp(const std::string& name, const std::string& text) {
  const auto path = std::filesystem::temp_directory_path() / name;
  std::ofstream(path) << text;
  return path.string();
}

const std::string kFixtures = std::string(COMPSEARCH_TEST_DATA) + "/model/fixtures/";

}  // namespace

TEST_CASE("estimate JSON has the documented keys, with SRAM and flash for MCUs only") {
  const std::string recipe =
      write_temp("hw_est_recipe.json",
                 R"({"format": "compsearch.recipe/1", "default": {"w_bits": 8, "a_bits": 8},
          "layers": {"fc": {"w_bits": 4, "a_bits": 8}}})");
  const auto mcu = ex::run_estimate({"zoo:ds_cnn_kws", recipe, "mcu:stm32l4r5", 1}).to_json();
  for (const char* key : {"target", "batch", "latency_ms", "energy_mj", "deployable", "reasons",
                          "layers", "sram_kb", "flash_kb"}) {
    CHECK_MESSAGE(mcu.contains(key), key);
  }
  CHECK(mcu["target"] == "mcu:stm32l4r5");
  CHECK(mcu["deployable"] == true);
  REQUIRE(mcu["layers"].size() == 10);
  for (const auto& l : mcu["layers"]) {
    for (const char* key : {"name", "latency_ms", "bound", "precision"})
      CHECK_MESSAGE(l.contains(key), key);
    CHECK((l["bound"] == "compute" || l["bound"] == "memory" || l["bound"] == "overhead"));
  }
  CHECK(mcu["layers"][9]["name"] == "fc");
  CHECK(mcu["layers"][9]["precision"] == "int8");  // W4A8 computes as int8 on a Cortex-M4
  double sum = 0;
  for (const auto& l : mcu["layers"]) sum += l["latency_ms"].get<double>();
  CHECK(mcu["latency_ms"].get<double>() > sum);  // plus the per-inference overhead
  const auto gpu = ex::run_estimate({"zoo:ds_cnn_kws", recipe, "gpu:t4", 8}).to_json();
  CHECK(gpu["batch"] == 8);
  CHECK_FALSE(gpu.contains("sram_kb"));
  CHECK(gpu["layers"][9]["precision"] == "int8");  // W4A8 -> int8 (int4 needs 4-bit activations)
  CHECK(
      ex::run_estimate({"zoo:ds_cnn_kws", recipe, "gpu:t4", 1}).to_text().find("deployable: yes") !=
      std::string::npos);
}

TEST_CASE(
    "estimate without a recipe runs the stored fp32 model and says how a target without fp32 runs "
    "it") {
  const auto npu = ex::run_estimate({"zoo:ds_cnn_kws", "", "npu:ethos-u55-128", 1});
  REQUIRE_FALSE(npu.estimate.notes.empty());
  CHECK(npu.estimate.notes[0].find("10 of 10 layers run on the host (cpu:cortex-m55-160)") !=
        std::string::npos);
  CHECK(npu.estimate.layers[0].on_host);
  const auto gpu = ex::run_estimate({"zoo:resnet18", "", "gpu:a100", 1});
  REQUIRE_FALSE(gpu.estimate.notes.empty());
  CHECK(gpu.estimate.notes[0] == "no recipe: the stored fp32 model runs on the tf32 datapath");
}

TEST_CASE("estimate reads ONNX models and propagates channel pruning along the graph") {
  const std::string model = kFixtures + "mini_residual.onnx";
  const auto g = compsearch::model::load_onnx(model);
  const auto table = compsearch::model::build_layer_table(g);
  const auto w = hm::workload_from_graph(g, table);
  // (Layers carry node names here: BatchNorm was folded into the weights at export.)
  // conv1 -> Relu -> conv2: conv2's input channels are conv1's; 'down' reads the graph input and
  // the Gemm follows a residual Add, so neither has a channel source.
  const int conv1 = compsearch::model::find_layer(table, "/conv1/Conv");
  const int conv2 = compsearch::model::find_layer(table, "/conv2/Conv");
  REQUIRE(conv1 >= 0);
  REQUIRE(conv2 >= 0);
  CHECK(w.channel_source[conv2] == conv1);
  for (size_t i = 0; i < table.layers.size(); ++i) {
    if (int(i) != conv2) CHECK(w.channel_source[i] == -1);
  }
  const std::string recipe =
      write_temp("hw_est_channel.json",
                 R"({"format": "compsearch.recipe/1", "default": {"w_bits": 8, "a_bits": 8},
          "layers": {"/conv1/Conv": {"w_bits": 8, "a_bits": 8, "prune": {"kind": "channel", "ratio": 0.5}}}})");
  const auto full = ex::run_estimate({model, "", "gpu:t4", 1}).estimate;
  const auto cut = ex::run_estimate({model, recipe, "gpu:t4", 1}).estimate;
  const double keep =
      1.0 - std::floor(0.5 * table.layers[conv1].out_channels) / table.layers[conv1].out_channels;
  CHECK(cut.layers[conv1].macs == doctest::Approx(full.layers[conv1].macs * keep));
  CHECK(cut.layers[conv2].macs == doctest::Approx(full.layers[conv2].macs * keep));
}

TEST_CASE("estimate prints each layer's precision after the hardware model is gone") {
  // The per-layer precision must outlive the hardware model and profile that run_estimate builds
  // and destroys: with MALLOC_PERTURB_ glibc overwrites freed memory, so a view into it would
  // print the perturbation bytes instead of the datapath name.
  const std::string recipe =
      write_temp("hw_est_perturb.json",
                 R"({"format": "compsearch.recipe/1", "default": {"w_bits": 8, "a_bits": 8},
          "layers": {"fc": {"w_bits": 4, "a_bits": 8}}})");
  ::setenv("MALLOC_PERTURB_", "65", 1);
  const auto json_run = compsearch::testing::run_compsearch(
      "estimate --model zoo:ds_cnn_kws --target gpu:a100 --json --recipe " + recipe);
  const auto text_run =
      compsearch::testing::run_compsearch("estimate --model zoo:ds_cnn_kws --target gpu:a100");
  ::unsetenv("MALLOC_PERTURB_");
  REQUIRE_MESSAGE(json_run.rc == 0, json_run.err);
  const auto j = nlohmann::json::parse(json_run.out);
  REQUIRE(j["layers"].size() == 10);
  for (const auto& l : j["layers"]) {
    CAPTURE(l["name"]);
    CHECK(l["precision"] == "int8");  // W8A8 and W4A8 both compute as int8 on an A100
  }
  REQUIRE_MESSAGE(text_run.rc == 0, text_run.err);
  // No recipe: the stored fp32 model runs on the A100's tf32 datapath, one row per layer. (Before
  // the fix these printed "AAAA", the perturbation bytes, on this target.)
  size_t rows = 0;
  std::istringstream lines(text_run.out);
  for (std::string line; std::getline(lines, line);) {
    std::istringstream fields(line);
    std::string name, precision;
    fields >> name >> precision;
    if (name == "model" || name == "layer" || name == "total:" || name == "deployable:" ||
        name.empty() || line[0] == ' ')
      continue;
    CAPTURE(line);
    CHECK(precision == "tf32");
    ++rows;
  }
  CHECK(rows == 10);
}

TEST_CASE("estimate rejects unknown layers, bad batches and unknown targets with clear messages") {
  const std::string bad =
      write_temp("hw_est_bad.json",
                 R"({"format": "compsearch.recipe/1", "layers": {"conv9": {"w_bits": 8}}})");
  CHECK_THROWS_WITH_AS(ex::run_estimate({"zoo:ds_cnn_kws", bad, "gpu:t4", 1}),
                       doctest::Contains("conv9"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(ex::run_estimate({"zoo:ds_cnn_kws", "", "gpu:t4", 0}),
                       doctest::Contains("--batch: value 0 out of range; expected >= 1"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(ex::run_estimate({"zoo:ds_cnn_kws", "", "tpu:v5", 1}),
                       doctest::Contains("target 'tpu:v5': not a preset and not a profile file"),
                       std::invalid_argument);
}

TEST_CASE("hw list shows every preset and hw show prints each constant with its source") {
  const auto list = ex::hw_list_json();
  int gpus = 0, npus = 0, mcus = 0;
  for (const auto& t : list) {
    gpus += t["class"] == "gpu";
    npus += t["class"] == "npu";
    mcus += t["class"] == "mcu";
  }
  CHECK(gpus == 6);  // t4, a100, h100, orin-nano, rtx4090, agx-orin
  CHECK(npus == 4);
  CHECK(mcus == 4);
  const std::string text = ex::hw_show_text("mcu:stm32f746");
  CHECK(text.find("SRAM bytes") != std::string::npos);
  CHECK(text.find("DS10916") != std::string::npos);
  CHECK(ex::hw_show_json("npu:edgetpu")["npu"]["fallback"] == "rest_of_graph");
}
