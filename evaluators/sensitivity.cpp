// Sensitivity table and additive proxy (see sensitivity.h).
#include "evaluators/sensitivity.h"

#include <chrono>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "common/atomic_file.h"

namespace compsearch::evaluators {

namespace {

using nlohmann::json;
constexpr const char* kFormat = "compsearch.sensitivity/1";
constexpr const char* kReferenceKey = "<uncompressed>";

json metrics_json(const Metrics& m) {
  json j = json::object();
  for (const auto& [k, v] : m) j[k] = std::isfinite(v) ? json(v) : json(nullptr);
  return j;
}

Metrics metrics_of(const json& j) {
  Metrics m;
  for (const auto& [k, v] : j.items()) m[k] = v.is_number() ? v.get<double>() : NAN;
  return m;
}

// Reads a cache file written under `key`; anything else (absent, another key, unreadable, torn)
// gives an empty table: the cache is only an accelerator.
void read_cache(const std::filesystem::path& path, const std::string& key, SensitivityTable& t) {
  std::ifstream f(path);
  if (!f) return;
  const json j = json::parse(f, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object() || j.value("format", "") != kFormat || j.value("key", "") != key) return;
  if (!j.contains("options") || !j["options"].is_object()) return;
  for (const auto& [k, v] : j["options"].items())
    if (v.is_object()) t.options[k] = metrics_of(v);
  auto r = t.options.find(kReferenceKey);
  if (r != t.options.end()) {
    t.reference = r->second;
    t.options.erase(r);
  }
}

void write_cache(const std::filesystem::path& path, const SensitivityTable& t) {
  json options = json::object();
  if (!t.reference.empty()) options[kReferenceKey] = metrics_json(t.reference);
  for (const auto& [k, m] : t.options) options[k] = metrics_json(m);
  const json j = {{"format", kFormat}, {"key", t.cache_key}, {"options", options}};
  if (path.has_parent_path()) std::filesystem::create_directories(path.parent_path());
  write_file_atomically(path, j.dump(1) + "\n");
}

class AdditiveProxy : public Evaluator {
 public:
  AdditiveProxy(std::shared_ptr<const SensitivityTable> table, OptionKeysFn keys_of)
      : table_(std::move(table)), keys_of_(std::move(keys_of)) {}
  std::string name() const override { return "proxy"; }
  std::vector<std::string> metric_names() const override {
    std::vector<std::string> out;
    for (const auto& [k, v] : table_->reference) out.push_back("proxy_" + k);
    return out;
  }
  Metrics evaluate(const Candidate& candidate, const ReportFn&) const override {
    const std::vector<std::string> keys = keys_of_(candidate);
    Metrics m;
    for (const auto& [k, v] : table_->reference)
      m["proxy_" + k] = additive_estimate(*table_, keys, k);
    return m;
  }

 private:
  std::shared_ptr<const SensitivityTable> table_;
  OptionKeysFn keys_of_;
};

}  // namespace

SensitivityTable measure_sensitivity(
    const std::function<Metrics()>& reference, const std::vector<SensitivityMeasure>& entries,
    const std::filesystem::path& cache, const std::string& cache_key,
    const std::function<void(const SensitivityProgress&)>& progress) {
  SensitivityTable t;
  t.cache_key = cache_key;
  if (!cache.empty()) read_cache(cache, cache_key, t);
  const auto t0 = std::chrono::steady_clock::now();
  SensitivityProgress p;
  p.total = static_cast<int64_t>(entries.size()) + 1;
  auto measure = [&](const std::string& key, const std::function<Metrics()>& fn) {
    try {
      return fn();
    } catch (const std::exception& e) {
      throw std::runtime_error("sensitivity of option " + key + ": " + e.what());
    }
  };
  auto step = [&](bool measured) {
    p.done++;
    p.elapsed_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (measured) {
      t.measured++;
      if (!cache.empty()) write_cache(cache, t);
    }
    if (progress) progress(p);
  };
  const bool have_reference = !t.reference.empty();
  if (!have_reference) t.reference = measure(kReferenceKey, reference);
  step(!have_reference);
  for (const auto& o : entries) {
    if (o.key == kReferenceKey) throw std::invalid_argument("sensitivity: reserved option key");
    const bool have = t.options.count(o.key) > 0;
    if (!have) t.options[o.key] = measure(o.key, o.measure);
    step(!have);
  }
  t.seconds = t.measured > 0 ? p.elapsed_s : 0.0;
  return t;
}

SensitivityTable measure_sensitivity(
    const Evaluator& evaluator, const std::vector<SensitivityOption>& options,
    const std::filesystem::path& cache, const std::string& cache_key,
    const std::function<void(const SensitivityProgress&)>& progress) {
  auto run = [&evaluator](const compressors::Recipe& recipe) {
    Candidate c;
    c.recipe = &recipe;
    return evaluator.evaluate(c);
  };
  std::vector<SensitivityMeasure> entries;
  entries.reserve(options.size());
  for (const auto& o : options) {
    entries.push_back({o.key, [&run, &o] { return run(o.recipe); }});
  }
  return measure_sensitivity([&run] { return run(compressors::Recipe{}); }, entries, cache,
                             cache_key, progress);
}

double additive_estimate(const SensitivityTable& table, const std::vector<std::string>& keys,
                         const std::string& metric) {
  const auto ref = table.reference.find(metric);
  if (ref == table.reference.end())
    throw std::runtime_error("sensitivity table has no metric \"" + metric + "\"");
  double v = ref->second;
  for (const auto& key : keys) {
    const auto it = table.options.find(key);
    if (it == table.options.end())
      throw std::runtime_error("sensitivity table has no option " + key);
    const auto m = it->second.find(metric);
    if (m == it->second.end())
      throw std::runtime_error("sensitivity option " + key + " lacks metric \"" + metric + "\"");
    v += m->second - ref->second;
  }
  return v;
}

std::unique_ptr<Evaluator> make_additive_proxy(std::shared_ptr<const SensitivityTable> table,
                                               OptionKeysFn keys_of) {
  if (!table || !keys_of) throw std::invalid_argument("additive proxy without a table");
  return std::make_unique<AdditiveProxy>(std::move(table), std::move(keys_of));
}

}  // namespace compsearch::evaluators
