// make_sampler: Optuna class names and keyword arguments to samplers (see sampler_factory.h).
#include "search/sampler_factory.h"

#include <set>
#include <stdexcept>

#include "search/grid_sampler.h"
#include "search/kwargs.h"
#include "search/nsga2_sampler.h"
#include "search/random_sampler.h"
#include "search/sampler_internal.h"
#include "search/tpe_sampler.h"

namespace compsearch::search {

std::unique_ptr<Sampler> make_sampler(const std::string& name, const nlohmann::json& kwargs) {
  using internal::Kwargs;
  if (name == "RandomSampler") {
    Kwargs k(name, kwargs, {"seed"});
    const auto seed = k.seed();
    return std::make_unique<RandomSampler>(seed ? *seed : internal::entropy_seed());
  }
  if (name == "GridSampler") {
    Kwargs k(name, kwargs, {"search_space", "seed"});
    if (!k.has("search_space")) {
      throw std::invalid_argument("GridSampler: the keyword argument \"search_space\" is required");
    }
    return std::make_unique<GridSampler>(k.at("search_space"), k.seed());
  }
  if (name == "NSGAIISampler") {
    Kwargs k(name, kwargs,
             {"population_size", "mutation_prob", "crossover", "crossover_prob", "swapping_prob",
              "seed", "constraints_func"});
    NSGAIISampler::Options o;
    o.population_size = k.integer("population_size", o.population_size);
    o.mutation_prob = k.optional_number("mutation_prob");
    o.crossover_prob = k.number("crossover_prob", o.crossover_prob);
    o.swapping_prob = k.number("swapping_prob", o.swapping_prob);
    o.seed = k.seed();
    if (k.has("crossover") && k.at("crossover") != "UniformCrossover") {
      k.bad("crossover", "null or \"UniformCrossover\" (the only crossover implemented)");
    }
    k.null_only("constraints_func",
                "constraints are read from each trial's \"constraints\" system attribute");
    return std::make_unique<NSGAIISampler>(o);
  }
  if (name == "TPESampler") {
    Kwargs k(name, kwargs,
             {"consider_prior", "prior_weight", "consider_magic_clip", "consider_endpoints",
              "n_startup_trials", "n_ei_candidates", "seed", "multivariate", "group",
              "warn_independent_sampling", "constant_liar", "constraints_func"});
    TPESampler::Options o;
    o.consider_prior = k.boolean("consider_prior", o.consider_prior);
    o.prior_weight = k.number("prior_weight", o.prior_weight);
    o.consider_magic_clip = k.boolean("consider_magic_clip", o.consider_magic_clip);
    o.consider_endpoints = k.boolean("consider_endpoints", o.consider_endpoints);
    o.n_startup_trials = k.integer("n_startup_trials", o.n_startup_trials);
    o.n_ei_candidates = k.integer("n_ei_candidates", o.n_ei_candidates);
    o.seed = k.seed();
    o.multivariate = k.boolean("multivariate", o.multivariate);
    o.constant_liar = k.boolean("constant_liar", o.constant_liar);
    k.boolean("warn_independent_sampling", true);  // type-checked; no warnings are printed
    if (k.boolean("group", false)) k.bad("group", "false (group decomposition is not implemented)");
    k.null_only("constraints_func",
                "constraints are read from each trial's \"constraints\" system attribute");
    return std::make_unique<TPESampler>(o);
  }
  throw std::invalid_argument("unknown sampler \"" + name +
                              "\", expected one of RandomSampler, GridSampler, NSGAIISampler, "
                              "TPESampler");
}

}  // namespace compsearch::search
