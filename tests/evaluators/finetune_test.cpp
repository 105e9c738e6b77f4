// Quantization-aware fine-tuning (evaluators/finetune.h) on the bundled reference CNN and a small
// subset of the Fashion-MNIST training split: the DESIGN.md invariants (fixed masks, fixed point
// of the recipe), determinism, Ctrl-C, and the direction of each issue-9 result (bench_training
// measures the full-size numbers).
#include "evaluators/finetune.h"

#include <doctest/doctest.h>

#include <atomic>
#include <cmath>
#include <filesystem>
#include <map>

#include "compressors/apply.h"
#include "compressors/weight_kernels.h"
#include "evaluators/accuracy.h"
#include "model/dataset.h"
#include "model/graph.h"
#include "model/layer_table.h"

using namespace compsearch;
using nlohmann::json;

namespace {

const std::string kCnn = std::string(COMPSEARCH_SOURCE_DIR) + "/models/fmnist_cnn.onnx";

bool have_fashion_mnist() {
  return std::filesystem::exists(model::fashion_mnist_dir() / "train-images-idx3-ubyte.gz");
}

model::Dataset first(const model::Dataset& d, int64_t n) {
  model::Dataset s;
  s.name = d.name + "[:" + std::to_string(n) + "]";
  s.sample_shape = d.sample_shape;
  const int64_t per = model::shape_numel(d.sample_shape);
  s.images.assign(d.images.begin(), d.images.begin() + n * per);
  if (d.labelled()) s.labels.assign(d.labels.begin(), d.labels.begin() + n);
  return s;
}

// Loaded once: the split files take a second to decode.
struct Data {
  model::Dataset train, test;
};

const Data& data() {
  static const Data d = [] {
    Data x;
    x.train = first(model::load_dataset("fashion-mnist", "train"), 4096);
    x.test = first(model::load_dataset("fashion-mnist", "test"), 2000);
    return x;
  }();
  return d;
}

compressors::Recipe recipe(const std::string& text) {
  return compressors::recipe_from_json(json::parse(text), "test recipe");
}

double accuracy_of(const model::Graph& g, const model::Dataset& d) {
  evaluators::EvaluationOptions eo;
  eo.threads = 2;
  return evaluators::evaluate_model(g, d, eo).accuracy;
}

double ptq_accuracy(const model::Graph& g, const compressors::Recipe& r, const model::Dataset& d) {
  const auto cm = compressors::apply_recipe(g, model::build_layer_table(g), r);
  evaluators::EvaluationOptions eo;
  eo.threads = 2;
  return evaluators::evaluate_compressed(g, cm, d, eo).accuracy;
}

evaluators::FinetuneResult run(const model::Graph& g, const compressors::Recipe& r, int64_t samples,
                               int epochs, const evaluators::FinetuneOptions& extra = {}) {
  compressors::DistillationSpec spec = evaluators::distillation_or_default(r);
  spec.samples = samples;
  spec.epochs = epochs;
  evaluators::FinetuneOptions o = extra;
  o.threads = 2;
  return evaluators::finetune(g, r, data().train, spec, o);
}

// Applying the recipe again to the fine-tuned weights must leave every weight and bias as is.
void check_fixed_point(const evaluators::FinetuneResult& res, const compressors::Recipe& r) {
  const auto table = model::build_layer_table(res.graph);
  const auto again = compressors::apply_recipe(res.graph, table, r);
  for (const auto& l : table.layers) {
    const auto& a = res.graph.initializers.at(l.weight_name).f32;
    const auto& b = again.graph.initializers.at(l.weight_name).f32;
    REQUIRE(a.size() == b.size());
    int64_t changed = 0;
    for (size_t i = 0; i < a.size(); ++i) changed += a[i] != b[i];
    INFO("layer " << l.name);
    CHECK(changed == 0);
    if (!l.bias_name.empty())
      CHECK(res.graph.initializers.at(l.bias_name).f32 ==
            again.graph.initializers.at(l.bias_name).f32);
  }
}

}  // namespace

