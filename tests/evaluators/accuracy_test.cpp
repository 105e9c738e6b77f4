// Evaluators: accuracy / agreement / KL against hand computations, and activation fake
// quantization through the executor hook against a hand-computed forward pass.
#include "evaluators/accuracy.h"

#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>

#include "compressors/apply.h"
#include "evaluators/standard_evaluators.h"
#include "model/dataset.h"
#include "model/executor.h"
#include "model/layer_table.h"
#include "tests/model/test_util.h"
#include "tests/test_skip.h"

using namespace compsearch;

namespace {

// y = W x + b with x [N, 3], W [2, 3] (Gemm transB=1), so every number can be checked by hand.
model::Graph tiny_gemm() {
  model::Graph g;
  g.opset_version = 13;
  g.inputs = {model::ValueInfo{"x", model::DType::kFloat32, {-1, 3}}};
  g.outputs = {model::ValueInfo{"y", model::DType::kFloat32, {-1, 2}}};
  g.initializers["fc.weight"] = model::Tensor::floats({2, 3}, {1.0f, 0.0f, 0.0f, 0.0f, 1.0f, 1.0f});
  g.initializers["fc.bias"] = model::Tensor::floats({2}, {0.0f, 0.0f});
  model::Node n;
  n.op_type = "Gemm";
  n.name = "fc";
  n.inputs = {"x", "fc.weight", "fc.bias"};
  n.outputs = {"y"};
  model::Attribute tb;
  tb.kind = model::Attribute::Kind::kInt;
  tb.i = 1;
  n.attributes["transB"] = tb;
  g.nodes.push_back(n);
  model::infer_shapes(g);
  return g;
}

model::Dataset dataset(std::vector<float> images, std::vector<int64_t> labels) {
  model::Dataset d;
  d.name = "hand-made";
  d.sample_shape = {3};
  d.images = std::move(images);
  d.labels = std::move(labels);
  return d;
}

}  // namespace

TEST_CASE("compare_outputs computes accuracy, agreement and KL by hand") {
  // Sample 0: reference [0, 0] (p = [.5, .5]), candidate [ln 3, 0] (q = [.75, .25]).
  // KL = .5 ln(.5/.75) + .5 ln(.5/.25) = 0.1438410362.
  // Sample 1: both [2, 1]: KL 0, same top-1 (0). Sample 2: ref [0, 1] -> 1, cand [1, 0] -> 0.
  const std::vector<float> ref = {0, 0, 2, 1, 0, 1};
  const std::vector<float> cand = {static_cast<float>(std::log(3.0)), 0, 2, 1, 1, 0};
  const auto r = evaluators::compare_outputs(ref, cand, 2, {0, 1, 0});
  CHECK(r.samples == 3);
  CHECK(r.accuracy == doctest::Approx(2.0 / 3));  // candidate top-1: 0, 0, 0
  CHECK(r.agreement == doctest::Approx(2.0 / 3));
  // Sample 2: p = softmax([0,1]), q = softmax([1,0]): KL = (p1 - p0) * 1 * ... computed exactly:
  const double p0 = 1 / (1 + std::exp(1.0)), p1 = 1 - p0;
  const double kl2 = p0 * std::log(p0 / p1) + p1 * std::log(p1 / p0);
  CHECK(r.kl == doctest::Approx((0.1438410362 + 0.0 + kl2) / 3).epsilon(1e-6));
  CHECK_THROWS_AS(evaluators::compare_outputs(ref, {1, 2}, 2, {}), std::invalid_argument);
}

TEST_CASE("Evaluating a model against itself gives agreement 1 and KL 0") {
  const model::Graph g = tiny_gemm();
  const auto data = dataset({1, 0, 0, 0, 1, 1, 3, 1, 1, 0, 0, 5}, {0, 1, 0, 0});
  // Outputs: [1, 0] -> 0, [0, 2] -> 1, [3, 2] -> 0, [0, 5] -> 1 (label 0: wrong).
  const auto r = evaluators::evaluate_model(g, data);
  CHECK(r.samples == 4);
  CHECK(r.accuracy == doctest::Approx(0.75));
  CHECK(r.agreement == 1.0);
  CHECK(r.kl == 0.0);
}

