// Recipe parsing, serialisation and validation against a model (compsearch.recipe/1).
//
// One place defines the JSON form of every recipe type (STYLE.md 6). Every error names the source
// file, the JSON path of the offending key, the value and what is allowed, because recipes are
// hand-written and produced by tools alike.
#include "compressors/recipe.h"

#include <cmath>
#include <fstream>
#include <set>
#include <sstream>
#include <stdexcept>

#include "common/json_nesting.h"
#include "common/read_file.h"
#include "model/layer_table.h"

namespace compsearch::compressors {

namespace {

using nlohmann::json;

const std::set<int> kAllowedWBits = {1, 2, 3, 4, 5, 6, 7, 8, 16, 32};
const std::set<int> kAllowedABits = {4, 8, 16, 32};

[[noreturn]] void fail(const std::string& source, const std::string& key, const std::string& msg) {
  throw std::invalid_argument(source + ": " + key + ": " + msg);
}

std::string dump(const json& j) { return j.dump(); }

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string out = "[";
  for (size_t i = 0; i < shape.size(); ++i) out += (i ? ", " : "") + std::to_string(shape[i]);
  return out + "]";
}

std::string join_ints(const std::set<int>& s) {
  std::string out;
  for (int v : s) out += (out.empty() ? "" : ", ") + std::to_string(v);
  return out;
}

int parse_bits(const json& v, const std::set<int>& allowed, const std::string& source,
               const std::string& key) {
  if (!v.is_number_integer() &&
      !(v.is_number_float() && std::floor(v.get<double>()) == v.get<double>()))
    fail(source, key, "got " + dump(v) + ", expected an integer in {" + join_ints(allowed) + "}");
  const double d = v.get<double>();
  if (d < -1e9 || d > 1e9 || !allowed.count(static_cast<int>(d)))
    fail(source, key, "got " + dump(v) + ", expected one of {" + join_ints(allowed) + "}");
  return static_cast<int>(d);
}

// Parses "N:M" into n, m; returns false if `s` is not of that form.
bool parse_nm(const std::string& s, int& n, int& m) {
  const auto colon = s.find(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 >= s.size()) return false;
  const std::string a = s.substr(0, colon), b = s.substr(colon + 1);
  for (char c : a + b)
    if (c < '0' || c > '9') return false;
  if (a.size() > 6 || b.size() > 6) return false;
  n = std::stoi(a);
  m = std::stoi(b);
  return true;
}

PruneSpec parse_prune(const json& j, const std::string& source, const std::string& key) {
  if (!j.is_object())
    fail(source, key, "got " + dump(j) + ", expected an object {\"kind\": ..., \"ratio\": ...}");
  for (const auto& [k, v] : j.items()) {
    (void)v;
    if (k != "kind" && k != "ratio")
      fail(source, key + "." + k, "unknown key; allowed keys: kind, ratio");
  }
  if (!j.contains("kind"))
    fail(source, key + ".kind",
         "missing; expected \"unstructured\", \"channel\", \"N:M\" or \"none\"");
  const json& kind = j.at("kind");
  if (!kind.is_string())
    fail(source, key + ".kind",
         "got " + dump(kind) +
             ", expected \"unstructured\", \"channel\", \"N:M\" (e.g. \"2:4\") or \"none\"");
  const std::string ks = kind.get<std::string>();
  PruneSpec p;
  std::optional<double> ratio;
  if (j.contains("ratio")) {
    const json& r = j.at("ratio");
    if (!r.is_number())
      fail(source, key + ".ratio", "got " + dump(r) + ", expected a number in [0, 1)");
    ratio = r.get<double>();
    if (!(*ratio >= 0.0 && *ratio < 1.0))
      fail(source, key + ".ratio", "got " + dump(r) + ", expected a number in [0, 1)");
  }
  int n = 0, m = 0;
  if (ks == "none") {
    p.kind = PruneKind::kNone;
    if (ratio && *ratio != 0.0)
      fail(source, key + ".ratio",
           "got " + dump(j.at("ratio")) + ", expected 0 (or no ratio) with kind \"none\"");
  } else if (ks == "unstructured" || ks == "channel") {
    p.kind = ks == "unstructured" ? PruneKind::kUnstructured : PruneKind::kChannel;
    if (!ratio)
      fail(source, key + ".ratio", "missing; kind \"" + ks + "\" needs a ratio in [0, 1)");
    p.ratio = *ratio;
  } else if (parse_nm(ks, n, m)) {
    if (m < 1 || n < 1 || n > m || m > 64)
      fail(source, key + ".kind",
           "got \"" + ks + "\", expected N:M with 1 <= N <= M <= 64 (e.g. \"2:4\")");
    p.kind = PruneKind::kNM;
    p.n = n;
    p.m = m;
    p.ratio = 1.0 - static_cast<double>(n) / m;
    if (ratio && std::abs(*ratio - p.ratio) > 1e-9)
      fail(source, key + ".ratio",
           "got " + dump(j.at("ratio")) + ", but kind \"" + ks +
               "\" fixes the ratio at 1 - N/M = " + std::to_string(p.ratio));
  } else {
    fail(source, key + ".kind",
         "got \"" + ks +
             "\", expected \"unstructured\", \"channel\", \"N:M\" (e.g. \"2:4\") or \"none\"");
  }
  return p;
}

// Overlays the keys present in `j` onto `s`.
void overlay_setting(LayerSetting& s, const json& j, const std::string& source,
                     const std::string& key) {
  if (!j.is_object())
    fail(source, key, "got " + dump(j) + ", expected an object of layer settings");
  for (const auto& [k, v] : j.items()) {
    const std::string kk = key + "." + k;
    if (k == "w_bits") {
      s.w_bits = parse_bits(v, kAllowedWBits, source, kk);
    } else if (k == "a_bits") {
      s.a_bits = parse_bits(v, kAllowedABits, source, kk);
    } else if (k == "granularity") {
      if (!v.is_string())
        fail(source, kk,
             "got " + dump(v) + ", expected \"per_tensor\", \"per_channel\" or \"group:G\"");
      try {
        s.granularity = granularity_from_string(v.get<std::string>());
      } catch (const std::invalid_argument& e) {
        fail(source, kk, e.what());
      }
    } else if (k == "prune") {
      s.prune = parse_prune(v, source, kk);
    } else if (k == "w_calibration") {
      const std::string c = v.is_string() ? v.get<std::string>() : "";
      if (c == "minmax")
        s.w_calibration = WeightCalibration::kMinMax;
      else if (c == "mse")
        s.w_calibration = WeightCalibration::kMse;
      else
        fail(source, kk, "got " + dump(v) + ", expected \"minmax\" or \"mse\"");
    } else {
      fail(source, kk,
           "unknown key; allowed keys: w_bits, granularity, prune, a_bits, w_calibration");
    }
  }
}

// Non-negative (or positive) integer given as a JSON integer or an integral float.
int64_t parse_count(const json& v, int64_t min, const std::string& source, const std::string& key) {
  const bool integral = v.is_number_integer() ||
                        (v.is_number_float() && std::floor(v.get<double>()) == v.get<double>());
  if (!integral || v.get<double>() < static_cast<double>(min) || v.get<double>() > 1e15)
    fail(source, key, "got " + dump(v) + ", expected an integer >= " + std::to_string(min));
  return static_cast<int64_t>(v.get<double>());
}

double parse_number(const json& v, const std::string& source, const std::string& key,
                    const std::string& expected) {
  if (!v.is_number()) fail(source, key, "got " + dump(v) + ", expected " + expected);
  return v.get<double>();
}

OptimizerKind optimizer_kind_from(const json& v, const std::string& source,
                                  const std::string& key) {
  const std::string s = v.is_string() ? v.get<std::string>() : "";
  if (s == "adam") return OptimizerKind::kAdam;
  if (s == "adamw") return OptimizerKind::kAdamW;
  if (s == "sgd") return OptimizerKind::kSgd;
  fail(source, key, "got " + dump(v) + ", expected \"adam\", \"adamw\" or \"sgd\"");
}

OptimizerSpec parse_optimizer(const json& j, const std::string& source, const std::string& key) {
  OptimizerSpec o;
  if (j.is_string()) {
    o.kind = optimizer_kind_from(j, source, key);
    return o;
  }
  if (!j.is_object())
    fail(source, key,
         "got " + dump(j) +
             ", expected \"adam\", \"adamw\", \"sgd\" or an object {\"name\": ..., \"momentum\": "
             "..., "
             "\"nesterov\": ..., \"weight_decay\": ...}");
  if (!j.contains("name"))
    fail(source, key + ".name", "missing; expected \"adam\", \"adamw\" or \"sgd\"");
  o.kind = optimizer_kind_from(j.at("name"), source, key + ".name");
  for (const auto& [k, v] : j.items()) {
    const std::string kk = key + "." + k;
    if (k == "name") continue;
    if ((k == "momentum" || k == "nesterov") && o.kind != OptimizerKind::kSgd)
      fail(source, kk,
           "only for \"sgd\"; allowed keys for \"" + optimizer_kind_to_string(o.kind) +
               "\": name, weight_decay");
    if (k == "momentum") {
      o.momentum = parse_number(v, source, kk, "a number in [0, 1)");
      if (!(o.momentum >= 0 && o.momentum < 1))
        fail(source, kk, "got " + dump(v) + ", expected a number in [0, 1)");
    } else if (k == "nesterov") {
      if (!v.is_boolean()) fail(source, kk, "got " + dump(v) + ", expected true or false");
      o.nesterov = v.get<bool>();
    } else if (k == "weight_decay") {
      o.weight_decay = parse_number(v, source, kk, "a number >= 0");
      if (!(o.weight_decay >= 0)) fail(source, kk, "got " + dump(v) + ", expected a number >= 0");
    } else {
      fail(source, kk, "unknown key; allowed keys: name, momentum, nesterov, weight_decay");
    }
  }
  if (o.nesterov && o.momentum <= 0)
    fail(source, key + ".nesterov",
         "true needs momentum > 0 (got momentum " + std::to_string(o.momentum) + ")");
  return o;
}

ScheduleKind schedule_kind_from(const json& v, const std::string& source, const std::string& key) {
  const std::string s = v.is_string() ? v.get<std::string>() : "";
  if (s == "constant") return ScheduleKind::kConstant;
  if (s == "step") return ScheduleKind::kStep;
  if (s == "cosine") return ScheduleKind::kCosine;
  fail(source, key, "got " + dump(v) + ", expected \"constant\", \"step\" or \"cosine\"");
}

ScheduleSpec parse_schedule(const json& j, const std::string& source, const std::string& key) {
  ScheduleSpec s;
  if (j.is_string()) {
    s.kind = schedule_kind_from(j, source, key);
    return s;
  }
  if (!j.is_object())
    fail(source, key,
         "got " + dump(j) +
             ", expected \"constant\", \"step\", \"cosine\" or an object {\"name\": ..., "
             "\"warmup_steps\": ..., \"step_size\": ..., \"gamma\": ...}");
  if (!j.contains("name"))
    fail(source, key + ".name", "missing; expected \"constant\", \"step\" or \"cosine\"");
  s.kind = schedule_kind_from(j.at("name"), source, key + ".name");
  for (const auto& [k, v] : j.items()) {
    const std::string kk = key + "." + k;
    if (k == "name") continue;
    if ((k == "step_size" || k == "gamma") && s.kind != ScheduleKind::kStep)
      fail(source, kk,
           "only for \"step\"; allowed keys for \"" + schedule_kind_to_string(s.kind) +
               "\": name, warmup_steps");
    if (k == "warmup_steps") {
      s.warmup_steps = parse_count(v, 0, source, kk);
    } else if (k == "step_size") {
      s.step_size = parse_count(v, 1, source, kk);
    } else if (k == "gamma") {
      s.gamma = parse_number(v, source, kk, "a number in (0, 1]");
      if (!(s.gamma > 0 && s.gamma <= 1))
        fail(source, kk, "got " + dump(v) + ", expected a number in (0, 1]");
    } else {
      fail(source, kk, "unknown key; allowed keys: name, warmup_steps, step_size, gamma");
    }
  }
  return s;
}

DistillationSpec parse_distillation(const json& j, const std::string& source) {
  if (!j.is_object()) fail(source, "distillation", "got " + dump(j) + ", expected an object");
  DistillationSpec d;
  for (const auto& [k, v] : j.items()) {
    const std::string kk = "distillation." + k;
    if (k == "epochs") {
      d.epochs = static_cast<int>(parse_count(v, 0, source, kk));
      if (d.epochs > 100000)
        fail(source, kk, "got " + dump(v) + ", expected an integer in [0, 100000]");
    } else if (k == "temperature") {
      const double x = parse_number(v, source, kk, "a number > 0");
      if (!(x > 0 && std::isfinite(x)))
        fail(source, kk, "got " + dump(v) + ", expected a number > 0");
      d.temperature = x;
    } else if (k == "alpha") {
      const double x = parse_number(v, source, kk, "a number in [0, 1]");
      if (!(x >= 0 && x <= 1)) fail(source, kk, "got " + dump(v) + ", expected a number in [0, 1]");
      d.alpha = x;
    } else if (k == "lr") {
      const double x = parse_number(v, source, kk, "a number > 0");
      if (!(x > 0 && std::isfinite(x)))
        fail(source, kk, "got " + dump(v) + ", expected a number > 0");
      d.lr = x;
    } else if (k == "optimizer") {
      d.optimizer = parse_optimizer(v, source, kk);
    } else if (k == "schedule") {
      d.schedule = parse_schedule(v, source, kk);
    } else if (k == "batch_size") {
      d.batch_size = parse_count(v, 1, source, kk);
    } else if (k == "samples") {
      d.samples = parse_count(v, 1, source, kk);
    } else {
      fail(source, kk,
           "unknown key; allowed keys: epochs, lr, optimizer, schedule, temperature, alpha, "
           "batch_size, samples");
    }
  }
  return d;
}

json distillation_to_json(const DistillationSpec& d) {
  json j = {{"epochs", d.epochs}, {"temperature", d.temperature}, {"alpha", d.alpha}, {"lr", d.lr}};
  const OptimizerSpec& o = d.optimizer;
  if (o.momentum == 0 && !o.nesterov && o.weight_decay == 0) {
    j["optimizer"] = optimizer_kind_to_string(o.kind);
  } else {
    json oj = {{"name", optimizer_kind_to_string(o.kind)}, {"weight_decay", o.weight_decay}};
    if (o.kind == OptimizerKind::kSgd) {
      oj["momentum"] = o.momentum;
      oj["nesterov"] = o.nesterov;
    }
    j["optimizer"] = oj;
  }
  const ScheduleSpec& s = d.schedule;
  const ScheduleSpec defaults;
  if (s.warmup_steps == 0 && (s.kind != ScheduleKind::kStep ||
                              (s.step_size == defaults.step_size && s.gamma == defaults.gamma))) {
    j["schedule"] = schedule_kind_to_string(s.kind);
  } else {
    json sj = {{"name", schedule_kind_to_string(s.kind)}, {"warmup_steps", s.warmup_steps}};
    if (s.kind == ScheduleKind::kStep) {
      sj["step_size"] = s.step_size;
      sj["gamma"] = s.gamma;
    }
    j["schedule"] = sj;
  }
  j["batch_size"] = d.batch_size;
  if (d.samples > 0) j["samples"] = d.samples;
  return j;
}

}  // namespace

