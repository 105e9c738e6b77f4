// TPE's below/above split (see tpe_split.h).
#include "search/tpe_split.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <queue>

#include "search/hypervolume.h"
#include "search/pareto.h"
#include "search/tpe_parzen_estimator.h"

namespace compsearch::search::tpe_detail {

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// Optuna's default_gamma: a tenth of the finished trials, at most 25, are "below".
constexpr double kGammaShare = 0.1;
constexpr size_t kGammaMax = 25;

}  // namespace

size_t default_gamma(size_t n) {
  return std::min<size_t>(static_cast<size_t>(std::ceil(kGammaShare * static_cast<double>(n))),
                          kGammaMax);
}

std::vector<double> reference_point(const std::vector<std::vector<double>>& pts) {
  std::vector<double> ref(pts[0].size(), -kInf);
  for (const auto& p : pts) {
    for (size_t d = 0; d < ref.size(); ++d) ref[d] = std::max(ref[d], p[d]);
  }
  for (double& r : ref) {
    r = std::max(1.1 * r, 0.9 * r);  // 10% beyond the worst value, whatever its sign
    if (r == 0) r = kEps;
  }
  return ref;
}

std::vector<size_t> greedy_hssp(const std::vector<std::vector<double>>& points, size_t k,
                                const std::vector<double>& reference) {
  std::vector<size_t> selected;
  std::vector<std::vector<double>> chosen;
  if (k == 0) return selected;
  // Max-heap of (gain upper bound, index); stale entries are re-evaluated when popped.
  using Item = std::pair<double, size_t>;
  auto cmp = [](const Item& a, const Item& b) {
    return a.first != b.first ? a.first < b.first : a.second > b.second;
  };
  std::priority_queue<Item, std::vector<Item>, decltype(cmp)> heap(cmp);
  for (size_t i = 0; i < points.size(); ++i) {
    heap.push({hypervolume({points[i]}, reference), i});
  }
  double hv_selected = 0;
  std::vector<size_t> fresh_at(points.size(), 0);  // selection round of the gain's evaluation
  while (selected.size() < k && !heap.empty()) {
    auto [gain, i] = heap.top();
    heap.pop();
    if (fresh_at[i] == selected.size()) {
      selected.push_back(i);
      chosen.push_back(points[i]);
      hv_selected = hypervolume(chosen, reference);
      continue;
    }
    chosen.push_back(points[i]);
    const double g = hypervolume(chosen, reference) - hv_selected;
    chosen.pop_back();
    fresh_at[i] = selected.size();
    heap.push({g, i});
  }
  return selected;
}

Split split_observations(const std::vector<std::pair<double, std::vector<double>>>& losses,
                         size_t n_below, const std::vector<double>& violations) {
  Split out;
  const size_t n = losses.size();
  if (!violations.empty()) {
    std::vector<size_t> idx(n);
    std::iota(idx.begin(), idx.end(), 0);
    std::stable_sort(idx.begin(), idx.end(),
                     [&](size_t a, size_t b) { return violations[a] < violations[b]; });
    if (n_below >= n || violations[idx[n_below]] > 0) {
      out.below.assign(idx.begin(), idx.begin() + std::min(n_below, n));
      out.above.assign(idx.begin() + std::min(n_below, n), idx.end());
    } else {
      std::vector<size_t> feasible, infeasible;
      for (size_t i = 0; i < n; ++i) (violations[i] == 0 ? feasible : infeasible).push_back(i);
      std::vector<std::pair<double, std::vector<double>>> sub;
      for (size_t i : feasible) sub.push_back(losses[i]);
      const Split s = split_observations(sub, n_below, {});
      for (size_t i : s.below) out.below.push_back(feasible[i]);
      for (size_t i : s.above) out.above.push_back(feasible[i]);
      out.above.insert(out.above.end(), infeasible.begin(), infeasible.end());
    }
    std::sort(out.below.begin(), out.below.end());
    std::sort(out.above.begin(), out.above.end());
    return out;
  }
  const size_t n_obj = n == 0 ? 1 : losses[0].second.size();
  if (n_obj <= 1) {
    std::vector<size_t> idx(n);
    std::iota(idx.begin(), idx.end(), 0);
    std::stable_sort(idx.begin(), idx.end(), [&](size_t a, size_t b) {
      if (losses[a].first != losses[b].first) return losses[a].first < losses[b].first;
      return losses[a].second[0] < losses[b].second[0];
    });
    const size_t nb = std::min(n_below, n);
    out.below.assign(idx.begin(), idx.begin() + nb);
    out.above.assign(idx.begin() + nb, idx.end());
    std::sort(out.below.begin(), out.below.end());
    std::sort(out.above.begin(), out.above.end());
    return out;
  }
  std::vector<std::vector<double>> lvals(n);
  for (size_t i = 0; i < n; ++i) lvals[i] = losses[i].second;
  std::vector<size_t> remaining(n);
  std::iota(remaining.begin(), remaining.end(), 0);
  std::vector<char> in_below(n, 0);
  while (out.below.size() < n_below && !remaining.empty()) {
    // The first non-domination front among the remaining points, in index order.
    std::vector<std::vector<double>> remaining_values;
    remaining_values.reserve(remaining.size());
    for (size_t i : remaining) remaining_values.push_back(lvals[i]);
    std::vector<size_t> front;
    for (size_t r : pareto_front_indices(remaining_values)) front.push_back(remaining[r]);
    const size_t room = n_below - out.below.size();
    if (front.size() <= room) {
      out.below.insert(out.below.end(), front.begin(), front.end());
    } else {
      // Hypervolume subset selection within the front that does not fit.
      std::vector<std::vector<double>> pts;
      for (size_t i : front) pts.push_back(lvals[i]);
      const auto chosen = greedy_hssp(pts, room, reference_point(pts));
      for (size_t c : chosen) out.below.push_back(front[c]);
    }
    for (size_t i : front) in_below[i] = 1;
    std::vector<size_t> rest;
    for (size_t i : remaining) {
      if (!in_below[i]) rest.push_back(i);
    }
    remaining.swap(rest);
  }
  std::fill(in_below.begin(), in_below.end(), 0);
  for (size_t i : out.below) in_below[i] = 1;
  for (size_t i = 0; i < n; ++i) {
    if (!in_below[i]) out.above.push_back(i);
  }
  return out;
}

}  // namespace compsearch::search::tpe_detail
