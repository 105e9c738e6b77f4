// Integer execution (model::ExecutorOptions::int8) of w8a8 QDQ graphs (make_qdq_graph): oneDNN's
// u8 x s8 kernels against the float path on the same graph (fake-quantized activations times
// dequantized weights), on a small CNN and on the bundled Fashion-MNIST models.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <random>

#include "compressors/apply.h"
#include "compressors/export.h"
#include "model/dataset.h"
#include "model/executor.h"
#include "model/layer_table.h"
#include "tests/compressors/test_graphs.h"
#include "tests/model/test_util.h"
#include "tests/test_skip.h"

using namespace compsearch;
using namespace compsearch::compressors;

namespace {

Recipe w8a8_everywhere(const model::LayerTable& table) {
  nlohmann::json layers = nlohmann::json::object();
  for (const auto& l : table.layers) layers[l.name] = {{"w_bits", 8}, {"a_bits", 8}};
  return recipe_from_json({{"format", "compsearch.recipe/1"}, {"layers", layers}}, "test");
}

// Min/max activation calibration on `x` (as the evaluators library does).
void calibrate(CompressedModel& cm, const model::Tensor& x) {
  std::map<size_t, ActivationObserver> obs;
  for (const auto& l : cm.table.layers) obs[l.node_index];
  model::Executor ex(cm.graph);
  ex.set_layer_input_hook([&](size_t n, model::Tensor& t) {
    if (obs.count(n)) obs[n].observe(t.f32);
  });
  ex.run({x});
  for (const auto& l : cm.table.layers)
    cm.activations[l.node_index] = obs[l.node_index].params(8, ActivationCalibration::kMinMax);
}

model::Graph w8a8_qdq(const model::Graph& g, const model::Tensor& calibration) {
  const model::LayerTable t = model::build_layer_table(g);
  ApplyOptions o;
  o.keep_quantized = true;
  CompressedModel cm = apply_recipe(g, t, w8a8_everywhere(t), o);
  calibrate(cm, calibration);
  return make_qdq_graph(cm);
}

std::vector<float> run(const model::Graph& g, const model::Tensor& x, bool int8,
                       int64_t* int8_calls = nullptr, int threads = 1) {
  model::ExecutorOptions o;
  o.int8 = int8;
  o.threads = threads;
  o.kernels = model::ExecutorOptions::Kernels::kOneDnn;
  model::Executor ex(g, o);
  auto y = ex.run({x}).at(0).f32;
  if (int8_calls) *int8_calls = ex.int8_calls();
  return y;
}

}  // namespace

TEST_CASE(
    "int8 execution of a w8a8 QDQ CNN equals the fake-quantized float path to float rounding") {
  if (!model::int8_kernels_available())
    COMPSEARCH_SKIP_TEST("this CPU has no VNNI/AMX: oneDNN's int8 kernels saturate, int8 is off");
  const model::Graph g = testing::small_cnn();
  const model::Tensor x = testing::small_cnn_input(8, 5);
  const model::Graph qdq = w8a8_qdq(g, x);
  int64_t calls_float = -1, calls_int8 = -1;
  const auto want = run(qdq, x, false, &calls_float);
  const auto got = run(qdq, x, true, &calls_int8);
  CHECK(calls_float == 0);
  CHECK(calls_int8 == 2);  // conv1 and fc, one batch
  REQUIRE(got.size() == want.size());
  double scale = 0;
  for (float v : want) scale = std::max(scale, static_cast<double>(std::fabs(v)));
  for (size_t i = 0; i < got.size(); ++i) CHECK(std::fabs(got[i] - want[i]) <= 1e-5 * (1 + scale));
  // Batch split over two threads runs the same integer kernels.
  const auto got2 = run(qdq, x, true, nullptr, 2);
  for (size_t i = 0; i < got.size(); ++i) CHECK(std::fabs(got2[i] - want[i]) <= 1e-5 * (1 + scale));
}

