// The compression search space of one model: which Optuna parameters a trial suggests and how
// a trial's parameters become a Recipe.
//
// Every searched layer belongs to one *quant slot* (w_bits, granularity, a_bits) and one *prune
// slot* (prune_kind, prune_ratio). A slot is named after its first layer, so the parameters are
// `<slot>.w_bits`, `<slot>.granularity`, `<slot>.a_bits`, `<slot>.prune_kind`,
// `<slot>.prune_ratio`, plus `kd.epochs`, `kd.temperature`, `kd.alpha`, `kd.lr` (DESIGN names).
// Layers in a `tie` group share both slots; layers whose outputs meet at an Add (a residual sum)
// share their prune slot, so their output channels are pruned together. A parameter with one
// choice is not suggested (it is fixed); `prune_ratio` is only suggested when the chosen kind is
// unstructured or channel; N:M kinds are offered only where every layer of the slot is eligible.
#pragma once

#include <cstddef>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "compressors/recipe.h"
#include "experiments/experiment_config.h"
#include "model/graph.h"
#include "model/layer_table.h"
#include "search/distributions.h"

namespace compsearch::search {
class Trial;
}

namespace compsearch::experiments {

struct QuantSlot {
  std::string name;
  std::vector<size_t> layers;  // layer-table indices
  std::vector<int> w_bits;
  std::vector<std::string> granularity;
  std::vector<int> a_bits;
};

struct PruneSlot {
  std::string name;
  std::vector<size_t> layers;
  std::vector<std::string> kinds;  // "none", "unstructured", "channel", "N:M"
};

using Params = std::map<std::string, nlohmann::json>;  // external values, as a trial stores them

class CompressionSpace {
 public:
  // Throws std::invalid_argument naming the config key for layer names (freeze, tie, layers) that
  // the model does not have and for choices no layer can take.
  CompressionSpace(const model::Graph& graph, const model::LayerTable& table,
                   const SpaceConfig& config);

  const std::vector<QuantSlot>& quant_slots() const { return quant_; }
  const std::vector<PruneSlot>& prune_slots() const { return prune_; }
  const std::vector<std::string>& frozen() const { return frozen_; }
  const RatioRange& prune_ratio() const { return ratio_; }
  const DistillationChoices& distillation() const { return kd_; }

  // Suggests every parameter of the space on `trial` (in a fixed order) and returns them.
  Params suggest(search::Trial& trial) const;
  // The recipe of a parameter set (a trial's params, e.g. read back from the storage). Missing
  // parameters take the first choice; unknown ones are ignored.
  compressors::Recipe recipe(const Params& params) const;
  // Every parameter with its distribution, for documentation and the CLI search-space JSON.
  std::vector<std::pair<std::string, search::Distribution>> distributions() const;
  // Number of distinct recipes (product of choices), saturating at 1e18.
  double size() const;

 private:
  std::vector<QuantSlot> quant_;
  std::vector<PruneSlot> prune_;
  std::vector<std::string> frozen_;
  std::vector<std::string> layer_names_;
  RatioRange ratio_;
  DistillationChoices kd_;
};

// Groups of layer-table indices whose outputs meet at an Add (directly or through ops that keep
// the channel layout: Relu, Clip, BatchNormalization, Identity, Dropout, and other Adds).
std::vector<std::vector<size_t>> add_tied_layers(const model::Graph& graph,
                                                 const model::LayerTable& table);

}  // namespace compsearch::experiments
