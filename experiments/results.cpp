#include "experiments/results.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>
#include <stdexcept>

#include "compressors/apply.h"
#include "compressors/export.h"
#include "compressors/recipe.h"
#include "experiments/compress_commands.h"
#include "experiments/search_runner.h"
#include "experiments/usage_error.h"
#include "model/graph.h"
#include "model/layer_table.h"
#include "search/open_storage.h"
#include "search/study.h"

namespace compsearch::experiments {

std::optional<double> metric_of(const search::FrozenTrial& t, const std::string& name) {
  const auto it = t.user_attrs.find(name);
  if (it == t.user_attrs.end() || !it->second.is_number()) return std::nullopt;
  const double v = it->second.get<double>();
  if (!std::isfinite(v)) return std::nullopt;
  return v;
}

using nlohmann::json;

namespace {

std::string fmt(double v, int digits = 6) {
  if (!std::isfinite(v)) return "nan";
  std::ostringstream os;
  os.precision(digits);
  os << v;
  return os.str();
}

bool satisfies(const search::FrozenTrial& t, const ConstraintConfig& c) {
  const auto v = metric_of(t, c.metric);
  if (!v || std::isnan(*v)) return false;
  return c.less_equal ? *v <= c.bound : *v >= c.bound;
}

bool has_metric_anywhere(const StudyResults& s, const std::string& metric) {
  for (const auto& t : s.trials)
    if (metric_of(t, metric)) return true;
  return false;
}

std::string known_metrics(const StudyResults& s) {
  std::set<std::string> names;
  for (const auto& t : s.trials)
    for (const auto& [k, v] : t.user_attrs)
      if (v.is_number()) names.insert(k);
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "" : ", ") + n;
  return out.empty() ? "(none)" : out;
}

}  // namespace

StudyResults load_study_results(const std::string& storage, const std::string& study_name) {
  StudyResults s;
  s.storage = search::storage_display(storage);
  s.study_name = study_name;
  if (!search::is_storage_url(storage) && !std::filesystem::exists(storage))
    throw std::invalid_argument("storage " + storage + " does not exist");
  auto st = open_storage(storage);
  int64_t id = -1;
  try {
    id = st->get_study_id_from_name(study_name);
  } catch (const search::StorageKeyError&) {
    std::string names;
    for (const auto& fs : st->get_all_studies())
      names += (names.empty() ? "\"" : ", \"") + fs.study_name + "\"";
    throw std::invalid_argument("no study \"" + study_name + "\" in " + s.storage +
                                " (studies: " + (names.empty() ? "none" : names) + ")");
  }
  const auto fs = st->get_study(id);
  s.directions = fs.directions;
  auto attr = [&](const char* key) {
    const auto it = fs.user_attrs.find(key);
    return it == fs.user_attrs.end() ? json() : it->second;
  };
  s.config = attr("compsearch.config");
  s.reference = attr("compsearch.reference");
  if (!s.reference.is_object()) s.reference = json::object();
  s.test_accuracy = attr("compsearch.test_accuracy");
  if (!s.test_accuracy.is_object()) s.test_accuracy = json::object();
  s.baselines = attr("compsearch.baselines");
  if (!s.baselines.is_object()) s.baselines = json::object();
  if (s.config.is_object() && s.config.contains("objectives")) {
    for (const auto& o : s.config["objectives"]) {
      if (o.is_array() && !o.empty() && o[0].is_string())
        s.objective_names.push_back(o[0].get<std::string>());
    }
  }
  if (s.objective_names.size() != s.directions.size()) {
    s.objective_names.clear();
    for (size_t k = 0; k < s.directions.size(); ++k)
      s.objective_names.push_back("value" + std::to_string(k));
  }
  s.trials = st->get_all_trials(id);
  return s;
}

json trial_metrics(const search::FrozenTrial& trial) {
  json m = json::object();
  for (const auto& [k, v] : trial.user_attrs)
    if (v.is_number()) m[k] = v;
  return m;
}

json trial_to_json(const search::FrozenTrial& trial) {
  json params = json::object();
  for (const auto& [k, v] : trial.params) params[k] = trial.param(k);
  const auto r = trial.user_attrs.find("recipe");
  return {{"number", trial.number},
          {"state", search::to_string(trial.state)},
          {"params", params},
          {"values", trial.values},
          {"metrics", trial_metrics(trial)},
          {"recipe", r == trial.user_attrs.end() ? json() : r->second}};
}

