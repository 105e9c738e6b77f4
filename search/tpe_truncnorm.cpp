// Standard normal CDF, interval mass, inverse CDF and truncated draws (see tpe_truncnorm.h).
#include "search/tpe_truncnorm.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace compsearch::search::tpe_detail {

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// Phi(x) for x <= -kTailCutoff underflows to exactly 0 (erfc(40 / sqrt(2)) = erfc(28.28) is
// below the smallest subnormal double), so skipping erfc there returns the same value.
constexpr double kTailCutoff = 40.0;

// The probability where P. J. Acklam's inverse-normal approximation switches from its central
// rational function to its tail one (his published break point).
constexpr double kAcklamTail = 0.02425;

double ndtr_tail(double x) { return x <= -kTailCutoff ? 0.0 : ndtr(x); }

}  // namespace

double ndtr(double x) { return 0.5 * std::erfc(-x / M_SQRT2); }

// The tail shortcuts return exactly what the erfc-based formulas return (see ndtr_tail), without
// calling erfc.
double log_gauss_mass(double a, double b) {
  if (b <= -kTailCutoff || a >= kTailCutoff) return -kInf;
  double mass;
  if (b <= 0) {
    mass = ndtr(b) - ndtr_tail(a);
  } else if (a > 0) {
    mass = ndtr(-a) - ndtr_tail(-b);
  } else {
    return std::log1p(-ndtr_tail(a) - ndtr_tail(-b));
  }
  return mass > 0 ? std::log(mass) : -kInf;
}

// P. J. Acklam's rational approximation (relative error 1.15e-9) refined by one Halley step on
// erfc, which brings it to double precision.
double ndtri(double p) {
  if (p <= 0) return -kInf;
  if (p >= 1) return kInf;
  static const double a[] = {-3.969683028665376e+01, 2.209460984245205e+02,  -2.759285104469687e+02,
                             1.383577518672690e+02,  -3.066479806614716e+01, 2.506628277459239e+00};
  static const double b[] = {-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02,
                             6.680131188771972e+01, -1.328068155288572e+01};
  static const double c[] = {-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00,
                             -2.549732539343734e+00, 4.374664141464968e+00,  2.938163982698783e+00};
  static const double d[] = {7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00,
                             3.754408661907416e+00};
  double x;
  if (p < kAcklamTail) {
    const double q = std::sqrt(-2 * std::log(p));
    x = (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
        ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
  } else if (p > 1 - kAcklamTail) {
    const double q = std::sqrt(-2 * std::log1p(-p));
    x = -(((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
        ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
  } else {
    const double q = p - 0.5;
    const double r = q * q;
    x = (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q /
        (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1);
  }
  const double e = ndtr(x) - p;
  const double u = e * std::sqrt(2 * M_PI) * std::exp(x * x / 2);
  return x - u / (1 + x * u / 2);
}

double truncnorm_standard(double a, double b, double u) {
  double x;
  if (a < 0) {
    const double pa = ndtr(a);
    x = ndtri(pa + u * (ndtr(b) - pa));
  } else {
    const double pb = ndtr(-b);
    x = -ndtri(pb + (1 - u) * (ndtr(-a) - pb));
  }
  if (std::isnan(x)) x = 0.5 * (a + b);
  return std::clamp(x, a, b);
}

}  // namespace compsearch::search::tpe_detail
