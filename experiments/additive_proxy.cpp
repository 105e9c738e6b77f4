// The additive view of a compression space (see additive_proxy.h).
#include "experiments/additive_proxy.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <map>
#include <set>
#include <sstream>
#include <stdexcept>

#include "experiments/search_runner.h"
#include "search/exact_solver.h"
#include "search/sampler_internal.h"

namespace compsearch::experiments {

namespace {

using nlohmann::json;

bool needs_ratio(const std::string& kind) { return kind == "unstructured" || kind == "channel"; }

std::vector<double> ratio_grid(const RatioRange& r) {
  if (!(r.high > r.low)) return {};
  std::vector<double> out;
  const auto n = static_cast<int64_t>(std::floor((r.high - r.low) / r.step + 1e-9));
  for (int64_t k = 0; k <= n; ++k) out.push_back(r.low + static_cast<double>(k) * r.step);
  return out;
}

// Cartesian product of `base` with every value of one parameter (skipped when it has one choice).
template <typename T>
std::vector<Params> times(const std::vector<Params>& base, const std::string& name,
                          const std::vector<T>& choices, std::vector<std::string>& names) {
  if (choices.size() < 2) return base;
  names.push_back(name);
  std::vector<Params> out;
  for (const auto& p : base)
    for (const auto& c : choices) {
      Params q = p;
      q[name] = json(c);
      out.push_back(std::move(q));
    }
  return out;
}

std::vector<Params> quant_options(const QuantSlot& s, std::vector<std::string>& names) {
  std::vector<Params> o{Params{}};
  o = times(o, s.name + ".w_bits", s.w_bits, names);
  o = times(o, s.name + ".granularity", s.granularity, names);
  o = times(o, s.name + ".a_bits", s.a_bits, names);
  return o;
}

std::vector<Params> prune_options(const PruneSlot& s, const RatioRange& ratio,
                                  std::vector<std::string>& names) {
  if (s.kinds.size() < 2) {
    // One kind: only its ratio can vary.
    if (!needs_ratio(s.kinds.at(0)) || ratio_grid(ratio).empty()) return {Params{}};
  } else {
    names.push_back(s.name + ".prune_kind");
  }
  const auto grid = ratio_grid(ratio);
  bool any_ratio = false;
  std::vector<Params> out;
  for (const auto& kind : s.kinds) {
    Params p;
    if (s.kinds.size() > 1) p[s.name + ".prune_kind"] = kind;
    if (needs_ratio(kind) && !grid.empty()) {
      any_ratio = true;
      for (double r : grid) {
        Params q = p;
        q[s.name + ".prune_ratio"] = r;
        out.push_back(std::move(q));
      }
    } else {
      out.push_back(std::move(p));
    }
  }
  if (any_ratio) names.push_back(s.name + ".prune_ratio");
  return out;
}

std::string value_text(const json& v) {
  if (v.is_number_float()) {
    char b[32];
    std::snprintf(b, sizeof b, "%.6g", v.get<double>());
    return b;
  }
  return v.is_string() ? v.get<std::string>() : v.dump();
}

std::string hex64(uint64_t v) {
  char b[20];
  std::snprintf(b, sizeof b, "%016llx", static_cast<unsigned long long>(v));
  return b;
}

bool compresses_nothing(const compressors::Recipe& r) {
  if (r.distillation) return false;
  for (const auto& [name, s] : r.layers)
    if (s.w_bits != 32 || s.a_bits != 32 || s.prune.kind != compressors::PruneKind::kNone)
      return false;
  return true;
}

bool is_cost_metric(const CompressionProblem& problem, const std::string& name) {
  return problem.reference_cost_metrics().count(name) > 0;
}

}  // namespace

ProxyParts::ProxyParts(const CompressionSpace& space, const model::LayerTable& table)
    : space_(&space), table_(&table) {
  for (const auto& ps : space.prune_slots()) {
    std::vector<const QuantSlot*> inside;
    for (const auto& qs : space.quant_slots())
      if (std::includes(ps.layers.begin(), ps.layers.end(), qs.layers.begin(), qs.layers.end()))
        inside.push_back(&qs);
    // Quant slots that do not sit inside this prune slot are handled by their own prune slot.
    if (inside.size() == 1) {
      ProxyPart part;
      part.name = ps.name;
      part.layers = ps.layers;
      part.quant = part.prune = true;
      const auto q = quant_options(*inside[0], part.quant_params);
      const auto p = prune_options(ps, space.prune_ratio(), part.prune_params);
      for (const auto& a : q)
        for (const auto& b : p) {
          Params o = a;
          o.insert(b.begin(), b.end());
          part.options.push_back(std::move(o));
        }
      parts_.push_back(std::move(part));
      continue;
    }
    for (const QuantSlot* qs : inside) {
      ProxyPart part;
      part.name = qs->name + "[quant]";
      part.layers = qs->layers;
      part.quant = true;
      part.options = quant_options(*qs, part.quant_params);
      parts_.push_back(std::move(part));
    }
    ProxyPart part;
    part.name = ps.name + "[prune]";
    part.layers = ps.layers;
    part.prune = true;
    part.options = prune_options(ps, space.prune_ratio(), part.prune_params);
    parts_.push_back(std::move(part));
  }
  // Quant slots in no prune slot's inside (possible only with unusual ties): own parts.
  for (const auto& qs : space.quant_slots()) {
    bool covered = false;
    for (const auto& part : parts_)
      if (part.quant &&
          std::includes(part.layers.begin(), part.layers.end(), qs.layers.begin(), qs.layers.end()))
        covered = true;
    if (covered) continue;
    ProxyPart part;
    part.name = qs.name + "[quant]";
    part.layers = qs.layers;
    part.quant = true;
    part.options = quant_options(qs, part.quant_params);
    parts_.push_back(std::move(part));
  }
  // Parts with a single option are fixed: they need no table entries but stay in the list so
  // that every layer is accounted for.
}

// The key of one side of a part under `params`; empty when that side compresses nothing.
std::string ProxyParts::side_key(size_t i, const Params& params, bool quant) const {
  const ProxyPart& part = parts_.at(i);
  const auto& names = quant ? part.quant_params : part.prune_params;
  if (names.empty()) return "";
  if (compresses_nothing(isolated_recipe(i, params, quant, !quant))) return "";
  std::string k = part.name + (quant ? "|q|" : "|p|");
  for (size_t j = 0; j < names.size(); ++j) {
    if (j) k += ",";
    const auto it = params.find(names[j]);
    k += names[j].substr(names[j].rfind('.') + 1) + "=" +
         (it == params.end() ? std::string("-") : value_text(it->second));
  }
  return k;
}

std::vector<std::string> ProxyParts::keys(const Params& params) const {
  std::vector<std::string> out;
  for (size_t i = 0; i < parts_.size(); ++i)
    for (bool quant : {true, false}) {
      std::string k = side_key(i, params, quant);
      if (!k.empty()) out.push_back(std::move(k));
    }
  return out;
}

compressors::Recipe ProxyParts::isolated_recipe(size_t i, const Params& option, bool quant,
                                                bool prune) const {
  const ProxyPart& part = parts_.at(i);
  compressors::Recipe r = space_->recipe(option);
  r.distillation.reset();
  std::set<size_t> mine(part.layers.begin(), part.layers.end());
  for (size_t l = 0; l < table_->layers.size(); ++l) {
    auto it = r.layers.find(table_->layers[l].name);
    if (it == r.layers.end()) continue;
    compressors::LayerSetting& s = it->second;
    if (!mine.count(l)) {
      s = compressors::LayerSetting{};
      continue;
    }
    if (!(part.prune && prune)) s.prune = compressors::PruneSpec{};
    if (!(part.quant && quant)) {
      const compressors::PruneSpec keep = s.prune;
      s = compressors::LayerSetting{};
      s.prune = keep;
    }
  }
  return r;
}

std::vector<evaluators::SensitivityOption> ProxyParts::sensitivity_options() const {
  std::vector<evaluators::SensitivityOption> out;
  std::set<std::string> seen;
  for (size_t i = 0; i < parts_.size(); ++i) {
    if (parts_[i].options.size() < 2) continue;
    for (const auto& o : parts_[i].options)
      for (bool quant : {true, false}) {
        const std::string k = side_key(i, o, quant);
        if (!k.empty() && seen.insert(k).second)
          out.push_back({k, isolated_recipe(i, o, quant, !quant)});
      }
  }
  return out;
}

size_t ProxyParts::option_count() const { return sensitivity_options().size(); }

std::string evaluated_objective(const CompressionProblem& problem, bool* maximize) {
  for (const auto& o : problem.config().objectives) {
    if (is_cost_metric(problem, o.metric)) continue;
    if (maximize) *maximize = o.maximize;
    return o.metric;
  }
  return "";
}

evaluators::SensitivityTable problem_sensitivity(
    const CompressionProblem& problem, const ProxyParts& parts,
    const std::filesystem::path& cache_dir,
    const std::function<void(const evaluators::SensitivityProgress&)>& progress) {
  const ExperimentConfig& c = problem.config();
  // The key: the model's bytes, the data settings, the evaluator, and every option measured.
  std::ifstream f(c.model, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  const auto options = parts.sensitivity_options();
  std::ostringstream desc;
  desc << "model " << hex64(search::internal::hash_name(bytes)) << " data " << c.data.source << " "
       << c.data.validation_samples << " " << c.data.validation_seed << " "
       << c.data.calibration_samples << " " << c.fidelity.sensitivity_samples << " evaluator "
       << c.evaluator.kind;
  for (const auto& a : c.evaluator.command) desc << " " << a;
  for (const auto& o : options)
    desc << "\n" << o.key << " " << compressors::recipe_to_json(o.recipe).dump();
  const std::string key = hex64(search::internal::hash_name(desc.str()));
  const std::filesystem::path path =
      cache_dir.empty() ? std::filesystem::path() : cache_dir / ("sensitivity-" + key + ".json");
  return evaluators::measure_sensitivity(problem.sensitivity_evaluator(), options, path, key,
                                         progress);
}

std::vector<ExactPoint> exact_front(const CompressionProblem& problem, const ProxyParts& parts,
                                    const evaluators::SensitivityTable& table, size_t max_points) {
  bool maximize = true;
  const std::string metric = evaluated_objective(problem, &maximize);
  if (metric.empty())
    throw std::invalid_argument(problem.config().source.string() +
                                ": .sampler.name \"exact\" needs an objective that the evaluator "
                                "measures (accuracy, agreement, kl, ...) besides the costs");
  const auto ref_metric = table.reference.find(metric);
  if (ref_metric == table.reference.end())
    throw std::invalid_argument("the exact route: the evaluator does not measure \"" + metric +
                                "\"");
  std::vector<std::string> costs;
  for (const auto& o : problem.config().objectives)
    if (is_cost_metric(problem, o.metric) && !o.maximize) costs.push_back(o.metric);
  if (costs.empty())
    throw std::invalid_argument(problem.config().source.string() +
                                ": .sampler.name \"exact\" needs a minimised cost objective");
  const evaluators::Metrics& ref = problem.reference_cost_metrics();

  // The additive problem over the parts that have a choice.
  search::AdditiveProblem ap;
  std::vector<size_t> part_of;
  for (size_t i = 0; i < parts.parts().size(); ++i) {
    const ProxyPart& part = parts.parts()[i];
    if (part.options.size() < 2) continue;
    std::vector<search::LayerOption> opts;
    for (const auto& o : part.options) {
      const evaluators::Metrics m = problem.cost_metrics(parts.isolated_recipe(i, o));
      search::LayerOption lo;
      for (const auto& c : costs) lo.costs.push_back(m.at(c) - ref.at(c));
      double v = 0.0;
      for (bool quant : {true, false}) {
        const std::string k = parts.side_key(i, o, quant);
        if (!k.empty()) v += table.options.at(k).at(metric) - ref_metric->second;
      }
      lo.loss = maximize ? -v : v;
      opts.push_back(std::move(lo));
    }
    ap.layers.push_back(std::move(opts));
    part_of.push_back(i);
  }
  if (ap.layers.empty()) return {};

  std::map<std::vector<uint32_t>, search::Solution> merged;
  for (size_t k = 0; k < costs.size(); ++k) {
    search::FrontOptions fo;
    fo.cost_index = k;
    for (auto& s : search::pareto_front(ap, fo)) merged.emplace(s.choice, std::move(s));
  }
  std::vector<ExactPoint> points;
  for (const auto& [choice, sol] : merged) {
    ExactPoint p;
    for (size_t j = 0; j < choice.size(); ++j) {
      const Params& o = parts.parts()[part_of[j]].options[choice[j]];
      p.params.insert(o.begin(), o.end());
    }
    p.proxy_loss = sol.loss;
    for (size_t k = 0; k < costs.size(); ++k)
      p.cost_estimate.push_back(ref.at(costs[k]) + sol.costs[k]);
    // Cost constraints are checked exactly (costing is cheap); others need the evaluation.
    const evaluators::Metrics m = problem.cost_metrics(problem.space().recipe(p.params));
    bool ok = true;
    for (const auto& c : problem.config().constraints) {
      const auto it = m.find(c.metric);
      if (it == m.end()) continue;
      ok = ok && (c.less_equal ? it->second <= c.bound : it->second >= c.bound);
    }
    if (ok) points.push_back(std::move(p));
  }
  std::sort(points.begin(), points.end(), [](const ExactPoint& a, const ExactPoint& b) {
    return a.cost_estimate[0] != b.cost_estimate[0] ? a.cost_estimate[0] < b.cost_estimate[0]
                                                    : a.proxy_loss < b.proxy_loss;
  });
  spread_evenly(points, max_points);
  return points;
}

void spread_evenly(std::vector<ExactPoint>& points, size_t max_points) {
  if (max_points == 0) {
    points.clear();
    return;
  }
  if (points.size() <= max_points) return;
  std::vector<ExactPoint> picked;
  for (size_t j = 0; j < max_points; ++j) {
    const size_t idx =
        max_points == 1 ? points.size() - 1 : j * (points.size() - 1) / (max_points - 1);
    picked.push_back(points[idx]);
  }
  points = std::move(picked);
}

}  // namespace compsearch::experiments
