// The LLM sensitivity table and search (see llm_search.h).
#include "experiments/llm_search.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <set>
#include <sstream>
#include <stdexcept>

#include "common/check.h"
#include "experiments/additive_proxy.h"
#include "experiments/search_runner.h"
#include "llm/decoder.h"
#include "llm/llama_mixes.h"
#include "llm/llm_recipe.h"
#include "search/exact_solver.h"
#include "search/open_storage.h"
#include "search/sampler_factory.h"
#include "search/sampler_internal.h"
#include "search/study.h"

namespace compsearch::experiments {

namespace {

using json = nlohmann::json;

std::string hash_hex(const std::string& bytes) {
  char b[20];
  std::snprintf(b, sizeof b, "%016llx",
                static_cast<unsigned long long>(search::internal::hash_name(bytes)));
  return b;
}

std::string read_bytes(const std::filesystem::path& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error(path.string() + ": cannot read");
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

const std::set<std::string> kLossMetrics = {"kld", "nll", "delta_nll"};
const std::set<std::string> kCostMetrics = {"size_bytes", "tensor_bytes", "bits_per_weight"};

// size_bytes, tensor_bytes, bits_per_weight, or llm_estimate.h's vram_mb@TARGET /
// decode_tok_s@TARGET.
bool is_cost_metric(const std::string& m) {
  return kCostMetrics.contains(m) || LlmObjectives::is_cost_objective(m);
}

std::string resolve(const std::string& path, const std::filesystem::path& base) {
  if (path.empty()) return path;
  const std::filesystem::path p(path);
  return p.is_absolute() ? path : (base / p).lexically_normal().string();
}

}  // namespace

bool is_llm_search_config(const json& j) { return j.is_object() && j.contains("llm"); }

LlmSearchConfig llm_search_config_from_json(const json& j, const std::string& source,
                                            const std::filesystem::path& base_dir) {
  LlmSearchConfig c;
  c.source = source;
  auto fail = [&](const std::string& key, const std::string& what) {
    throw std::invalid_argument(source + ": " + key + ": " + what);
  };
  if (!j.is_object()) fail("(top level)", "expected a JSON object");
  static const std::set<std::string> keys = {"description", "study_name", "model",       "data",
                                             "llm",         "objectives", "constraints", "sampler",
                                             "budget",      "storage"};
  for (const auto& [k, v] : j.items()) {
    if (!keys.contains(k)) {
      fail("." + k,
           "unknown key (expected description, study_name, model, data, llm, objectives, "
           "constraints, sampler, budget or storage)");
    }
  }
  auto str = [&](const json& obj, const std::string& key, const std::string& path) {
    if (!obj.contains(key)) return std::string();
    if (!obj[key].is_string()) fail(path, "expected a string");
    return obj[key].get<std::string>();
  };
  c.study_name = str(j, "study_name", ".study_name");
  if (c.study_name.empty()) fail(".study_name", "missing (a name for the study in the storage)");
  c.model = resolve(str(j, "model", ".model"), base_dir);
  c.data = resolve(str(j, "data", ".data"), base_dir);
  const json& l = j["llm"];
  if (!l.is_object()) fail(".llm", "expected an object");
  for (const auto& [k, v] : l.items()) {
    if (k == "context" || k == "windows") {
      if (!v.is_number_integer() || v.get<int64_t>() < (k == "context" ? 2 : 0))
        fail(".llm." + k, k == "context" ? "expected an integer >= 2" : "expected an integer >= 0");
      (k == "context" ? c.context : c.windows) = v.get<int64_t>();
    } else if (k == "threads") {
      if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > 1024)
        fail(".llm.threads", "expected an integer in [0, 1024] (0 = all cores)");
      c.threads = v.get<int>();
    } else if (k == "imatrix") {
      c.imatrix = v.is_null() ? "" : resolve(str(l, "imatrix", ".llm.imatrix"), base_dir);
    } else if (k == "types") {
      if (!v.is_array() || v.empty()) fail(".llm.types", "expected a non-empty array of types");
      for (size_t i = 0; i < v.size(); ++i) {
        if (!v[i].is_string()) fail(".llm.types[" + std::to_string(i) + "]", "expected a string");
        c.types.push_back(llm::parse_tensor_type(
            v[i].get<std::string>(), source + ": .llm.types[" + std::to_string(i) + "]"));
      }
    } else if (k == "run") {
      if (!v.is_object()) fail(".llm.run", "expected an object (context, batch, kv_type)");
      for (const auto& [rk, rv] : v.items()) {
        if (rk == "context" || rk == "batch") {
          if (!rv.is_number_integer() || rv.get<int64_t>() < 1 || rv.get<int64_t>() > (1 << 24))
            fail(".llm.run." + rk, "expected an integer in [1, 16777216]");
          (rk == "context" ? c.run.context : c.run.batch) = rv.get<int64_t>();
        } else if (rk == "kv_type") {
          if (!rv.is_string()) fail(".llm.run.kv_type", "expected a string such as \"f16\"");
          try {
            c.run.kv_type = parse_kv_cache_type(rv.get<std::string>());
          } catch (const std::exception& e) {
            fail(".llm.run.kv_type", e.what());
          }
        } else {
          fail(".llm.run." + rk, "unknown key (expected context, batch or kv_type)");
        }
      }
      c.run.validate(source + ": .llm.run");
    } else {
      fail(".llm." + k, "unknown key (expected context, windows, threads, imatrix, types or run)");
    }
  }
  if (j.contains("objectives")) {
    const json& o = j["objectives"];
    if (!o.is_array()) fail(".objectives", "expected [[metric, direction], ...]");
    for (size_t i = 0; i < o.size(); ++i) {
      const std::string path = ".objectives[" + std::to_string(i) + "]";
      if (!o[i].is_array() || o[i].size() != 2 || !o[i][0].is_string() ||
          (o[i][1] != "minimize" && o[i][1] != "maximize")) {
        fail(path, "expected [metric, \"minimize\"|\"maximize\"]");
      }
      const std::string m = o[i][0].get<std::string>();
      if (!kLossMetrics.contains(m) && !is_cost_metric(m)) {
        fail(path, "metric \"" + m +
                       "\" is not measured for LLMs (allowed: kld, nll, delta_nll, size_bytes, "
                       "tensor_bytes, bits_per_weight, vram_mb@TARGET, decode_tok_s@TARGET)");
      }
      c.objectives.push_back({m, o[i][1] == "maximize"});
    }
  } else {
    c.objectives = {{"kld", false}, {"size_bytes", false}};
  }
  if (j.contains("constraints")) {
    const json& cs = j["constraints"];
    if (!cs.is_array()) fail(".constraints", "expected an array of \"METRIC <= N\" strings");
    for (size_t i = 0; i < cs.size(); ++i) {
      const std::string path = ".constraints[" + std::to_string(i) + "]";
      if (!cs[i].is_string()) fail(path, "expected a string");
      c.constraints.push_back(parse_constraint(cs[i].get<std::string>(), source + ": " + path));
      if (!kLossMetrics.contains(c.constraints.back().metric) &&
          !is_cost_metric(c.constraints.back().metric)) {
        fail(path, "metric \"" + c.constraints.back().metric + "\" is not measured for LLMs");
      }
    }
  }
  if (j.contains("sampler")) {
    const json& s = j["sampler"];
    if (!s.is_object()) fail(".sampler", "expected an object");
    for (const auto& [k, v] : s.items()) {
      if (k == "name") {
        if (!v.is_string() || (v != "exact" && v != "nsga2" && v != "random"))
          fail(".sampler.name", "expected \"exact\", \"nsga2\" or \"random\"");
        c.sampler.name = v.get<std::string>();
      } else if (k == "seed") {
        if (!v.is_number_unsigned()) fail(".sampler.seed", "expected an integer >= 0");
        c.sampler.seed = v.get<uint64_t>();
      } else {
        fail(".sampler." + k, "unknown key (expected name or seed)");
      }
    }
  } else {
    c.sampler.name = "exact";
  }
  if (j.contains("budget")) {
    const json& b = j["budget"];
    if (!b.is_object()) fail(".budget", "expected an object");
    for (const auto& [k, v] : b.items()) {
      if (k != "trials") fail(".budget." + k, "unknown key (expected trials)");
      if (!v.is_number_integer() || v.get<int64_t>() < 1) fail(".budget.trials", "expected >= 1");
      c.trials = v.get<int64_t>();
    }
  }
  c.storage = str(j, "storage", ".storage");
  if (c.storage.empty()) c.storage = "runs/" + c.study_name + "/study.journal";
  bool loss = false, cost = false;
  for (const auto& o : c.objectives) {
    loss = loss || kLossMetrics.contains(o.metric);
    cost = cost || is_cost_metric(o.metric);
  }
  if (c.sampler.name == "exact" && (!loss || !cost)) {
    fail(".objectives",
         "the exact route needs a loss (kld, nll or delta_nll) and a cost "
         "(size_bytes, tensor_bytes, bits_per_weight, vram_mb@TARGET or decode_tok_s@TARGET) "
         "objective");
  }
  return c;
}

json LlmSearchConfig::to_json() const {
  json objectives_j = json::array(), constraints_j = json::array(), types_j = json::array();
  for (const auto& o : objectives)
    objectives_j.push_back({o.metric, o.maximize ? "maximize" : "minimize"});
  for (const auto& c : constraints) constraints_j.push_back(c.text);
  for (const auto t : types) types_j.push_back(llm::tensor_type_name(t));
  return {{"llm", true},
          {"study_name", study_name},
          {"model", std::filesystem::absolute(model).string()},
          {"data", std::filesystem::absolute(data).string()},
          {"context", context},
          {"windows", windows},
          {"imatrix", imatrix.empty() ? json() : json(std::filesystem::absolute(imatrix).string())},
          {"run",
           {{"context", run.context},
            {"batch", run.batch},
            {"kv_type", llm::tensor_type_name(run.kv_type)}}},
          {"types", types_j},
          {"objectives", objectives_j},
          {"constraints", constraints_j},
          {"sampler", {{"name", sampler.name}, {"seed", sampler.seed}}},
          {"budget", {{"trials", trials}}},
          {"storage", search::storage_display(storage)}};
}

evaluators::Metrics kld_metrics(const llm::KldResult& r) {
  return {{"kld", r.mean_kld},
          {"delta_nll", r.delta_nll},
          {"nll", r.mean_nll},
          {"kld_p99", r.p99_kld},
          {"same_top", r.same_top}};
}

evaluators::Metrics llm_cost_metrics(LlmObjectives& costs, const std::vector<std::string>& asked,
                                     const llm::AppliedRecipe& plan) {
  evaluators::Metrics m = {{"size_bytes", costs.value("size_bytes", plan)},
                           {"tensor_bytes", static_cast<double>(plan.total_bytes)},
                           {"bits_per_weight", plan.bits_per_weight()}};
  for (const std::string& name : asked)
    if (!m.contains(name) && LlmObjectives::is_cost_objective(name))
      m[name] = costs.value(name, plan);
  return m;
}

std::string llm_option_key(const std::string& tensor, llm::TensorType type) {
  return tensor + "|" + llm::tensor_type_name(type);
}

std::vector<LlmTensorOptions> llm_tensor_options(const llm::LlmModel& model,
                                                 const std::vector<llm::TensorType>& types) {
  const std::vector<llm::TensorType>& asked = types.empty() ? llm::recipe_tensor_types() : types;
  std::vector<LlmTensorOptions> out;
  for (const llm::LlmTensor& t : model.tensors) {
    if (!t.is_matrix()) continue;
    LlmTensorOptions o;
    o.tensor = t.name;
    o.types.push_back(t.stored_type);
    for (const llm::TensorType a : asked) {
      const llm::TensorType s = llm::fallback_type(a, t.row_length());
      if (std::find(o.types.begin(), o.types.end(), s) == o.types.end()) o.types.push_back(s);
    }
    for (const llm::TensorType s : o.types)
      o.bytes.push_back(t.rows() * llm::row_bytes(s, t.row_length()));
    out.push_back(std::move(o));
  }
  return out;
}

std::string file_key(const std::filesystem::path& path) { return hash_hex(read_bytes(path)); }

std::string llm_model_key(const std::string& model) {
  const std::filesystem::path p(model);
  if (!std::filesystem::is_directory(p)) return file_key(p);
  std::string all;
  for (const auto& e : std::filesystem::directory_iterator(p)) {
    const std::string name = e.path().filename().string();
    if (name == "config.json" || name.ends_with(".safetensors") || name.ends_with(".index.json"))
      all += name + ":" + file_key(e.path()) + ";";
  }
  return hash_hex(all);
}

evaluators::SensitivityTable llm_sensitivity(
    const LlmSensitivityRequest& r,
    const std::function<void(const evaluators::SensitivityProgress&)>& progress) {
  COMPSEARCH_CHECK(r.model != nullptr, "llm_sensitivity without a model");
  const llm::KldReference reference =
      llm::kld_reference(*r.model, r.tokens, r.context, r.windows, r.threads);
  llm::LlmModel work = *r.model;
  std::vector<evaluators::SensitivityMeasure> entries;
  std::ostringstream desc;
  desc << "llm-sensitivity/1 model " << r.model_key << " tokens "
       << hash_hex(std::string(reinterpret_cast<const char*>(r.tokens.data()),
                               r.tokens.size() * sizeof(int32_t)))
       << " context " << r.context << " windows " << reference.plan.windows << " imatrix "
       << r.imatrix_bytes_key;
  for (const LlmTensorOptions& o : llm_tensor_options(*r.model, r.types)) {
    llm::LlmTensor* t = work.find(o.tensor);
    const llm::LlmTensor* original = r.model->find(o.tensor);
    for (size_t k = 1; k < o.types.size(); ++k) {
      const llm::TensorType type = o.types[k];
      const std::string key = llm_option_key(o.tensor, type);
      desc << "\n" << key;
      entries.push_back({key, [&, t, original, type] {
                           llm::quantize_tensor_in_place(*t, type, r.imatrix);
                           const llm::KldResult k =
                               llm::evaluate_kld(work, r.tokens, reference, r.threads);
                           t->data = original->data;
                           return kld_metrics(k);
                         }});
    }
  }
  const std::string key = hash_hex(desc.str());
  const std::filesystem::path cache = r.cache_dir.empty()
                                          ? std::filesystem::path()
                                          : r.cache_dir / ("llm-sensitivity-" + key + ".json");
  return evaluators::measure_sensitivity(
      [&] {
        return evaluators::Metrics{{"kld", 0.0},
                                   {"delta_nll", 0.0},
                                   {"nll", reference.mean_nll},
                                   {"kld_p99", 0.0},
                                   {"same_top", 1.0}};
      },
      entries, cache, key, progress);
}

json LlmSearchSummary::to_json() const {
  return {{"study_name", study_name},
          {"storage", storage},
          {"table_entries", table_entries},
          {"table_measured", table_measured},
          {"table_seconds", table_seconds},
          {"exact_front_size", front_size},
          {"exact_enqueued", enqueued},
          {"trials_run", trials_run},
          {"seconds", seconds},
          {"front", front},
          {"baselines", baselines}};
}

std::string LlmSearchSummary::to_text() const {
  std::ostringstream os;
  os << "study \"" << study_name << "\" in " << storage << "\n";
  os << "sensitivity table: " << table_entries << " entries (" << table_measured
     << " measured now in " << fmt_duration(table_seconds) << ")\n";
  os << "exact route: proxy front of " << front_size << " points, " << enqueued << " enqueued; "
     << trials_run << " trials run in " << fmt_duration(seconds) << "\n";
  os << "front (trial, size_bytes, kld):\n";
  for (const auto& f : front) {
    char b[160];
    std::snprintf(b, sizeof b, "  #%-4lld %10.0f  %.6f\n",
                  static_cast<long long>(f["number"].get<int64_t>()), f["size_bytes"].get<double>(),
                  f["kld"].get<double>());
    os << b;
  }
  os << "llama.cpp's mixes (name, size_bytes, kld), measured the same way:\n";
  for (const auto& [name, m] : baselines.items()) {
    char b[160];
    std::snprintf(b, sizeof b, "  %-7s %10.0f  %.6f\n", name.c_str(), m.value("size_bytes", 0.0),
                  m.value("kld", 0.0));
    os << b;
  }
  return os.str();
}

LlmSearchSummary run_llm_search(const LlmSearchConfig& config,
                                const LlmSearchCallbacks& callbacks) {
  const auto t0 = std::chrono::steady_clock::now();
  LlmSearchSummary s;
  s.study_name = config.study_name;
  s.storage = search::storage_display(config.storage);
  if (config.model.empty())
    throw std::invalid_argument(config.source.string() + ": .model: missing");
  if (config.data.empty())
    throw std::invalid_argument(config.source.string() + ": .data: missing (calibration tokens)");
  const llm::LlmModel model = llm::load_llm(config.model);
  const std::vector<int32_t> tokens = llm::load_tokens(config.data, model.config.vocab);
  std::optional<llm::Imatrix> imatrix;
  if (!config.imatrix.empty()) {
    imatrix = llm::read_imatrix(config.imatrix);
    llm::check_imatrix(*imatrix, model, config.imatrix);
  }

  // The table (cached beside the journal).
  LlmSensitivityRequest req;
  req.model = &model;
  req.tokens = tokens;
  req.context = config.context;
  req.windows = config.windows;
  req.threads = config.threads;
  req.imatrix = imatrix ? &*imatrix : nullptr;
  req.imatrix_bytes_key = config.imatrix.empty() ? "" : file_key(config.imatrix);
  req.model_key = llm_model_key(config.model);
  req.types = config.types;
  req.cache_dir = sensitivity_cache_dir(config.storage);
  std::filesystem::create_directories(req.cache_dir);
  auto on_progress = [&](const evaluators::SensitivityProgress& p) {
    // Ctrl-C: stop between entries (each measured one is cached already).
    if (callbacks.stop != nullptr && callbacks.stop->load() && p.done < p.total) {
      throw std::runtime_error("interrupted during the sensitivity table (" +
                               std::to_string(p.done) + " of " + std::to_string(p.total) +
                               " entries cached; run the same command again to resume)");
    }
    if (!callbacks.progress) return;
    const double eta =
        p.done > 1 ? p.elapsed_s / static_cast<double>(p.done) * (p.total - p.done) : NAN;
    callbacks.progress("[" + config.study_name + "] sensitivity table " + std::to_string(p.done) +
                           "/" + std::to_string(p.total) + " entries  " +
                           fmt_duration(p.elapsed_s) + "  ETA " +
                           (p.done == p.total ? "0s" : fmt_duration(eta)),
                       p.done == p.total);
  };
  const evaluators::SensitivityTable table = llm_sensitivity(req, on_progress);
  s.table_entries = static_cast<int64_t>(table.options.size());
  s.table_measured = table.measured;
  s.table_seconds = table.seconds;

  const llm::KldReference reference =
      llm::kld_reference(model, tokens, config.context, config.windows, config.threads);
  const std::vector<LlmTensorOptions> options = llm_tensor_options(model, config.types);
  auto recipe_of = [&](const Params& params) {
    llm::LlmRecipe r;
    r.source = "trial";
    for (const auto& [tensor, type] : params)
      r.types[tensor] = llm::parse_tensor_type(type.get<std::string>(), "param " + tensor);
    return r;
  };

  // The study.
  std::vector<search::StudyDirection> directions;
  for (const auto& o : config.objectives) {
    directions.push_back(o.maximize ? search::StudyDirection::kMaximize
                                    : search::StudyDirection::kMinimize);
  }
  json kwargs = {{"seed", config.sampler.seed}};
  std::shared_ptr<search::Sampler> sampler = search::make_sampler(
      config.sampler.name == "random" ? "RandomSampler" : "NSGAIISampler", kwargs);
  search::StudyOptions study_options;
  study_options.stop = callbacks.stop;
  auto study = search::Study::create(open_storage(config.storage), config.study_name, directions,
                                     sampler, /*load_if_exists=*/true, study_options);
  if (study->directions() != directions) {
    throw std::invalid_argument("study \"" + config.study_name + "\" in " + s.storage +
                                " has other directions than the config's objectives");
  }
  json ref = json::object();
  for (const auto& [k, v] : table.reference) ref[k] = v;
  const llm::AppliedRecipe as_loaded = llm::plan_llm_recipe(model, llm::LlmRecipe{});
  LlmObjectives costs(model, config.run);
  std::vector<std::string> asked;
  for (const auto& o : config.objectives) asked.push_back(o.metric);
  for (const auto& c : config.constraints) asked.push_back(c.metric);
  // Unknown targets fail here, before any trial.
  for (const auto& [k, v] : llm_cost_metrics(costs, asked, as_loaded)) ref[k] = v;
  study->set_user_attr("compsearch.config", config.to_json());
  study->set_user_attr("compsearch.reference", ref);
  // llama.cpp's own mixes (issue 13, item 6), measured like every trial (the same tokens,
  // windows and imatrix) and kept as the study's "compsearch.baselines" for `report`.
  for (const std::string mix : {"q2_k", "q3_k_m", "q4_k_m", "q5_k_m", "q6_k"}) {
    llm::LlmModel m = model;
    const llm::AppliedRecipe plan = llm::apply_llm_recipe_imatrix(
        m, llm::llama_mix_recipe(model, mix), imatrix ? &*imatrix : nullptr);
    evaluators::Metrics metrics = llm_cost_metrics(costs, asked, plan);
    for (const auto& [k, v] : kld_metrics(llm::evaluate_kld(m, tokens, reference, config.threads)))
      metrics[k] = v;
    json row = json::object();
    for (const auto& [k, v] : metrics) row[k] = v;
    s.baselines[mix] = row;
  }
  study->set_user_attr("compsearch.baselines", s.baselines);
  const auto before = study->get_trials();
  int64_t finished = 0;
  for (const auto& t : before) finished += search::is_finished(t.state) ? 1 : 0;
  const int64_t to_run = std::max<int64_t>(0, config.trials - finished);

  // The exact route: the proxy's (size, KLD) front.
  std::string loss_metric = "kld";
  for (const auto& o : config.objectives)
    if (kLossMetrics.contains(o.metric)) {
      loss_metric = o.metric == "nll" ? "delta_nll" : o.metric;  // nll = reference + ΔNLL
      break;
    }
  if (config.sampler.name == "exact" && to_run > 0) {
    search::AdditiveProblem ap;
    std::vector<size_t> part_of;
    for (size_t i = 0; i < options.size(); ++i) {
      if (options[i].types.size() < 2) continue;
      std::vector<search::LayerOption> opts;
      for (size_t k = 0; k < options[i].types.size(); ++k) {
        search::LayerOption lo;
        lo.costs = {static_cast<double>(options[i].bytes[k])};
        lo.loss = k == 0 ? 0.0
                         : table.options.at(llm_option_key(options[i].tensor, options[i].types[k]))
                               .at(loss_metric);
        opts.push_back(std::move(lo));
      }
      ap.layers.push_back(std::move(opts));
      part_of.push_back(i);
    }
    std::vector<ExactPoint> points;
    for (const search::Solution& sol : search::pareto_front(ap)) {
      ExactPoint p;
      for (size_t j = 0; j < sol.choice.size(); ++j) {
        const LlmTensorOptions& o = options[part_of[j]];
        p.params[o.tensor] = llm::tensor_type_name(o.types[sol.choice[j]]);
      }
      p.proxy_loss = sol.loss;
      const llm::AppliedRecipe plan = llm::plan_llm_recipe(model, recipe_of(p.params));
      const evaluators::Metrics cost = llm_cost_metrics(costs, asked, plan);
      p.cost_estimate = {cost.at("size_bytes")};
      bool ok = true;
      for (const auto& c : config.constraints) {
        const auto it = cost.find(c.metric);
        if (it != cost.end())
          ok = ok && (c.less_equal ? it->second <= c.bound : it->second >= c.bound);
      }
      if (ok) points.push_back(std::move(p));
    }
    s.front_size = points.size();
    spread_evenly(points, static_cast<size_t>(to_run));
    std::set<Params> seen;
    for (const auto& t : before) {
      Params p;
      for (const auto& [k, v] : t.params) p[k] = t.param(k);
      seen.insert(p);
    }
    for (const ExactPoint& p : points) {
      if (!seen.insert(p.params).second) continue;
      study->enqueue_trial(p.params,
                           {{"compsearch.route", "exact"}, {"proxy_" + loss_metric, p.proxy_loss}});
      ++s.enqueued;
    }
  }

  std::atomic<int64_t> done{0};
  search::Study::Objective objective = [&](search::Trial& trial) -> std::vector<double> {
    Params params;
    for (const LlmTensorOptions& o : options) {
      if (o.types.size() < 2) continue;
      std::vector<json> choices;
      for (const auto t : o.types) choices.push_back(llm::tensor_type_name(t));
      params[o.tensor] = trial.suggest_categorical(o.tensor, choices);
    }
    llm::LlmModel m = model;
    const llm::LlmRecipe recipe = recipe_of(params);
    const llm::AppliedRecipe plan =
        llm::apply_llm_recipe_imatrix(m, recipe, imatrix ? &*imatrix : nullptr);
    evaluators::Metrics metrics = llm_cost_metrics(costs, asked, plan);
    for (const auto& [k, v] : kld_metrics(llm::evaluate_kld(m, tokens, reference, config.threads)))
      metrics[k] = v;
    json recipe_j = {{"format", "compsearch.recipe/1"}, {"layers", json::object()}};
    for (const auto& [tensor, type] : params) recipe_j["layers"][tensor] = {{"type", type}};
    trial.set_user_attr("recipe", recipe_j);
    for (const auto& [k, v] : metrics) trial.set_user_attr(k, v);
    std::vector<double> constraints;
    for (const auto& c : config.constraints) {
      const double v = metrics.at(c.metric);
      constraints.push_back(c.less_equal ? v - c.bound : c.bound - v);
    }
    if (!constraints.empty()) trial.set_system_attr("constraints", constraints);
    std::vector<double> values;
    for (const auto& o : config.objectives) values.push_back(metrics.at(o.metric));
    ++done;
    if (callbacks.progress) {
      const double el =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      callbacks.progress("[" + config.study_name + "] trial " + std::to_string(done.load()) + "/" +
                             std::to_string(to_run) + "  " + fmt_duration(el),
                         done.load() == to_run);
    }
    return values;
  };
  if (to_run > 0) study->optimize(objective, static_cast<int>(to_run), 1);
  s.trials_run = done.load();
  for (const auto& t : study->best_trials()) {
    json f = {{"number", t.number}};
    for (const char* k : {"size_bytes", "kld", "delta_nll", "bits_per_weight"}) {
      const auto it = t.user_attrs.find(k);
      f[k] = it != t.user_attrs.end() ? it->second : json();
    }
    s.front.push_back(f);
  }
  std::sort(s.front.begin(), s.front.end(), [](const json& a, const json& b) {
    return a["size_bytes"].get<double>() < b["size_bytes"].get<double>();
  });
  s.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return s;
}

}  // namespace compsearch::experiments
