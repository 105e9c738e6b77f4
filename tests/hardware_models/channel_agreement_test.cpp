// Compressors (exact dropped input channels, effective MACs, rule-9 bytes) and the hardware models
// (per-target MACs and bytes from kept-channel fractions) use one propagation rule,
// model/channel_propagation.h, so they agree layer by layer under channel pruning. The graphs are
// the ones where their former private copies disagreed (hardware_models propagated through any
// Clip and any Flatten but not through Identity or Dropout), plus the reference models.
#include <doctest/doctest.h>

#include <string>

#include "compressors/apply.h"
#include "hardware_models/hardware_model.h"
#include "model/graph.h"
#include "model/layer_table.h"
#include "tests/model/channel_graphs.h"

namespace cp = compsearch::compressors;
namespace hm = compsearch::hardware_models;
namespace model = compsearch::model;
namespace t = compsearch::testing;

namespace {

cp::Recipe prune_channels(const std::string& layer, double ratio, int w_bits) {
  cp::Recipe r;
  cp::LayerSetting s;
  s.w_bits = w_bits;
  s.a_bits = w_bits <= 8 ? 8 : 32;
  s.prune = {cp::PruneKind::kChannel, ratio, 0, 0};
  if (layer.empty())
    r.default_setting = s;
  else
    r.layers[layer] = s;
  return r;
}

// Compressors' and the GPU model's MACs and bytes per layer (batch 1); returns the head's MACs.
double check_agreement(const model::Graph& g, const cp::Recipe& recipe) {
  const model::LayerTable table = model::build_layer_table(g);
  const cp::CompressedModel cm = cp::apply_recipe(g, table, recipe);
  const hm::Workload w = hm::workload_from_graph(g, table);
  const hm::Estimate e =
      hm::make_hardware_model(hm::load_profile("gpu:t4"))->estimate(w, recipe, 1);
  REQUIRE(e.layers.size() == cm.cost.layers.size());
  double head_macs = -1;
  for (size_t i = 0; i < e.layers.size(); ++i) {
    CAPTURE(table.layers[i].name);
    CHECK(e.layers[i].macs ==
          doctest::Approx(double(cm.cost.layers[i].effective_macs)).epsilon(1e-12));
    CHECK(e.layers[i].weight_bytes ==
          doctest::Approx(cm.cost.layers[i].total_bits / 8.0).epsilon(1e-12));
    if (table.layers[i].name == "head") head_macs = e.layers[i].macs;
  }
  return head_macs;
}

}  // namespace

TEST_CASE(
    "Compressors and hardware models drop the same consumer inputs through Identity, Dropout, Clip "
    "and Flatten") {
  // conv1 has 4 output channels; pruning half removes 2. The head reads conv1's [1,4,4,4] output:
  // a 1x1 conv has 3 x 4 x 16 = 192 MACs, a Gemm over 64 flattened features 3 x 64 = 192, a Gemm
  // over Flatten(axis 2)'s [4, 16] 3 x 16 = 48 per row (the layer table counts per row of dim 0,
  // the batch dim). Where the channels propagate the head keeps half its inputs.
  const cp::Recipe half = prune_channels("conv1", 0.5, 8);
  CHECK(check_agreement(t::channel_chain(t::one_op("Identity")), half) == 96);
  CHECK(check_agreement(t::channel_chain(t::one_op("Dropout")), half) == 96);
  CHECK(check_agreement(t::channel_chain(t::one_op("Relu")), half) == 96);
  CHECK(check_agreement(t::channel_chain(t::clip_inputs("0", "6")), half) == 96);
  CHECK(check_agreement(t::channel_chain(t::flatten_at(1)), half) == 96);
  CHECK(check_agreement(t::channel_chain(t::reshape_to({1, -1})), half) == 96);
  // Clip(min = 1) turns a zero channel into ones; Flatten(axis 2) turns channels into rows.
  CHECK(check_agreement(t::channel_chain(t::clip_inputs("1", "")), half) == 192);
  CHECK(check_agreement(t::channel_chain(t::flatten_at(2)), half) == 48);
  // fp32 weights and 25% (1 of 4 channels): 3/4 of 192.
  CHECK(check_agreement(t::channel_chain(t::then(
                            {t::one_op("Identity"), t::one_op("Dropout"), t::flatten_at(1)})),
                        prune_channels("conv1", 0.25, 32)) == 144);
}

TEST_CASE(
    "Compressors and hardware models agree on effective MACs of the reference models under channel "
    "pruning") {
  for (const char* file : {"fmnist_cnn.onnx", "fmnist_mlp.onnx"}) {
    CAPTURE(file);
    const model::Graph g = model::load_onnx(std::string(COMPSEARCH_SOURCE_DIR) + "/models/" + file);
    for (double ratio : {0.25, 0.5}) {
      CAPTURE(ratio);
      check_agreement(g, prune_channels("", ratio, 8));
      check_agreement(g, prune_channels("", ratio, 32));
    }
  }
}
