// TPE's split of the observed trials into "below" (the best gamma(n)) and "above" (the rest),
// as Optuna 3.1 does it (optuna/samplers/_tpe/sampler.py: _split_observation_pairs,
// _solve_hssp): single objective by (step, value), PRUNED trials after COMPLETE ones;
// multi-objective by non-domination rank, the front that does not fit trimmed by greedy
// hypervolume subset selection; with constraints, feasible before infeasible by total violation.
// Internal to search/ (declared here for tests).
#pragma once

#include <cstddef>
#include <utility>
#include <vector>

namespace compsearch::search::tpe_detail {

// Optuna's default_gamma: the number of "below" observations out of n finished ones,
// min(ceil(0.1 n), 25).
size_t default_gamma(size_t n);

struct Split {
  std::vector<size_t> below, above;
};
// `losses[i]` = (step, minimisation-form values): step -inf for COMPLETE trials, minus the last
// reported step for PRUNED ones; `violations` (total constraint violation per observation) empty
// when unconstrained. Returns index sets into `losses`.
Split split_observations(const std::vector<std::pair<double, std::vector<double>>>& losses,
                         size_t n_below, const std::vector<double>& violations);

// Greedy hypervolume subset selection (Guerreiro, Fonseca, Paquete, "Greedy hypervolume subset
// selection in low dimensions", Evolutionary Computation 24(3), 2016): `k` of `points` chosen one
// at a time by largest hypervolume gain, lazily re-evaluated (gains only shrink).
std::vector<size_t> greedy_hssp(const std::vector<std::vector<double>>& points, size_t k,
                                const std::vector<double>& reference);

// Optuna's _get_reference_point for minimisation-form points: each objective's worst value
// moved 10% further out (kEps where it is 0).
std::vector<double> reference_point(const std::vector<std::vector<double>>& points);

}  // namespace compsearch::search::tpe_detail
