// ZDT1, ZDT2 and DTLZ2 (see problems.h for the references).
#include "search/problems.h"

#include <cmath>
#include <stdexcept>
#include <string>

namespace compsearch::search {

namespace {
double zdt_g(const std::vector<double>& x, const char* name) {
  if (x.size() < 2) {
    throw std::invalid_argument(std::string(name) + ": " + std::to_string(x.size()) +
                                " variables, expected at least 2");
  }
  double s = 0;
  for (size_t i = 1; i < x.size(); ++i) s += x[i];
  return 1.0 + 9.0 * s / static_cast<double>(x.size() - 1);
}
}  // namespace

std::vector<double> zdt1(const std::vector<double>& x) {
  const double g = zdt_g(x, "zdt1");
  return {x[0], g * (1.0 - std::sqrt(x[0] / g))};
}

std::vector<double> zdt2(const std::vector<double>& x) {
  const double g = zdt_g(x, "zdt2");
  const double r = x[0] / g;
  return {x[0], g * (1.0 - r * r)};
}

std::vector<double> dtlz2(const std::vector<double>& x, size_t m) {
  if (m < 2 || x.size() < m) {
    throw std::invalid_argument("dtlz2: " + std::to_string(x.size()) + " variables for " +
                                std::to_string(m) + " objectives, expected M >= 2 and n >= M");
  }
  double g = 0;
  for (size_t i = m - 1; i < x.size(); ++i) g += (x[i] - 0.5) * (x[i] - 0.5);
  std::vector<double> f(m, 1.0 + g);
  for (size_t j = 0; j < m; ++j) {
    // f_j = (1+g) * prod_{i < M-1-j} cos(x_i pi/2) * (j > 0 ? sin(x_{M-1-j} pi/2) : 1)
    for (size_t i = 0; i + 1 + j < m; ++i) f[j] *= std::cos(x[i] * M_PI / 2);
    if (j > 0) f[j] *= std::sin(x[m - 1 - j] * M_PI / 2);
  }
  return f;
}

}  // namespace compsearch::search
