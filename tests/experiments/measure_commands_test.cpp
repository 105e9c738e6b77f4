// `compsearch measure` (experiments/measure_commands.h) and the cpu:host target: latency measured
// with the executor, per layer, beside a hardware model's estimate of the same layers.
#include "experiments/measure_commands.h"

#include <doctest/doctest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "experiments/estimate_commands.h"
#include "experiments/usage_error.h"
#include "hardware_models/target_profile.h"
#include "model/executor.h"
#include "model/graph.h"
#include "model/layer_table.h"
#include "tests/test_skip.h"

using namespace compsearch;
namespace fs = std::filesystem;

namespace {

fs::path source_dir() { return COMPSEARCH_SOURCE_DIR; }

experiments::MeasureRequest cnn_request() {
  experiments::MeasureRequest r;
  r.model = (source_dir() / "models" / "fmnist_cnn.onnx").string();
  r.batch = 2;
  r.repeats = 3;
  r.warmup = 1;
  return r;
}

fs::path w8a8_recipe() {
  const fs::path p =
      fs::temp_directory_path() / ("measure_w8a8_" + std::to_string(getpid()) + ".json");
  std::ofstream(p) << R"({"format": "compsearch.recipe/1", "default": {"w_bits": 8, "a_bits": 8}})";
  return p;
}

}  // namespace

TEST_CASE(
    "measure times every layer of the CNN and the estimate beside it is the estimate command's") {
  auto req = cnn_request();
  req.compare_target = "cpu:desktop-x86";
  const auto r = experiments::run_measure(req);
  REQUIRE(r.layers.size() == 4);
  const char* names[] = {"conv1", "conv2", "fc1", "fc2"};
  double layers_ms = 0;
  for (size_t i = 0; i < 4; ++i) {
    CHECK(r.layers[i].name == names[i]);
    CHECK(r.layers[i].median_ms > 0);
    CHECK_FALSE(r.layers[i].int8);
    layers_ms += r.layers[i].median_ms;
  }
  CHECK(r.total_ms > 0);
  CHECK(r.other_ms >= 0);
  // Step times are parts of one run: medians of the parts stay near the median of the whole.
  CHECK(layers_ms + r.other_ms <= 3 * r.total_ms);
  const auto table = model::build_layer_table(model::load_onnx(req.model));
  for (size_t i = 0; i < 4; ++i)
    CHECK(r.layers[i].macs == doctest::Approx(2.0 * static_cast<double>(table.layers[i].macs)));
  experiments::EstimateRequest er;
  er.model = req.model;
  er.target = "cpu:desktop-x86";
  er.batch = 2;
  const auto e = experiments::run_estimate(er);
  CHECK(r.estimate_ms == doctest::Approx(e.estimate.latency_ms));
  for (const auto& le : e.estimate.layers)
    CHECK(r.layers[le.layer].estimate_ms == doctest::Approx(le.latency_ms));
  const auto j = r.to_json();
  CHECK(j.at("error").get<double>() == doctest::Approx(r.estimate_ms / r.total_ms - 1));
  CHECK(r.to_text().find("conv2") != std::string::npos);
}

TEST_CASE("measure --int8 runs every w8a8 layer of the CNN on integer kernels") {
  if (!model::int8_kernels_available())
    COMPSEARCH_SKIP_TEST("this CPU has no VNNI/AMX: oneDNN's int8 kernels saturate, int8 is off");
  const fs::path recipe = w8a8_recipe();
  auto req = cnn_request();
  req.int8 = true;
  req.recipe = recipe.string();
  const auto r = experiments::run_measure(req);
  REQUIRE(r.layers.size() == 4);
  for (const auto& l : r.layers) {
    CAPTURE(l.name);
    CHECK(l.int8);
    CHECK(l.median_ms > 0);
  }
  fs::remove(recipe);
}

TEST_CASE("measure rejects a bad batch, repeat or warm-up count, naming the flag") {
  auto req = cnn_request();
  req.batch = 0;
  CHECK_THROWS_WITH_AS(experiments::run_measure(req),
                       "--batch: value 0 out of range; expected >= 1", experiments::UsageError);
  req = cnn_request();
  req.repeats = 0;
  CHECK_THROWS_WITH_AS(experiments::run_measure(req),
                       "--repeats: value 0 out of range; expected >= 1", experiments::UsageError);
  req = cnn_request();
  req.warmup = -1;
  CHECK_THROWS_WITH_AS(experiments::run_measure(req),
                       "--warmup: value -1 out of range; expected >= 0", experiments::UsageError);
}

TEST_CASE("cpu:host reads the calibrated profile and says how to make one when there is none") {
  const fs::path dir = fs::temp_directory_path() / ("host_profile_" + std::to_string(getpid()));
  fs::create_directories(dir);
  const fs::path file = dir / "cpu_host.json";
  ::setenv("COMPSEARCH_HOST_PROFILE", file.c_str(), 1);
  CHECK(hardware_models::host_profile_path() == file);
  try {
    hardware_models::load_profile("cpu:host");
    FAIL("expected an error");
  } catch (const std::invalid_argument& e) {
    const std::string what = e.what();
    CHECK(what.find(file.string()) != std::string::npos);
    CHECK(what.find("scripts/calibrate_host.py") != std::string::npos);
  }
  nlohmann::json p;
  std::ifstream(source_dir() / "hardware_models" / "profiles" / "cpu_desktop-x86.json") >> p;
  p["name"] = "cpu:host";
  std::ofstream(file) << p.dump();
  const auto profile = hardware_models::load_profile("cpu:host");
  CHECK(profile.name == "cpu:host");
  ::unsetenv("COMPSEARCH_HOST_PROFILE");
  fs::remove_all(dir);
}

TEST_CASE("Executor step times cover each planned step and are zero without time_steps") {
  const model::Graph g = model::load_onnx(source_dir() / "models" / "fmnist_cnn.onnx");
  const model::Tensor x = model::Tensor::floats({4, 1, 28, 28}, std::vector<float>(4 * 784, 0.5f));
  model::ExecutorOptions o;
  o.threads = 2;
  const model::Executor plain(g, o);
  plain.run({x});
  for (const auto& t : plain.step_times()) CHECK(t.ms == 0.0);
  o.time_steps = true;
  const model::Executor timed(g, o);
  timed.run({x});
  const auto times = timed.step_times();
  REQUIRE_FALSE(times.empty());
  CHECK(times.size() <= g.nodes.size());
  for (const auto& t : times) {
    CHECK(t.node_index < g.nodes.size());
    CHECK(t.ms > 0.0);
  }
}
