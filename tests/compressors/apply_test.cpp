// Applying recipes to graphs: channel-pruning propagation, rule-9 stored sizes and effective MACs,
// all against hand computations on small hand-built graphs.
#include <doctest/doctest.h>

#include <cmath>

#include "compressors/apply.h"
#include "model/layer_table.h"

using namespace compsearch;
using namespace compsearch::compressors;

namespace {

model::Attribute ints_attr(std::vector<int64_t> v) {
  model::Attribute a;
  a.kind = model::Attribute::Kind::kInts;
  a.ints = std::move(v);
  return a;
}
model::Attribute int_attr(int64_t v) {
  model::Attribute a;
  a.kind = model::Attribute::Kind::kInt;
  a.i = v;
  return a;
}

model::Node node(std::string op, std::vector<std::string> in, std::vector<std::string> out) {
  model::Node n;
  n.op_type = op;
  n.name = op + "_" + out.at(0);
  n.inputs = std::move(in);
  n.outputs = std::move(out);
  return n;
}

// x[1,2,4,4] -> conv1 (4 out, 3x3, pad 1, bias) -> `mid` op -> MaxPool 2x2 -> Flatten -> fc
// (Gemm transB=1, weight [3, 16], bias) -> y. Channel o of conv1 has all weights equal to
// (o + 1) * sign so its L2 norm grows with o, except that channel 3 is made the smallest.
model::Graph small_cnn(const std::string& mid = "Relu") {
  model::Graph g;
  g.name = "small_cnn";
  g.opset_version = 13;
  g.inputs = {model::ValueInfo{"x", model::DType::kFloat32, {1, 2, 4, 4}}};
  g.outputs = {model::ValueInfo{"y", model::DType::kFloat32, {1, 3}}};
  std::vector<float> w(4 * 2 * 3 * 3);
  for (int o = 0; o < 4; ++o)
    for (int i = 0; i < 18; ++i) w[o * 18 + i] = (o == 3 ? 0.05f : 0.1f * (o + 1)) * (i % 2 ? -1.0f : 1.0f);
  g.initializers["conv1.weight"] = model::Tensor::floats({4, 2, 3, 3}, w);
  g.initializers["conv1.bias"] = model::Tensor::floats({4}, {0.1f, 0.2f, 0.3f, 0.4f});
  std::vector<float> fw(3 * 16);
  for (size_t i = 0; i < fw.size(); ++i) fw[i] = 0.01f * static_cast<float>(i % 7) - 0.02f;
  g.initializers["fc.weight"] = model::Tensor::floats({3, 16}, fw);
  g.initializers["fc.bias"] = model::Tensor::floats({3}, {0.0f, 0.5f, -0.5f});
  auto conv = node("Conv", {"x", "conv1.weight", "conv1.bias"}, {"c1"});
  conv.attributes["kernel_shape"] = ints_attr({3, 3});
  conv.attributes["pads"] = ints_attr({1, 1, 1, 1});
  g.nodes.push_back(conv);
  if (mid == "ClipPositive") {
    g.initializers["clip_lo"] = model::Tensor::floats({}, {0.5f});
    g.nodes.push_back(node("Clip", {"c1", "clip_lo"}, {"r1"}));
  } else if (mid == "Sigmoid") {
    g.nodes.push_back(node("Sigmoid", {"c1"}, {"r1"}));
  } else {
    g.nodes.push_back(node("Relu", {"c1"}, {"r1"}));
  }
  auto pool = node("MaxPool", {"r1"}, {"p1"});
  pool.attributes["kernel_shape"] = ints_attr({2, 2});
  pool.attributes["strides"] = ints_attr({2, 2});
  g.nodes.push_back(pool);
  auto flat = node("Flatten", {"p1"}, {"f1"});
  flat.attributes["axis"] = int_attr(1);
  g.nodes.push_back(flat);
  auto fc = node("Gemm", {"f1", "fc.weight", "fc.bias"}, {"y"});
  fc.attributes["transB"] = int_attr(1);
  g.nodes.push_back(fc);
  model::infer_shapes(g);
  return g;
}

Recipe parse(const std::string& text) { return recipe_from_json(nlohmann::json::parse(text), "test"); }

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
  CHECK(bits(R"({"w_bits": 4})") == 4 * 640 + 16 * 10 + 320);                      // per-channel scales
  CHECK(bits(R"({"w_bits": 4, "granularity": "per_tensor"})") == 4 * 640 + 16 + 320);
  CHECK(bits(R"({"w_bits": 3, "granularity": "group:16"})") == 3 * 640 + 16 * 40 + 320);
  CHECK(bits(R"({"w_bits": 3, "granularity": "group:24"})") == 3 * 640 + 16 * 30 + 320);  // ceil(64/24) = 3
  CHECK(bits(R"({"w_bits": 1})") == 640 + 16 * 10 + 320);                           // fp16 alpha per channel
  // 50% unstructured: 320 stored, bitmap (640) beats 16 x 320.
  CHECK(bits(R"({"w_bits": 8, "granularity": "per_tensor", "prune": {"kind": "unstructured", "ratio": 0.5}})") ==
        8 * 320 + 16 + 640 + 320);
  // 95% unstructured: floor(608) pruned, 32 stored, 16 x 32 = 512 beats the 640-bit bitmap.
  CHECK(bits(R"({"w_bits": 8, "prune": {"kind": "unstructured", "ratio": 0.95}})") == 8 * 32 + 160 + 512 + 320);
  // 2:4: 320 kept, 2 bits of metadata each.
  CHECK(bits(R"({"w_bits": 4, "prune": {"kind": "2:4"}})") == 4 * 320 + 160 + 2 * 320 + 320);
  // 30% channel: floor(3) channels go with their biases and scales; no index overhead.
  const Recipe ch = parse(R"({"format": "compsearch.recipe/1", "default": {"w_bits": 8, "prune": {"kind": "channel", "ratio": 0.3}}})");
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
  const Recipe r = parse(R"({"format": "compsearch.recipe/1", "layers": {"conv1": {"prune": {"kind": "channel", "ratio": 0.5}}}})");
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
  const Recipe r = parse(R"({"format": "compsearch.recipe/1", "layers": {"conv1": {"prune": {"kind": "channel", "ratio": 0.5}}}})");
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
  CHECK_THROWS_WITH_AS(apply_recipe(g, model::build_layer_table(g),
                                    parse(R"({"format": "compsearch.recipe/1", "layers": {"fc2": {"w_bits": 4}}})")),
                       "recipe: layers.fc2: unknown layer \"fc2\"; the model's layers are: conv1, fc",
                       std::invalid_argument);
}
