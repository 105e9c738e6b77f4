// Applying recipes to graphs: channel-pruning propagation, rule-9 stored sizes and effective MACs,
// all against hand computations on small hand-built graphs.
#include "compressors/apply.h"

#include <doctest/doctest.h>

#include <cmath>

#include "model/layer_table.h"
#include "tests/compressors/test_graphs.h"

using namespace compsearch;
using namespace compsearch::compressors;
using compsearch::testing::small_cnn;

namespace {

Recipe parse(const std::string& text) {
  return recipe_from_json(nlohmann::json::parse(text), "test");
}

model::LayerInfo gemm_layer(int64_t out, int64_t in, bool bias) {
  model::LayerInfo l;
  l.name = "fc";
  l.op = "Gemm";
  l.weight_shape = {out, in};
  l.weight_elements = out * in;
  l.params = out * in + (bias ? out : 0);
  l.macs = out * in;
  l.out_channels = out;
  l.in_channels = in;
  l.reduction_length = in;
  if (bias) l.bias_name = "fc.bias";
  return l;
}

}  // namespace

TEST_CASE("Stored size follows DESIGN.md rule 9 for each setting") {
  const auto l = gemm_layer(10, 64, true);  // 640 weights, 10 fp32 biases = 320 bits
  auto bits = [&](const std::string& setting) {
    const Recipe r = parse(R"({"format": "compsearch.recipe/1", "default": )" + setting + "}");
    return layer_cost(l, r.default_setting, {}, {}).total_bits;
  };
  CHECK(bits(R"({})") == 32 * 640 + 320);
  CHECK(bits(R"({"w_bits": 16})") == 16 * 640 + 320);
  CHECK(bits(R"({"w_bits": 4})") == 4 * 640 + 16 * 10 + 320);  // per-channel scales
  CHECK(bits(R"({"w_bits": 4, "granularity": "per_tensor"})") == 4 * 640 + 16 + 320);
  CHECK(bits(R"({"w_bits": 3, "granularity": "group:16"})") == 3 * 640 + 16 * 40 + 320);
  CHECK(bits(R"({"w_bits": 3, "granularity": "group:24"})") ==
        3 * 640 + 16 * 30 + 320);                          // ceil(64/24) = 3
  CHECK(bits(R"({"w_bits": 1})") == 640 + 16 * 10 + 320);  // fp16 alpha per channel
  // 50% unstructured: 320 stored, bitmap (640) beats 16 x 320.
  CHECK(
      bits(
          R"({"w_bits": 8, "granularity": "per_tensor", "prune": {"kind": "unstructured", "ratio": 0.5}})") ==
      8 * 320 + 16 + 640 + 320);
  // 95% unstructured: floor(608) pruned, 32 stored, 16 x 32 = 512 beats the 640-bit bitmap.
  CHECK(bits(R"({"w_bits": 8, "prune": {"kind": "unstructured", "ratio": 0.95}})") ==
        8 * 32 + 160 + 512 + 320);
  // 2:4: 320 kept, 2 bits of metadata each.
  CHECK(bits(R"({"w_bits": 4, "prune": {"kind": "2:4"}})") == 4 * 320 + 160 + 2 * 320 + 320);
  // 30% channel: floor(3) channels go with their biases and scales; no index overhead.
  const Recipe ch = parse(
      R"({"format": "compsearch.recipe/1", "default": {"w_bits": 8, "prune": {"kind": "channel", "ratio": 0.3}}})");
  const LayerCost c = layer_cost(l, ch.default_setting, {0, 4, 9}, {});
  CHECK(c.kept_weights == 7 * 64);
  CHECK(c.total_bits == 8 * 448 + 16 * 7 + 32 * 7);
  CHECK(c.effective_macs == 448);
  // The same layer as a consumer whose producer lost 16 of its 64 inputs.
  std::vector<int64_t> dropped;
  for (int64_t i = 0; i < 16; ++i) dropped.push_back(i * 4);
  const LayerCost d = layer_cost(l, ch.default_setting, {0, 4, 9}, dropped);
  CHECK(d.kept_weights == 7 * 48);
  CHECK(d.total_bits == 8 * 336 + 16 * 7 + 32 * 7);
}

