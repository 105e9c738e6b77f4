// RandomSampler (see random_sampler.h).
#include "search/random_sampler.h"

#include <algorithm>
#include <atomic>
#include <cmath>

#include "search/sampler_internal.h"

namespace compsearch::search {
namespace {

using internal::splitmix64;  // a full-period 64-bit mixer, enough for the few draws of a value

// Uniform in [0, 1) with 53 random bits.
double unit(uint64_t& state) { return static_cast<double>(splitmix64(state) >> 11) * 0x1.0p-53; }

double uniform(uint64_t& state, double lo, double hi) { return lo + (hi - lo) * unit(state); }

}  // namespace

RandomSampler::RandomSampler(uint64_t seed) : seed_(seed) {}

SearchSpace RandomSampler::infer_relative_search_space(const StudyView&, const FrozenTrial&) {
  return {};
}

std::map<std::string, double> RandomSampler::sample_relative(const StudyView&, const FrozenTrial&,
                                                             const SearchSpace&) {
  return {};
}

double RandomSampler::sample_independent(const StudyView&, const FrozenTrial& trial,
                                         const std::string& name, const Distribution& dist) {
  uint64_t s = seed_;
  uint64_t a = splitmix64(s) ^ static_cast<uint64_t>(trial.number);
  uint64_t b = splitmix64(a) ^ internal::hash_name(name);
  return sample(dist, splitmix64(b));
}

void RandomSampler::reseed_rng(uint64_t seed) { seed_ = seed; }

double RandomSampler::sample(const Distribution& dist, uint64_t stream_seed) {
  uint64_t state = stream_seed;
  if (const auto* f = std::get_if<FloatDistribution>(&dist)) {
    if (f->low == f->high) return f->low;
    if (f->log) {
      double v = std::exp(uniform(state, std::log(f->low), std::log(f->high)));
      return std::clamp(v, f->low, std::nextafter(f->high, f->low));
    }
    if (f->step) {
      const double step = *f->step;
      double t = uniform(state, f->low - 0.5 * step, f->high + 0.5 * step);
      double v = std::nearbyint((t - f->low) / step) * step + f->low;
      return std::clamp(v, f->low, f->high);
    }
    return std::min(uniform(state, f->low, f->high), std::nextafter(f->high, f->low));
  }
  if (const auto* i = std::get_if<IntDistribution>(&dist)) {
    const auto low = static_cast<double>(i->low), high = static_cast<double>(i->high);
    if (i->log) {
      double t = uniform(state, std::log(low - 0.5), std::log(high + 0.5));
      return std::clamp(std::nearbyint(std::exp(t)), low, high);
    }
    const auto step = static_cast<double>(i->step);
    double t = uniform(state, low - 0.5 * step, high + 0.5 * step);
    return std::clamp(std::nearbyint((t - low) / step) * step + low, low, high);
  }
  const auto n = static_cast<double>(std::get<CategoricalDistribution>(dist).choices.size());
  return std::min(std::floor(unit(state) * n), n - 1);
}

}  // namespace compsearch::search
