// Executor against PyTorch: the per-op-family fixtures and the reference models.
#include "model/executor.h"

#include <doctest/doctest.h>

#include <fstream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>

#include "model/dataset.h"
#include "model/graph.h"
#include "model/layer_table.h"
#include "tests/model/test_util.h"

using namespace compsearch::model;
using compsearch::model::testing::data_dir;
using compsearch::model::testing::source_dir;
using compsearch::model::testing::worst_violation;

namespace {

nlohmann::json manifest() { return compsearch::model::testing::fixture_manifest("fixtures"); }

// A layer-input hook (hook_per_slice) counting, per layer, the samples it saw and its calls.
struct SliceCounter {
  std::mutex mu;
  std::map<size_t, int64_t> samples, calls;
  Executor::LayerInputHook hook() {
    return [this](size_t node, Tensor& t) {
      std::lock_guard<std::mutex> lock(mu);
      samples[node] += t.shape[0];
      ++calls[node];
    };
  }
};

}  // namespace

TEST_CASE("Executor reproduces PyTorch on every op-family fixture within 1e-4 relative") {
  const auto m = manifest();
  REQUIRE(m["fixtures"].size() >= 12);
  for (const auto& fx : m["fixtures"]) {
    const std::string name = fx["name"];
    CAPTURE(name);
    const auto dir = data_dir() / "fixtures";
    Graph g = load_onnx(dir / (name + ".onnx"));
    CHECK(g.opset_version == fx["opset"].get<int64_t>());
    const Tensor x = read_npy(dir / (name + ".input.npy"));
    for (int threads : {1, 2}) {
      CAPTURE(threads);
      Executor exec(g, ExecutorOptions{threads});
      const auto outs = exec.run({x});
      REQUIRE(outs.size() == fx["outputs"].get<size_t>());
      for (size_t i = 0; i < outs.size(); ++i) {
        const Tensor want = read_npy(
            dir / (name + (i == 0 ? ".output.npy" : ".output" + std::to_string(i) + ".npy")));
        REQUIRE(outs[i].shape == want.shape);
        CHECK(worst_violation(outs[i], want, 1e-4, 1e-5) <= 0.0);
      }
    }
  }
}

TEST_CASE("Executor gives the same result per sample whatever the batch size") {
  Graph g = load_onnx(data_dir() / "fixtures" / "mini_residual.onnx");
  const Tensor x = read_npy(data_dir() / "fixtures" / "mini_residual.input.npy");
  Executor exec(g, ExecutorOptions{2});
  const Tensor batched = exec.run({x})[0];
  const int64_t per = x.numel() / x.shape[0];
  for (int64_t s = 0; s < x.shape[0]; ++s) {
    Tensor one;
    one.shape = x.shape;
    one.shape[0] = 1;
    one.f32.assign(x.f32.begin() + s * per, x.f32.begin() + (s + 1) * per);
    const Tensor y = exec.run({one})[0];
    for (int64_t j = 0; j < y.numel(); ++j) {
      CHECK(y.f32[j] == doctest::Approx(batched.f32[s * y.numel() + j]).epsilon(1e-6));
    }
  }
}

TEST_CASE("Reference models reproduce PyTorch's logits on the first 64 test images") {
  const Dataset data = load_dataset("fashion-mnist", "test");
  for (const std::string name : {"fmnist_cnn", "fmnist_mlp", "fmnist_resnet8"}) {
    CAPTURE(name);
    Graph g = load_onnx(source_dir() / "models" / (name + ".onnx"));
    Executor exec(g, ExecutorOptions{2});
    const Tensor logits = exec.run({data.batch(0, 64)})[0];
    const Tensor want = read_npy(data_dir() / (name + "_logits_64.npy"));
    REQUIRE(logits.shape == want.shape);
    CHECK(worst_violation(logits, want, 1e-4, 1e-5) <= 0.0);
  }
}