TEST_CASE("Activation fake quantization runs at the layer input with calibrated parameters") {
  const model::Graph g = tiny_gemm();
  const model::LayerTable t = model::build_layer_table(g);
  // Calibration range [-1, 2.75] at 4 bits: scale 0.25, zero point 4.
  const auto calib = dataset({-1.0f, 0.0f, 2.75f, 0.3f, 0.1f, 0.6f}, {0, 0});
  const auto recipe = compressors::recipe_from_json(
      nlohmann::json::parse(R"({"format": "compsearch.recipe/1", "default": {"a_bits": 4}})"));
  auto cm = compressors::apply_recipe(g, t, recipe);
  CHECK(cm.needs_calibration());
  evaluators::calibrate_activations(cm, calib, 512);
  REQUIRE(cm.activations.count(0));
  const auto& p = cm.activations.at(0);
  CHECK(p.scale == doctest::Approx(0.25));
  CHECK(p.zero_point == 4);
  // Input [0.3, 0.1, 3.9] quantizes to [0.25, 0, 2.75] (q clamps at 15 -> (15-4)*0.25).
  const auto data = dataset({0.3f, 0.1f, 3.9f}, {1});
  int64_t classes = 0;
  const auto out = evaluators::run_model(cm.graph, data, &cm.activations, {}, classes);
  REQUIRE(classes == 2);
  CHECK(out[0] == doctest::Approx(0.25));
  CHECK(out[1] == doctest::Approx(2.75));
  const auto r = evaluators::evaluate_compressed(g, cm, data);
  CHECK(r.accuracy == 1.0);
  CHECK(r.agreement == 1.0);
  CHECK(r.kl > 0.0);
  // Without calibration the evaluation refuses to run.
  auto uncalibrated = compressors::apply_recipe(g, t, recipe);
  CHECK_THROWS_AS(evaluators::evaluate_compressed(g, uncalibrated, data), std::logic_error);
}

TEST_CASE("The search's evaluator with int8 on scores w8a8 candidates like the float path") {
  if (!model::int8_kernels_available())
    COMPSEARCH_SKIP_TEST("this CPU has no VNNI/AMX: oneDNN's int8 kernels saturate, int8 is off");
  if (!std::filesystem::exists(model::fashion_mnist_dir() / "t10k-images-idx3-ubyte.gz"))
    COMPSEARCH_SKIP_TEST("Fashion-MNIST (Debian dataset-fashion-mnist) is not installed");
  static const model::Graph graph =
      model::load_onnx(model::testing::source_dir() / "models" / "fmnist_cnn.onnx");
  const model::Dataset test = model::load_dataset("fashion-mnist", "test");
  auto slice = [&](int64_t begin, int64_t count) {
    model::Dataset d;
    d.name = test.name;
    d.sample_shape = test.sample_shape;
    d.images = test.batch(begin, count).f32;
    d.labels.assign(test.labels.begin() + begin, test.labels.begin() + begin + count);
    return d;
  };
  const model::Dataset validation = slice(0, 2000), calibration = slice(5000, 512);
  const model::LayerTable table = model::build_layer_table(graph);
  nlohmann::json layers = nlohmann::json::object();
  for (const auto& l : table.layers) layers[l.name] = {{"w_bits", 8}, {"a_bits", 8}};
  const compressors::Recipe w8a8 =
      compressors::recipe_from_json({{"format", "compsearch.recipe/1"}, {"layers", layers}});
  const compressors::Recipe w4 = compressors::recipe_from_json(
      {{"format", "compsearch.recipe/1"}, {"default", {{"w_bits", 4}}}});
  auto metrics = [&](bool int8, const compressors::Recipe& recipe) {
    auto ctx = std::make_shared<evaluators::EvaluationContext>();
    ctx->graph = &graph;
    ctx->validation = &validation;
    ctx->calibration = &calibration;
    ctx->options.int8 = int8;
    ctx->options.threads = 2;
    evaluators::prepare_context(*ctx);
    CHECK(evaluators::runs_int8(recipe, ctx->table, ctx->options) ==
          (int8 && &recipe == &w8a8));  // 32-bit activations: nothing for integer kernels
    const auto e = evaluators::make_standard_evaluator("accuracy", ctx);
    evaluators::Candidate c;
    c.recipe = &recipe;
    return e->evaluate(c);
  };
  const auto f = metrics(false, w8a8), i = metrics(true, w8a8);
  MESSAGE("w8a8 on 2000 images: float path accuracy "
          << f.at("accuracy") << ", int8 kernels " << i.at("accuracy") << ", agreement "
          << f.at("agreement") << " / " << i.at("agreement"));
  CHECK(std::fabs(i.at("accuracy") - f.at("accuracy")) <= 0.001);
  CHECK(std::fabs(i.at("agreement") - f.at("agreement")) <= 0.001);
  CHECK(i.at("kl") == doctest::Approx(f.at("kl")).epsilon(0.05));
  CHECK(i.at("weight_error") == f.at("weight_error"));  // the same compressed weights
  CHECK(f.at("accuracy") > 0.8);
  const auto w4f = metrics(false, w4), w4i = metrics(true, w4);
  CHECK(w4i.at("accuracy") == w4f.at("accuracy"));  // the float path both times
}