TEST_CASE("Channel pruning propagates through Relu, MaxPool and Flatten to the consumer") {
  const model::Graph g = small_cnn();
  const model::LayerTable t = model::build_layer_table(g);
  REQUIRE(t.layers.size() == 2);
  const Recipe r = parse(
      R"({"format": "compsearch.recipe/1", "layers": {"conv1": {"prune": {"kind": "channel", "ratio": 0.5}}}})");
  const CompressedModel cm = apply_recipe(g, t, r);
  // Norms: ch3 (0.05) < ch0 (0.1) < ch1 < ch2.
  CHECK(cm.pruned_channels.at("conv1") == std::vector<int64_t>{0, 3});
  const auto& w = cm.graph.initializers.at("conv1.weight").f32;
  for (int i = 0; i < 18; ++i) {
    CHECK(w[i] == 0.0f);
    CHECK(w[3 * 18 + i] == 0.0f);
    CHECK(w[18 + i] != 0.0f);
  }
  CHECK(cm.graph.initializers.at("conv1.bias").f32 == std::vector<float>{0.0f, 0.2f, 0.3f, 0.0f});
  // The original is untouched.
  CHECK(g.initializers.at("conv1.weight").f32[0] == 0.1f);
  CHECK(g.initializers.at("conv1.bias").f32[0] == 0.1f);
  // fc reads Flatten([1, 4, 2, 2]): channels 0 and 3 are features 0-3 and 12-15.
  const LayerCost& fc = cm.cost.layers[1];
  CHECK(fc.dropped_inputs == std::vector<int64_t>{0, 1, 2, 3, 12, 13, 14, 15});
  const LayerCost& c1 = cm.cost.layers[0];
  CHECK(c1.kept_weights == 2 * 18);
  CHECK(c1.effective_macs == 16 * 2 * 18);  // 16 output positions x 2 kept channels x 18
  CHECK(fc.kept_weights == 3 * 8);
  CHECK(fc.effective_macs == 3 * 8);
  CHECK(cm.cost.effective_macs == 16 * 36 + 24);
  CHECK(c1.total_bits == 36 * 32 + 2 * 32);
  CHECK(fc.total_bits == 24 * 32 + 3 * 32);
  CHECK(cm.cost.total_bits == 36 * 32 + 64 + 24 * 32 + 96);
  CHECK(cm.cost.size_bytes() == (36 * 32 + 64 + 24 * 32 + 96) / 8.0);
}

TEST_CASE("Ops that do not keep a zero channel zero stop the propagation") {
  const Recipe r = parse(
      R"({"format": "compsearch.recipe/1", "layers": {"conv1": {"prune": {"kind": "channel", "ratio": 0.5}}}})");
  for (const char* mid : {"ClipPositive", "Sigmoid"}) {
    CAPTURE(mid);
    const model::Graph g = small_cnn(mid);
    const auto cm = apply_recipe(g, model::build_layer_table(g), r);
    CHECK(cm.cost.layers[1].dropped_inputs.empty());
    CHECK(cm.cost.layers[1].effective_macs == 48);
    CHECK(cm.cost.layers[0].effective_macs == 16 * 36);
  }
}

TEST_CASE("An uncompressed recipe costs 32 bits per parameter and the table's MACs") {
  const model::Graph g = small_cnn();
  const model::LayerTable t = model::build_layer_table(g);
  const auto cost = model_cost(g, t, Recipe{}, {});
  CHECK(cost.total_bits == 32 * t.total_params);
  CHECK(cost.effective_macs == t.total_macs);
  CHECK(t.total_macs == 16 * 4 * 18 + 48);
}

TEST_CASE("apply_recipe quantizes each layer like the kernels and leaves 32-bit layers alone") {
  const model::Graph g = small_cnn();
  const model::LayerTable t = model::build_layer_table(g);
  const Recipe r = parse(R"({"format": "compsearch.recipe/1", "default": {"w_bits": 32},
                             "layers": {"fc": {"w_bits": 2, "granularity": "per_tensor"}}})");
  ApplyOptions o;
  o.keep_quantized = true;
  const auto cm = apply_recipe(g, t, r, o);
  CHECK(cm.graph.initializers.at("conv1.weight").f32 == g.initializers.at("conv1.weight").f32);
  // fc weights are 0.01 * (i % 7) - 0.02: amax 0.04, qmax 1 -> values in {-0.04, 0, 0.04}.
  const auto& w = cm.graph.initializers.at("fc.weight").f32;
  for (size_t i = 0; i < w.size(); ++i) {
    const float orig = g.initializers.at("fc.weight").f32[i];
    const float want = std::fabs(orig) > 0.02f ? std::copysign(0.04f, orig) : 0.0f;
    CHECK(w[i] == doctest::Approx(want));
  }
  REQUIRE(cm.quantized.count("fc"));
  CHECK(cm.quantized.at("fc").scales.size() == 1);
  CHECK_FALSE(cm.quantized.count("conv1"));
  CHECK(cm.cost.layers[1].total_bits == 2 * 48 + 16 + 96);
}

TEST_CASE("apply_recipe rejects recipes naming unknown layers") {
  const model::Graph g = small_cnn();
  CHECK_THROWS_WITH_AS(
      apply_recipe(g, model::build_layer_table(g),
                   parse(R"({"format": "compsearch.recipe/1", "layers": {"fc2": {"w_bits": 4}}})")),
      "recipe: layers.fc2: unknown layer \"fc2\"; the model's layers are: conv1, fc",
      std::invalid_argument);
}
