// Hypervolume against hand-computed fronts and against cell counting on integer grids.
#include "search/hypervolume.h"

#include <doctest/doctest.h>

#include <random>
#include <stdexcept>

using namespace compsearch::search;

namespace {

// Independent reference for integer points in [0, side)^d with reference (side, ..., side):
// the number of unit cells whose lower corner some point weakly dominates.
double count_cells(const std::vector<Point>& pts, size_t dim, int side) {
  size_t n_cells = 1;
  for (size_t d = 0; d < dim; ++d) n_cells *= side;
  double count = 0;
  std::vector<int> c(dim);
  for (size_t cell = 0; cell < n_cells; ++cell) {
    size_t r = cell;
    for (size_t d = 0; d < dim; ++d) {
      c[d] = static_cast<int>(r % side);
      r /= side;
    }
    for (const Point& p : pts) {
      bool dom = true;
      for (size_t d = 0; d < dim && dom; ++d) dom = p[d] <= c[d];
      if (dom) {
        count += 1;
        break;
      }
    }
  }
  return count;
}

std::vector<Point> random_integer_points(std::mt19937_64& rng, size_t n, size_t dim, int side) {
  std::uniform_int_distribution<int> u(0, side - 1);
  std::vector<Point> pts(n, Point(dim));
  for (auto& p : pts) {
    for (auto& v : p) v = u(rng);
  }
  return pts;
}

}  // namespace

TEST_CASE("Hypervolume of a 2-D staircase equals the hand-computed area") {
  // Boxes to (4,4): 3*1 + 2*1 + 1*1 = 6.
  std::vector<Point> pts{{1, 3}, {2, 2}, {3, 1}};
  CHECK(hypervolume(pts, {4, 4}) == doctest::Approx(6.0));
  // Dominated, duplicated and out-of-reference points change nothing.
  pts.push_back({3, 3});
  pts.push_back({2, 2});
  pts.push_back({5, 0});
  pts.push_back({0, 4});
  CHECK(hypervolume(pts, {4, 4}) == doctest::Approx(6.0));
  CHECK(hypervolume({}, {4, 4}) == 0.0);
}

TEST_CASE("Hypervolume in 1-D is the distance from the best point to the reference") {
  CHECK(hypervolume({{3}, {1}, {7}}, {5}) == doctest::Approx(4.0));
}

TEST_CASE("Hypervolume of three 3-D points equals inclusion-exclusion by hand") {
  // Boxes 6+6+6, pairwise overlaps 2+2+2, triple overlap 1: 13.
  const std::vector<Point> pts{{1, 2, 3}, {2, 3, 1}, {3, 1, 2}};
  CHECK(hypervolume(pts, {4, 4, 4}) == doctest::Approx(13.0));
  CHECK(hypervolume_wfg(pts, {4, 4, 4}) == doctest::Approx(13.0));
  // Two boxes 4 and 2 overlapping in a unit cube: 5.
  CHECK(hypervolume({{0, 0, 1}, {1, 1, 0}}, {2, 2, 2}) == doctest::Approx(5.0));
}

TEST_CASE("Hypervolume in 4-D uses WFG and matches hand-computed values") {
  CHECK(hypervolume({{0, 0, 0, 1}, {1, 1, 1, 0}}, {2, 2, 2, 2}) == doctest::Approx(9.0));
  // The 3-D example lifted by a fourth objective of thickness 1.
  CHECK(hypervolume({{1, 2, 3, 1}, {2, 3, 1, 1}, {3, 1, 2, 1}}, {4, 4, 4, 2}) ==
        doctest::Approx(13.0));
}

TEST_CASE("Hypervolume matches cell counting on random integer sets in 2 to 5 dimensions") {
  std::mt19937_64 rng(7);
  for (size_t dim = 2; dim <= 5; ++dim) {
    const int side = dim <= 3 ? 12 : 6;
    for (int rep = 0; rep < 5; ++rep) {
      const auto pts = random_integer_points(rng, 4 + 6 * rep, dim, side);
      const Point ref(dim, side);
      CAPTURE(dim);
      CAPTURE(rep);
      CHECK(hypervolume(pts, ref) == doctest::Approx(count_cells(pts, dim, side)));
      CHECK(hypervolume_wfg(pts, ref) == doctest::Approx(count_cells(pts, dim, side)));
    }
  }
}

TEST_CASE("Hypervolume contributions are the exclusive areas") {
  // Staircase (1,3),(2,2),(3,1) to (4,4): exclusive areas 1*1, 1*1, 1*1.
  const auto c = hypervolume_contributions({{1, 3}, {2, 2}, {3, 1}, {2, 2}}, {4, 4});
  CHECK(c[0] == doctest::Approx(1.0));
  CHECK(c[1] == doctest::Approx(0.0));  // duplicated: neither copy is exclusive
  CHECK(c[2] == doctest::Approx(1.0));
}

TEST_CASE("Hypervolume rejects mismatched sizes, NaN and a non-finite reference") {
  CHECK_THROWS_WITH_AS(hypervolume({{1, 2, 3}}, {4, 4}),
                       "hypervolume: point 0 has 3 values, the reference 2", std::invalid_argument);
  CHECK_THROWS_AS(hypervolume({{std::nan(""), 1}}, {4, 4}), std::invalid_argument);
  CHECK_THROWS_AS(hypervolume({{1, 1}}, {INFINITY, 4}), std::invalid_argument);
}