TEST_CASE("Fine-tuning keeps pruned weights at zero and the recipe is a fixed point of its result" *
          doctest::skip(!have_fashion_mnist())) {
  const model::Graph g = model::load_onnx(kCnn);
  const auto table = model::build_layer_table(g);
  SUBCASE("50% unstructured + 4 bits") {
    const auto r = recipe(R"({"format": "compsearch.recipe/1",
      "default": {"w_bits": 4, "prune": {"kind": "unstructured", "ratio": 0.5}},
      "distillation": {"lr": 0.001}})");
    const auto res = run(g, r, 512, 1);
    check_fixed_point(res, r);
    // The pruned positions are those of the starting weights (fixed mask), all still 0.
    const auto ptq = compressors::apply_recipe(g, table, r);
    for (const auto& l : table.layers) {
      std::vector<float> w = g.initializers.at(l.weight_name).f32;
      compressors::PruneMask mask;
      compressors::prune_unstructured(w, 0.5, &mask);
      const auto& start = ptq.graph.initializers.at(l.weight_name).f32;
      const auto& end = res.graph.initializers.at(l.weight_name).f32;
      int64_t pruned = 0, still_zero = 0, moved = 0;
      for (size_t i = 0; i < start.size(); ++i) {
        if (mask[i]) {
          ++pruned;
          still_zero += end[i] == 0.0f;
        }
        moved += start[i] != end[i];
      }
      INFO("layer " << l.name);
      CHECK(pruned == static_cast<int64_t>(start.size() / 2));
      CHECK(still_zero == pruned);
      CHECK(moved > 0);  // training did change the kept weights
    }
  }
  SUBCASE("channel pruning zeroes bias too; binary, 2:4, group and mse layers") {
    const auto r = recipe(R"({"format": "compsearch.recipe/1",
      "layers": {"conv1": {"w_bits": 8, "prune": {"kind": "channel", "ratio": 0.25}},
                 "conv2": {"w_bits": 1, "granularity": "per_channel"},
                 "fc1": {"w_bits": 3, "granularity": "group:16", "w_calibration": "mse", "prune": {"kind": "2:4"}},
                 "fc2": {"w_bits": 16, "a_bits": 8}}})");
    const auto res = run(g, r, 512, 1);
    check_fixed_point(res, r);
    const auto ptq = compressors::apply_recipe(g, table, r);
    REQUIRE(ptq.pruned_channels.count("conv1"));
    for (int64_t o : ptq.pruned_channels.at("conv1")) {
      CHECK(res.graph.initializers.at("conv1.bias").f32.at(o) == 0.0f);
      for (int64_t i = 0; i < 9; ++i)
        CHECK(res.graph.initializers.at("conv1.weight").f32.at(o * 9 + i) == 0.0f);
    }
    // Binary per channel: every row holds +-alpha only.
    const auto& w = res.graph.initializers.at("conv2.weight").f32;
    for (int64_t o = 0; o < 32; ++o) {
      const float a = std::abs(w[o * 144]);
      CHECK(a > 0.0f);
      for (int64_t i = 0; i < 144; ++i) CHECK(std::abs(w[o * 144 + i]) == a);
    }
    // 8-bit activations: the trained range is exported with the compressed model.
    REQUIRE(res.compressed.activations.count(table.layers[3].node_index));
    CHECK(res.compressed.activations.at(table.layers[3].node_index).bits == 8);
  }
}

TEST_CASE("Fine-tuning is deterministic for a seed and stops cleanly when asked" *
          doctest::skip(!have_fashion_mnist())) {
  const model::Graph g = model::load_onnx(kCnn);
  const auto r = recipe(R"({"format": "compsearch.recipe/1", "default": {"w_bits": 2}})");
  const auto a = run(g, r, 256, 1);
  const auto b = run(g, r, 256, 1);
  for (const auto& [name, t] : a.graph.initializers)
    CHECK(t.f32 == b.graph.initializers.at(name).f32);
  CHECK(a.steps == 2);  // 256 images, batch 128
  CHECK(a.images == 256);

  std::atomic<bool> stop{true};
  evaluators::FinetuneOptions o;
  o.stop = &stop;
  const auto c = run(g, r, 1024, 3, o);
  CHECK(c.interrupted);
  CHECK(c.steps == 1);
  check_fixed_point(c, r);
}

