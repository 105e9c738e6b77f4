// Per-layer sensitivity table and the additive proxy built from it.
//
// The table holds, for every option of every independent part of a search space (a layer, or a
// group of tied layers, with one choice of bits/granularity/activation bits/pruning), the metrics
// any Evaluator gives when ONLY that part is compressed, plus the uncompressed model's metrics.
// The additive proxy then estimates a whole recipe as
//     proxy(m) = m(reference) + sum over parts of (m(part's option alone) - m(reference)),
// which is exact for an additive metric (weight_error: the relative error sums layer by layer)
// and a first-order estimate for accuracy, agreement and KL.
//
// The table is written to a JSON cache file after every measured option (write to a temporary
// file, then rename), under a key the caller derives from the model, the data and the settings:
// a second run with the same key reads it back, a killed run resumes where it stopped, and a
// file with another key is ignored (and rewritten).
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "compressors/recipe.h"
#include "evaluators/evaluator.h"

namespace compsearch::evaluators {

// One option of one part: `key` names it uniquely; `recipe` compresses only that part.
struct SensitivityOption {
  std::string key;
  compressors::Recipe recipe;
};

struct SensitivityTable {
  std::string cache_key;
  Metrics reference;                       // the uncompressed model
  std::map<std::string, Metrics> options;  // option key -> metrics with only it applied
  double seconds = 0.0;                    // time spent measuring in this process
  int64_t measured = 0;                    // options measured in this process (rest from cache)
};

struct SensitivityProgress {
  int64_t done = 0, total = 0;
  double elapsed_s = 0.0;  // measuring time in this process
};

// One entry measured by a function: the general form, for tables whose options are not
// compressors::Recipe values (the LLM table of llama.cpp types per tensor,
// experiments/llm_search.h).
struct SensitivityMeasure {
  std::string key;
  std::function<Metrics()> measure;
};

// Measures the reference and every entry not already in the cache file (`cache` may be empty: no
// cache), in the given order; the cache is rewritten after every measured entry and `progress`
// (may be empty) is called after each one. Throws std::runtime_error naming the entry when its
// measurement fails, and std::runtime_error naming the file when the cache cannot be written.
SensitivityTable measure_sensitivity(
    const std::function<Metrics()>& reference, const std::vector<SensitivityMeasure>& entries,
    const std::filesystem::path& cache, const std::string& cache_key,
    const std::function<void(const SensitivityProgress&)>& progress = {});

// The same with an Evaluator over recipes: the reference is the empty recipe.
SensitivityTable measure_sensitivity(
    const Evaluator& evaluator, const std::vector<SensitivityOption>& options,
    const std::filesystem::path& cache, const std::string& cache_key,
    const std::function<void(const SensitivityProgress&)>& progress = {});

// The option keys of a candidate, one per part (the caller's decomposition of a recipe).
using OptionKeysFn = std::function<std::vector<std::string>(const Candidate&)>;

// The additive proxy as an Evaluator: returns `proxy_<metric>` for every metric of the table's
// reference (e.g. proxy_accuracy, proxy_kl). Throws std::runtime_error naming the option when a
// candidate's option is not in the table.
std::unique_ptr<Evaluator> make_additive_proxy(std::shared_ptr<const SensitivityTable> table,
                                               OptionKeysFn keys_of);

// The additive estimate of one metric from option keys (shared by the proxy and the exact route).
double additive_estimate(const SensitivityTable& table, const std::vector<std::string>& keys,
                         const std::string& metric);

}  // namespace compsearch::evaluators
