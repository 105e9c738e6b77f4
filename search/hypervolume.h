// Exact hypervolume (the Lebesgue measure of the region dominated by a point set and bounded by a
// reference point), all objectives minimised. One entry point, `hypervolume`, picks the exact
// algorithm by dimension, as pagmo2's hypervolume object does:
//   1-D: the length ref - min.
//   2-D: a sweep over the points sorted by the first objective, O(n log n).
//   3-D: the dimension-sweep algorithm of Beume, Fonseca, Lopez-Ibanez, Paquete and Vahrenhold,
//        "On the complexity of computing the hypervolume indicator", IEEE TEC 13(5), 2009:
//        points in ascending third objective, a balanced tree (std::map) holding the 2-D
//        staircase and its area, O(n log n).
//   >= 4-D: WFG, While, Bradstreet and Barone, "A fast way of calculating exact hypervolumes",
//        IEEE TEC 16(1), 2012: the sum of exclusive hypervolumes, each the point's box minus the
//        hypervolume of the non-dominated "limit set" of the points after it; the recursion
//        ends in the closed forms for one and two points.
#pragma once

#include <vector>

#include "search/pareto.h"

namespace compsearch::search {

// Points that do not strictly dominate the reference in every objective contribute nothing and
// are ignored (so infeasible or far-away points are harmless). Dominated and duplicated points
// are allowed. Throws std::invalid_argument when a point's size differs from the reference's,
// or a value or the reference is NaN, or the reference is not finite.
double hypervolume(const std::vector<Point>& points, const Point& reference);

// The dimension-specific algorithms, exposed for tests and benchmarks; same contract as
// `hypervolume` but without its input checks and filtering (points must strictly dominate the
// reference).
double hypervolume_2d(std::vector<Point> points, const Point& reference);
double hypervolume_3d(std::vector<Point> points, const Point& reference);
double hypervolume_wfg(std::vector<Point> points, const Point& reference);

// The exclusive contribution of every point: hypervolume(all) - hypervolume(all but i).
// Duplicated points contribute 0 each. Returned in the order of `points`.
std::vector<double> hypervolume_contributions(const std::vector<Point>& points,
                                              const Point& reference);

}  // namespace compsearch::search
