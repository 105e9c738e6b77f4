// RandomSampler: Optuna's RandomSampler, independent uniform sampling in the transformed space
// (log for log distributions, half a step beyond each end for stepped ones, then rounded and
// clipped to the grid, as optuna/_transform.py does).
//
// Determinism: the value of parameter p in trial n is drawn from a generator seeded with
// (seed, n, FNV-1a(p)), so it depends on the seed, the trial number and the name only: a loop
// of fresh CLI processes proposes exactly what one in-process loop proposes, and threads
// asking concurrently do not perturb each other's draws.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "search/sampler.h"

namespace compsearch::search {

class RandomSampler : public Sampler {
 public:
  explicit RandomSampler(uint64_t seed);

  SearchSpace infer_relative_search_space(const StudyView& study,
                                          const FrozenTrial& trial) override;
  std::map<std::string, double> sample_relative(const StudyView& study, const FrozenTrial& trial,
                                                const SearchSpace& space) override;
  // Returns the internal value (a categorical's index).
  double sample_independent(const StudyView& study, const FrozenTrial& trial,
                            const std::string& name, const Distribution& dist) override;
  void reseed_rng(uint64_t seed) override;

  // The draw itself, for samplers that fall back to random sampling with their own stream
  // (`stream` is any 64-bit value, e.g. a hash of the trial number and the name).
  static double sample(const Distribution& dist, uint64_t stream_seed);

 private:
  uint64_t seed_;
};

}  // namespace compsearch::search
