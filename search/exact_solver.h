// Exact optimisation of additive problems: a choice of one option per layer, each option with
// additive cost terms (e.g. bytes, latency, energy) and an additive loss (e.g. a per-layer
// sensitivity estimate). This is the multiple-choice knapsack problem (MCKP; Kellerer,
// Pferschy, Pisinger, "Knapsack Problems", Springer 2004, ch. 11).
//
// pareto_front: the exact Pareto front of (total cost term k, total loss) by dynamic
//   programming over Pareto sets (Nemhauser and Ullmann, "Discrete dynamic programming and
//   capital allocation", Management Science 15(9), 1969): F_0 = {(0, 0)}, F_i = the
//   non-dominated points of F_{i-1} + (options of layer i), built by a K-way merge of the
//   shifted, cost-sorted sets. No discretisation: every point of the true front is returned
//   (up to floating-point rounding of the sums), with the option chosen in every layer.
//   Optional `cost_resolution` r > 0 bounds the work: within each cost bucket [k r, (k+1) r)
//   only the lowest loss survives each layer. Every returned point is then still a real
//   solution with its exact cost and loss, and for every point (c, l) of the exact front there
//   is a returned point with loss <= l and cost <= c + L r (L = number of layers). When every
//   option cost is an integer multiple of r (e.g. bytes with r = 1) the bucketed front is exact.
//   With real-valued costs the exact front can hold millions of points (54 x 60 random options)
//   and takes minutes; bucketing keeps it to range / r points.
// best_under_budgets: the minimum total loss subject to total cost_k <= budget_k for each
//   budgeted cost term, exact: a Pareto-set DP over (loss, budgeted costs) with states pruned
//   when they cannot stay within budget (suffix minimum costs) or cannot beat the incumbent
//   (suffix minimum losses), the incumbent taken from the one-cost front. Its cost grows with the
//   size of the exact Pareto sets, so it suits tens of layers or integer-valued costs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

namespace compsearch::search {

struct LayerOption {
  std::vector<double> costs;  // one value per cost term, same count in every option
  double loss = 0.0;
};

struct AdditiveProblem {
  std::vector<std::vector<LayerOption>> layers;  // layers[i] = the options of layer i
  // Throws std::invalid_argument naming the layer and option for an empty layer, a cost vector
  // of the wrong size, or a non-finite value.
  void validate() const;
  size_t n_costs() const;
};

struct Solution {
  std::vector<double> costs;     // totals per cost term
  double loss = 0.0;             // total loss
  std::vector<uint32_t> choice;  // option index per layer
};

struct FrontOptions {
  size_t cost_index = 0;                  // which cost term is traded against the loss
  std::optional<double> cost_resolution;  // see above; nullopt = exact
};

// The Pareto front sorted by increasing cost (and so decreasing loss); among solutions with
// equal cost and loss one is kept.
std::vector<Solution> pareto_front(const AdditiveProblem& problem,
                                   const FrontOptions& options = {});

// nullopt entries are unbudgeted. Returns nullopt when no choice fits the budgets.
// Throws std::invalid_argument when budgets.size() != n_costs.
std::optional<Solution> best_under_budgets(const AdditiveProblem& problem,
                                           const std::vector<std::optional<double>>& budgets);

}  // namespace compsearch::search
