// Channel-pruning propagation (model/channel_propagation.h) on hand-built graphs: which layers read
// conv1's output channels, through which ops, and how many features each channel becomes. The
// expected consumers are worked out by hand from the graph (conv1 outputs [1, 4, 4, 4]).
#include "model/channel_propagation.h"

#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "model/layer_table.h"
#include "tests/model/channel_graphs.h"

namespace model = compsearch::model;
namespace t = compsearch::testing;

namespace {

struct Found {
  bool propagates;
  int64_t inputs_per_channel;
};

// conv1 (layer 0) -> chain -> head (the last layer); what channel_consumers says about head.
Found head_of(const model::Graph& g) {
  const model::LayerTable table = model::build_layer_table(g);
  const int head = model::find_layer(table, "head");
  REQUIRE(head >= 0);
  const auto consumers = model::channel_consumers(g, table, model::find_layer(table, "conv1"));
  const auto sources = model::channel_sources(g, table);
  REQUIRE(sources.size() == table.layers.size());
  for (const auto& c : consumers) {
    if (c.layer == head) {
      CHECK(sources[head] == model::find_layer(table, "conv1"));  // the inverse relation agrees
      return {true, c.inputs_per_channel};
    }
  }
  CHECK(sources[head] != model::find_layer(table, "conv1"));
  return {false, 0};
}

}  // namespace

TEST_CASE(
    "A zero channel reaches a consumer through Relu, Identity, Dropout and pools, channel for "
    "channel") {
  for (const std::string op : {"Relu", "Identity", "Dropout", "GlobalAveragePool"}) {
    CAPTURE(op);
    const Found f = head_of(t::channel_chain(t::one_op(op)));
    CHECK(f.propagates);
    CHECK(f.inputs_per_channel == 1);
  }
  // MaxPool 2x2 then AveragePool 1x1 keep 4 channels on dim 1.
  const auto g = t::channel_chain([](model::Graph& gr, const std::string& v) {
    auto mp = t::node("MaxPool", {v}, {"mp"});
    mp.attributes["kernel_shape"] = t::ints_attr({2, 2});
    mp.attributes["strides"] = t::ints_attr({2, 2});
    gr.nodes.push_back(mp);
    auto ap = t::node("AveragePool", {"mp"}, {"ap"});
    ap.attributes["kernel_shape"] = t::ints_attr({1, 1});
    gr.nodes.push_back(ap);
    return std::string("ap");
  });
  const Found f = head_of(g);
  CHECK(f.propagates);
  CHECK(f.inputs_per_channel == 1);
}

TEST_CASE("Clip propagates a zero channel only when 0 lies between its constant bounds") {
  CHECK(head_of(t::channel_chain(t::clip_inputs("0", "6"))).propagates);          // ReLU6
  CHECK(head_of(t::channel_chain(t::clip_inputs("-1", ""))).propagates);          // max omitted
  CHECK(head_of(t::channel_chain(t::clip_inputs("", "6"))).propagates);           // min omitted
  CHECK_FALSE(head_of(t::channel_chain(t::clip_inputs("1", ""))).propagates);     // 0 -> 1
  CHECK_FALSE(head_of(t::channel_chain(t::clip_inputs("-2", "-1"))).propagates);  // 0 -> -1
  SUBCASE("opset 6 attributes") {
    auto clip_attr = [](float lo, float hi) {
      return [lo, hi](model::Graph& g, const std::string& v) {
        auto c = t::node("Clip", {v}, {"clipped"});
        c.attributes["min"] = t::float_attr(lo);
        c.attributes["max"] = t::float_attr(hi);
        g.nodes.push_back(c);
        return std::string("clipped");
      };
    };
    CHECK(head_of(t::channel_chain(clip_attr(0.0f, 6.0f))).propagates);
    CHECK_FALSE(head_of(t::channel_chain(clip_attr(0.5f, 6.0f))).propagates);
  }
  SUBCASE("a computed bound cannot be checked, so it stops propagation") {
    const auto g = t::channel_chain([](model::Graph& gr, const std::string& v) {
      gr.initializers["one"] = model::Tensor::floats({}, {1.0f});
      gr.nodes.push_back(t::node("Abs", {"one"}, {"abs_one"}));
      gr.nodes.push_back(t::node("Clip", {v, "abs_one"}, {"clipped"}));
      return std::string("clipped");
    });
    CHECK_FALSE(head_of(g).propagates);
  }
}

