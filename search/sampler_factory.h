// Builds a sampler from Optuna's class name and keyword arguments, so that the CLI's
// `--sampler NSGAIISampler --sampler-kwargs '{"seed": 0}'` means what it means to Optuna.
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "search/sampler.h"

namespace compsearch::search {

// `optuna_class_name` is one of "RandomSampler", "GridSampler", "NSGAIISampler", "TPESampler".
// `kwargs` is a JSON object (null is taken as {}) with Optuna 3.1's keyword names for that class,
// e.g. {"seed": 0}, {"population_size": 50, "mutation_prob": null}, {"n_startup_trials": 10,
// "multivariate": true}, {"search_space": {"x": [0, 1, 2]}}. Keys Optuna accepts but that take
// Python callables (e.g. "constraints_func", "gamma") are not accepted here; constraints are read
// from each trial's "constraints" system attribute instead.
// Throws std::invalid_argument naming the class (unknown class), the key (unknown or unsupported
// keyword) or the key and value (wrong type or out of range).
std::unique_ptr<Sampler> make_sampler(const std::string& optuna_class_name,
                                      const nlohmann::json& kwargs);

}  // namespace compsearch::search
