// TPE / MOTPE with Optuna 3.1's semantics (see tpe_sampler.h). The pieces live beside it, as
// in Optuna's optuna/samplers/_tpe/: tpe_truncnorm (the truncated normal), tpe_parzen_estimator
// (the kernel mixture), tpe_split (below/above); this file holds the sampler.
#include "search/tpe_sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <random>
#include <stdexcept>
#include <string>

#include "search/hypervolume.h"
#include "search/pareto.h"
#include "search/random_sampler.h"
#include "search/tpe_parzen_estimator.h"
#include "search/tpe_split.h"

namespace compsearch::search {

namespace {
constexpr double kInf = std::numeric_limits<double>::infinity();
using tpe_detail::kEps;
}  // namespace

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
  obs.split = tpe_detail::split_observations(obs.losses, tpe_detail::default_gamma(obs.n_finished),
                                             obs.violations);
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
      const auto contrib = hypervolume_contributions(lvals, tpe_detail::reference_point(lvals));
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
        if (src.dist < 0 || n >= src.column->dist_of.size() || src.column->dist_of[n] != src.dist) {
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
  tpe_detail::ParzenEstimatorParameters pp;
  pp.consider_prior = options_.consider_prior;
  pp.prior_weight = options_.prior_weight;
  pp.consider_magic_clip = options_.consider_magic_clip;
  pp.consider_endpoints = options_.consider_endpoints;
  pp.multivariate = options_.multivariate;
  const tpe_detail::ParzenEstimator pe_below(below, space, pp, obs.multi_objective ? &wb : nullptr);
  const tpe_detail::ParzenEstimator pe_above(above, space, pp, nullptr);
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
