// The compression problem and the search runner (see search_runner.h).
#include "experiments/search_runner.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <mutex>
#include <numeric>
#include <set>
#include <sstream>
#include <thread>

#include "compressors/apply.h"
#include "evaluators/external_evaluator.h"
#include "experiments/additive_proxy.h"
#include "experiments/results.h"
#include "hardware_models/target_profile.h"
#include "search/hypervolume.h"
#include "search/open_storage.h"
#include "search/pareto.h"
#include "search/pruner.h"
#include "search/sampler_factory.h"
#include "search/sampler_internal.h"
#include "search/study.h"

namespace compsearch::experiments {

namespace {

using nlohmann::json;
namespace hm = compsearch::hardware_models;

// Heartbeats of a running search: a trial whose heartbeat is older than the grace period belongs
// to a dead worker; the next run fails it and re-queues its params once.
constexpr double kHeartbeatIntervalS = 5.0;
constexpr double kHeartbeatGraceS = 20.0;
constexpr int kRequeueRetries = 1;
// Fidelity levels as reported on a trial: 0 the additive proxy, 1 the validation subset, 2 the
// whole validation split (the evaluators report 1 and 2).
constexpr int64_t kProxyStep = 0;

// Seeded Fisher-Yates over [0, n) (SplitMix64 stream), so a seed always carves the same split.
std::vector<int64_t> seeded_permutation(int64_t n, uint64_t seed) {
  std::vector<int64_t> p(n);
  std::iota(p.begin(), p.end(), 0);
  uint64_t state = seed;
  for (int64_t i = n - 1; i > 0; --i)
    std::swap(p[i], p[search::internal::splitmix64(state) % static_cast<uint64_t>(i + 1)]);
  return p;
}

std::unique_ptr<model::Dataset> subset(const model::Dataset& d, const std::vector<int64_t>& idx,
                                       size_t begin, size_t end, const std::string& name) {
  auto out = std::make_unique<model::Dataset>();
  out->name = name;
  out->sample_shape = d.sample_shape;
  int64_t per = 1;
  for (auto s : d.sample_shape) per *= s;
  out->images.reserve((end - begin) * per);
  for (size_t k = begin; k < end; ++k) {
    const int64_t i = idx[k];
    out->images.insert(out->images.end(), d.images.begin() + i * per,
                       d.images.begin() + (i + 1) * per);
    if (d.labelled()) out->labels.push_back(d.labels[i]);
  }
  return out;
}

int64_t count_state(const std::vector<search::FrozenTrial>& ts, search::TrialState s) {
  return std::count_if(ts.begin(), ts.end(),
                       [s](const search::FrozenTrial& t) { return t.state == s; });
}

// Finished trials counted against the budget: a FAIL whose params were re-queued is not counted
// (its re-run is).
int64_t finished_count(const std::vector<search::FrozenTrial>& ts) {
  int64_t n = 0, requeued = 0;
  for (const auto& t : ts) {
    if (t.state == search::TrialState::kComplete || t.state == search::TrialState::kPruned ||
        t.state == search::TrialState::kFail)
      ++n;
    if (t.system_attrs.count("failed_trial")) ++requeued;
  }
  return n - requeued;
}

std::string fmt(double v, int prec = 4) {
  char b[64];
  std::snprintf(b, sizeof b, "%.*g", prec, v);
  return b;
}

}  // namespace

DataSplits load_splits(const DataConfig& data, bool with_train) {
  DataSplits s;
  if (data.source.empty()) return s;
  const bool builtin = data.source == "fashion-mnist";
  const model::Dataset train = model::load_dataset(data.source, "train");
  const int64_t n = train.size();
  if (n < 2)
    throw std::invalid_argument(data.source + ": too few samples to carve a validation split");
  const int64_t n_val = std::min<int64_t>(data.validation_samples, n - 1);
  const auto perm = seeded_permutation(n, data.validation_seed);
  s.validation = subset(train, perm, 0, n_val, train.name + " validation");
  const int64_t n_cal = std::min<int64_t>(data.calibration_samples, n - n_val);
  s.calibration = subset(train, perm, n_val, n_val + n_cal, train.name + " calibration");
  if (with_train) s.train = subset(train, perm, n_val, n, train.name + " without validation");
  if (builtin && data.report_test)
    s.test = std::make_unique<model::Dataset>(model::load_dataset(data.source, "test"));
  return s;
}

CompressionProblem::CompressionProblem(const ExperimentConfig& config, bool load_data)
    : config_(config) {
  graph_ = model::load_onnx(config.model);
  table_ = model::build_layer_table(graph_);
  space_ = std::make_unique<CompressionSpace>(graph_, table_, config.space);
  workload_ = hm::workload_from_graph(graph_, table_);
  for (const auto& t : config.targets) {
    Target target;
    target.name = t;
    try {
      target.model = hm::make_hardware_model(hm::load_profile(t));
    } catch (const std::exception& e) {
      throw std::invalid_argument(config.source.string() + ": .targets: " + e.what());
    }
    target.compiled = target.model->compile(workload_, config.batch);
    targets_.push_back(std::move(target));
  }
  const auto& kd = config.space.distillation.epochs;
  const bool finetunes = std::any_of(kd.begin(), kd.end(), [](int e) { return e > 0; });
  if (load_data) data_ = load_splits(config.data, finetunes && config.evaluator.kind != "external");
  context_ = std::make_shared<evaluators::EvaluationContext>();
  context_->graph = &graph_;
  context_->table = table_;
  context_->validation = data_.validation.get();
  context_->calibration = data_.calibration.get();
  context_->train = data_.train.get();
  context_->subset_samples = config.fidelity.subset ? config.data.subset_samples : 0;
  context_->calibration_samples = config.data.calibration_samples;
  context_->options.int8 = config.evaluator.int8;
  if (config.evaluator.kind != "external") {
    if (load_data) evaluators::prepare_context(*context_);
    if (load_data || config.evaluator.kind == "weight_error") {
      evaluator_ = evaluators::make_standard_evaluator(config.evaluator.kind, context_);
      auto limited = std::make_shared<evaluators::EvaluationContext>(*context_);
      limited->options.limit = config.fidelity.sensitivity_samples;
      sensitivity_evaluator_ = evaluators::make_standard_evaluator(config.evaluator.kind, limited);
    }
  }
  reference_costs_ = cost_metrics(compressors::Recipe{});
  reference_ = reference_costs_;
  if (config.evaluator.kind == "external") {
    evaluators::ExternalEvaluatorOptions eo;
    eo.command = config.evaluator.command;
    eo.timeout_s = config.evaluator.timeout_s;
    eo.model = std::filesystem::absolute(config.model).string();
    // The metrics the config reads that compsearch does not compute itself.
    for (const auto& o : config.objectives)
      if (!reference_costs_.count(o.metric)) eo.metrics.push_back(o.metric);
    for (const auto& c : config.constraints)
      if (!reference_costs_.count(c.metric)) eo.metrics.push_back(c.metric);
    evaluator_ = evaluators::make_external_evaluator(eo);
    sensitivity_evaluator_ = evaluators::make_external_evaluator(eo);
  }
  if (load_data && context_->validation) {
    reference_["accuracy"] = context_->reference.accuracy;
    reference_["agreement"] = 1.0;
    reference_["kl"] = 0.0;
    reference_["accuracy_drop"] = 0.0;
  }
  reference_["weight_error"] = 0.0;
}

evaluators::Metrics CompressionProblem::cost_metrics(const compressors::Recipe& recipe) const {
  evaluators::Metrics m;
  // Rule 9 and effective MACs depend on how many channels a layer prunes, not which: count them
  // from the ratio (floor(ratio * O), as the compressor does) without touching the weights.
  std::map<std::string, std::vector<int64_t>> pruned;
  for (const auto& layer : table_.layers) {
    const auto& s = recipe.setting_for(layer.name);
    if (s.prune.kind != compressors::PruneKind::kChannel) continue;
    const auto k =
        static_cast<int64_t>(std::floor(s.prune.ratio * static_cast<double>(layer.out_channels)));
    std::vector<int64_t> idx(k);
    std::iota(idx.begin(), idx.end(), 0);
    if (k > 0) pruned[layer.name] = std::move(idx);
  }
  const compressors::ModelCost cost = compressors::model_cost(graph_, table_, recipe, pruned);
  m["size_bytes"] = cost.size_bytes();
  m["size_kb"] = cost.size_bytes() / 1024.0;
  m["macs"] = static_cast<double>(cost.effective_macs);
  std::vector<const compressors::LayerSetting*> settings;
  for (const auto& layer : table_.layers) settings.push_back(&recipe.setting_for(layer.name));
  hm::Estimate est;
  for (const auto& t : targets_) {
    t.model->estimate(t.compiled, settings, est);
    m["latency_ms@" + t.name] = est.latency_ms;
    m["energy_mj@" + t.name] = est.energy_mj;
    m["deployable@" + t.name] = est.deployable ? 1.0 : 0.0;
    if (est.has_mcu_memory) {
      m["sram_kb@" + t.name] = est.sram_kb;
      m["flash_kb@" + t.name] = est.flash_kb;
    }
  }
  return m;
}

double CompressionProblem::test_accuracy(const compressors::Recipe& recipe) const {
  if (!data_.test || !data_.test->labelled()) return NAN;
  compressors::CompressedModel cm = compressors::apply_recipe(graph_, table_, recipe);
  if (cm.needs_calibration() && context_->reference_activations)
    evaluators::calibrate_from_reference(cm, *context_->reference_activations);
  int64_t classes = 0;
  const auto out =
      evaluators::run_model(cm.graph, *data_.test, &cm.activations, context_->options, classes);
  return evaluators::compare_outputs(out, out, classes, data_.test->labels).accuracy;
}

void apply_overrides(ExperimentConfig& config, const SearchOverrides& o) {
  if (o.trials) {
    if (*o.trials < 1)
      throw std::invalid_argument("--trials must be >= 1, got " + std::to_string(*o.trials));
    config.budget.trials = *o.trials;
  }
  if (o.timeout_s) config.budget.timeout_s = *o.timeout_s;
  if (o.jobs) {
    if (*o.jobs < 1 || *o.jobs > 256)
      throw std::invalid_argument("--jobs must be in [1, 256], got " + std::to_string(*o.jobs));
    config.budget.jobs = *o.jobs;
  }
  if (o.storage) config.storage = *o.storage;
  if (o.study_name) config.study_name = *o.study_name;
  if (o.sampler) {
    const std::string& s = *o.sampler;
    if (s != "nsga2" && s != "tpe" && s != "random" && s != "exact") {
      throw std::invalid_argument("--sampler \"" + s +
                                  "\" is not allowed (allowed: nsga2, tpe, random, exact)");
    }
    config.sampler.name = s;
  }
}

std::filesystem::path sensitivity_cache_dir(const std::string& storage) {
  if (storage.rfind("redis://", 0) == 0) return ".";
  const std::filesystem::path p(storage);
  return p.has_parent_path() ? p.parent_path() : std::filesystem::path(".");
}

std::string fmt_duration(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  char b[32];
  if (s < 60)
    std::snprintf(b, sizeof b, "%.0fs", s);
  else if (s < 3600)
    std::snprintf(b, sizeof b, "%dm%02ds", int(s) / 60, int(s) % 60);
  else
    std::snprintf(b, sizeof b, "%dh%02dm", int(s) / 3600, (int(s) % 3600) / 60);
  return b;
}

std::shared_ptr<search::Storage> open_storage(const std::string& storage) {
  if (!search::is_storage_url(storage)) {
    const std::filesystem::path p(storage);
    if (p.has_parent_path()) std::filesystem::create_directories(p.parent_path());
  }
  return search::open_storage(storage);
}

double spearman(const std::vector<double>& a, const std::vector<double>& b) {
  const size_t n = std::min(a.size(), b.size());
  if (n < 3) return NAN;
  auto ranks = [n](const std::vector<double>& v) {
    std::vector<size_t> idx(n);
    std::iota(idx.begin(), idx.end(), 0);
    std::sort(idx.begin(), idx.end(), [&](size_t i, size_t j) { return v[i] < v[j]; });
    std::vector<double> r(n);
    for (size_t i = 0; i < n;) {
      size_t j = i;
      while (j + 1 < n && v[idx[j + 1]] == v[idx[i]]) ++j;
      const double avg = (static_cast<double>(i) + static_cast<double>(j)) / 2.0 + 1.0;
      for (size_t k = i; k <= j; ++k) r[idx[k]] = avg;
      i = j + 1;
    }
    return r;
  };
  const auto ra = ranks(a), rb = ranks(b);
  const double ma = std::accumulate(ra.begin(), ra.end(), 0.0) / n,
               mb = std::accumulate(rb.begin(), rb.end(), 0.0) / n;
  double sab = 0, saa = 0, sbb = 0;
  for (size_t i = 0; i < n; ++i) {
    sab += (ra[i] - ma) * (rb[i] - mb);
    saa += (ra[i] - ma) * (ra[i] - ma);
    sbb += (rb[i] - mb) * (rb[i] - mb);
  }
  return saa > 0 && sbb > 0 ? sab / std::sqrt(saa * sbb) : NAN;
}

double study_hypervolume(const std::vector<search::FrozenTrial>& trials,
                         const std::vector<search::StudyDirection>& directions,
                         const std::vector<std::string>& objective_names,
                         const evaluators::Metrics& reference,
                         std::vector<double>* reference_point) {
  const auto front = search::best_trials_of(trials, directions);
  std::vector<search::Point> points;
  for (const auto& t : front) points.push_back(search::to_minimization(t.values, directions));
  search::Point ref(directions.size(), 0.0);
  for (size_t k = 0; k < directions.size(); ++k) {
    const bool maximize = directions[k] == search::StudyDirection::kMaximize;
    const auto it = reference.find(objective_names[k]);
    if (maximize) {
      ref[k] = 0.0;  // maximised metrics (accuracy, agreement) are >= 0
    } else if (it != reference.end() && it->second > 0 && objective_names[k] != "kl" &&
               objective_names[k] != "weight_error" && objective_names[k] != "accuracy_drop") {
      ref[k] = it->second;  // a cost: the uncompressed model's
    } else {
      double worst = 0.0;
      for (const auto& t : trials)
        if (t.state == search::TrialState::kComplete) worst = std::max(worst, t.values[k]);
      ref[k] = worst > 0 ? 1.1 * worst : 1.0;
    }
  }
  if (reference_point) *reference_point = ref;
  return points.empty() ? 0.0 : search::hypervolume(points, ref);
}

SearchSummary run_search(const ExperimentConfig& config, const SearchCallbacks& callbacks) {
  const auto t0 = std::chrono::steady_clock::now();
  CompressionProblem problem(config);
  const auto storage = open_storage(config.storage);

  std::vector<search::StudyDirection> directions;
  std::vector<std::string> objective_names;
  for (const auto& o : config.objectives) {
    directions.push_back(o.maximize ? search::StudyDirection::kMaximize
                                    : search::StudyDirection::kMinimize);
    objective_names.push_back(o.metric);
  }
  // Fidelity level 0: the additive proxy over the sensitivity table (also the exact route's
  // model). Measured once per model, data and space, and cached beside the study.
  const bool exact = config.sampler.name == "exact";
  std::unique_ptr<ProxyParts> parts;
  std::shared_ptr<const evaluators::SensitivityTable> table;
  std::unique_ptr<evaluators::Evaluator> proxy;
  // An external program is called for every table entry: only the exact route builds it then.
  const bool want_proxy = exact || (config.fidelity.proxy && config.evaluator.kind != "external");
  if (want_proxy && problem.has_evaluator()) {
    parts = std::make_unique<ProxyParts>(problem.space(), problem.table());
    if (parts->option_count() > 0) {
      auto on_progress = [&](const evaluators::SensitivityProgress& p) {
        if (!callbacks.progress) return;
        const double eta =
            p.done > 1 ? p.elapsed_s / static_cast<double>(p.done) * (p.total - p.done) : NAN;
        callbacks.progress("[" + config.study_name + "] sensitivity table " +
                               std::to_string(p.done) + "/" + std::to_string(p.total) +
                               " options  " + fmt_duration(p.elapsed_s) + "  ETA " +
                               (p.done == p.total ? "0s" : fmt_duration(eta)),
                           p.done == p.total);
      };
      table = std::make_shared<const evaluators::SensitivityTable>(
          problem_sensitivity(problem, *parts, sensitivity_cache_dir(config.storage), on_progress));
      const ProxyParts* pp = parts.get();
      proxy = evaluators::make_additive_proxy(table, [pp](const evaluators::Candidate& c) {
        Params params;
        for (const auto& [k, v] : c.params.items()) params[k] = v;
        return pp->keys(params);
      });
    }
  }
  if (exact && !table) {
    throw std::invalid_argument(config.source.string() +
                                ": .sampler.name \"exact\" needs an evaluator with data or "
                                "weight_error and a space with choices");
  }
  json kwargs = config.sampler.kwargs;
  kwargs["seed"] = config.sampler.seed;
  // The exact route enqueues the proxy's front; NSGA-II spends what budget is left.
  const std::string cls = config.sampler.name == "nsga2" || exact ? "NSGAIISampler"
                          : config.sampler.name == "tpe"          ? "TPESampler"
                                                                  : "RandomSampler";
  std::shared_ptr<search::Sampler> sampler = search::make_sampler(cls, kwargs);
  const bool multi_objective = directions.size() > 1;
  search::StudyOptions options;
  options.heartbeat =
      search::HeartbeatOptions{kHeartbeatIntervalS, kHeartbeatGraceS, true, kRequeueRetries};
  options.stop = callbacks.stop;
  if (!multi_objective) {
    try {
      options.pruner = search::make_pruner(config.fidelity.pruner, config.fidelity.pruner_kwargs);
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument(config.source.string() + ": .fidelity.pruner: " + e.what());
    }
  }
  auto study = search::Study::create(storage, config.study_name, directions, sampler,
                                     /*load_if_exists=*/true, options);
  if (study->directions() != directions) {
    throw std::invalid_argument(
        "study \"" + config.study_name + "\" in " + search::storage_display(config.storage) +
        " has other directions than the config's objectives; use another --study-name");
  }
  {
    json cfg = config.to_json();
    cfg["storage"] = search::storage_display(config.storage);  // never a password in the study
    json ref = json::object();
    for (const auto& [k, v] : problem.reference_metrics()) ref[k] = v;
    study->set_user_attr("compsearch.config", cfg);
    study->set_user_attr("compsearch.reference", ref);
  }
  // A killed run's trials: fail (and re-queue) those whose heartbeat is stale now.
  search::fail_stale_trials(*storage, study->study_id(), *options.heartbeat,
                            search::unix_time_now_s());

  const auto before = study->get_trials();
  const int64_t to_run = std::max<int64_t>(0, config.budget.trials - finished_count(before));
  const bool multi = directions.size() > 1;
  std::atomic<int64_t> done_now{0};
  int64_t enqueued = 0;
  if (exact && to_run > 0) {
    // Front points not in the study yet (a resumed run enqueues nothing twice).
    std::set<std::vector<std::string>> seen;
    for (const auto& t : before) {
      Params p;
      for (const auto& [k, v] : t.params) p[k] = t.param(k);
      seen.insert(parts->keys(p));
    }
    for (const auto& point : exact_front(problem, *parts, *table, static_cast<size_t>(to_run))) {
      if (!seen.insert(parts->keys(point.params)).second) continue;
      study->enqueue_trial(point.params,
                           {{"compsearch.route", "exact"}, {"proxy_loss", point.proxy_loss}});
      ++enqueued;
    }
  }

  // The metric the evaluator's fidelity levels report.
  const std::string measured = config.evaluator.kind == "accuracy"       ? "accuracy"
                               : config.evaluator.kind == "weight_error" ? "weight_error"
                               : config.evaluator.kind == "external" ? evaluated_objective(problem)
                                                                     : "agreement";

  // The objective of one trial.
  search::Study::Objective objective = [&](search::Trial& trial) -> std::vector<double> {
    // Counted however the trial ends (complete, pruned or failed).
    struct CountRun {
      std::atomic<int64_t>& n;
      ~CountRun() { ++n; }
    } count_run{done_now};
    const Params params = problem.space().suggest(trial);
    const compressors::Recipe recipe = problem.space().recipe(params);
    evaluators::Metrics m = problem.cost_metrics(recipe);
    trial.set_user_attr("recipe", compressors::recipe_to_json(recipe));
    json fidelity = json::object();
    auto record = [&](const evaluators::Metrics& metrics) {
      for (const auto& [k, v] : metrics) m[k] = v;
      for (const auto& [k, v] : m)
        trial.set_user_attr(k, std::isfinite(v) ? json(v) : json(nullptr));
      if (!fidelity.empty()) trial.set_user_attr("fidelity", fidelity);
    };
    evaluators::ReportFn report = [&](double value, int64_t step) {
      fidelity[std::to_string(step)] = value;
      if (!multi) {
        trial.report(value, step);
        return trial.should_prune();  // the config's Optuna pruner
      }
      // Multi-objective: stop a candidate that some finished trial beats by the margin on the
      // evaluated objective while costing no more on every other objective.
      const size_t acc_k = std::find(objective_names.begin(), objective_names.end(), measured) -
                           objective_names.begin();
      // Level 2 is cut only when a fine-tune (level 3) would follow; level 3 is final.
      if (acc_k >= objective_names.size() || step >= 3) return false;
      for (const auto& t : study->get_trials({search::TrialState::kComplete})) {
        bool cheaper = true;
        for (size_t k = 0; k < objective_names.size() && cheaper; ++k) {
          if (k == acc_k) continue;
          const auto it = m.find(objective_names[k]);
          if (it == m.end()) {
            cheaper = false;
            break;
          }
          const double mine = it->second, theirs = t.values[k];
          cheaper =
              directions[k] == search::StudyDirection::kMinimize ? theirs <= mine : theirs >= mine;
        }
        // The proxy is an estimate: it needs twice the margin to stop a candidate.
        const double margin = config.fidelity.dominance_margin * (step == kProxyStep ? 2.0 : 1.0);
        // Levels 0-2 estimate the value before fine-tuning: compare with theirs before it too.
        const double theirs = metric_of(t, measured + "_before_finetune").value_or(t.values[acc_k]);
        const bool better = directions[acc_k] == search::StudyDirection::kMaximize
                                ? theirs > value + margin
                                : theirs < value - margin;
        if (cheaper && better) return true;
      }
      return false;
    };
    evaluators::Candidate cand;
    cand.recipe = &recipe;
    cand.number = trial.number();
    for (const auto& [k, v] : params) cand.params[k] = v;
    try {
      if (proxy) {
        const evaluators::Metrics pm = proxy->evaluate(cand);
        record(pm);
        const auto it = pm.find("proxy_" + measured);
        if (it != pm.end() && report(it->second, kProxyStep))
          throw evaluators::EvaluationPruned({}, kProxyStep);
      }
      record(problem.evaluator().evaluate(cand, report));
    } catch (const evaluators::EvaluationPruned& e) {
      record(e.metrics);
      throw search::TrialPruned();
    }
    std::vector<double> constraints;
    for (const auto& c : config.constraints) {
      const auto it = m.find(c.metric);
      if (it == m.end())
        throw std::runtime_error("constraint metric \"" + c.metric + "\" was not measured");
      constraints.push_back(c.less_equal ? it->second - c.bound : c.bound - it->second);
    }
    if (!constraints.empty()) trial.set_system_attr("constraints", constraints);
    std::vector<double> values;
    for (const auto& name : objective_names) {
      const auto it = m.find(name);
      if (it == m.end())
        throw std::runtime_error("objective metric \"" + name + "\" was not measured");
      values.push_back(it->second);
    }
    return values;
  };

  // Progress line every second while the study runs.
  std::atomic<bool> finished{false};
  std::thread progress;
  auto status_line = [&](bool final) {
    const auto ts = study->get_trials();
    const double elapsed =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const int64_t done = done_now.load();
    const double rate = elapsed > 0 ? done / elapsed : 0.0;
    const int64_t left = std::max<int64_t>(0, to_run - done);
    std::vector<double> ref;
    const double hv =
        study_hypervolume(ts, directions, objective_names, problem.reference_metrics(), &ref);
    const auto front = search::best_trials_of(ts, directions);
    std::ostringstream os;
    os << "[" << config.study_name << "] " << finished_count(ts) << "/" << config.budget.trials
       << " done"
       << " (running " << count_state(ts, search::TrialState::kRunning) << ", pruned "
       << count_state(ts, search::TrialState::kPruned) << ", failed "
       << count_state(ts, search::TrialState::kFail) << ")  " << fmt(rate, 3) << " trials/s  ETA "
       << (final ? "0s" : fmt_duration(rate > 0 ? left / rate : NAN)) << "  HV " << fmt(hv, 5)
       << "  front " << front.size();
    for (size_t k = 0; k < objective_names.size(); ++k) {
      double best = NAN;
      for (const auto& t : ts) {
        if (t.state != search::TrialState::kComplete || !t.feasible()) continue;
        const double v = t.values[k];
        if (std::isnan(best) ||
            (directions[k] == search::StudyDirection::kMaximize ? v > best : v < best))
          best = v;
      }
      os << "  best " << objective_names[k] << " " << fmt(best, 4);
    }
    return os.str();
  };
  if (callbacks.progress) {
    progress = std::thread([&] {
      while (!finished.load()) {
        for (int i = 0; i < 10 && !finished.load(); ++i)
          std::this_thread::sleep_for(std::chrono::milliseconds(100));
        if (finished.load()) break;
        try {
          callbacks.progress(status_line(false), false);
        } catch (const std::exception&) {
        }
      }
    });
  }
  std::exception_ptr error;
  if (to_run > 0) {
    try {
      study->optimize(objective, static_cast<int>(to_run), config.budget.jobs,
                      config.budget.timeout_s);
    } catch (...) {
      error = std::current_exception();
    }
  }
  finished = true;
  if (progress.joinable()) progress.join();
  if (error) std::rethrow_exception(error);

  SearchSummary s;
  s.study_name = config.study_name;
  s.storage = search::storage_display(config.storage);
  const auto ts = study->get_trials();
  s.trials_total = static_cast<int64_t>(ts.size());
  s.completed = count_state(ts, search::TrialState::kComplete);
  s.pruned = count_state(ts, search::TrialState::kPruned);
  s.failed = count_state(ts, search::TrialState::kFail);
  s.run_now = done_now.load();
  s.hypervolume = study_hypervolume(ts, directions, objective_names, problem.reference_metrics(),
                                    &s.hypervolume_reference);
  const auto front = search::best_trials_of(ts, directions);
  s.front_size = static_cast<int64_t>(front.size());
  // Fidelity check: subset-level value against the full measurement.
  std::vector<double> sub, full, prox, full_p;
  for (const auto& t : ts) {
    if (t.state != search::TrialState::kComplete) continue;
    // Before fine-tuning (level 3), the value the cheaper levels estimate.
    const double v =
        metric_of(t, measured + "_before_finetune").value_or(metric_of(t, measured).value_or(NAN));
    const double pv = metric_of(t, "proxy_" + measured).value_or(NAN);
    if (std::isfinite(v) && std::isfinite(pv)) {
      prox.push_back(pv);
      full_p.push_back(v);
    }
    auto f = t.user_attrs.find("fidelity");
    if (f == t.user_attrs.end() || !f->second.contains("1")) continue;
    sub.push_back(f->second["1"].get<double>());
    full.push_back(v);
  }
  s.spearman_subset = spearman(sub, full);
  s.spearman_proxy = spearman(prox, full_p);
  if (table) {
    s.sensitivity_options = static_cast<int64_t>(table->options.size());
    s.sensitivity_seconds = table->seconds;
  }
  s.exact_enqueued = enqueued;
  // Test accuracy of the front (the test split is used only here).
  json test_acc = json::object();
  if (problem.data().test) {
    for (const auto& t : front) {
      const auto r = t.user_attrs.find("recipe");
      if (r == t.user_attrs.end()) continue;
      test_acc[std::to_string(t.number)] =
          problem.test_accuracy(compressors::recipe_from_json(r->second, "trial recipe"));
    }
    study->set_user_attr("compsearch.test_accuracy", test_acc);
  }
  for (const auto& t : front) {
    json metrics = json::object();
    for (const auto& [k, v] : t.user_attrs)
      if (v.is_number()) metrics[k] = v;
    json row = {{"number", t.number}, {"values", t.values}, {"metrics", metrics}};
    if (test_acc.contains(std::to_string(t.number)))
      row["test_accuracy"] = test_acc[std::to_string(t.number)];
    s.front.push_back(row);
  }
  s.wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  s.trials_per_s = s.wall_s > 0 ? s.run_now / s.wall_s : 0.0;
  if (callbacks.progress) callbacks.progress(status_line(true), true);
  return s;
}

json SearchSummary::to_json() const {
  return {{"study_name", study_name},
          {"storage", storage},
          {"trials", trials_total},
          {"completed", completed},
          {"pruned", pruned},
          {"failed", failed},
          {"run_now", run_now},
          {"front_size", front_size},
          {"hypervolume", hypervolume},
          {"hypervolume_reference", hypervolume_reference},
          {"wall_s", wall_s},
          {"trials_per_s", trials_per_s},
          {"spearman_subset_vs_full",
           std::isfinite(spearman_subset) ? json(spearman_subset) : json(nullptr)},
          {"spearman_proxy_vs_full",
           std::isfinite(spearman_proxy) ? json(spearman_proxy) : json(nullptr)},
          {"sensitivity_options", sensitivity_options},
          {"sensitivity_seconds", sensitivity_seconds},
          {"exact_enqueued", exact_enqueued},
          {"front", front}};
}

std::string SearchSummary::to_text() const {
  std::ostringstream os;
  os << "study " << study_name << " in " << storage << ": " << trials_total << " trials ("
     << completed << " complete, " << pruned << " pruned, " << failed << " failed), " << run_now
     << " run now in " << fmt_duration(wall_s) << " (" << fmt(trials_per_s, 3) << " trials/s)\n";
  os << "front: " << front_size << " trials, hypervolume " << fmt(hypervolume, 6) << "\n";
  if (std::isfinite(spearman_subset))
    os << "subset vs full validation (Spearman): " << fmt(spearman_subset, 3) << "\n";
  if (sensitivity_options > 0)
    os << "sensitivity table: " << sensitivity_options << " options ("
       << (sensitivity_seconds > 0 ? "measured in " + fmt_duration(sensitivity_seconds)
                                   : std::string("from cache"))
       << ")\n";
  if (std::isfinite(spearman_proxy))
    os << "additive proxy vs full validation (Spearman): " << fmt(spearman_proxy, 3) << "\n";
  if (exact_enqueued > 0)
    os << "exact route: " << exact_enqueued << " front points of the proxy enqueued\n";
  for (const auto& f : front) {
    os << "  #" << f["number"].get<int64_t>() << "  values " << f["values"].dump();
    if (f.contains("test_accuracy"))
      os << "  test accuracy " << fmt(f["test_accuracy"].get<double>(), 4);
    os << "\n";
  }
  return os.str();
}

}  // namespace compsearch::experiments
