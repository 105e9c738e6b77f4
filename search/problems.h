// Standard multi-objective test problems, all objectives minimised, for tests and benchmarks:
//   ZDT1, ZDT2: Zitzler, Deb, Thiele, "Comparison of multiobjective evolutionary algorithms:
//     empirical results", Evolutionary Computation 8(2), 2000 (n = 30 variables in [0, 1],
//     2 objectives; Pareto front f2 = 1 - sqrt(f1), resp. 1 - f1^2, at x_2..x_n = 0).
//   DTLZ2: Deb, Thiele, Laumanns, Zitzler, "Scalable test problems for evolutionary
//     multiobjective optimization", 2005 (M objectives, n = M + k - 1 variables in [0, 1],
//     k = 10; Pareto front the unit sphere's positive orthant, at x_M..x_n = 0.5).
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace compsearch::search {

// Each takes x in [0, 1]^n and throws std::invalid_argument when n is too small.
std::vector<double> zdt1(const std::vector<double>& x);                        // n >= 2
std::vector<double> zdt2(const std::vector<double>& x);                        // n >= 2
std::vector<double> dtlz2(const std::vector<double>& x, size_t n_objectives);  // n >= M

}  // namespace compsearch::search