const LayerSetting& Recipe::setting_for(const std::string& layer) const {
  auto it = layers.find(layer);
  return it == layers.end() ? default_setting : it->second;
}

std::string optimizer_kind_to_string(OptimizerKind k) {
  switch (k) {
    case OptimizerKind::kAdam:
      return "adam";
    case OptimizerKind::kAdamW:
      return "adamw";
    case OptimizerKind::kSgd:
      return "sgd";
  }
  return "?";
}

std::string schedule_kind_to_string(ScheduleKind k) {
  switch (k) {
    case ScheduleKind::kConstant:
      return "constant";
    case ScheduleKind::kStep:
      return "step";
    case ScheduleKind::kCosine:
      return "cosine";
  }
  return "?";
}

std::string granularity_to_string(const Granularity& g) {
  switch (g.kind) {
    case GranularityKind::kPerTensor:
      return "per_tensor";
    case GranularityKind::kPerChannel:
      return "per_channel";
    case GranularityKind::kGroup:
      return "group:" + std::to_string(g.group_size);
  }
  return "?";
}

Granularity granularity_from_string(const std::string& s) {
  Granularity g;
  if (s == "per_tensor") {
    g.kind = GranularityKind::kPerTensor;
  } else if (s == "per_channel") {
    g.kind = GranularityKind::kPerChannel;
  } else if (s.rfind("group:", 0) == 0 && s.size() > 6 && s.size() <= 15 &&
             s.find_first_not_of("0123456789", 6) == std::string::npos &&
             std::stoll(s.substr(6)) >= 1) {
    g.kind = GranularityKind::kGroup;
    g.group_size = std::stoll(s.substr(6));
  } else {
    throw std::invalid_argument(
        "got \"" + s + "\", expected \"per_tensor\", \"per_channel\" or \"group:G\" with G >= 1");
  }
  return g;
}

