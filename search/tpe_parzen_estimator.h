// The Parzen estimator of TPE (Optuna 3.1's optuna/samplers/_tpe/parzen_estimator.py): a
// mixture with one kernel per observation plus an optional prior kernel; per parameter, a
// truncated Gaussian (numerical; integrated over the step's interval for stepped and integer
// parameters, in log space for log ones) or smoothed one-hot weights (categorical). TPE fits
// one to each side of its below/above split, samples candidates from "below" and scores them by
// both log densities. Internal to search/.
#pragma once

#include <cstddef>
#include <cstdint>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "search/distributions.h"

namespace compsearch::search::tpe_detail {

// Optuna's EPS in _tpe: the narrowest kernel without the magic clip, and the floor of a zero
// reference-point coordinate and of the MOTPE weights.
inline constexpr double kEps = 1e-12;

// Optuna's _ParzenEstimatorParameters (TPESampler::Options carries the same values).
struct ParzenEstimatorParameters {
  bool consider_prior = true;
  double prior_weight = 1.0;
  bool consider_magic_clip = true;
  bool consider_endpoints = false;
  bool multivariate = false;
};

// Optuna's default_weights for n observations in trial order: 1 for the newest 25, a linear
// ramp from 1/n up to 1 for the older ones.
std::vector<double> default_weights(size_t n);

class ParzenEstimator {
 public:
  // observations[p][i]: parameter p (of `space`) of observation i, in internal representation.
  // `predetermined_weights` (one per observation: MOTPE's hypervolume contributions) replaces
  // default_weights when given.
  ParzenEstimator(const std::vector<std::vector<double>>& observations,
                  const std::vector<std::pair<std::string, Distribution>>& space,
                  const ParzenEstimatorParameters& o,
                  const std::vector<double>* predetermined_weights);

  // `size` joint samples, in internal representation: out[param][sample].
  std::vector<std::vector<double>> sample(std::mt19937_64& rng, size_t size) const;

  // log of the mixture density (probability mass for discrete parameters) at each sample.
  std::vector<double> log_pdf(const std::vector<std::vector<double>>& samples) const;

 private:
  struct ParamModel {
    Distribution dist;
    bool categorical = false;
    size_t n_choices = 0;
    bool log = false;
    double low = 0, high = 0, q = 0;            // transformed bounds; q = 0: continuous
    std::vector<double> mus, sigmas, log_norm;  // log_norm: -log(sigma) - log mass in bounds
    std::vector<double> inv_sigmas;             // 1 / sigma, for the density's hot loop
    // Discrete numerical parameters (q != 0): the distinct (mu, sigma) pairs, each component's
    // pair, and log_norm + log(sigma) per component (see log_pdf).
    std::vector<double> class_mu, class_sigma, log_mass_adj;
    std::vector<uint32_t> comp_class;
    std::vector<double> cat_w;     // components x choices, rows sum to 1
    std::vector<double> cat_logw;  // log of cat_w
  };

  static void set_bounds(ParamModel& m);
  // Optuna's _transform_from_uniform: back from the estimator's space to an internal value.
  static double from_transformed(const ParamModel& m, double x);

  std::vector<double> weights_, log_weights_;
  std::vector<ParamModel> params_;
};

}  // namespace compsearch::search::tpe_detail