ConstraintConfig parse_budget(const std::string& text) {
  try {
    return parse_constraint(text, "--budget");
  } catch (const std::invalid_argument& e) {
    throw UsageError(e.what());
  }
}

json best_trial(const StudyResults& study, const BestRequest& request) {
  std::string metric = request.metric;
  bool maximize = request.maximize;
  if (metric.empty()) {
    const auto it = std::find(study.objective_names.begin(), study.objective_names.end(),
                              std::string("accuracy"));
    if (it != study.objective_names.end()) {
      metric = "accuracy";
      maximize = true;
    } else if (!study.objective_names.empty()) {
      metric = study.objective_names[0];
      maximize = study.directions[0] == search::StudyDirection::kMaximize;
    }
  }
  if (!has_metric_anywhere(study, metric))
    throw UsageError("no trial has the metric \"" + metric +
                     "\" to optimise (metrics: " + known_metrics(study) + ")");
  for (const auto& b : request.budgets)
    if (!has_metric_anywhere(study, b.metric))
      throw UsageError("--budget " + b.text + ": no trial has the metric \"" + b.metric +
                       "\" (metrics: " + known_metrics(study) + ")");

  std::vector<const search::FrozenTrial*> feasible;
  for (const auto& t : study.trials)
    if (t.state == search::TrialState::kComplete && t.feasible()) feasible.push_back(&t);
  if (feasible.empty())
    throw std::runtime_error("study \"" + study.study_name +
                             "\" has no COMPLETE trial that satisfies its constraints");
  const search::FrozenTrial* best = nullptr;
  double best_v = 0.0;
  for (const auto* t : feasible) {
    bool ok = true;
    for (const auto& b : request.budgets) ok = ok && satisfies(*t, b);
    const auto v = metric_of(*t, metric);
    if (!ok || !v || std::isnan(*v)) continue;
    if (!best || (maximize ? *v > best_v : *v < best_v)) {
      best = t;
      best_v = *v;
    }
  }
  if (!best) {
    std::string msg = "no feasible trial satisfies";
    for (const auto& b : request.budgets) {
      double reach = b.less_equal ? std::numeric_limits<double>::infinity()
                                  : -std::numeric_limits<double>::infinity();
      int64_t at = -1;
      for (const auto* t : feasible) {
        const auto v = metric_of(*t, b.metric);
        if (!v || std::isnan(*v)) continue;
        if (b.less_equal ? *v < reach : *v > reach) {
          reach = *v;
          at = t->number;
        }
      }
      msg += " --budget \"" + b.text + "\"";
      if (at >= 0)
        msg += " (best " + b.metric + " among " + std::to_string(feasible.size()) +
               " feasible trials: " + fmt(reach) + ", trial " + std::to_string(at) + ")";
      msg += ";";
    }
    msg.pop_back();
    throw std::runtime_error(msg);
  }
  json out = trial_to_json(*best);
  out["optimized"] = {{"metric", metric}, {"direction", maximize ? "maximize" : "minimize"}};
  return out;
}

std::vector<search::FrozenTrial> study_front(const StudyResults& study) {
  return search::best_trials_of(study.trials, study.directions);
}

