// Helpers shared by the NSGA-II, TPE and grid samplers (internal to search/): seed derivation,
// a cache of the study's finished trials, and Optuna's IntersectionSearchSpace.
//
// Seeds: a sampler with seed s draws the random numbers of trial n from a generator seeded with
// mix_seed(s, n) (and of parameter p within it from mix_seed(s, n, hash(p))). A trial's draws
// therefore depend on the seed, the trial number and the study's other trials only, never on
// which process asked before, so a CLI loop of fresh processes proposes exactly what one
// in-process loop proposes.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "search/sampler.h"

namespace compsearch::search::internal {

uint64_t mix_seed(uint64_t a, uint64_t b);
uint64_t mix_seed(uint64_t a, uint64_t b, uint64_t c);
uint64_t hash_name(const std::string& s);  // FNV-1a (64-bit), stable across runs and platforms
uint64_t entropy_seed();                   // std::random_device, for samplers without a seed

// The SplitMix64 step (Steele, Lea, Flood, "Fast splittable pseudorandom number generators",
// OOPSLA 2014): advances `state` by the golden-ratio increment and returns the mixed output.
// The only copy of the rule in search/: seeds, RandomSampler's draws and the SplitMix64
// generator below all use it.
inline uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// SplitMix64 as a UniformRandomBitGenerator: one 64-bit word of state, so a per-trial generator
// costs nothing to seed (std::mt19937_64 initialises 312 words and regenerates them on first
// use, microseconds per trial).
class SplitMix64 {
 public:
  using result_type = uint64_t;
  explicit SplitMix64(uint64_t seed) : state_(seed) {}
  static constexpr result_type min() { return 0; }
  static constexpr result_type max() { return ~result_type{0}; }
  result_type operator()() { return splitmix64(state_); }

 private:
  uint64_t state_;
};

// Keeps copies of finished trials (which never change) and re-reads only trials from the first
// unfinished one on, through StudyView::get_trials_from.
class TrialCache {
 public:
  // Brings the cache up to date; returns the trials that finished since the previous call, in
  // number order. Switching to another StudyView object starts over.
  std::vector<const FrozenTrial*> refresh(const StudyView& study);
  // Every trial of the study at the last refresh, in number order.
  const std::vector<const FrozenTrial*>& trials() const { return all_; }
  // Incremented whenever the cache starts over (another StudyView): derived state built from
  // refresh()'s "newly finished" lists must then be rebuilt too.
  uint64_t epoch() const { return epoch_; }

 private:
  const StudyView* study_ = nullptr;
  std::map<int64_t, FrozenTrial> finished_;  // node-based: pointers stay valid
  std::vector<FrozenTrial> unfinished_;
  int64_t cursor_ = 0;  // every trial numbered below is finished and cached
  std::vector<const FrozenTrial*> all_;
  uint64_t epoch_ = 0;
};

// Optuna's IntersectionSearchSpace: the parameters whose distribution is the same in every
// COMPLETE trial (and PRUNED ones with include_pruned), updated incrementally.
class IntersectionSpace {
 public:
  explicit IntersectionSpace(bool include_pruned) : include_pruned_(include_pruned) {}
  void update(const std::vector<const FrozenTrial*>& newly_finished);
  void reset() {
    space_.reset();
    non_single_.reset();
  }
  // The intersection without single-valued distributions (those are sampled independently).
  SearchSpace non_single() const;

 private:
  bool include_pruned_;
  std::optional<SearchSpace> space_;
  mutable std::optional<SearchSpace> non_single_;  // cache of non_single(), reset on change
};

}  // namespace compsearch::search::internal