TEST_CASE("A QDQ .onnx file loaded from disk runs its weights' int8 integers, unless edited") {
  if (!model::int8_kernels_available())
    COMPSEARCH_SKIP_TEST("this CPU has no VNNI/AMX: oneDNN's int8 kernels saturate, int8 is off");
  const model::Graph g = testing::small_cnn();
  const model::Tensor x = testing::small_cnn_input(8, 5);
  const model::Graph qdq = w8a8_qdq(g, x);
  const auto dir = std::filesystem::temp_directory_path() / "compsearch_int8_loaded_test";
  std::filesystem::create_directories(dir);
  model::save_onnx(qdq, dir / "qdq.onnx");
  model::Graph loaded = model::load_onnx(dir / "qdq.onnx");
  // The importer folded both weight DequantizeLinear nodes and kept their integers.
  CHECK(loaded.dequantized_origins.size() == 2);
  const auto want = run(qdq, x, false);
  int64_t calls = -1;
  const auto got = run(loaded, x, true, &calls);
  CHECK(calls == 2);
  REQUIRE(got.size() == want.size());
  double scale = 0;
  for (float v : want) scale = std::max(scale, static_cast<double>(std::fabs(v)));
  for (size_t i = 0; i < got.size(); ++i) CHECK(std::fabs(got[i] - want[i]) <= 1e-5 * (1 + scale));
  // A weight edited after loading no longer equals its integers x scale: that layer runs in float
  // (on the edited weight), the other stays integer.
  auto& origin = *loaded.dequantized_origins.begin();
  loaded.find_initializer(origin.first)->f32[0] += 0.5f;
  int64_t calls_edited = -1;
  run(loaded, x, true, &calls_edited);
  CHECK(calls_edited == 1);
  std::filesystem::remove_all(dir);
}

TEST_CASE("With a layer-input hook an int8 plan runs the float path and the hook sees its values") {
  const model::Graph g = testing::small_cnn();
  const model::Tensor x = testing::small_cnn_input(4, 5);
  const model::Graph qdq = w8a8_qdq(g, x);
  auto observe = [&](bool int8, std::vector<std::vector<float>>& seen) {
    model::ExecutorOptions o;
    o.int8 = int8;
    o.threads = 1;
    model::Executor ex(qdq, o);
    ex.set_layer_input_hook([&](size_t, model::Tensor& t) { seen.push_back(t.f32); });
    auto y = ex.run({x}).at(0).f32;
    CHECK(ex.int8_calls() == 0);
    return y;
  };
  std::vector<std::vector<float>> seen_float, seen_int8;
  const auto y_float = observe(false, seen_float);
  const auto y_int8 = observe(true, seen_int8);
  CHECK(seen_int8 == seen_float);  // the dequantized activations, bit for bit
  CHECK(y_int8 == y_float);
}

TEST_CASE("int8 execution keeps the bundled models' w8a8 test accuracy within 0.1 point") {
  if (!model::int8_kernels_available())
    COMPSEARCH_SKIP_TEST("this CPU has no VNNI/AMX: oneDNN's int8 kernels saturate, int8 is off");
  if (!std::filesystem::exists(model::fashion_mnist_dir() / "t10k-images-idx3-ubyte.gz"))
    COMPSEARCH_SKIP_TEST("Fashion-MNIST (Debian dataset-fashion-mnist) is not installed");
  const model::Dataset test = model::load_dataset("fashion-mnist", "test");
  const int64_t n = 5000;
  const model::Tensor calibration = test.batch(n, 512);  // calibrated off the scored half
  const model::Tensor x = test.batch(0, n);
  for (const std::string file : {"fmnist_cnn.onnx", "fmnist_mlp.onnx"}) {
    CAPTURE(file);
    const model::Graph g = model::load_onnx(model::testing::source_dir() / "models" / file);
    model::check_dataset_matches_model(test, g);
    const model::Graph qdq = w8a8_qdq(g, calibration);
    int64_t calls = 0;
    const auto want = run(qdq, x, false, nullptr, 2);
    const auto got = run(qdq, x, true, &calls, 2);
    CHECK(calls > 0);
    const size_t classes = want.size() / static_cast<size_t>(n);
    int64_t right_float = 0, right_int8 = 0, agree = 0;
    for (int64_t i = 0; i < n; ++i) {
      auto arg = [&](const std::vector<float>& y) {
        auto b = y.begin() + i * static_cast<int64_t>(classes);
        return std::max_element(b, b + static_cast<int64_t>(classes)) - b;
      };
      const int64_t a = arg(want), b = arg(got);
      right_float += a == test.labels[i];
      right_int8 += b == test.labels[i];
      agree += a == b;
    }
    const double acc_float = 100.0 * right_float / n, acc_int8 = 100.0 * right_int8 / n;
    MESSAGE(file << ": w8a8 accuracy float path " << acc_float << "%, int8 kernels " << acc_int8
                 << "%, " << agree << "/" << n << " predictions agree");
    CHECK(std::fabs(acc_int8 - acc_float) <= 0.1);
    CHECK(acc_float > 80.0);
  }
}
