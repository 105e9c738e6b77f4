// TPE / MOTPE with Optuna 3.1's semantics (see tpe_sampler.h).
#include "search/tpe_sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <numeric>
#include <queue>
#include <random>
#include <stdexcept>
#include <string>

#include "search/hypervolume.h"
#include "search/pareto.h"
#include "search/random_sampler.h"

namespace compsearch::search {

namespace {

constexpr double kEps = 1e-12;
constexpr double kInf = std::numeric_limits<double>::infinity();
const double kLogSqrt2Pi = 0.5 * std::log(2.0 * M_PI);

// ---- Normal distribution helpers (left-tail formulations keep precision, as SciPy does). ----

double ndtr(double x) { return 0.5 * std::erfc(-x / M_SQRT2); }

// Phi(x) for x <= -40 underflows to exactly 0 (erfc(28.28) < the smallest subnormal), so
// skipping erfc there returns the same value.
double ndtr_tail(double x) { return x <= -40.0 ? 0.0 : ndtr(x); }

// log(Phi(b) - Phi(a)) for a <= b. The tail shortcuts return exactly what the erfc-based
// formulas return (see ndtr_tail), without calling erfc.
double log_gauss_mass(double a, double b) {
  if (b <= -40.0 || a >= 40.0) return -kInf;
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

// Inverse of the standard normal CDF: P. J. Acklam's rational approximation (relative error
// 1.15e-9) refined by one Halley step on erfc, which brings it to double precision.
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
  if (p < 0.02425) {
    const double q = std::sqrt(-2 * std::log(p));
    x = (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
        ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
  } else if (p > 1 - 0.02425) {
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

// A draw from the standard normal truncated to [a, b] by inversion (Optuna's _truncnorm.ppf,
// in linear rather than log space, with the same left/right-tail symmetry).
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

double uniform01(std::mt19937_64& rng) {
  return std::uniform_real_distribution<double>(0.0, 1.0)(rng);
}

// Optuna's default_gamma and default_weights.
size_t default_gamma(size_t n) {
  return std::min<size_t>(static_cast<size_t>(std::ceil(0.1 * static_cast<double>(n))), 25);
}

std::vector<double> default_weights(size_t n) {
  if (n == 0) return {};
  if (n < 25) return std::vector<double>(n, 1.0);
  std::vector<double> w(n, 1.0);
  const size_t ramp = n - 25;
  // np.linspace(1/n, 1, num=ramp)
  for (size_t i = 0; i < ramp; ++i) {
    w[i] = ramp == 1 ? 1.0 / n : 1.0 / n + (1.0 - 1.0 / n) * static_cast<double>(i) / (ramp - 1);
  }
  return w;
}

// ---- Parzen estimator (optuna/samplers/_tpe/parzen_estimator.py). ----

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
  std::vector<double> cat_w;                  // components x choices, rows sum to 1
  std::vector<double> cat_logw;               // log of cat_w
};

class ParzenEstimator {
 public:
  ParzenEstimator(const std::vector<std::vector<double>>& observations,
                  const std::vector<std::pair<std::string, Distribution>>& space,
                  const TPESampler::Options& o, bool multivariate,
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

    const double sigma0 = 0.2 * std::pow(static_cast<double>(std::max<size_t>(n, 1)),
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
        if (multivariate) {
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
            o.consider_magic_clip
                ? (m.high - m.low) / std::min(100.0, 1.0 + static_cast<double>(mus.size()))
                : kEps;
        for (double& s : sigmas) s = std::clamp(s, minsigma, maxsigma);
        if (consider_prior) sigmas.back() = prior_sigma;
        m.inv_sigmas.resize(mus.size());
        for (size_t k = 0; k < mus.size(); ++k) m.inv_sigmas[k] = 1.0 / sigmas[k];
        m.log_norm.resize(mus.size());
        for (size_t k = 0; k < mus.size(); ++k) {
          m.log_norm[k] = -std::log(sigmas[k]) - log_gauss_mass((m.low - mus[k]) / sigmas[k],
                                                                (m.high - mus[k]) / sigmas[k]);
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

  // `size` joint samples, in internal representation: out[param][sample].
  std::vector<std::vector<double>> sample(std::mt19937_64& rng, size_t size) const {
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

  // log of the mixture density (probability mass for discrete parameters) at each sample.
  std::vector<double> log_pdf(const std::vector<std::vector<double>>& samples) const {
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
      // Terms more than 40 below the largest add under e^-40 each (relative to the largest),
      // below 1e-14 all together for any realistic mixture: their exp is skipped.
      double sum = 0;
      for (size_t k = 0; k < n_comp; ++k) {
        const double d = row[k] - mx;
        if (d > -40.0) sum += std::exp(d);
      }
      out[s] = mx + std::log(sum);
    }
    return out;
  }

 private:
  static void set_bounds(ParamModel& m) {
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

  // Optuna's _transform_from_uniform: back from the estimator's space to an internal value.
  static double from_transformed(const ParamModel& m, double x) {
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

  std::vector<double> weights_, log_weights_;
  std::vector<ParamModel> params_;
};

// Indices (into `idx`) of the non-dominated points among points[idx]: lexicographic order
// means a point can only be dominated by one before it.
std::vector<size_t> first_front(const std::vector<std::vector<double>>& points,
                                const std::vector<size_t>& idx) {
  std::vector<size_t> order(idx);
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return points[a] != points[b] ? points[a] < points[b] : a < b;
  });
  std::vector<size_t> front;
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
  return front;
}

std::vector<double> reference_point(const std::vector<std::vector<double>>& pts) {
  std::vector<double> ref(pts[0].size(), -kInf);
  for (const auto& p : pts) {
    for (size_t d = 0; d < ref.size(); ++d) ref[d] = std::max(ref[d], p[d]);
  }
  for (double& r : ref) {
    r = std::max(1.1 * r, 0.9 * r);
    if (r == 0) r = kEps;
  }
  return ref;
}

}  // namespace

namespace tpe_detail {

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
    std::vector<size_t> front = first_front(lvals, remaining);
    std::sort(front.begin(), front.end());
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

}  // namespace tpe_detail

struct TPESampler::Observations {
  std::vector<const FrozenTrial*> trials;
  // Copies of RUNNING trials (constant liar): the cache's unfinished trials are re-read on every
  // refresh, while this memo outlives refreshes.
  std::vector<FrozenTrial> running;
  std::vector<std::pair<double, std::vector<double>>> losses;  // (step, signed values)
  std::vector<double> violations;  // empty when no trial records constraints
  size_t n_finished = 0;           // excludes RUNNING (constant liar)
  bool multi_objective = false;
  tpe_detail::Split split;
  std::vector<double> weights_below;  // MOTPE only, aligned with split.below
};

TPESampler::TPESampler(Options options) : options_(options) {
  if (!(options_.prior_weight > 0)) {
    throw std::invalid_argument(
        "TPESampler: prior_weight = " + std::to_string(options_.prior_weight) + ", expected > 0");
  }
  if (options_.n_startup_trials < 0) {
    throw std::invalid_argument("TPESampler: n_startup_trials = " +
                                std::to_string(options_.n_startup_trials) + ", expected >= 0");
  }
  if (options_.n_ei_candidates < 1) {
    throw std::invalid_argument("TPESampler: n_ei_candidates = " +
                                std::to_string(options_.n_ei_candidates) + ", expected >= 1");
  }
  seed_ = options_.seed ? *options_.seed : internal::entropy_seed();
}

TPESampler::~TPESampler() = default;

void TPESampler::refresh_locked(const StudyView& study) {
  const auto newly = cache_.refresh(study);
  if (columns_epoch_ != cache_.epoch()) {
    columns_.clear();
    columns_epoch_ = cache_.epoch();
  }
  n_finished_seen_ += newly.size();
  space_.update(newly);
  for (const FrozenTrial* t : newly) {
    const size_t n = static_cast<size_t>(t->number);
    auto d = t->distributions.begin();
    for (const auto& [name, value] : t->params) {
      while (d != t->distributions.end() && d->first < name) ++d;
      if (d == t->distributions.end() || d->first != name) continue;
      Column& c = columns_[name];
      if (c.dist_of.size() <= n) {
        c.dist_of.resize(n + 1, -1);
        c.value.resize(n + 1, 0.0);
      }
      size_t k = 0;
      while (k < c.dists.size() && !(c.dists[k] == d->second)) ++k;
      if (k == c.dists.size()) c.dists.push_back(d->second);
      c.dist_of[n] = static_cast<int32_t>(k);
      c.value[n] = value;
    }
  }
}

void TPESampler::reseed_rng(uint64_t seed) {
  std::lock_guard lock(mutex_);
  seed_ = seed;
}

std::shared_ptr<const TPESampler::Observations> TPESampler::observe(const StudyView& study,
                                                                    int64_t trial_number) {
  if (memo_ && memo_number_ == trial_number && memo_n_trials_ == cache_.trials().size() &&
      memo_n_finished_ == n_finished_seen_) {
    return memo_;
  }
  auto result = std::make_shared<Observations>();
  Observations& obs = *result;
  const std::vector<StudyDirection> directions = study.directions();
  obs.multi_objective = directions.size() > 1;
  const bool liar = options_.constant_liar && !obs.multi_objective;
  bool constrained = false;
  for (const FrozenTrial* t : cache_.trials()) {
    if (t->system_attrs.count("constraints") &&
        (t->state == TrialState::kComplete || t->state == TrialState::kPruned)) {
      constrained = true;
      break;
    }
  }
  if (liar) {
    size_t n_running = 0;
    for (const FrozenTrial* t : cache_.trials()) n_running += t->state == TrialState::kRunning;
    obs.running.reserve(n_running);  // no reallocation below: pointers stay valid
  }
  for (const FrozenTrial* t : cache_.trials()) {
    std::pair<double, std::vector<double>> score;
    if (t->state == TrialState::kComplete) {
      if (t->values.size() != directions.size()) continue;
      score = {-kInf, to_minimization(t->values, directions)};
    } else if (t->state == TrialState::kPruned) {
      if (obs.multi_objective) continue;
      if (!t->intermediate_values.empty()) {
        const auto& [step, v] = *t->intermediate_values.rbegin();
        const double sign = directions[0] == StudyDirection::kMaximize ? -1.0 : 1.0;
        score = {-static_cast<double>(step), {std::isnan(v) ? kInf : sign * v}};
      } else {
        score = {1.0, {0.0}};
      }
    } else if (t->state == TrialState::kRunning && liar) {
      const double sign = directions[0] == StudyDirection::kMaximize ? -1.0 : 1.0;
      score = {kInf, {sign * kInf}};
    } else {
      continue;
    }
    if (score.first < kInf) ++obs.n_finished;
    if (t->state == TrialState::kRunning) {
      obs.running.push_back(*t);
      t = &obs.running.back();
    }
    obs.trials.push_back(t);
    obs.losses.push_back(std::move(score));
    if (constrained) {
      if (t->state == TrialState::kRunning) {
        obs.violations.push_back(kInf);
      } else {
        const auto v = total_violation(t->constraints());
        obs.violations.push_back(v ? *v : kInf);
      }
    }
  }
  memo_ = result;
  memo_number_ = trial_number;
  memo_n_trials_ = cache_.trials().size();
  memo_n_finished_ = n_finished_seen_;
  if (obs.n_finished < static_cast<size_t>(options_.n_startup_trials)) return result;
  obs.split =
      tpe_detail::split_observations(obs.losses, default_gamma(obs.n_finished), obs.violations);
  if (obs.multi_objective) {
    // MOTPE: below-weights are hypervolume contributions among the feasible below points.
    std::vector<size_t> feasible_pos;
    std::vector<std::vector<double>> lvals;
    for (size_t j = 0; j < obs.split.below.size(); ++j) {
      const size_t i = obs.split.below[j];
      if (obs.violations.empty() || obs.violations[i] == 0) {
        feasible_pos.push_back(j);
        lvals.push_back(obs.losses[i].second);
      }
    }
    obs.weights_below.assign(obs.split.below.size(), kEps);
    if (lvals.size() == 1) {
      obs.weights_below[feasible_pos[0]] = 1.0;
    } else if (lvals.size() > 1) {
      const auto contrib = hypervolume_contributions(lvals, reference_point(lvals));
      double mx = 0;
      for (double c : contrib) mx = std::max(mx, c + kEps);
      for (size_t j = 0; j < lvals.size(); ++j) {
        obs.weights_below[feasible_pos[j]] = std::clamp((contrib[j] + kEps) / mx, 0.0, 1.0);
      }
    }
  }
  return result;
}

std::map<std::string, double> TPESampler::sample_tpe(
    const Observations& obs, const std::vector<std::pair<std::string, Distribution>>& space,
    uint64_t rng_seed) {
  // Observations of a trial lacking a parameter are dropped (Optuna's param_mask; with one
  // intersection search space they all have it). Finished trials are read from the columns;
  // RUNNING ones (constant liar) from their maps.
  struct Source {
    const Column* column = nullptr;
    int32_t dist = -1;  // index of the wanted distribution in column->dists; -1: none has it
  };
  std::vector<Source> sources(space.size());
  for (size_t p = 0; p < space.size(); ++p) {
    auto c = columns_.find(space[p].first);
    if (c == columns_.end()) continue;
    sources[p].column = &c->second;
    for (size_t k = 0; k < c->second.dists.size(); ++k) {
      if (c->second.dists[k] == space[p].second) sources[p].dist = static_cast<int32_t>(k);
    }
  }
  auto gather = [&](const std::vector<size_t>& indices, std::vector<size_t>& kept) {
    std::vector<std::vector<double>> values(space.size());
    for (auto& v : values) v.reserve(indices.size());
    for (size_t j = 0; j < indices.size(); ++j) {
      const FrozenTrial* t = obs.trials[indices[j]];
      const size_t n = static_cast<size_t>(t->number);
      bool has_all = true;
      if (t->state == TrialState::kRunning) {
        for (const auto& [name, d] : space) {
          auto it = t->params.find(name);
          if (it == t->params.end() || !(t->distributions.at(name) == d)) {
            has_all = false;
            break;
          }
        }
        if (!has_all) continue;
        kept.push_back(j);
        for (size_t p = 0; p < space.size(); ++p) {
          values[p].push_back(t->params.at(space[p].first));
        }
        continue;
      }
      for (const Source& src : sources) {
        if (src.dist < 0 || n >= src.column->dist_of.size() ||
            src.column->dist_of[n] != src.dist) {
          has_all = false;
          break;
        }
      }
      if (!has_all) continue;
      kept.push_back(j);
      for (size_t p = 0; p < space.size(); ++p) values[p].push_back(sources[p].column->value[n]);
    }
    return values;
  };
  std::vector<size_t> kept_below, kept_above;
  const auto below = gather(obs.split.below, kept_below);
  const auto above = gather(obs.split.above, kept_above);
  std::vector<double> wb;
  if (obs.multi_objective) {
    for (size_t j : kept_below) wb.push_back(obs.weights_below[j]);
  }
  const ParzenEstimator pe_below(below, space, options_, options_.multivariate,
                                 obs.multi_objective ? &wb : nullptr);
  const ParzenEstimator pe_above(above, space, options_, options_.multivariate, nullptr);
  std::mt19937_64 rng(rng_seed);
  const auto samples = pe_below.sample(rng, static_cast<size_t>(options_.n_ei_candidates));
  const auto ll = pe_below.log_pdf(samples);
  const auto lg = pe_above.log_pdf(samples);
  size_t best = 0;
  double best_score = -kInf;
  for (size_t s = 0; s < ll.size(); ++s) {
    const double score = ll[s] - lg[s];
    if (score > best_score) {
      best_score = score;
      best = s;
    }
  }
  std::map<std::string, double> out;
  for (size_t p = 0; p < space.size(); ++p) out.emplace(space[p].first, samples[p][best]);
  return out;
}

SearchSpace TPESampler::infer_relative_search_space(const StudyView& study,
                                                    const FrozenTrial& /*trial*/) {
  if (!options_.multivariate) return {};
  std::lock_guard lock(mutex_);
  refresh_locked(study);
  return space_.non_single();
}

std::map<std::string, double> TPESampler::sample_relative(const StudyView& study,
                                                          const FrozenTrial& trial,
                                                          const SearchSpace& space) {
  if (space.empty()) return {};
  std::lock_guard lock(mutex_);
  refresh_locked(study);
  const auto obs_ptr = observe(study, trial.number);
  const Observations& obs = *obs_ptr;
  if (obs.n_finished < static_cast<size_t>(options_.n_startup_trials)) return {};
  std::vector<std::pair<std::string, Distribution>> sp(space.begin(), space.end());
  return sample_tpe(obs, sp, internal::mix_seed(seed_, static_cast<uint64_t>(trial.number)));
}

double TPESampler::sample_independent(const StudyView& study, const FrozenTrial& trial,
                                      const std::string& name, const Distribution& dist) {
  std::lock_guard lock(mutex_);
  const uint64_t s =
      internal::mix_seed(seed_, static_cast<uint64_t>(trial.number), internal::hash_name(name));
  refresh_locked(study);
  const auto obs_ptr = observe(study, trial.number);
  const Observations& obs = *obs_ptr;
  if (obs.n_finished < static_cast<size_t>(options_.n_startup_trials) || is_single(dist)) {
    return RandomSampler::sample(dist, s);
  }
  return sample_tpe(obs, {{name, dist}}, s).at(name);
}

}  // namespace compsearch::search
