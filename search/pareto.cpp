// Pareto dominance, non-dominated sorting, crowding distance and ParetoArchive (see pareto.h).
#include "search/pareto.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <stdexcept>
#include <string>

namespace compsearch::search {

Point to_minimization(const std::vector<double>& values,
                      const std::vector<StudyDirection>& directions) {
  if (values.size() != directions.size()) {
    throw std::invalid_argument("to_minimization: " + std::to_string(values.size()) +
                                " values for " + std::to_string(directions.size()) + " directions");
  }
  Point out(values.size());
  for (size_t i = 0; i < values.size(); ++i) {
    out[i] = directions[i] == StudyDirection::kMaximize ? -values[i] : values[i];
  }
  return out;
}

bool dominates(const Point& a, const Point& b) {
  if (a.size() != b.size()) {
    throw std::invalid_argument("dominates: points with " + std::to_string(a.size()) + " and " +
                                std::to_string(b.size()) + " objectives cannot be compared");
  }
  bool strictly = false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i] > b[i]) return false;
    if (a[i] < b[i]) strictly = true;
  }
  return strictly;
}

std::optional<double> total_violation(const std::optional<std::vector<double>>& constraints) {
  if (!constraints) return std::nullopt;
  double v = 0.0;
  for (double c : *constraints) {
    if (c > 0) v += c;
  }
  return v;
}

bool constrained_dominates(const Point& a, std::optional<double> violation_a, const Point& b,
                           std::optional<double> violation_b) {
  if (!violation_a && !violation_b) return dominates(a, b);
  if (violation_a && !violation_b) return true;
  if (!violation_a && violation_b) return false;
  const bool feasible_a = *violation_a <= 0.0;
  const bool feasible_b = *violation_b <= 0.0;
  if (feasible_a && feasible_b) return dominates(a, b);
  if (feasible_a) return true;
  if (feasible_b) return false;
  return *violation_a < *violation_b;
}

std::vector<std::vector<size_t>> non_dominated_sort(
    const std::vector<Point>& points, const std::vector<std::optional<double>>& violations) {
  const size_t n = points.size();
  if (!violations.empty() && violations.size() != n) {
    throw std::invalid_argument("non_dominated_sort: " + std::to_string(violations.size()) +
                                " violations for " + std::to_string(n) + " points");
  }
  const bool constrained = !violations.empty();
  auto dom = [&](size_t i, size_t j) {
    return constrained ? constrained_dominates(points[i], violations[i], points[j], violations[j])
                       : dominates(points[i], points[j]);
  };
  std::vector<std::vector<size_t>> dominated_by_me(n);
  std::vector<size_t> count(n, 0);
  for (size_t i = 0; i < n; ++i) {
    for (size_t j = i + 1; j < n; ++j) {
      if (dom(i, j)) {
        dominated_by_me[i].push_back(j);
        ++count[j];
      } else if (dom(j, i)) {
        dominated_by_me[j].push_back(i);
        ++count[i];
      }
    }
  }
  std::vector<std::vector<size_t>> fronts;
  std::vector<size_t> current;
  for (size_t i = 0; i < n; ++i) {
    if (count[i] == 0) current.push_back(i);
  }
  while (!current.empty()) {
    std::vector<size_t> next;
    for (size_t i : current) {
      for (size_t j : dominated_by_me[i]) {
        if (--count[j] == 0) next.push_back(j);
      }
    }
    std::sort(next.begin(), next.end());
    fronts.push_back(std::move(current));
    current = std::move(next);
  }
  return fronts;
}

