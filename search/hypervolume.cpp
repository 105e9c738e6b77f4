// Exact hypervolume in 2-D (sweep), 3-D (Beume et al. 2009 dimension sweep) and beyond (WFG,
// While et al. 2012). See hypervolume.h for the contract and references.
#include "search/hypervolume.h"

#include <algorithm>
#include <cmath>
#include <iterator>
#include <map>
#include <stdexcept>
#include <string>

namespace compsearch::search {
namespace {

double box_volume(const Point& p, const Point& reference) {
  double v = 1.0;
  for (size_t i = 0; i < p.size(); ++i) v *= reference[i] - p[i];
  return v;
}

// Non-dominated subset (minimisation), duplicates collapsed to one (they add no volume).
std::vector<Point> non_dominated(std::vector<Point> points) {
  std::sort(points.begin(), points.end());
  points.erase(std::unique(points.begin(), points.end()), points.end());
  std::vector<Point> out;
  out.reserve(points.size());
  // After lexicographic sorting, a point can only be dominated by one that precedes it.
  for (size_t i = 0; i < points.size(); ++i) {
    bool dominated = false;
    for (const Point& q : out) {
      if (dominates(q, points[i])) {
        dominated = true;
        break;
      }
    }
    if (!dominated) out.push_back(std::move(points[i]));
  }
  return out;
}

double wfg_rec(std::vector<Point>& points, const Point& reference);

// Exclusive hypervolume of points[k] w.r.t. points[k+1..]: its box minus the hypervolume of the
// limit set (every later point clipped to be no better than points[k]).
double exclusive_hv(const std::vector<Point>& points, size_t k, const Point& reference) {
  const Point& p = points[k];
  double v = box_volume(p, reference);
  if (k + 1 == points.size()) return v;
  std::vector<Point> limited;
  limited.reserve(points.size() - k - 1);
  for (size_t j = k + 1; j < points.size(); ++j) {
    Point q(p.size());
    for (size_t d = 0; d < p.size(); ++d) q[d] = std::max(p[d], points[j][d]);
    limited.push_back(std::move(q));
  }
  limited = non_dominated(std::move(limited));
  v -= wfg_rec(limited, reference);
  return v;
}

double wfg_rec(std::vector<Point>& points, const Point& reference) {
  const size_t n = points.size();
  if (n == 0) return 0.0;
  if (n == 1) return box_volume(points[0], reference);
  const size_t dim = reference.size();
  if (dim == 2) return hypervolume_2d(points, reference);
  if (dim == 3) return hypervolume_3d(points, reference);
  if (n == 2) {
    Point m(dim);
    for (size_t d = 0; d < dim; ++d) m[d] = std::max(points[0][d], points[1][d]);
    return box_volume(points[0], reference) + box_volume(points[1], reference) -
           box_volume(m, reference);
  }
  // WFG sorts so that limit sets are small: a point late in the order of the last objective is
  // clipped by few others. Descending last objective puts the "worst" first (While et al. 2012,
  // sec. IV).
  std::sort(points.begin(), points.end(),
            [&](const Point& a, const Point& b) { return a[dim - 1] > b[dim - 1]; });
  double v = 0.0;
  for (size_t k = 0; k < n; ++k) v += exclusive_hv(points, k, reference);
  return v;
}

}  // namespace

double hypervolume_2d(std::vector<Point> points, const Point& reference) {
  std::sort(points.begin(), points.end(), [](const Point& a, const Point& b) {
    return a[0] != b[0] ? a[0] < b[0] : a[1] < b[1];
  });
  double v = 0.0;
  double y_bound = reference[1];
  for (const Point& p : points) {
    if (p[1] < y_bound) {
      v += (reference[0] - p[0]) * (y_bound - p[1]);
      y_bound = p[1];
    }
  }
  return v;
}

double hypervolume_3d(std::vector<Point> points, const Point& reference) {
  std::sort(points.begin(), points.end(),
            [](const Point& a, const Point& b) { return a[2] < b[2]; });
  // The staircase of the points seen so far, projected on (x, y): x ascending, y descending.
  std::map<double, double> front;
  double area = 0.0;
  double v = 0.0;
  double z_prev = points.empty() ? 0.0 : points[0][2];
  const double rx = reference[0], ry = reference[1];
  for (const Point& p : points) {
    v += area * (p[2] - z_prev);
    z_prev = p[2];
    const double px = p[0], py = p[1];
    // Dominated in (x, y) by the staircase: the last point with x <= px has y <= py.
    auto it = front.upper_bound(px);
    double y_left = ry;  // staircase height just left of px
    if (it != front.begin()) {
      auto left = std::prev(it);
      if (left->second <= py) continue;
      y_left = left->second;
    }
    // Walk the points with x >= px that p dominates (y >= py), adding the area p covers
    // above each step of the staircase, and erase them.
    double x_cur = px, y_cur = y_left;
    it = front.lower_bound(px);
    while (it != front.end() && it->second >= py) {
      area += (it->first - x_cur) * (y_cur - py);
      x_cur = it->first;
      y_cur = it->second;
      it = front.erase(it);
    }
    const double x_next = it == front.end() ? rx : it->first;
    area += (x_next - x_cur) * (y_cur - py);
    front[px] = py;
  }
  if (!points.empty()) v += area * (reference[2] - z_prev);
  return v;
}

double hypervolume_wfg(std::vector<Point> points, const Point& reference) {
  points = non_dominated(std::move(points));
  return wfg_rec(points, reference);
}

double hypervolume(const std::vector<Point>& points, const Point& reference) {
  const size_t dim = reference.size();
  if (dim == 0) throw std::invalid_argument("hypervolume: empty reference point");
  for (double r : reference) {
    if (!std::isfinite(r)) {
      throw std::invalid_argument("hypervolume: reference point value " + std::to_string(r) +
                                  " is not finite");
    }
  }
  std::vector<Point> inside;
  inside.reserve(points.size());
  for (size_t i = 0; i < points.size(); ++i) {
    const Point& p = points[i];
    if (p.size() != dim) {
      throw std::invalid_argument("hypervolume: point " + std::to_string(i) + " has " +
                                  std::to_string(p.size()) + " values, the reference " +
                                  std::to_string(dim));
    }
    bool strictly_inside = true;
    for (size_t d = 0; d < dim; ++d) {
      if (std::isnan(p[d])) {
        throw std::invalid_argument("hypervolume: point " + std::to_string(i) + " has a NaN");
      }
      if (!(p[d] < reference[d])) strictly_inside = false;
    }
    if (strictly_inside) inside.push_back(p);
  }
  if (inside.empty()) return 0.0;
  switch (dim) {
    case 1: {
      double best = reference[0];
      for (const Point& p : inside) best = std::min(best, p[0]);
      return reference[0] - best;
    }
    case 2:
      return hypervolume_2d(std::move(inside), reference);
    case 3:
      return hypervolume_3d(std::move(inside), reference);
    default:
      return hypervolume_wfg(std::move(inside), reference);
  }
}

std::vector<double> hypervolume_contributions(const std::vector<Point>& points,
                                              const Point& reference) {
  const double total = hypervolume(points, reference);
  std::vector<double> out(points.size());
  std::vector<Point> rest;
  rest.reserve(points.size());
  for (size_t i = 0; i < points.size(); ++i) {
    rest.clear();
    for (size_t j = 0; j < points.size(); ++j) {
      if (j != i) rest.push_back(points[j]);
    }
    out[i] = std::max(0.0, total - hypervolume(rest, reference));
  }
  return out;
}

}  // namespace compsearch::search