namespace {

std::string csv_cell(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

std::string num_cell(double v) {
  std::ostringstream os;
  os.precision(17);
  os << v;
  return os.str();
}

}  // namespace

std::string front_csv(const StudyResults& study) {
  const auto front = study_front(study);
  std::set<std::string> metrics;
  for (const auto& t : front)
    for (const auto& [k, v] : t.user_attrs)
      if (v.is_number()) metrics.insert(k);
  std::ostringstream os;
  os << "number";
  for (const auto& n : study.objective_names) os << "," << csv_cell("value:" + n);
  for (const auto& m : metrics) os << "," << csv_cell(m);
  os << "\n";
  for (const auto& t : front) {
    os << t.number;
    for (size_t k = 0; k < study.objective_names.size(); ++k)
      os << "," << (k < t.values.size() ? num_cell(t.values[k]) : "");
    for (const auto& m : metrics) {
      os << ",";
      if (const auto v = metric_of(t, m)) os << num_cell(*v);
    }
    os << "\n";
  }
  return os.str();
}

std::vector<double> hypervolume_history(const StudyResults& study) {
  evaluators::Metrics reference;
  for (const auto& [k, v] : study.reference.items())
    if (v.is_number()) reference[k] = v.get<double>();
  std::vector<double> out;
  std::vector<search::FrozenTrial> prefix;
  for (const auto& t : study.trials) {
    prefix.push_back(t);
    out.push_back(
        study_hypervolume(prefix, study.directions, study.objective_names, reference, nullptr));
  }
  return out;
}

std::string html_escape(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

// ---- NNI export -------------------------------------------------------------------------------
//
// NNI 3 (microsoft/nni, nni/compression/base/target_space.py) reads a config_list entry's
// settings per target: QuantizationTargetSpace reads `quant_dtype` ("int4", "int8", "uint8":
// "int" or "uint" followed by the bit count), `quant_scheme` ("affine" | "symmetric") and
// `granularity` ("default", "per_channel"/"out_channel"/"in_channel", or a list of block sizes);
// PruningTargetSpace reads `sparse_ratio` (fraction removed), `sparse_threshold` and
// `granularity` ("default" = element-wise, "out_channel" = whole output channels, or a block
// list). Entries select modules with `op_names` and tensors with `target_names` ("weight",
// "_input_", "_output_"). Quantizers and pruners take separate config lists, so the export holds
// both: {"format": "compsearch.nni/1", "quantization": [...], "pruning": [...]}. Layers sharing
// one setting are grouped into one entry (op_names in recipe order). `op_names` are the recipe's
// layer names (the ONNX node names, which the PyTorch exporter derives from module names).
json nni_config(const json& recipe_json, const std::vector<std::string>& layers) {
  const compressors::Recipe recipe = compressors::recipe_from_json(recipe_json, "trial recipe");
  std::vector<std::string> names = layers;
  if (names.empty())
    for (const auto& [name, s] : recipe.layers) names.push_back(name);
  // Group layers by the JSON of their quantization / pruning entry (without op_names).
  std::vector<std::pair<json, std::vector<std::string>>> quant, prune;
  auto add = [](std::vector<std::pair<json, std::vector<std::string>>>& groups, const json& key,
                const std::string& name) {
    for (auto& [k, v] : groups) {
      if (k == key) {
        v.push_back(name);
        return;
      }
    }
    groups.push_back({key, {name}});
  };
  for (const auto& name : names) {
    const auto& s = recipe.setting_for(name);
    if (s.w_bits <= 8) {
      json q = {{"target_names", json::array({"weight"})},
                {"quant_dtype", "int" + std::to_string(s.w_bits)},
                {"quant_scheme", "symmetric"}};
      switch (s.granularity.kind) {
        case compressors::GranularityKind::kPerTensor:
          q["granularity"] = "default";
          break;
        case compressors::GranularityKind::kPerChannel:
          q["granularity"] = "per_channel";
          break;
        case compressors::GranularityKind::kGroup:
          // A block of G consecutive weights of one output row: block sizes [1, G].
          q["granularity"] = json::array({1, s.granularity.group_size});
          break;
      }
      add(quant, q, name);
    }
    if (s.a_bits <= 8) {
      // Activations: unsigned affine (our QDQ export uses uint8 with a zero point).
      json q = {{"target_names", json::array({"_input_"})},
                {"quant_dtype", "uint" + std::to_string(s.a_bits)},
                {"quant_scheme", "affine"},
                {"granularity", "default"}};
      add(quant, q, name);
    }
    if (s.prune.kind != compressors::PruneKind::kNone) {
      json p = {{"target_names", json::array({"weight"})}, {"sparse_ratio", s.prune.ratio}};
      switch (s.prune.kind) {
        case compressors::PruneKind::kUnstructured:
          p["granularity"] = "default";
          break;
        case compressors::PruneKind::kChannel:
          p["granularity"] = "out_channel";
          break;
        case compressors::PruneKind::kNM:
          // N:M has no NNI key: blocks of M along a row keep sparse_ratio = 1 - N/M on average.
          p["granularity"] = "default";
          p["compsearch_n_m"] = std::to_string(s.prune.n) + ":" + std::to_string(s.prune.m);
          break;
        default:
          break;
      }
      add(prune, p, name);
    }
  }
  auto to_list = [](const std::vector<std::pair<json, std::vector<std::string>>>& groups) {
    json list = json::array();
    for (const auto& [k, v] : groups) {
      json e = {{"op_names", v}};
      e.update(k);
      list.push_back(e);
    }
    return list;
  };
  return {{"format", "compsearch.nni/1"},
          {"quantization", to_list(quant)},
          {"pruning", to_list(prune)}};
}

ExportKind export_kind_from_string(const std::string& s) {
  if (s == "recipe") return ExportKind::kRecipe;
  if (s == "nni") return ExportKind::kNni;
  if (s == "onnx-qdq") return ExportKind::kOnnxQdq;
  if (s == "onnx") return ExportKind::kOnnx;
  if (s == "safetensors") return ExportKind::kSafetensors;
  throw UsageError("--format \"" + s +
                   "\" is not allowed (allowed: recipe, nni, onnx-qdq, onnx, safetensors)");
}

json export_trial(const StudyResults& study, int64_t number, ExportKind kind,
                  const std::filesystem::path& out) {
  const search::FrozenTrial* trial = nullptr;
  for (const auto& t : study.trials)
    if (t.number == number) trial = &t;
  if (!trial)
    throw std::invalid_argument("study \"" + study.study_name + "\" has no trial " +
                                std::to_string(number) + " (it has " +
                                std::to_string(study.trials.size()) + " trials)");
  const auto r = trial->user_attrs.find("recipe");
  if (r == trial->user_attrs.end())
    throw std::invalid_argument("trial " + std::to_string(number) + " (" +
                                search::to_string(trial->state) + ") has no recipe attr");
  const json& recipe_json = r->second;
  if (out.has_parent_path()) std::filesystem::create_directories(out.parent_path());
  auto write = [&](const json& j) {
    std::ofstream f(out);
    if (!f) throw std::runtime_error("cannot write " + out.string());
    f << j.dump(2) << "\n";
    if (!f) throw std::runtime_error("cannot write " + out.string());
  };
  json summary = {{"trial", number}, {"out", out.string()}};
  // An LLM study (experiments/llm_search.h) stores LLM recipes (llama.cpp types per tensor).
  const bool llm = study.config.is_object() && study.config.value("llm", false);
  if (kind == ExportKind::kRecipe) {
    if (!llm)
      compressors::recipe_from_json(recipe_json, "trial " + std::to_string(number) + " recipe");
    write(recipe_json);
    summary["format"] = "recipe";
    return summary;
  }
  if (llm)
    throw std::invalid_argument("study \"" + study.study_name +
                                "\" is an LLM search: export --format recipe (the LLM recipe), or "
                                "compress --model M --recipe R --format gguf");
  if (!study.config.is_object() || !study.config.contains("model"))
    throw std::invalid_argument("study \"" + study.study_name +
                                "\" has no compsearch.config with a model");
  // Only the model and data keys are read: the stored config is ExperimentConfig::to_json's
  // summary (absolute paths), not always a file config_from_json accepts as a whole.
  ExperimentConfig config;
  config.model = study.config["model"].get<std::string>();
  if (study.config.contains("data") && study.config["data"].is_object()) {
    const json& d = study.config["data"];
    config.data.source = d.value("source", std::string());
    config.data.validation_samples = d.value("validation_samples", config.data.validation_samples);
    config.data.validation_seed = d.value("validation_seed", config.data.validation_seed);
    config.data.calibration_samples =
        d.value("calibration_samples", config.data.calibration_samples);
  }
  const model::Graph graph = model::load_onnx(config.model);
  const compressors::Recipe recipe =
      compressors::recipe_from_json(recipe_json, "trial " + std::to_string(number) + " recipe");
  if (kind == ExportKind::kNni) {
    const auto table = model::build_layer_table(graph);
    std::vector<std::string> layers;
    for (const auto& l : table.layers) layers.push_back(l.name);
    write(nni_config(recipe_json, layers));
    summary["format"] = "nni";
    summary["model"] = config.model.string();
    return summary;
  }
  const auto format = kind == ExportKind::kOnnxQdq ? compressors::ExportFormat::kOnnxQdq
                      : kind == ExportKind::kOnnx  ? compressors::ExportFormat::kOnnx
                                                   : compressors::ExportFormat::kSafetensors;
  std::unique_ptr<model::Dataset> calibration;
  if (recipe_needs_calibration(graph, recipe)) {
    if (config.data.source.empty())
      throw std::invalid_argument("trial " + std::to_string(number) +
                                  " quantizes activations but the study's config has no data "
                                  "to calibrate them on");
    DataConfig d = config.data;
    d.report_test = false;
    calibration = std::move(load_splits(d).calibration);
  }
  json s = compress_model(graph, recipe, format, out, calibration.get(),
                          config.data.calibration_samples);
  s["trial"] = number;
  return s;
}

}  // namespace compsearch::experiments
