// NSGA-II with Optuna 3.1's semantics (see nsga2_sampler.h).
#include "search/nsga2_sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>

#include "search/pareto.h"
#include "search/random_sampler.h"

namespace compsearch::search {

namespace {
constexpr const char* kGenerationKey = "nsga2:generation";
constexpr const char* kParentsKey = "nsga2:parents";

// Optuna's SBXCrossover: the parents' distance is floored so that the spread factors stay
// finite when two parents coincide, and its eta (spread) defaults to 20 for multi-objective
// studies and 2 for single-objective ones.
constexpr double kSbxMinParentDistance = 1e-10;
constexpr double kSbxEtaMultiObjective = 20.0;
constexpr double kSbxEtaSingleObjective = 2.0;

void check_probability(const char* key, double v) {
  if (!(v >= 0.0 && v <= 1.0)) {
    throw std::invalid_argument(std::string("NSGAIISampler: ") + key + " = " + std::to_string(v) +
                                ", expected a probability in [0, 1]");
  }
}

double uniform01(internal::SplitMix64& rng) {
  return std::uniform_real_distribution<double>(0.0, 1.0)(rng);
}

// Optuna's _SearchSpaceTransform for one numerical parameter (transform_log, transform_step):
// the bounds of the transformed space, and the maps to and from it.
struct Transformed {
  double low, high;
};
Transformed transformed_bounds(const Distribution& d) {
  if (const auto* f = std::get_if<FloatDistribution>(&d)) {
    if (f->log) return {std::log(f->low), std::log(f->high)};
    if (f->step) return {f->low - 0.5 * *f->step, f->high + 0.5 * *f->step};
    return {f->low, f->high};
  }
  const auto& i = std::get<IntDistribution>(d);
  const double lo = static_cast<double>(i.low), hi = static_cast<double>(i.high);
  const double half = 0.5 * static_cast<double>(i.step);
  if (i.log) return {std::log(lo - half), std::log(hi + half)};
  return {lo - half, hi + half};
}
double to_transformed(const Distribution& d, double v) {
  if (const auto* f = std::get_if<FloatDistribution>(&d)) return f->log ? std::log(v) : v;
  return std::get<IntDistribution>(d).log ? std::log(v) : v;
}
double from_transformed(const Distribution& d, double x) {
  if (const auto* f = std::get_if<FloatDistribution>(&d)) {
    if (f->log) return std::clamp(std::exp(x), f->low, f->high);
    if (f->step) {
      return std::clamp(std::nearbyint((x - f->low) / *f->step) * *f->step + f->low, f->low,
                        f->high);
    }
    return std::clamp(x, f->low, f->high);
  }
  const auto& i = std::get<IntDistribution>(d);
  const double lo = static_cast<double>(i.low), hi = static_cast<double>(i.high);
  const double step = static_cast<double>(i.step);
  const double v = i.log ? std::exp(x) : x;
  return std::clamp(std::nearbyint((v - lo) / step) * step + lo, lo, hi);
}

// Optuna 3.1's SBXCrossover.crossover for one parameter: a child of x1 and x2 within [xl, xu].
// The caller draws u (the SBX draw) and the two coin flips Optuna draws per parameter.
double sbx_child(double x1, double x2, double xl, double xu, double eta, double u, double coin1,
                 double coin2) {
  const double xs_min = std::min(x1, x2), xs_max = std::max(x1, x2);
  const double diff = std::max(xs_max - xs_min, kSbxMinParentDistance);
  const double beta1 = 1 + 2 * (xs_min - xl) / diff;
  const double beta2 = 1 + 2 * (xu - xs_max) / diff;
  const double alpha1 = 2 - std::pow(beta1, -(eta + 1));
  const double alpha2 = 2 - std::pow(beta2, -(eta + 1));
  auto betaq = [&](double alpha) {
    return u > 1 / alpha ? std::pow(1 / (2 - u * alpha), 1 / (eta + 1))
                         : std::pow(u * alpha, 1 / (eta + 1));
  };
  const double c1 = 0.5 * ((xs_min + xs_max) - betaq(alpha1) * diff);
  const double c2 = 0.5 * ((xs_min + xs_max) + betaq(alpha2) * diff);
  if (coin1 < 0.5) return coin2 < 0.5 ? c1 : c2;
  return coin2 < 0.5 ? x1 : x2;
}

std::optional<int64_t> generation_of(const FrozenTrial& t) {
  auto it = t.system_attrs.find(kGenerationKey);
  if (it == t.system_attrs.end() || !it->second.is_number()) return std::nullopt;
  return it->second.get<int64_t>();
}
}  // namespace

NSGAIISampler::NSGAIISampler(Options options) : options_(options) {
  if (options_.population_size < 2) {
    throw std::invalid_argument("NSGAIISampler: population_size = " +
                                std::to_string(options_.population_size) + ", expected >= 2");
  }
  if (options_.mutation_prob) check_probability("mutation_prob", *options_.mutation_prob);
  check_probability("crossover_prob", options_.crossover_prob);
  check_probability("swapping_prob", options_.swapping_prob);
  if (options_.sbx_eta && !(*options_.sbx_eta > 0)) {
    throw std::invalid_argument("NSGAIISampler: sbx_eta = " + std::to_string(*options_.sbx_eta) +
                                ", expected > 0");
  }
  seed_ = options_.seed ? *options_.seed : internal::entropy_seed();
}

NSGAIISampler::~NSGAIISampler() = default;

void NSGAIISampler::reseed_rng(uint64_t seed) {
  std::lock_guard lock(mutex_);
  seed_ = seed;
}

void NSGAIISampler::refresh_locked(const StudyView& study) {
  const auto newly = cache_.refresh(study);
  if (directions_.empty()) directions_ = study.directions();
  space_.update(newly);
  for (const FrozenTrial* t : newly) {
    if (t->state != TrialState::kComplete) continue;
    const auto g = generation_of(*t);
    if (!g) continue;
    GenerationCache& gc = generations_[*g];
    gc.members.insert(std::upper_bound(gc.members.begin(), gc.members.end(), t->number), t->number);
    gc.dirty = true;
  }
}

std::vector<const FrozenTrial*> NSGAIISampler::select_elite(
    std::vector<const FrozenTrial*> population) const {
  std::vector<Point> points;
  std::vector<std::optional<double>> violations;
  bool constrained = false;
  points.reserve(population.size());
  for (const FrozenTrial* t : population) {
    points.push_back(to_minimization(t->values, directions_));
    auto c = t->constraints();
    if (c) constrained = true;
    violations.push_back(total_violation(c));
  }
  if (!constrained) violations.clear();
  const auto fronts = non_dominated_sort(points, violations);
  std::vector<const FrozenTrial*> elite;
  const size_t size = static_cast<size_t>(options_.population_size);
  for (auto front : fronts) {
    if (elite.size() + front.size() < size) {
      for (size_t i : front) elite.push_back(population[i]);
    } else {
      sort_by_crowding_distance(points, front);
      for (size_t k = 0; elite.size() < size; ++k) elite.push_back(population[front[k]]);
      break;
    }
  }
  return elite;
}

std::pair<int64_t, std::vector<const FrozenTrial*>> NSGAIISampler::parents_locked() {
  std::vector<const FrozenTrial*> parents;
  int64_t parent_generation = -1;
  bool chain_unchanged = true;
  // Trial pointers of the cache, by number, for the members of each generation.
  const auto& all = cache_.trials();
  auto by_number = [&](int64_t n) {
    // Trials are in number order and numbers are dense from 0, so index == number normally.
    if (n < static_cast<int64_t>(all.size()) && all[n]->number == n) return all[n];
    return *std::lower_bound(all.begin(), all.end(), n,
                             [](const FrozenTrial* t, int64_t v) { return t->number < v; });
  };
  for (int64_t g = 0;; ++g) {
    auto it = generations_.find(g);
    if (it == generations_.end() ||
        it->second.members.size() < static_cast<size_t>(options_.population_size)) {
      break;
    }
    GenerationCache& gc = it->second;
    if (gc.dirty || !chain_unchanged) {
      std::vector<const FrozenTrial*> population;
      population.reserve(gc.members.size() + parents.size());
      for (int64_t n : gc.members) population.push_back(by_number(n));
      population.insert(population.end(), parents.begin(), parents.end());
      gc.elite = select_elite(std::move(population));
      gc.dirty = false;
      chain_unchanged = false;
    }
    parents = gc.elite;
    parent_generation = g;
  }
  return {parent_generation, parents};
}

std::pair<int64_t, std::vector<int64_t>> NSGAIISampler::parent_population(const StudyView& study) {
  std::lock_guard lock(mutex_);
  refresh_locked(study);
  auto [g, parents] = parents_locked();
  std::vector<int64_t> numbers;
  for (const FrozenTrial* t : parents) numbers.push_back(t->number);
  return {g, numbers};
}

const FrozenTrial* NSGAIISampler::tournament(const std::vector<const FrozenTrial*>& population,
                                             const FrozenTrial* exclude,
                                             internal::SplitMix64& rng) const {
  // Optuna draws both candidates from the population without the excluded (first) parent;
  // drawing an index in [0, n - 1) and skipping the excluded position is the same draw.
  size_t skip = population.size();
  if (exclude != nullptr) {
    skip = static_cast<size_t>(std::find(population.begin(), population.end(), exclude) -
                               population.begin());
  }
  const size_t n = population.size() - (skip < population.size() ? 1 : 0);
  std::uniform_int_distribution<size_t> pick(0, n - 1);
  auto at = [&](size_t i) { return population[i >= skip ? i + 1 : i]; };
  const FrozenTrial* c0 = at(pick(rng));
  const FrozenTrial* c1 = at(pick(rng));
  bool c0_wins;
  const auto v0 = total_violation(c0->constraints());
  const auto v1 = total_violation(c1->constraints());
  if (v0 || v1) {
    c0_wins = constrained_dominates(to_minimization(c0->values, directions_), v0,
                                    to_minimization(c1->values, directions_), v1);
  } else {
    // Plain domination in minimisation form, without building the points.
    bool strictly = false, worse = false;
    for (size_t k = 0; k < directions_.size() && !worse; ++k) {
      double a = c0->values[k], b = c1->values[k];
      if (directions_[k] == StudyDirection::kMaximize) a = -a, b = -b;
      if (a > b) worse = true;
      if (a < b) strictly = true;
    }
    c0_wins = !worse && strictly;
  }
  return c0_wins ? c0 : c1;
}

NSGAIISampler::Pending& NSGAIISampler::pending_for(const StudyView& study,
                                                   const FrozenTrial& trial) {
  auto it = pending_.find(trial.number);
  if (it != pending_.end()) return it->second;
  refresh_locked(study);
  return make_pending(trial, parents_locked());
}

NSGAIISampler::Pending& NSGAIISampler::make_pending(
    const FrozenTrial& trial,
    const std::pair<int64_t, std::vector<const FrozenTrial*>>& generation_parents) {
  const auto& [generation, parents] = generation_parents;
  Pending p{internal::SplitMix64(internal::mix_seed(seed_, static_cast<uint64_t>(trial.number))),
            {},
            generation};
  if (generation >= 0) {
    if (uniform01(p.rng) < options_.crossover_prob) {
      const FrozenTrial* a = tournament(parents, nullptr, p.rng);
      const FrozenTrial* b = tournament(parents, a, p.rng);
      p.parents = {a, b};
    } else {
      std::uniform_int_distribution<size_t> pick(0, parents.size() - 1);
      p.parents = {parents[pick(p.rng)]};
    }
  }
  return pending_.insert_or_assign(trial.number, std::move(p)).first->second;
}

void NSGAIISampler::before_trial(const StudyView& study, FrozenTrial& trial) {
  std::lock_guard lock(mutex_);
  refresh_locked(study);
  // One refresh and one parent selection per trial: infer_relative_search_space and
  // sample_relative of this trial reuse them.
  const Pending& p = make_pending(trial, parents_locked());
  refreshed_for_ = trial.number;
  nlohmann::json numbers = nlohmann::json::array();
  for (const FrozenTrial* t : p.parents) numbers.push_back(t->number);
  trial.system_attrs[kGenerationKey] = p.generation + 1;
  trial.system_attrs[kParentsKey] = std::move(numbers);
}

SearchSpace NSGAIISampler::infer_relative_search_space(const StudyView& study,
                                                       const FrozenTrial& trial) {
  std::lock_guard lock(mutex_);
  // before_trial of this very trial has just refreshed the cache; skip the second refresh.
  if (refreshed_for_ != trial.number) refresh_locked(study);
  refreshed_for_ = -1;
  return space_.non_single();
}

std::map<std::string, double> NSGAIISampler::sample_relative(const StudyView& study,
                                                             const FrozenTrial& trial,
                                                             const SearchSpace& space) {
  std::lock_guard lock(mutex_);
  Pending& p = pending_for(study, trial);
  std::map<std::string, double> params;
  if (!p.parents.empty() && !space.empty()) {
    const bool crossover = p.parents.size() == 2;
    const double mutation_prob =
        options_.mutation_prob ? *options_.mutation_prob
                               : 1.0 / std::max<double>(1.0, static_cast<double>(space.size()));
    // `space` and the parents' params are maps sorted by name: walk them side by side instead
    // of looking each name up.
    struct Gene {
      SearchSpace::const_iterator param;
      double value;
    };
    std::vector<Gene> child;
    child.reserve(space.size());
    auto it0 = p.parents.front()->params.begin();
    auto it1 = p.parents.back()->params.begin();
    const auto end0 = p.parents.front()->params.end();
    const auto end1 = p.parents.back()->params.end();
    auto value_of = [](auto& it, const auto& end, const std::string& name) {
      while (it != end && it->first < name) ++it;
      return it != end && it->first == name ? it->second : std::numeric_limits<double>::quiet_NaN();
    };
    // Optuna draws the whole swap mask first, then the mutation draws.
    const bool sbx = crossover && options_.crossover == Options::Crossover::kSBX;
    const double eta = options_.sbx_eta         ? *options_.sbx_eta
                       : directions_.size() > 1 ? kSbxEtaMultiObjective
                                                : kSbxEtaSingleObjective;
    for (auto sp = space.begin(); sp != space.end(); ++sp) {
      const double v0 = value_of(it0, end0, sp->first);
      const double v1 = crossover ? value_of(it1, end1, sp->first) : v0;
      if (sbx && !std::holds_alternative<CategoricalDistribution>(sp->second) && !std::isnan(v0) &&
          !std::isnan(v1)) {
        const Distribution& d = sp->second;
        const Transformed b = transformed_bounds(d);
        const double u = uniform01(p.rng), coin1 = uniform01(p.rng), coin2 = uniform01(p.rng);
        const double x = sbx_child(to_transformed(d, v0), to_transformed(d, v1), b.low, b.high, eta,
                                   u, coin1, coin2);
        child.push_back({sp, from_transformed(d, x)});
        continue;
      }
      const bool second = crossover && uniform01(p.rng) >= options_.swapping_prob;
      child.push_back({sp, second ? v1 : v0});
    }
    for (const Gene& g : child) {
      if (uniform01(p.rng) >= mutation_prob && !std::isnan(g.value) &&
          contains(g.param->second, g.value)) {
        params.emplace_hint(params.end(), g.param->first, g.value);
      }
    }
  }
  pending_.erase(trial.number);
  return params;
}

double NSGAIISampler::sample_independent(const StudyView& /*study*/, const FrozenTrial& trial,
                                         const std::string& name, const Distribution& dist) {
  return RandomSampler::sample(dist, internal::mix_seed(seed_, static_cast<uint64_t>(trial.number),
                                                        internal::hash_name(name)));
}

}  // namespace compsearch::search
