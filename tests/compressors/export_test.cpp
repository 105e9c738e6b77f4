// Exports (onnx-qdq, onnx, safetensors) against independent runtimes: python3-onnx's checker, ONNX
// Runtime (npm onnxruntime-node through scripts/ort_run.js) and compsearch reading them back.
#include "compressors/export.h"

#include <doctest/doctest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>

#include "compressors/apply.h"
#include "model/executor.h"
#include "model/layer_table.h"
#include "tests/compressors/ort_runner.h"
#include "tests/compressors/test_graphs.h"

using namespace compsearch;
using namespace compsearch::compressors;
namespace fs = std::filesystem;

namespace {

Recipe parse(const std::string& text) {
  return recipe_from_json(nlohmann::json::parse(text), "test");
}

fs::path temp_dir() {
  const fs::path d =
      fs::temp_directory_path() / ("compsearch_export_test_" + std::to_string(::getpid()));
  fs::create_directories(d);
  return d;
}

// Calibrates 4/8-bit activations by min/max with an observing executor hook (the evaluators
// library does the same; this test links compressors only).
void calibrate(CompressedModel& cm, const model::Tensor& x) {
  std::map<size_t, ActivationObserver> obs;
  for (const auto& l : cm.table.layers) {
    const int a = cm.recipe.setting_for(l.name).a_bits;
    if (a == 4 || a == 8) obs[l.node_index];
  }
  model::Executor ex(cm.graph);
  ex.set_layer_input_hook([&](size_t n, model::Tensor& t) {
    if (obs.count(n)) obs[n].observe(t.f32);
  });
  ex.run({x});
  for (const auto& l : cm.table.layers) {
    const int a = cm.recipe.setting_for(l.name).a_bits;
    if (obs.count(l.node_index))
      cm.activations[l.node_index] = obs[l.node_index].params(a, ActivationCalibration::kMinMax);
  }
}

std::vector<float> run_in_memory(const CompressedModel& cm, const model::Tensor& x) {
  model::Executor ex(cm.graph);
  ex.set_layer_input_hook([&](size_t n, model::Tensor& t) {
    auto it = cm.activations.find(n);
    if (it != cm.activations.end()) fake_quantize_activations(t.f32, it->second);
  });
  return ex.run({x}).at(0).f32;
}

double max_abs(const std::vector<float>& v) {
  double m = 0;
  for (float x : v) m = std::max(m, static_cast<double>(std::fabs(x)));
  return m;
}

}  // namespace

TEST_CASE("A QDQ export passes the ONNX checker and ONNX Runtime reproduces the compressed model") {
  const model::Graph g = testing::small_cnn();
  const model::LayerTable t = model::build_layer_table(g);
  const fs::path dir = temp_dir();
  const model::Tensor x = testing::small_cnn_input(16, 11);
  struct Case {
    const char* name;
    const char* recipe;
  };
  const Case cases[] = {
      {"w4 per_channel + a8 / w3 group:5 + a4",
       R"({"format": "compsearch.recipe/1", "layers": {"conv1": {"w_bits": 4, "a_bits": 8},
           "fc": {"w_bits": 3, "granularity": "group:5", "a_bits": 4}}})"},
      {"w8 50% unstructured + a16 / w1 per_tensor 2:4",
       R"({"format": "compsearch.recipe/1", "layers": {"conv1": {"w_bits": 8, "a_bits": 16,
           "prune": {"kind": "unstructured", "ratio": 0.5}}, "fc": {"w_bits": 1, "granularity": "per_tensor",
           "prune": {"kind": "2:4"}}}})"},
      {"w2 per_channel with channel pruning, w16 fc",
       R"({"format": "compsearch.recipe/1", "layers": {"conv1": {"w_bits": 2, "prune": {"kind": "channel", "ratio": 0.25}},
           "fc": {"w_bits": 16}}})"},
  };
  for (const Case& c : cases) {
    const std::string case_name = c.name;
    CAPTURE(case_name);
    ApplyOptions o;
    o.keep_quantized = true;
    CompressedModel cm = apply_recipe(g, t, parse(c.recipe), o);
    calibrate(cm, x);
    const auto want = run_in_memory(cm, x);
    const model::Graph qdq = make_qdq_graph(cm);
    // Weight initializers are int8 within the layer's narrow range.
    for (const auto& l : t.layers) {
      const int bits = cm.recipe.setting_for(l.name).w_bits;
      if (bits > 8) continue;
      const auto& q = qdq.initializers.at(l.weight_name + "_quantized");
      CHECK(q.dtype == model::DType::kInt8);
      const int64_t qmax = bits == 1 ? 1 : (1 << (bits - 1)) - 1;
      for (int64_t v : q.i64) REQUIRE(std::abs(v) <= qmax);
    }
    const fs::path path = dir / "model_qdq.onnx";
    export_model(cm, ExportFormat::kOnnxQdq, path);
    CHECK(testing::onnx_checker_accepts(path));
    const auto got = testing::run_ort(path, x, /*optimize=*/false);
    REQUIRE(got.size() == want.size());
    // float32 vs double rounding in QuantizeLinear can move an activation by one step at an exact
    // tie; everything else agrees to float precision.
    const double tol = 1e-5 * (1.0 + max_abs(want));
    int off = 0;
    for (size_t i = 0; i < got.size(); ++i) off += std::fabs(got[i] - want[i]) > tol;
    CHECK(off == 0);
  }
  fs::remove_all(dir);
}

