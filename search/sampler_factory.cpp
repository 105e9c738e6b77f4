// make_sampler: Optuna class names and keyword arguments to samplers (see sampler_factory.h).
#include "search/sampler_factory.h"

#include <set>
#include <stdexcept>

#include "search/grid_sampler.h"
#include "search/nsga2_sampler.h"
#include "search/random_sampler.h"
#include "search/sampler_internal.h"
#include "search/tpe_sampler.h"

namespace compsearch::search {

namespace {

class Kwargs {
 public:
  Kwargs(std::string cls, const nlohmann::json& j, std::set<std::string> allowed)
      : cls_(std::move(cls)), j_(j.is_null() ? nlohmann::json::object() : j) {
    if (!j_.is_object()) {
      throw std::invalid_argument(cls_ + ": sampler kwargs " + j_.dump() +
                                  " must be a JSON object of keyword arguments");
    }
    for (const auto& [key, value] : j_.items()) {
      if (!allowed.count(key)) {
        std::string names;
        for (const auto& a : allowed) names += (names.empty() ? "" : ", ") + a;
        throw std::invalid_argument(cls_ + ": unknown or unsupported keyword argument \"" + key +
                                    "\" (accepted: " + names + ")");
      }
    }
  }

  bool has(const std::string& key) const { return j_.contains(key) && !j_.at(key).is_null(); }

  [[noreturn]] void bad(const std::string& key, const std::string& expected) const {
    throw std::invalid_argument(cls_ + ": " + key + " = " + j_.at(key).dump() + ", expected " +
                                expected);
  }

  std::optional<uint64_t> seed() const {
    if (!has("seed")) return std::nullopt;
    const auto& v = j_.at("seed");
    if (!v.is_number_integer() ||
        (v.is_number_integer() && !v.is_number_unsigned() && v.get<int64_t>() < 0)) {
      bad("seed", "a non-negative integer or null");
    }
    return v.get<uint64_t>();
  }
  bool boolean(const std::string& key, bool dflt) const {
    if (!has(key)) return dflt;
    if (!j_.at(key).is_boolean()) bad(key, "true or false");
    return j_.at(key).get<bool>();
  }
  int64_t integer(const std::string& key, int64_t dflt) const {
    if (!has(key)) return dflt;
    if (!j_.at(key).is_number_integer()) bad(key, "an integer");
    return j_.at(key).get<int64_t>();
  }
  double number(const std::string& key, double dflt) const {
    if (!has(key)) return dflt;
    if (!j_.at(key).is_number()) bad(key, "a number");
    return j_.at(key).get<double>();
  }
  std::optional<double> optional_number(const std::string& key) const {
    if (!has(key)) return std::nullopt;
    if (!j_.at(key).is_number()) bad(key, "a number or null");
    return j_.at(key).get<double>();
  }
  // Keys that only Python callables or objects can fill: only null (the default) is accepted.
  void null_only(const std::string& key, const std::string& why) const {
    if (has(key)) bad(key, "null (" + why + ")");
  }
  const nlohmann::json& at(const std::string& key) const { return j_.at(key); }

 private:
  std::string cls_;
  nlohmann::json j_;
};

}  // namespace

std::unique_ptr<Sampler> make_sampler(const std::string& name, const nlohmann::json& kwargs) {
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
