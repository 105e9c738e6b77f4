// Exact solver against brute-force enumeration on small instances, and the test problems
// against hand-computed values.
#include "search/exact_solver.h"

#include <doctest/doctest.h>

#include <cmath>
#include <random>

#include "search/pareto.h"
#include "search/problems.h"

using namespace compsearch::search;

namespace {

AdditiveProblem random_problem(std::mt19937_64& rng, size_t layers, size_t options, size_t costs,
                               bool integer) {
  std::uniform_real_distribution<double> u(0.0, 10.0);
  AdditiveProblem p;
  p.layers.resize(layers);
  for (auto& l : p.layers) {
    for (size_t j = 0; j < options; ++j) {
      LayerOption o;
      for (size_t c = 0; c < costs; ++c) o.costs.push_back(integer ? std::floor(u(rng)) : u(rng));
      o.loss = integer ? std::floor(u(rng)) : u(rng);
      l.push_back(o);
    }
  }
  return p;
}

// Every choice vector, with its totals.
std::vector<Solution> enumerate(const AdditiveProblem& p) {
  std::vector<Solution> all;
  std::vector<uint32_t> choice(p.layers.size(), 0);
  while (true) {
    Solution s;
    s.choice = choice;
    s.costs.assign(p.n_costs(), 0.0);
    for (size_t i = 0; i < p.layers.size(); ++i) {
      const auto& o = p.layers[i][choice[i]];
      for (size_t c = 0; c < s.costs.size(); ++c) s.costs[c] += o.costs[c];
      s.loss += o.loss;
    }
    all.push_back(s);
    size_t i = 0;
    while (i < choice.size() && ++choice[i] == p.layers[i].size()) choice[i++] = 0;
    if (i == choice.size()) break;
  }
  return all;
}

}  // namespace

TEST_CASE("Exact Pareto front equals brute-force enumeration on small instances") {
  std::mt19937_64 rng(11);
  for (int rep = 0; rep < 20; ++rep) {
    const bool integer = rep % 2 == 0;  // integer data exercises ties
    const AdditiveProblem p = random_problem(rng, 4, 5, 2, integer);
    const auto all = enumerate(p);
    for (size_t k = 0; k < 2; ++k) {
      std::vector<Point> pts;
      for (const auto& s : all) pts.push_back({s.costs[k], s.loss});
      std::vector<Point> expected;
      for (size_t i : pareto_front_indices(pts)) expected.push_back(pts[i]);
      std::sort(expected.begin(), expected.end());
      expected.erase(std::unique(expected.begin(), expected.end()), expected.end());
      FrontOptions fo;
      fo.cost_index = k;
      const auto front = pareto_front(p, fo);
      REQUIRE(front.size() == expected.size());
      for (size_t i = 0; i < front.size(); ++i) {
        CHECK(front[i].costs[k] == doctest::Approx(expected[i][0]));
        CHECK(front[i].loss == doctest::Approx(expected[i][1]));
        // The reported choice really has the reported totals.
        double loss = 0;
        for (size_t l = 0; l < p.layers.size(); ++l) loss += p.layers[l][front[i].choice[l]].loss;
        CHECK(loss == doctest::Approx(front[i].loss));
      }
    }
  }
}

TEST_CASE("Discretised front stays within its stated cost tolerance") {
  std::mt19937_64 rng(5);
  const AdditiveProblem p = random_problem(rng, 6, 6, 1, false);
  const auto exact = pareto_front(p);
  FrontOptions fo;
  fo.cost_resolution = 2.0;
  const auto coarse = pareto_front(p, fo);
  CHECK(coarse.size() < exact.size());
  for (const auto& e : exact) {
    bool covered = false;
    for (const auto& c : coarse) {
      covered |= c.loss <= e.loss + 1e-9 && c.costs[0] <= e.costs[0] + 6 * 2.0 + 1e-9;
    }
    CHECK(covered);
  }
}

