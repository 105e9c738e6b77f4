// TPE's Parzen estimator (see tpe_parzen_estimator.h).
#include "search/tpe_parzen_estimator.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>

#include "search/tpe_truncnorm.h"

namespace compsearch::search::tpe_detail {

namespace {

const double kLogSqrt2Pi = 0.5 * std::log(2.0 * M_PI);

// Optuna's default_weights give full weight to this many newest observations.
constexpr size_t kFullWeightCount = 25;

// Multivariate kernels all have width kBandwidthFactor * n^(-1/(d+4)) * (high - low): Scott's
// rule with BOHB's factor (Falkner et al. 2018), as Optuna's multivariate TPE uses.
constexpr double kBandwidthFactor = 0.2;

// Optuna's magic clip: no kernel is narrower than (high - low) / min(kMagicClipMaxComponents,
// 1 + components), so that a cluster of close observations cannot make a needle-thin kernel.
constexpr double kMagicClipMaxComponents = 100.0;

// In the mixture's log-sum-exp, terms more than this below the largest are skipped: each adds
// under e^-40 of the largest, below 1e-14 all together for any realistic mixture, which saves
// most exp calls at study size 1,000.
constexpr double kNegligibleLogTerm = 40.0;

double uniform01(std::mt19937_64& rng) {
  return std::uniform_real_distribution<double>(0.0, 1.0)(rng);
}

}  // namespace

std::vector<double> default_weights(size_t n) {
  if (n == 0) return {};
  if (n < kFullWeightCount) return std::vector<double>(n, 1.0);
  std::vector<double> w(n, 1.0);
  const size_t ramp = n - kFullWeightCount;
  // np.linspace(1/n, 1, num=ramp)
  for (size_t i = 0; i < ramp; ++i) {
    w[i] = ramp == 1 ? 1.0 / n : 1.0 / n + (1.0 - 1.0 / n) * static_cast<double>(i) / (ramp - 1);
  }
  return w;
}

ParzenEstimator::ParzenEstimator(const std::vector<std::vector<double>>& observations,
                                 const std::vector<std::pair<std::string, Distribution>>& space,
                                 const ParzenEstimatorParameters& o,
                                 const std::vector<double>* predetermined_weights) {
  const size_t n = observations.empty() ? 0 : observations[0].size();
  const bool consider_prior = o.consider_prior || n == 0;
  std::vector<double> w = predetermined_weights ? *predetermined_weights : default_weights(n);
  if (consider_prior) w.push_back(o.prior_weight);
  const double sum = std::accumulate(w.begin(), w.end(), 0.0);
  for (double& x : w) x /= sum;
  weights_ = w;
  log_weights_.resize(w.size());
  for (size_t k = 0; k < w.size(); ++k) log_weights_[k] = std::log(w[k]);

  const double sigma0 =
      kBandwidthFactor * std::pow(static_cast<double>(std::max<size_t>(n, 1)),
                                  -1.0 / (static_cast<double>(space.size()) + 4.0));
  for (size_t p = 0; p < space.size(); ++p) {
    ParamModel m;
    m.dist = space[p].second;
    const std::vector<double>& obs = observations[p];
    if (const auto* c = std::get_if<CategoricalDistribution>(&m.dist)) {
      m.categorical = true;
      m.n_choices = c->choices.size();
      const size_t rows = consider_prior ? n + 1 : n;
      const double value = o.prior_weight / static_cast<double>(consider_prior ? n + 1 : n);
      m.cat_w.assign(rows * m.n_choices, value);
      for (size_t i = 0; i < n; ++i) m.cat_w[i * m.n_choices + static_cast<size_t>(obs[i])] += 1;
      for (size_t r = 0; r < rows; ++r) {
        double s = 0;
        for (size_t j = 0; j < m.n_choices; ++j) s += m.cat_w[r * m.n_choices + j];
        for (size_t j = 0; j < m.n_choices; ++j) m.cat_w[r * m.n_choices + j] /= s;
      }
      m.cat_logw.resize(m.cat_w.size());
      for (size_t q = 0; q < m.cat_w.size(); ++q) m.cat_logw[q] = std::log(m.cat_w[q]);
    } else {
      set_bounds(m);
      std::vector<double>& mus = m.mus;
      mus.resize(n);
      for (size_t i = 0; i < n; ++i) mus[i] = m.log ? std::log(obs[i]) : obs[i];
      const double prior_mu = 0.5 * (m.low + m.high);
      const double prior_sigma = m.high - m.low;
      if (consider_prior) mus.push_back(prior_mu);
      std::vector<double>& sigmas = m.sigmas;
      sigmas.resize(mus.size());
      if (o.multivariate) {
        std::fill(sigmas.begin(), sigmas.end(), sigma0 * (m.high - m.low));
      } else {
        // Sorting (mu, index) pairs gives the stable order by mu, faster than an indirect
        // stable sort.
        std::vector<std::pair<double, size_t>> keyed(mus.size());
        for (size_t i = 0; i < mus.size(); ++i) keyed[i] = {mus[i], i};
        std::sort(keyed.begin(), keyed.end());
        std::vector<size_t> order(mus.size());
        for (size_t i = 0; i < mus.size(); ++i) order[i] = keyed[i].second;
        std::vector<double> e(mus.size() + 2);
        e[0] = m.low;
        for (size_t i = 0; i < mus.size(); ++i) e[i + 1] = mus[order[i]];
        e[mus.size() + 1] = m.high;
        std::vector<double> sorted_sigmas(mus.size());
        for (size_t i = 0; i < mus.size(); ++i) {
          sorted_sigmas[i] = std::max(e[i + 1] - e[i], e[i + 2] - e[i + 1]);
        }
        if (!o.consider_endpoints && e.size() >= 4) {
          sorted_sigmas[0] = e[2] - e[1];
          sorted_sigmas[mus.size() - 1] = e[e.size() - 2] - e[e.size() - 3];
        }
        for (size_t i = 0; i < mus.size(); ++i) sigmas[order[i]] = sorted_sigmas[i];
      }
      const double maxsigma = m.high - m.low;
      const double minsigma =
          o.consider_magic_clip ? (m.high - m.low) / std::min(kMagicClipMaxComponents,
                                                              1.0 + static_cast<double>(mus.size()))
                                : kEps;
      for (double& s : sigmas) s = std::clamp(s, minsigma, maxsigma);
      if (consider_prior) sigmas.back() = prior_sigma;
      m.inv_sigmas.resize(mus.size());
      for (size_t k = 0; k < mus.size(); ++k) m.inv_sigmas[k] = 1.0 / sigmas[k];
      m.log_norm.resize(mus.size());
      for (size_t k = 0; k < mus.size(); ++k) {
        m.log_norm[k] = -std::log(sigmas[k]) -
                        log_gauss_mass((m.low - mus[k]) / sigmas[k], (m.high - mus[k]) / sigmas[k]);
      }
    }
    if (m.q != 0) {
      // Discrete parameters: components repeat the same (mu, sigma) many times (a few
      // distinct values observed hundreds of times); log_pdf computes each interval mass
      // once per distinct pair.
      std::map<std::pair<double, double>, uint32_t> ids;
      m.comp_class.resize(m.mus.size());
      m.log_mass_adj.resize(m.mus.size());
      for (size_t k = 0; k < m.mus.size(); ++k) {
        auto [it, fresh] = ids.emplace(std::make_pair(m.mus[k], m.sigmas[k]),
                                       static_cast<uint32_t>(m.class_mu.size()));
        if (fresh) {
          m.class_mu.push_back(m.mus[k]);
          m.class_sigma.push_back(m.sigmas[k]);
        }
        m.comp_class[k] = it->second;
        m.log_mass_adj[k] = m.log_norm[k] + std::log(m.sigmas[k]);
      }
    }
    params_.push_back(std::move(m));
  }
}

std::vector<std::vector<double>> ParzenEstimator::sample(std::mt19937_64& rng, size_t size) const {
  std::vector<double> cumulative(weights_.size());
  std::partial_sum(weights_.begin(), weights_.end(), cumulative.begin());
  std::vector<size_t> active(size);
  for (size_t s = 0; s < size; ++s) {
    const double u = uniform01(rng) * cumulative.back();
    active[s] = std::min<size_t>(
        std::upper_bound(cumulative.begin(), cumulative.end(), u) - cumulative.begin(),
        weights_.size() - 1);
  }
  std::vector<std::vector<double>> out(params_.size(), std::vector<double>(size));
  for (size_t p = 0; p < params_.size(); ++p) {
    const ParamModel& m = params_[p];
    for (size_t s = 0; s < size; ++s) {
      const size_t k = active[s];
      if (m.categorical) {
        const double u = uniform01(rng);
        double c = 0;
        size_t j = 0;
        for (; j + 1 < m.n_choices; ++j) {
          c += m.cat_w[k * m.n_choices + j];
          if (c >= u) break;
        }
        out[p][s] = static_cast<double>(j);
      } else {
        const double mu = m.mus[k], sigma = m.sigmas[k];
        const double x = mu + sigma * truncnorm_standard((m.low - mu) / sigma,
                                                         (m.high - mu) / sigma, uniform01(rng));
        out[p][s] = from_transformed(m, x);
      }
    }
  }
  return out;
}

std::vector<double> ParzenEstimator::log_pdf(
    const std::vector<std::vector<double>>& samples) const {
  const size_t n_samples = samples.empty() ? 0 : samples[0].size();
  const size_t n_comp = weights_.size();
  std::vector<double> acc(n_samples * n_comp);
  for (size_t s = 0; s < n_samples; ++s) {
    std::copy(log_weights_.begin(), log_weights_.end(), acc.begin() + s * n_comp);
  }
  std::vector<double> uniq, contrib, class_mass;
  for (size_t p = 0; p < params_.size(); ++p) {
    const ParamModel& m = params_[p];
    if (m.categorical || m.q != 0) {
      // Few distinct values among the samples: each value's per-component term once.
      uniq.assign(samples[p].begin(), samples[p].end());
      std::sort(uniq.begin(), uniq.end());
      uniq.erase(std::unique(uniq.begin(), uniq.end()), uniq.end());
      contrib.resize(uniq.size() * n_comp);
      for (size_t u = 0; u < uniq.size(); ++u) {
        double* c = contrib.data() + u * n_comp;
        const double v = uniq[u];
        if (m.categorical) {
          const size_t j = static_cast<size_t>(v);
          for (size_t k = 0; k < n_comp; ++k) c[k] = m.cat_logw[k * m.n_choices + j];
        } else {
          const double ub = std::min(v + m.q / 2, m.high), lb = std::max(v - m.q / 2, m.low);
          class_mass.resize(m.class_mu.size());
          for (size_t q = 0; q < m.class_mu.size(); ++q) {
            const double mu = m.class_mu[q], sigma = m.class_sigma[q];
            class_mass[q] = log_gauss_mass((lb - mu) / sigma, (ub - mu) / sigma);
          }
          for (size_t k = 0; k < n_comp; ++k) {
            // log_norm includes -log(sigma), which a probability mass does not have
            // (log_mass_adj = log_norm + log(sigma)).
            c[k] = class_mass[m.comp_class[k]] + m.log_mass_adj[k];
          }
        }
      }
      for (size_t s = 0; s < n_samples; ++s) {
        const size_t u = static_cast<size_t>(
            std::lower_bound(uniq.begin(), uniq.end(), samples[p][s]) - uniq.begin());
        const double* c = contrib.data() + u * n_comp;
        double* row = acc.data() + s * n_comp;
        for (size_t k = 0; k < n_comp; ++k) row[k] += c[k];
      }
      continue;
    }
    for (size_t s = 0; s < n_samples; ++s) {
      double* row = acc.data() + s * n_comp;
      const double x = m.log ? std::log(samples[p][s]) : samples[p][s];
      const double* mus = m.mus.data();
      const double* inv = m.inv_sigmas.data();
      const double* norm = m.log_norm.data();
      for (size_t k = 0; k < n_comp; ++k) {
        const double z = (x - mus[k]) * inv[k];
        row[k] += -0.5 * z * z - kLogSqrt2Pi + norm[k];
      }
    }
  }
  std::vector<double> out(n_samples);
  for (size_t s = 0; s < n_samples; ++s) {
    const double* row = acc.data() + s * n_comp;
    const double mx = *std::max_element(row, row + n_comp);
    if (!std::isfinite(mx)) {
      out[s] = mx;
      continue;
    }
    // Terms more than kNegligibleLogTerm below the largest are skipped (see its definition).
    double sum = 0;
    for (size_t k = 0; k < n_comp; ++k) {
      const double d = row[k] - mx;
      if (d > -kNegligibleLogTerm) sum += std::exp(d);
    }
    out[s] = mx + std::log(sum);
  }
  return out;
}

void ParzenEstimator::set_bounds(ParamModel& m) {
  if (const auto* f = std::get_if<FloatDistribution>(&m.dist)) {
    if (f->log) {
      m.log = true;
      m.low = std::log(f->low);
      m.high = std::log(f->high);
    } else if (f->step) {
      m.q = *f->step;
      m.low = f->low - 0.5 * m.q;
      m.high = f->high + 0.5 * m.q;
    } else {
      m.low = f->low;
      m.high = f->high;
    }
  } else {
    const auto& i = std::get<IntDistribution>(m.dist);
    if (i.log) {
      m.log = true;
      m.low = std::log(static_cast<double>(i.low) - 0.5);
      m.high = std::log(static_cast<double>(i.high) + 0.5);
    } else {
      m.q = static_cast<double>(i.step);
      m.low = static_cast<double>(i.low) - 0.5 * m.q;
      m.high = static_cast<double>(i.high) + 0.5 * m.q;
    }
  }
}

double ParzenEstimator::from_transformed(const ParamModel& m, double x) {
  if (const auto* f = std::get_if<FloatDistribution>(&m.dist)) {
    if (f->log) return std::clamp(std::exp(x), f->low, f->high);
    if (f->step) {
      const double v = std::nearbyint((x - f->low) / *f->step) * *f->step + f->low;
      return std::clamp(v, f->low, f->high);
    }
    return x;
  }
  const auto& i = std::get<IntDistribution>(m.dist);
  const double lo = static_cast<double>(i.low), hi = static_cast<double>(i.high);
  if (i.log) return std::clamp(std::nearbyint(std::exp(x)), lo, hi);
  const double q = static_cast<double>(i.step);
  return std::clamp(std::nearbyint((x - lo) / q) * q + lo, lo, hi);
}

}  // namespace compsearch::search::tpe_detail
