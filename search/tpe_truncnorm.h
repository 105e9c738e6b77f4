// The standard normal pieces that TPE's Parzen estimator needs (Optuna's
// optuna/samplers/_tpe/_truncnorm.py): the CDF, the log of an interval's mass, the inverse CDF,
// and a draw from the normal truncated to an interval. Left-tail formulations keep precision in
// the tails, as SciPy's do. Internal to search/.
#pragma once

namespace compsearch::search::tpe_detail {

// Phi(x), the standard normal CDF.
double ndtr(double x);
// log(Phi(b) - Phi(a)) for a <= b; -inf when the mass underflows.
double log_gauss_mass(double a, double b);
// Phi^-1(p): -inf at p <= 0, +inf at p >= 1.
double ndtri(double p);
// The standard normal truncated to [a, b], drawn by inversion from the uniform u in [0, 1)
// (Optuna's _truncnorm.ppf, in linear rather than log space, with the same left/right-tail
// symmetry). Always within [a, b].
double truncnorm_standard(double a, double b, double u);

}  // namespace compsearch::search::tpe_detail
