// NSGA-II (Deb, Pratap, Agarwal, Meyarivan, "A fast and elitist multiobjective genetic
// algorithm: NSGA-II", IEEE TEC 6(2), 2002) with the semantics of Optuna 3.1's NSGAIISampler
// (optuna/samplers/nsgaii/): generations of `population_size` COMPLETE trials; the parents of a
// generation are the elite of the previous parents plus its members (non-dominated sorting,
// the last front cut by crowding distance); a child comes from a binary tournament of two
// parents and uniform crossover with probability `crossover_prob` (each parameter taken from
// the second parent with probability `swapping_prob`, for int, float and categorical alike),
// else from a copy of one random parent; each parameter is then mutated (re-drawn uniformly)
// with probability `mutation_prob` (default 1 / number of parameters). Generation 0, mutated
// parameters and parameters outside the intersection search space are drawn uniformly.
// Options::crossover = kSBX switches numerical parameters to Optuna's SBXCrossover (an option,
// not the default, as in Optuna).
//
// Constraints: Deb's constrained domination is used as soon as a trial of the population
// carries the "constraints" system attribute (Optuna's constraints_func stores it there).
//
// State: every trial gets the system attribute "nsga2:generation" (Optuna's key and meaning),
// and "nsga2:parents" (the parents' trial numbers; Optuna 3.1 ignores it). The population is
// rebuilt from those attributes and the trials' values on every ask, so a fresh process
// (a CLI `ask`) continues where another left off, and studies written by Optuna's
// NSGAIISampler continue here. Optuna's population cache (a study system attribute) is not
// written; the sampler caches finished trials in memory instead.
//
// Determinism: with a seed, trial n's draws come from a generator seeded by (seed, n), so the
// same seed and the same study history give the same trials in one process or many.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include "search/sampler.h"
#include "search/sampler_internal.h"

namespace compsearch::search {

class NSGAIISampler : public Sampler {
 public:
  struct Options {
    int64_t population_size = 50;         // >= 2
    std::optional<double> mutation_prob;  // in [0, 1]; nullopt: 1 / number of parameters
    double crossover_prob = 0.9;          // in [0, 1]
    double swapping_prob = 0.5;           // in [0, 1]
    // Crossover of numerical parameters: Optuna's default UniformCrossover (kUniform), or
    // Optuna's SBXCrossover (kSBX; Deb and Agrawal, "Simulated binary crossover for continuous
    // search space", Complex Systems 9, 1995) in the transformed space (log scale for log
    // distributions, bounds widened by half a step for discrete ones), with distribution index
    // sbx_eta (nullopt: Optuna's default, 20 for multi-objective studies, 2 otherwise).
    // Categorical parameters always use uniform crossover, as in Optuna.
    enum class Crossover { kUniform, kSBX };
    Crossover crossover = Crossover::kUniform;
    std::optional<double> sbx_eta;  // > 0
    std::optional<uint64_t> seed;   // nullopt: seeded from std::random_device
  };

  // Throws std::invalid_argument naming the option and its value when out of range.
  explicit NSGAIISampler(Options options);
  ~NSGAIISampler() override;

  SearchSpace infer_relative_search_space(const StudyView& study,
                                          const FrozenTrial& trial) override;
  std::map<std::string, double> sample_relative(const StudyView& study, const FrozenTrial& trial,
                                                const SearchSpace& space) override;
  double sample_independent(const StudyView& study, const FrozenTrial& trial,
                            const std::string& name, const Distribution& dist) override;
  // Fixes the trial's generation and parents and stores them in its system attributes.
  void before_trial(const StudyView& study, FrozenTrial& trial) override;
  void reseed_rng(uint64_t seed) override;

  const Options& options() const { return options_; }

  // The parents' generation (-1 before the first full generation) and their trial numbers,
  // rebuilt from the study; exposed for tests.
  std::pair<int64_t, std::vector<int64_t>> parent_population(const StudyView& study);

 private:
  struct Pending {
    internal::SplitMix64 rng;
    std::vector<const FrozenTrial*> parents;  // 0 (generation 0), 1 (copy) or 2 (crossover)
    int64_t generation = -1;                  // of the parents
  };
  struct GenerationCache {
    std::vector<int64_t> members;  // COMPLETE trials of this generation, sorted
    bool dirty = true;
    std::vector<const FrozenTrial*> elite;
  };

  void refresh_locked(const StudyView& study);
  std::pair<int64_t, std::vector<const FrozenTrial*>> parents_locked();
  std::vector<const FrozenTrial*> select_elite(std::vector<const FrozenTrial*> population) const;
  const FrozenTrial* tournament(const std::vector<const FrozenTrial*>& population,
                                const FrozenTrial* exclude, internal::SplitMix64& rng) const;
  Pending& pending_for(const StudyView& study, const FrozenTrial& trial);
  Pending& make_pending(const FrozenTrial& trial,
                        const std::pair<int64_t, std::vector<const FrozenTrial*>>& parents);

  Options options_;
  uint64_t seed_;
  std::mutex mutex_;
  internal::TrialCache cache_;
  internal::IntersectionSpace space_{false};
  std::vector<StudyDirection> directions_;
  std::map<int64_t, GenerationCache> generations_;
  std::map<int64_t, Pending> pending_;  // by trial number, from before_trial to sample_relative
  int64_t refreshed_for_ = -1;          // trial whose before_trial refreshed the cache last
};

}  // namespace compsearch::search
