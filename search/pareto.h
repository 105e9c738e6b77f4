// Pareto dominance for multi-objective search: plain and constrained domination, fast
// non-dominated sorting, crowding distance, and ParetoArchive (the running non-dominated set).
//
// Convention: every function here MINIMISES every objective. Callers with maximised objectives
// flip their sign first (to_minimization), as Optuna's _normalize_value does.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include "search/trial.h"

namespace compsearch::search {

using Point = std::vector<double>;

// Values in minimisation form: maximised objectives negated. Throws std::invalid_argument when
// the sizes differ.
Point to_minimization(const std::vector<double>& values,
                      const std::vector<StudyDirection>& directions);

// a dominates b: a <= b in every objective and a != b (Optuna's _dominates; equal points do not
// dominate each other). Sizes must match (checked).
bool dominates(const Point& a, const Point& b);

// Total constraint violation as Optuna sums it: the sum of the positive constraint values
// (0 when feasible). nullopt (no constraints recorded) stays nullopt.
std::optional<double> total_violation(const std::optional<std::vector<double>>& constraints);

// Deb's constrained domination (K. Deb, "An efficient constraint handling method for genetic
// algorithms", CMAME 186, 2000; NSGA-II paper, IEEE TEC 6(2), 2002, sec. V) with Optuna 3.1's
// treatment of a missing constraint record (a point without constraints is dominated by one
// with them; two points without constraints compare by plain domination):
//   a feasible point dominates an infeasible one; two infeasible points compare by total
//   violation (smaller wins); two feasible points compare by `dominates`.
bool constrained_dominates(const Point& a, std::optional<double> violation_a, const Point& b,
                           std::optional<double> violation_b);

// Fast non-dominated sort (Deb et al. 2002, sec. III-A): the indices of `points`, grouped by
// rank (front 0 first); within a front, indices ascend. O(M N^2).
// With `violations` (same size as points, or empty for none), domination is
// constrained_dominates. Throws std::invalid_argument on mismatched sizes.
std::vector<std::vector<size_t>> non_dominated_sort(
    const std::vector<Point>& points, const std::vector<std::optional<double>>& violations = {});

// Indices of the non-dominated points (rank 0), ascending; equal points are all kept. The one
// Pareto-front rule of search/ (TPE's split and Study::best_trials use it). O(N log N) for 2
// objectives, O(M N F) otherwise (F = the front's size).
std::vector<size_t> pareto_front_indices(const std::vector<Point>& points);

// Crowding distance of the points selected by `indices` (Deb et al. 2002, sec. III-B), with
// Optuna 3.1's conventions (nsgaii/_sampler.py, _calc_crowding_distance): per objective, an
// objective where all values are equal contributes 0; otherwise each point gets
// (next - previous) / (max finite - min finite), the extremes have +inf neighbours (so the
// boundary points get +inf), and inf - inf counts as 0. Returned in the order of `indices`.
std::vector<double> crowding_distance(const std::vector<Point>& points,
                                      const std::vector<size_t>& indices);

// Sorts `indices` by descending crowding distance; ties keep their input order.
void sort_by_crowding_distance(const std::vector<Point>& points, std::vector<size_t>& indices);

// The running non-dominated set of a search (minimisation form). Each entry keeps the caller's
// id (e.g. a trial number). Duplicated points are all kept (neither dominates the other).
class ParetoArchive {
 public:
  struct Entry {
    int64_t id;
    Point values;
  };

  explicit ParetoArchive(size_t n_objectives);

  // Adds the point unless an archived point dominates it; removes archived points that it
  // dominates. Returns true when added. Throws std::invalid_argument for a point of the wrong
  // size or with a NaN.
  bool insert(int64_t id, const Point& values);
  // Whether an archived point dominates `values` (the point would be rejected).
  bool is_dominated(const Point& values) const;
  const std::vector<Entry>& entries() const { return entries_; }
  size_t size() const { return entries_.size(); }
  size_t n_objectives() const { return n_objectives_; }

 private:
  size_t n_objectives_;
  std::vector<Entry> entries_;
};

}  // namespace compsearch::search