TEST_CASE("Distillation lifts an all-2-bit CNN well above its post-training accuracy" *
          doctest::skip(!have_fashion_mnist())) {
  // The bar: >= 20 points after one epoch on all 60,000 images (bench_training); here 4096 images
  // and 2000 test images must already show a clear gain.
  const model::Graph g = model::load_onnx(kCnn);
  const auto r = recipe(
      R"({"format": "compsearch.recipe/1", "default": {"w_bits": 2, "granularity": "per_channel"},
    "distillation": {"epochs": 1, "temperature": 4, "alpha": 0.9, "lr": 0.001}})");
  const double ptq = ptq_accuracy(g, r, data().test);
  const auto res = run(g, r, 4096, 1);
  const double tuned = accuracy_of(res.graph, data().test);
  MESSAGE("all 2-bit: PTQ " << ptq << ", after distillation on 4096 images " << tuned);
  CHECK(ptq < 0.45);
  CHECK(tuned > ptq + 0.15);
}

TEST_CASE("Binary middle layers recover most of the float accuracy after distillation" *
          doctest::skip(!have_fashion_mnist())) {
  const model::Graph g = model::load_onnx(kCnn);
  const auto r = recipe(R"({"format": "compsearch.recipe/1", "default": {"w_bits": 1},
    "layers": {"conv1": {"w_bits": 8}, "fc2": {"w_bits": 8}},
    "distillation": {"epochs": 2, "temperature": 4, "alpha": 0.9, "lr": 0.001}})");
  const double fp32 = accuracy_of(g, data().test);
  const double ptq = ptq_accuracy(g, r, data().test);
  const auto res = run(g, r, 4096, 2);
  const double tuned = accuracy_of(res.graph, data().test);
  MESSAGE("binary middle: FP32 " << fp32 << ", PTQ " << ptq << ", after distillation " << tuned);
  CHECK(tuned > ptq + 0.02);
  CHECK(fp32 - tuned < fp32 - ptq);
}

TEST_CASE("50% unstructured pruning with 4 bits stays close to the float model after distillation" *
          doctest::skip(!have_fashion_mnist())) {
  const model::Graph g = model::load_onnx(kCnn);
  const auto r = recipe(R"({"format": "compsearch.recipe/1",
    "default": {"w_bits": 4, "prune": {"kind": "unstructured", "ratio": 0.5}},
    "distillation": {"epochs": 1, "temperature": 4, "alpha": 0.9, "lr": 0.001}})");
  const double fp32 = accuracy_of(g, data().test);
  const double ptq = ptq_accuracy(g, r, data().test);
  const auto res = run(g, r, 4096, 1);
  const double tuned = accuracy_of(res.graph, data().test);
  MESSAGE("50% unstructured + w4: FP32 " << fp32 << ", PTQ " << ptq << ", after distillation "
                                         << tuned);
  CHECK(tuned >= ptq - 0.005);
  CHECK(std::abs(fp32 - tuned) < 0.02);
}

TEST_CASE("Label-free distillation trains on unlabelled images and plain training needs labels" *
          doctest::skip(!have_fashion_mnist())) {
  const model::Graph g = model::load_onnx(kCnn);
  model::Dataset unlabelled = first(data().train, 512);
  unlabelled.labels.clear();
  compressors::DistillationSpec spec;
  spec.epochs = 1;
  spec.alpha = 1.0;
  const auto r = recipe(R"({"format": "compsearch.recipe/1", "default": {"w_bits": 4}})");
  evaluators::FinetuneOptions o;
  o.threads = 2;
  const auto res = evaluators::finetune(g, r, unlabelled, spec, o);
  CHECK(res.steps == 4);
  CHECK(std::isfinite(res.epochs.at(0).loss));
  spec.alpha = 0.9;
  CHECK_THROWS_WITH_AS(evaluators::finetune(g, r, unlabelled, spec, o),
                       doctest::Contains("has no labels; use distillation alpha 1"),
                       std::invalid_argument);
}
