// The additive view of a compression space: its independent parts, the options of each, the
// per-part sensitivity table of a problem, and the `exact` route that solves the additive
// proxy's whole front with search/exact_solver.h.
//
// Parts. A prune slot that holds exactly one quant slot (the common case: one layer, or one tie
// group) is ONE part whose options are every joint choice of bits, granularity, activation bits,
// prune kind and ratio. A prune slot that holds several quant slots (layers joined by a residual
// Add) is split: one part per quant slot and one part for the prune slot. Parameters with one
// choice are not part of any option (a trial does not record them either).
//
// The table measures each part's quantization choice with pruning off and its pruning choice with
// fp32 weights, so it has (quant choices + prune choices) entries per part rather than their
// product; a joint option's loss is the sum of its two entries. Choices that compress nothing
// (prune "none", 32-bit weights and activations) are not measured: they add 0.
//
// Costs in the exact route are computed per joint option: an option's cost is the cost of the
// recipe with only that option applied minus the uncompressed model's. Channel pruning also
// shrinks the consumer layer, so the sum is an estimate; every front point is costed exactly
// before it is enqueued.
#pragma once

#include <cstddef>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "evaluators/sensitivity.h"
#include "experiments/search_space.h"
#include "model/layer_table.h"

namespace compsearch::experiments {

class CompressionProblem;

struct ProxyPart {
  std::string name;
  std::vector<size_t> layers;         // layer-table indices
  bool quant = false, prune = false;  // which settings of those layers the part decides
  std::vector<std::string> quant_params, prune_params;  // names it decides (choices > 1)
  std::vector<Params> options;  // every joint assignment, as a trial records it
};

class ProxyParts {
 public:
  ProxyParts(const CompressionSpace& space, const model::LayerTable& table);

  const std::vector<ProxyPart>& parts() const { return parts_; }
  // The table keys of a trial's params: per part, its quantization entry and its pruning entry
  // ("<part>|q|w_bits=4,a_bits=8"), leaving out entries that compress nothing.
  std::vector<std::string> keys(const Params& params) const;
  // One side's key (quant or prune) of part `i`; empty when it compresses nothing.
  std::string side_key(size_t part, const Params& params, bool quant) const;
  // The recipe with only `option` of part `i` applied (everything else fp32, no distillation);
  // `quant` / `prune` false leave that side of the part uncompressed.
  compressors::Recipe isolated_recipe(size_t part, const Params& option, bool quant = true,
                                      bool prune = true) const;
  // Every option of every part, for measure_sensitivity.
  std::vector<evaluators::SensitivityOption> sensitivity_options() const;
  size_t option_count() const;

 private:
  const CompressionSpace* space_;
  const model::LayerTable* table_;
  std::vector<ProxyPart> parts_;
};

// The sensitivity table of a problem, measured with its evaluator and cached in `cache_dir`
// under a key of the model file's bytes, the data settings, the space and the evaluator.
evaluators::SensitivityTable problem_sensitivity(
    const CompressionProblem& problem, const ProxyParts& parts,
    const std::filesystem::path& cache_dir,
    const std::function<void(const evaluators::SensitivityProgress&)>& progress = {});

// The `exact` route: the exact Pareto front of (additive cost, additive loss of the evaluator's
// objective) for every minimised cost objective of the config, merged; points that break a cost
// constraint (costed exactly) are dropped. Returns at most `max_points` params sets, spread evenly
// along the front and ordered cheapest first (by the first cost objective).
struct ExactPoint {
  Params params;
  double proxy_loss = 0.0;            // additive estimate of the evaluator objective's loss
  std::vector<double> cost_estimate;  // additive estimate per cost objective
};
// Keeps at most `max_points` of a cheapest-first front, evenly spaced along it (both ends kept).
void spread_evenly(std::vector<ExactPoint>& points, size_t max_points);
std::vector<ExactPoint> exact_front(const CompressionProblem& problem, const ProxyParts& parts,
                                    const evaluators::SensitivityTable& table, size_t max_points);

// The evaluator metric that the proxy and the exact route trade against cost: the first objective
// that is not a cost metric ("accuracy", "agreement", "kl", ...). Empty when every objective is a
// cost.
std::string evaluated_objective(const CompressionProblem& problem, bool* maximize = nullptr);

}  // namespace compsearch::experiments