std::string prune_kind_to_string(const PruneSpec& p) {
  switch (p.kind) {
    case PruneKind::kNone:
      return "none";
    case PruneKind::kUnstructured:
      return "unstructured";
    case PruneKind::kChannel:
      return "channel";
    case PruneKind::kNM:
      return std::to_string(p.n) + ":" + std::to_string(p.m);
  }
  return "?";
}

Recipe recipe_from_json(const json& j, const std::string& source) {
  if (!j.is_object())
    fail(source, "(top level)", "got " + dump(j).substr(0, 60) + ", expected a JSON object");
  Recipe r;
  if (!j.contains("format")) fail(source, "format", "missing; expected \"compsearch.recipe/1\"");
  for (const auto& [k, v] : j.items()) {
    if (k == "format") {
      if (!v.is_string() || v.get<std::string>() != "compsearch.recipe/1")
        fail(source, "format", "got " + dump(v) + ", expected \"compsearch.recipe/1\"");
    } else if (k == "default") {
      overlay_setting(r.default_setting, v, source, "default");
    } else if (k == "layers" || k == "distillation") {
      // handled below, after `default` is known
    } else if (k == "activation_calibration") {
      const std::string c = v.is_string() ? v.get<std::string>() : "";
      if (c == "minmax")
        r.activation_calibration = ActivationCalibration::kMinMax;
      else if (c == "percentile")
        r.activation_calibration = ActivationCalibration::kPercentile;
      else if (c == "mse")
        r.activation_calibration = ActivationCalibration::kMse;
      else
        fail(source, k, "got " + dump(v) + ", expected \"minmax\", \"percentile\" or \"mse\"");
    } else if (k == "activation_percentile") {
      if (!v.is_number() || !(v.get<double>() > 50.0 && v.get<double>() <= 100.0))
        fail(source, k, "got " + dump(v) + ", expected a number in (50, 100]");
      r.activation_percentile = v.get<double>();
    } else {
      fail(source, k,
           "unknown key; allowed keys: format, default, layers, distillation, "
           "activation_calibration, "
           "activation_percentile");
    }
  }
  if (j.contains("layers")) {
    const json& layers = j.at("layers");
    if (!layers.is_object())
      fail(source, "layers",
           "got " + dump(layers).substr(0, 60) + ", expected an object keyed by layer name");
    for (const auto& [name, v] : layers.items()) {
      LayerSetting s = r.default_setting;
      overlay_setting(s, v, source, "layers." + name);
      r.layers[name] = s;
    }
  }
  if (j.contains("distillation")) r.distillation = parse_distillation(j.at("distillation"), source);
  return r;
}