TEST_CASE("The layer input hook sees each layer's activation and can change it") {
  Graph g = load_onnx(source_dir() / "models" / "fmnist_cnn.onnx");
  const LayerTable table = build_layer_table(g);
  const Dataset data = load_dataset("fashion-mnist", "test");
  const Tensor x = data.batch(0, 5);
  Executor exec(g, ExecutorOptions{2});
  std::vector<std::pair<size_t, Shape>> seen;
  exec.set_layer_input_hook([&](size_t node, Tensor& t) { seen.emplace_back(node, t.shape); });
  const Tensor plain = exec.run({x})[0];
  REQUIRE(seen.size() == table.layers.size());
  for (size_t i = 0; i < seen.size(); ++i) {
    CHECK(seen[i].first == table.layers[i].node_index);
    CHECK(shape_numel(seen[i].second) == 5 * table.layers[i].input_elements);
  }
  // Zeroing the last layer's input leaves only its bias: logits = fc2.bias for every sample.
  const size_t last = table.layers.back().node_index;
  exec.set_layer_input_hook([&](size_t node, Tensor& t) {
    if (node == last) std::fill(t.f32.begin(), t.f32.end(), 0.0f);
  });
  const Tensor zeroed = exec.run({x})[0];
  const Tensor& bias = *g.find_initializer(table.layers.back().bias_name);
  for (int64_t s = 0; s < 5; ++s) {
    for (int64_t c = 0; c < 10; ++c) CHECK(zeroed.f32[s * 10 + c] == bias.f32[c]);
  }
  // The hook works on a copy: the graph's own values are untouched for the next run.
  exec.set_layer_input_hook({});
  // (Without a hook the batch is split over threads; GEMM blocking then differs, so compare
  // within float rounding rather than bit for bit.)
  const Tensor again = exec.run({x})[0];
  CHECK(compsearch::model::testing::worst_violation(again, plain, 1e-5, 1e-6) <= 0.0);
}

TEST_CASE("Executor rejects an input of the wrong shape naming the input and both shapes") {
  Graph g = load_onnx(source_dir() / "models" / "fmnist_cnn.onnx");
  Executor exec(g);
  CHECK_THROWS_WITH_AS(exec.run({Tensor::zeros({2, 3, 28, 28})}),
                       "model input 'input' expects shape [-1, 1, 28, 28] (first dim = batch, -1 = "
                       "any) of float32, got [2, 3, 28, 28] of float32",
                       std::invalid_argument);
  CHECK_THROWS_AS(exec.run({}), std::invalid_argument);
}

TEST_CASE(
    "Executor threads are bounded from 0 (all cores) to kMaxThreads and the error names the "
    "bound") {
  Graph g = load_onnx(source_dir() / "models" / "fmnist_mlp.onnx");
  for (const int bad : {-1, kMaxThreads + 1, 100000}) {
    CAPTURE(bad);
    CHECK_THROWS_WITH_AS(
        Executor(g, ExecutorOptions{bad}),
        doctest::Contains(("ExecutorOptions::threads: value " + std::to_string(bad) +
                           " out of range; expected 0 (all cores) to 1024")
                              .c_str()),
        std::invalid_argument);
  }
  const Tensor x = load_dataset("fashion-mnist", "test").batch(0, 4);
  CHECK(Executor(g, ExecutorOptions{kMaxThreads}).run({x})[0].f32 ==
        Executor(g, ExecutorOptions{1}).run({x})[0].f32);
}

TEST_CASE("A large batch runs in cache-sized chunks and gives the whole batch's result") {
  // The bundled CNN's largest value is 16x28x28 floats (50 KB) per image: the executor runs 100
  // images in chunks of about 40 (Impl::chunk_samples), even on one thread.
  Graph g = load_onnx(source_dir() / "models" / "fmnist_cnn.onnx");
  const Tensor x = load_dataset("fashion-mnist", "test").batch(0, 100);
  for (const int threads : {1, 2}) {
    CAPTURE(threads);
    ExecutorOptions opts{threads};
    opts.hook_per_slice = true;
    Executor chunked(g, opts);
    SliceCounter seen;
    chunked.set_layer_input_hook(seen.hook());
    const Tensor got = chunked.run({x})[0];
    REQUIRE(!seen.calls.empty());
    for (const auto& [node, n] : seen.samples) CHECK(n == 100);
    for (const auto& [node, n] : seen.calls) CHECK(n >= 3);
    ExecutorOptions whole_opts{threads};
    whole_opts.time_steps = true;  // whole-batch steps
    const Tensor whole = Executor(g, whole_opts).run({x})[0];
    REQUIRE(got.shape == whole.shape);
    CHECK(compsearch::model::testing::worst_violation(got, whole, 1e-5, 1e-6) <= 0.0);
  }
}

TEST_CASE("With hook_per_slice the hook sees every sample once across batch slices") {
  Graph g = load_onnx(source_dir() / "models" / "fmnist_cnn.onnx");
  const LayerTable table = build_layer_table(g);
  const Tensor x = load_dataset("fashion-mnist", "test").batch(0, 9);
  ExecutorOptions opts{2};
  opts.hook_per_slice = true;
  Executor exec(g, opts);
  SliceCounter seen;
  exec.set_layer_input_hook(seen.hook());
  const Tensor sliced = exec.run({x})[0];
  REQUIRE(seen.samples.size() == table.layers.size());
  for (const auto& [node, n] : seen.samples) CHECK(n == 9);
  for (const auto& [node, n] : seen.calls) CHECK(n == 2);  // one slice per thread
  const Tensor whole = Executor(g, ExecutorOptions{1}).run({x})[0];
  CHECK(compsearch::model::testing::worst_violation(sliced, whole, 1e-5, 1e-6) <= 0.0);
}