TEST_CASE("Best under one or several budgets equals brute force") {
  std::mt19937_64 rng(3);
  for (int rep = 0; rep < 30; ++rep) {
    const AdditiveProblem p = random_problem(rng, 4, 4, 3, rep % 2 == 0);
    const auto all = enumerate(p);
    std::vector<std::optional<double>> budgets{15.0 + rep % 7, std::nullopt, 20.0 - rep % 5};
    if (rep % 3 == 0) budgets[1] = 18.0;
    if (rep % 4 == 0) budgets[2] = std::nullopt;
    double expected = INFINITY;
    for (const auto& s : all) {
      bool ok = true;
      for (size_t c = 0; c < 3; ++c) ok &= !budgets[c] || s.costs[c] <= *budgets[c];
      if (ok) expected = std::min(expected, s.loss);
    }
    const auto best = best_under_budgets(p, budgets);
    CAPTURE(rep);
    if (std::isinf(expected)) {
      CHECK_FALSE(best.has_value());
    } else {
      REQUIRE(best.has_value());
      CHECK(best->loss == doctest::Approx(expected));
      for (size_t c = 0; c < 3; ++c) CHECK((!budgets[c] || best->costs[c] <= *budgets[c]));
    }
  }
}

TEST_CASE("Exact solver rejects malformed problems by layer and option") {
  AdditiveProblem p;
  p.layers = {{{{1.0, 2.0}, 0.5}}, {{{1.0}, 0.5}}};
  CHECK_THROWS_WITH_AS(pareto_front(p),
                       "AdditiveProblem: layer 1 option 0 has 1 cost terms, expected 2",
                       std::invalid_argument);
  p.layers = {{{{1.0}, 0.5}}, {}};
  CHECK_THROWS_WITH_AS(pareto_front(p), "AdditiveProblem: layer 1 has no options",
                       std::invalid_argument);
  p.layers = {{{{1.0}, 0.5}}};
  FrontOptions fo;
  fo.cost_index = 1;
  CHECK_THROWS_AS(pareto_front(p, fo), std::invalid_argument);
  CHECK_THROWS_AS(best_under_budgets(p, {}), std::invalid_argument);
}

TEST_CASE("ZDT1, ZDT2 and DTLZ2 match hand-computed values") {
  // x = (0.25, 0, ..., 0): g = 1; ZDT1 f2 = 1 - 0.5, ZDT2 f2 = 1 - 0.0625.
  std::vector<double> x(30, 0.0);
  x[0] = 0.25;
  CHECK(zdt1(x)[1] == doctest::Approx(0.5));
  CHECK(zdt2(x)[1] == doctest::Approx(0.9375));
  // x_2.. = 1: g = 1 + 9 = 10; ZDT1 f2 = 10 (1 - sqrt(0.025)).
  std::fill(x.begin() + 1, x.end(), 1.0);
  CHECK(zdt1(x)[1] == doctest::Approx(10 * (1 - std::sqrt(0.025))));
  // DTLZ2, M = 3, x = (0.5, 0, 0.5...): g = 0; f = (cos(pi/4) cos 0, cos(pi/4) sin 0, sin(pi/4)).
  std::vector<double> y(12, 0.5);
  y[1] = 0.0;
  const auto f = dtlz2(y, 3);
  CHECK(f[0] == doctest::Approx(std::sqrt(0.5)));
  CHECK(f[1] == doctest::Approx(0.0));
  CHECK(f[2] == doctest::Approx(std::sqrt(0.5)));
  // Off the front: x_3.. = 1 gives g = 10 * 0.25 = 2.5.
  std::fill(y.begin() + 2, y.end(), 1.0);
  CHECK(dtlz2(y, 3)[2] == doctest::Approx(3.5 * std::sqrt(0.5)));
  CHECK_THROWS_AS(zdt1({0.5}), std::invalid_argument);
  CHECK_THROWS_AS(dtlz2({0.5, 0.5}, 3), std::invalid_argument);
}