json recipe_to_json(const Recipe& recipe) {
  json j;
  j["format"] = "compsearch.recipe/1";
  j["default"] = recipe.default_setting;
  json layers = json::object();
  for (const auto& [name, s] : recipe.layers) layers[name] = s;
  j["layers"] = layers;
  if (recipe.distillation) j["distillation"] = distillation_to_json(*recipe.distillation);
  if (recipe.activation_calibration != ActivationCalibration::kMinMax) {
    j["activation_calibration"] =
        recipe.activation_calibration == ActivationCalibration::kPercentile ? "percentile" : "mse";
    if (recipe.activation_calibration == ActivationCalibration::kPercentile)
      j["activation_percentile"] = recipe.activation_percentile;
  }
  return j;
}

Recipe load_recipe(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) throw std::invalid_argument(path.string() + ": cannot open recipe file");
  const std::string text = read_all(in, path);
  require_json_nesting_within(text, path.string());
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {  // malformed, or a number past double's range (1e999)
    throw std::invalid_argument(path.string() + ": not valid JSON: " + e.what());
  }
  return recipe_from_json(j, path.string());
}

void save_recipe(const Recipe& recipe, const std::filesystem::path& path) {
  std::ofstream out(path);
  if (!out) throw std::runtime_error(path.string() + ": cannot write recipe file");
  out << recipe_to_json(recipe).dump(2) << "\n";
  if (!out) throw std::runtime_error(path.string() + ": write failed");
}