TEST_CASE("The onnx and safetensors exports give back the compressed weights exactly") {
  const model::Graph g = testing::small_cnn();
  const model::LayerTable t = model::build_layer_table(g);
  const fs::path dir = temp_dir();
  const model::Tensor x = testing::small_cnn_input(8, 11);
  ApplyOptions o;
  o.keep_quantized = true;
  const CompressedModel cm = apply_recipe(g, t, parse(R"({"format": "compsearch.recipe/1",
      "layers": {"conv1": {"w_bits": 3, "granularity": "group:4", "prune": {"kind": "channel", "ratio": 0.25}},
                 "fc": {"w_bits": 1, "granularity": "group:6"}}})"),
                                          o);
  const auto want = run_in_memory(cm, x);
  SUBCASE("onnx: compsearch and ONNX Runtime") {
    const fs::path path = dir / "model.onnx";
    export_model(cm, ExportFormat::kOnnx, path);
    CHECK(testing::onnx_checker_accepts(path));
    const model::Graph back = model::load_onnx(path);
    CHECK(back.initializers.at("conv1.weight").f32 == cm.graph.initializers.at("conv1.weight").f32);
    CHECK(back.initializers.at("fc.weight").f32 == cm.graph.initializers.at("fc.weight").f32);
    CHECK(model::Executor(back).run({x}).at(0).f32 == want);
    const auto ort = testing::run_ort(path, x);
    REQUIRE(ort.size() == want.size());
    for (size_t i = 0; i < ort.size(); ++i) CHECK(ort[i] == doctest::Approx(want[i]).epsilon(1e-5));
  }
  SUBCASE("safetensors: integer weights and F64 scales rebuild the weights bit for bit") {
    const fs::path path = dir / "model.safetensors";
    export_model(cm, ExportFormat::kSafetensors, path);
    const model::Graph back = load_safetensors_weights(g, path);
    CHECK(back.initializers.at("conv1.weight").f32 == cm.graph.initializers.at("conv1.weight").f32);
    CHECK(back.initializers.at("conv1.bias").f32 == cm.graph.initializers.at("conv1.bias").f32);
    CHECK(back.initializers.at("fc.weight").f32 == cm.graph.initializers.at("fc.weight").f32);
    CHECK(model::Executor(back).run({x}).at(0).f32 == want);
    // The header is what the safetensors format says: 8-byte length, JSON, metadata strings.
    std::ifstream f(path, std::ios::binary);
    uint64_t n = 0;
    f.read(reinterpret_cast<char*>(&n), 8);
    std::string h(n, '\0');
    f.read(h.data(), static_cast<std::streamsize>(n));
    const auto header = nlohmann::json::parse(h);
    CHECK(header.at("conv1.weight").at("dtype") == "I8");
    CHECK(header.at("conv1.weight.scale").at("dtype") == "F64");
    CHECK(header.at("conv1.weight.scale").at("shape") ==
          nlohmann::json::array({4, 5}));  // ceil(18/4) groups
    CHECK(header.at("fc.bias").at("dtype") == "F32");
    const auto recipe = recipe_from_json(
        nlohmann::json::parse(header.at("__metadata__").at("recipe").get<std::string>()));
    CHECK(recipe.setting_for("fc").w_bits == 1);
  }
  fs::remove_all(dir);
}

TEST_CASE("A safetensors header nested 100000 deep is refused, naming the file") {
  // tests/data/fuzz_regressions/safetensors: a tensor's dtype nested 100,000 deep; error messages
  // print header values, which would overflow the stack.
  const std::string path = std::string(COMPSEARCH_TEST_DATA) +
                           "/fuzz_regressions/safetensors/header_nested_100000_deep.safetensors";
  REQUIRE(fs::file_size(path) > 200000);
  CHECK_THROWS_WITH_AS(
      load_safetensors_weights(model::Graph{}, path),
      doctest::Contains((path + ": header is JSON nested deeper than 512 levels").c_str()),
      std::runtime_error);
}

TEST_CASE("A safetensors header longer than its file is refused before it is allocated") {
  // tests/data/fuzz_regressions/safetensors/header_longer_than_file: 89 bytes claiming a header
  // of hundreds of MB; fuzz_safetensors timed out zero-filling that much memory.
  const std::string path =
      std::string(COMPSEARCH_TEST_DATA) + "/fuzz_regressions/safetensors/header_longer_than_file";
  REQUIRE(fs::file_size(path) == 89);
  CHECK_THROWS_WITH_AS(load_safetensors_weights(model::Graph{}, path),
                       doctest::Contains((path + ": header length").c_str()), std::runtime_error);
  CHECK_THROWS_WITH_AS(load_safetensors_weights(model::Graph{}, path),
                       doctest::Contains("exceeds the file (89 bytes)"), std::runtime_error);
}