std::vector<size_t> pareto_front_indices(const std::vector<Point>& points) {
  const size_t n = points.size();
  std::vector<size_t> front;
  if (n == 0) return front;
  if (points[0].size() == 2) {
    // Sort by (f0, f1); a point is non-dominated iff its f1 is below every f1 seen before it,
    // or it equals the last kept point exactly (equal points do not dominate each other).
    std::vector<size_t> order(n);
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
      if (points[a][0] != points[b][0]) return points[a][0] < points[b][0];
      if (points[a][1] != points[b][1]) return points[a][1] < points[b][1];
      return a < b;
    });
    const Point* last = nullptr;
    for (size_t i : order) {
      if (last == nullptr || points[i][1] < (*last)[1] || points[i] == *last) {
        front.push_back(i);
        last = &points[i];
      }
    }
    std::sort(front.begin(), front.end());
    return front;
  }
  // In lexicographic order a point can only be dominated by one before it, and a point that
  // some dominated point dominates is dominated by a front point too (transitivity): comparing
  // each point with the front found so far is enough.
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return points[a] != points[b] ? points[a] < points[b] : a < b;
  });
  for (size_t i : order) {
    bool dominated = false;
    for (size_t f : front) {
      if (dominates(points[f], points[i])) {
        dominated = true;
        break;
      }
    }
    if (!dominated) front.push_back(i);
  }
  std::sort(front.begin(), front.end());
  return front;
}

std::vector<double> crowding_distance(const std::vector<Point>& points,
                                      const std::vector<size_t>& indices) {
  const size_t n = indices.size();
  std::vector<double> distance(n, 0.0);
  if (n == 0) return distance;
  const double inf = std::numeric_limits<double>::infinity();
  const size_t m = points[indices[0]].size();
  std::vector<size_t> order(n);
  std::vector<double> vs(n + 2);
  for (size_t k = 0; k < m; ++k) {
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
      return points[indices[a]][k] < points[indices[b]][k];
    });
    if (points[indices[order.front()]][k] == points[indices[order.back()]][k]) continue;
    vs[0] = -inf;
    for (size_t j = 0; j < n; ++j) vs[j + 1] = points[indices[order[j]]][k];
    vs[n + 1] = inf;
    double v_min = vs[1], v_max = vs[n];
    for (size_t j = 1; j <= n; ++j) {
      if (vs[j] != -inf) {
        v_min = vs[j];
        break;
      }
    }
    for (size_t j = n; j >= 1; --j) {
      if (vs[j] != inf) {
        v_max = vs[j];
        break;
      }
    }
    double width = v_max - v_min;
    if (!(width > 0)) width = 1.0;  // width == 0 or -inf (all finite values equal or none)
    for (size_t j = 0; j < n; ++j) {
      const double gap = vs[j] == vs[j + 2] ? 0.0 : vs[j + 2] - vs[j];
      distance[order[j]] += gap / width;
    }
  }
  return distance;
}

void sort_by_crowding_distance(const std::vector<Point>& points, std::vector<size_t>& indices) {
  const std::vector<double> d = crowding_distance(points, indices);
  std::vector<size_t> order(indices.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return d[a] > d[b]; });
  std::vector<size_t> sorted(indices.size());
  for (size_t i = 0; i < order.size(); ++i) sorted[i] = indices[order[i]];
  indices = std::move(sorted);
}

ParetoArchive::ParetoArchive(size_t n_objectives) : n_objectives_(n_objectives) {
  if (n_objectives == 0) throw std::invalid_argument("ParetoArchive: n_objectives must be >= 1");
}

bool ParetoArchive::is_dominated(const Point& values) const {
  for (const Entry& e : entries_) {
    if (dominates(e.values, values)) return true;
  }
  return false;
}

bool ParetoArchive::insert(int64_t id, const Point& values) {
  if (values.size() != n_objectives_) {
    throw std::invalid_argument("ParetoArchive::insert: point " + std::to_string(id) + " has " +
                                std::to_string(values.size()) + " objectives, expected " +
                                std::to_string(n_objectives_));
  }
  for (double v : values) {
    if (std::isnan(v)) {
      throw std::invalid_argument("ParetoArchive::insert: point " + std::to_string(id) +
                                  " has a NaN objective");
    }
  }
  if (is_dominated(values)) return false;
  std::erase_if(entries_, [&](const Entry& e) { return dominates(values, e.values); });
  entries_.push_back({id, values});
  return true;
}

}  // namespace compsearch::search
