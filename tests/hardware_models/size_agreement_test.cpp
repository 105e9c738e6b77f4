// The hardware models' stored weight bytes equal compressors' exact rule-9 accounting (the size
// `evaluate` reports) on the reference models, layer by layer, for every kind of setting: both
// go through compressors::stored_bits, and channel pruning's propagation must agree too.
#include <doctest/doctest.h>

#include <string>

#include "compressors/apply.h"
#include "hardware_models/hardware_model.h"
#include "model/graph.h"
#include "model/layer_table.h"

namespace cp = compsearch::compressors;
namespace hm = compsearch::hardware_models;
namespace model = compsearch::model;

namespace {

cp::Recipe all_layers(int w_bits, cp::GranularityKind g, int group, cp::PruneKind prune,
                      double ratio, int n = 0, int m = 0) {
  cp::Recipe r;
  r.default_setting.w_bits = w_bits;
  r.default_setting.granularity.kind = g;
  r.default_setting.granularity.group_size = group;
  r.default_setting.prune.kind = prune;
  r.default_setting.prune.ratio = ratio;
  r.default_setting.prune.n = n;
  r.default_setting.prune.m = m;
  return r;
}

void check_model(const std::string& file) {
  const model::Graph g = model::load_onnx(std::string(COMPSEARCH_SOURCE_DIR) + "/models/" + file);
  const model::LayerTable t = model::build_layer_table(g);
  const hm::Workload w = hm::workload_from_graph(g, t);
  const auto target = hm::make_hardware_model(hm::load_profile("mcu:stm32h743"));
  using G = cp::GranularityKind;
  using P = cp::PruneKind;
  const cp::Recipe recipes[] = {all_layers(32, G::kPerChannel, 0, P::kNone, 0),
                                all_layers(8, G::kPerChannel, 0, P::kNone, 0),
                                all_layers(4, G::kPerTensor, 0, P::kNone, 0),
                                all_layers(3, G::kGroup, 16, P::kNone, 0),
                                all_layers(1, G::kPerChannel, 0, P::kNone, 0),
                                all_layers(8, G::kPerChannel, 0, P::kUnstructured, 0.5),
                                all_layers(4, G::kPerChannel, 0, P::kNM, 0.5, 2, 4),
                                all_layers(8, G::kPerChannel, 0, P::kChannel, 0.25),
                                all_layers(4, G::kGroup, 16, P::kChannel, 0.25),
                                all_layers(16, G::kPerChannel, 0, P::kUnstructured, 0.3)};
  for (const cp::Recipe& r : recipes) {
    const cp::LayerSetting& s = r.default_setting;
    CAPTURE(file);
    CAPTURE(s.w_bits);
    CAPTURE(static_cast<int>(s.prune.kind));
    CAPTURE(static_cast<int>(s.granularity.kind));
    cp::Recipe rr = r;
    if (s.prune.kind == P::kNM) {  // N:M only where the axis holds whole groups (DESIGN.md rule 4)
      rr.default_setting.prune = {};
      for (const auto& L : t.layers) {
        if (cp::nm_eligible(L, s.prune.m)) rr.layers[L.name] = s;
      }
    }
    const cp::CompressedModel cm = cp::apply_recipe(g, t, rr);
    const hm::Estimate e = target->estimate(w, rr, 1);
    REQUIRE(e.layers.size() == cm.cost.layers.size());
    for (size_t i = 0; i < e.layers.size(); ++i) {
      CAPTURE(cm.cost.layers[i].name);
      CHECK(e.layers[i].weight_bytes ==
            doctest::Approx(cm.cost.layers[i].total_bits / 8.0).epsilon(1e-12));
    }
  }
}

}  // namespace

TEST_CASE("Hardware models count the same stored bytes as compressors on the reference models") {
  check_model("fmnist_cnn.onnx");
  check_model("fmnist_mlp.onnx");
}