TEST_CASE(
    "Flatten at axis 1 turns each channel into its 16 features; Flatten at axis 2 stops "
    "propagation") {
  const Found at1 = head_of(t::channel_chain(t::flatten_at(1)));  // [1,4,4,4] -> [1,64]
  CHECK(at1.propagates);
  CHECK(at1.inputs_per_channel == 16);
  const Found neg = head_of(t::channel_chain(t::flatten_at(-3)));  // -3 + rank 4 = axis 1
  CHECK(neg.propagates);
  CHECK(neg.inputs_per_channel == 16);
  // [1,4,4,4] -> [4,16]: a channel is now a row (a sample), the head's 16 features mix channels.
  CHECK_FALSE(head_of(t::channel_chain(t::flatten_at(2))).propagates);
  // MaxPool 2x2 first: each channel is 2x2 = 4 features.
  const auto pooled =
      t::channel_chain(t::then({[](model::Graph& g, const std::string& v) {
                                  auto mp = t::node("MaxPool", {v}, {"mp"});
                                  mp.attributes["kernel_shape"] = t::ints_attr({2, 2});
                                  mp.attributes["strides"] = t::ints_attr({2, 2});
                                  g.nodes.push_back(mp);
                                  return std::string("mp");
                                },
                                t::one_op("Relu"), t::flatten_at(1), t::one_op("Dropout")}));
  const Found p = head_of(pooled);
  CHECK(p.propagates);
  CHECK(p.inputs_per_channel == 4);
}

TEST_CASE("Reshape propagates only when it is a flatten at axis 1") {
  const Found flat = head_of(t::channel_chain(t::reshape_to({1, -1})));  // x.view(x.size(0), -1)
  CHECK(flat.propagates);
  CHECK(flat.inputs_per_channel == 16);
  CHECK_FALSE(head_of(t::channel_chain(t::reshape_to({4, 16}))).propagates);  // channels -> rows
  CHECK_FALSE(head_of(t::channel_chain(t::reshape_to({2, 32}))).propagates);  // channels split
}

TEST_CASE("Ops that move a zero channel away from zero or mix channels stop propagation") {
  CHECK_FALSE(head_of(t::channel_chain(t::one_op("Sigmoid"))).propagates);
  const auto add = t::channel_chain([](model::Graph& g, const std::string& v) {
    g.nodes.push_back(t::node("Add", {v, v}, {"sum"}));
    return std::string("sum");
  });
  CHECK_FALSE(head_of(add).propagates);
}

TEST_CASE("A Gemm producer propagates to the next Gemm through Relu; transA stops it") {
  const model::Graph g = t::channel_chain([](model::Graph& gr, const std::string& v) {
    auto f = t::flatten_at(1)(gr, v);
    gr.initializers["fc.weight"] =
        model::Tensor::floats({5, 64}, std::vector<float>(5 * 64, 0.01f));
    auto fc = t::node("Gemm", {f, "fc.weight"}, {"fc_out"});
    fc.attributes["transB"] = t::int_attr(1);
    gr.nodes.push_back(fc);
    gr.nodes.push_back(t::node("Relu", {"fc_out"}, {"fc_relu"}));
    return std::string("fc_relu");
  });
  const model::LayerTable table = model::build_layer_table(g);
  REQUIRE(table.layers.size() == 3);
  const auto sources = model::channel_sources(g, table);
  CHECK(sources == std::vector<int>{-1, 0, 1});  // fc <- conv1 (via Flatten), head <- fc
  const auto c = model::channel_consumers(g, table, 1);
  REQUIRE(c.size() == 1);
  CHECK(c[0].layer == 2);
  CHECK(c[0].inputs_per_channel == 1);
  // With transA = 1 the head reduces over dim 0 of its input, not over fc's features.
  model::Graph direct = g;
  for (auto& n : direct.nodes)
    if (n.outputs.at(0) == "y") n.attributes["transA"] = t::int_attr(1);
  const auto sources_t = model::channel_sources(direct, model::build_layer_table(direct));
  CHECK(sources_t[2] == -1);
  CHECK(model::channel_consumers(g, table, 7).empty());  // out of range
}

TEST_CASE("A producer feeding two branches reaches each consumer that keeps its channels") {
  // conv1 -> Relu -> head (1x1 conv); conv1 -> Sigmoid -> side (1x1 conv): only head.
  model::Graph g = t::channel_chain([](model::Graph& gr, const std::string& v) {
    gr.nodes.push_back(t::node("Sigmoid", {v}, {"sig"}));
    gr.initializers["side.weight"] =
        model::Tensor::floats({2, 4, 1, 1}, std::vector<float>(8, 0.5f));
    auto side = t::node("Conv", {"sig", "side.weight"}, {"side_out"});
    side.attributes["kernel_shape"] = t::ints_attr({1, 1});
    gr.nodes.push_back(side);
    gr.nodes.push_back(t::node("Relu", {v}, {"r"}));
    return std::string("r");
  });
  const model::LayerTable table = model::build_layer_table(g);
  const auto sources = model::channel_sources(g, table);
  CHECK(sources[model::find_layer(table, "head")] == 0);
  CHECK(sources[model::find_layer(table, "side")] == -1);
}