int64_t nm_run_axis_length(const model::LayerInfo& layer) {
  // Runs of M consecutive reduction-row weights must stay inside one kernel position, i.e. within
  // the input channels of one group (Conv) or the input features (Gemm/MatMul).
  if (layer.op == "Conv") return layer.weight_shape.size() > 1 ? layer.weight_shape[1] : 0;
  return layer.reduction_length;
}

bool nm_eligible(const model::LayerInfo& layer, int m) {
  const int64_t len = nm_run_axis_length(layer);
  return m >= 1 && len > 0 && len % m == 0;
}

void validate_recipe(const Recipe& recipe, const model::LayerTable& table) {
  std::string known;
  for (const auto& l : table.layers) known += (known.empty() ? "" : ", ") + l.name;
  for (const auto& [name, s] : recipe.layers) {
    (void)s;
    bool found = false;  // a local lookup keeps this file free of model/ link dependencies
    for (const auto& l : table.layers) found = found || l.name == name;
    if (!found)
      throw std::invalid_argument("recipe: layers." + name + ": unknown layer \"" + name +
                                  "\"; the model's layers are: " + known);
  }
  for (const auto& l : table.layers) {
    const LayerSetting& s = recipe.setting_for(l.name);
    const std::string key = recipe.layers.count(l.name) ? "layers." + l.name : "default";
    if (s.prune.kind == PruneKind::kNM && !nm_eligible(l, s.prune.m)) {
      throw std::invalid_argument(
          "recipe: " + key + ".prune.kind: layer \"" + l.name + "\" (" + l.op + ", weight " +
          shape_text(l.weight_shape) + ") is not eligible for " + prune_kind_to_string(s.prune) +
          ": its " + (l.op == "Conv" ? "input channels per group" : "input features") + " (" +
          std::to_string(nm_run_axis_length(l)) + ") are not divisible by " +
          std::to_string(s.prune.m) + "; give this layer another prune kind in \"layers\"");
    }
  }
}

void to_json(nlohmann::json& j, const LayerSetting& s) {
  j = nlohmann::json::object();
  j["w_bits"] = s.w_bits;
  j["granularity"] = granularity_to_string(s.granularity);
  if (s.prune.kind != PruneKind::kNone) {
    j["prune"] = {{"kind", prune_kind_to_string(s.prune)}, {"ratio", s.prune.ratio}};
  }
  j["a_bits"] = s.a_bits;
  if (s.w_calibration == WeightCalibration::kMse) j["w_calibration"] = "mse";
}

}  // namespace compsearch::compressors
