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
  if (!v.is_number_integer() && !(v.is_number_float() && std::floor(v.get<double>()) == v.get<double>()))
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
    fail(source, key + ".kind", "missing; expected \"unstructured\", \"channel\", \"N:M\" or \"none\"");
  const json& kind = j.at("kind");
  if (!kind.is_string())
    fail(source, key + ".kind",
         "got " + dump(kind) + ", expected \"unstructured\", \"channel\", \"N:M\" (e.g. \"2:4\") or \"none\"");
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
      fail(source, key + ".ratio", "got " + dump(j.at("ratio")) + ", expected 0 (or no ratio) with kind \"none\"");
  } else if (ks == "unstructured" || ks == "channel") {
    p.kind = ks == "unstructured" ? PruneKind::kUnstructured : PruneKind::kChannel;
    if (!ratio) fail(source, key + ".ratio", "missing; kind \"" + ks + "\" needs a ratio in [0, 1)");
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
           "got " + dump(j.at("ratio")) + ", but kind \"" + ks + "\" fixes the ratio at 1 - N/M = " +
               std::to_string(p.ratio));
  } else {
    fail(source, key + ".kind",
         "got \"" + ks + "\", expected \"unstructured\", \"channel\", \"N:M\" (e.g. \"2:4\") or \"none\"");
  }
  return p;
}

// Overlays the keys present in `j` onto `s`.
void overlay_setting(LayerSetting& s, const json& j, const std::string& source,
                     const std::string& key) {
  if (!j.is_object()) fail(source, key, "got " + dump(j) + ", expected an object of layer settings");
  for (const auto& [k, v] : j.items()) {
    const std::string kk = key + "." + k;
    if (k == "w_bits") {
      s.w_bits = parse_bits(v, kAllowedWBits, source, kk);
    } else if (k == "a_bits") {
      s.a_bits = parse_bits(v, kAllowedABits, source, kk);
    } else if (k == "granularity") {
      if (!v.is_string())
        fail(source, kk, "got " + dump(v) + ", expected \"per_tensor\", \"per_channel\" or \"group:G\"");
      try {
        s.granularity = granularity_from_string(v.get<std::string>());
      } catch (const std::invalid_argument& e) {
        fail(source, kk, e.what());
      }
    } else if (k == "prune") {
      s.prune = parse_prune(v, source, kk);
    } else if (k == "w_calibration") {
      const std::string c = v.is_string() ? v.get<std::string>() : "";
      if (c == "minmax") s.w_calibration = WeightCalibration::kMinMax;
      else if (c == "mse") s.w_calibration = WeightCalibration::kMse;
      else fail(source, kk, "got " + dump(v) + ", expected \"minmax\" or \"mse\"");
    } else {
      fail(source, kk, "unknown key; allowed keys: w_bits, granularity, prune, a_bits, w_calibration");
    }
  }
}

json setting_to_json(const LayerSetting& s) {
  json j;
  j["w_bits"] = s.w_bits;
  j["granularity"] = granularity_to_string(s.granularity);
  if (s.prune.kind != PruneKind::kNone) {
    j["prune"] = {{"kind", prune_kind_to_string(s.prune)}, {"ratio", s.prune.ratio}};
  }
  j["a_bits"] = s.a_bits;
  if (s.w_calibration == WeightCalibration::kMse) j["w_calibration"] = "mse";
  return j;
}

DistillationSpec parse_distillation(const json& j, const std::string& source) {
  if (!j.is_object()) fail(source, "distillation", "got " + dump(j) + ", expected an object");
  DistillationSpec d;
  for (const auto& [k, v] : j.items()) {
    const std::string kk = "distillation." + k;
    if (!v.is_number()) fail(source, kk, "got " + dump(v) + ", expected a number");
    const double x = v.get<double>();
    if (k == "epochs") {
      if (!v.is_number_integer() || x < 0)
        fail(source, kk, "got " + dump(v) + ", expected an integer >= 0");
      d.epochs = static_cast<int>(x);
    } else if (k == "temperature") {
      if (!(x > 0)) fail(source, kk, "got " + dump(v) + ", expected a number > 0");
      d.temperature = x;
    } else if (k == "alpha") {
      if (!(x >= 0 && x <= 1)) fail(source, kk, "got " + dump(v) + ", expected a number in [0, 1]");
      d.alpha = x;
    } else if (k == "lr") {
      if (!(x > 0)) fail(source, kk, "got " + dump(v) + ", expected a number > 0");
      d.lr = x;
    } else {
      fail(source, kk, "unknown key; allowed keys: epochs, temperature, alpha, lr");
    }
  }
  return d;
}

}  // namespace

const LayerSetting& Recipe::setting_for(const std::string& layer) const {
  auto it = layers.find(layer);
  return it == layers.end() ? default_setting : it->second;
}

std::string granularity_to_string(const Granularity& g) {
  switch (g.kind) {
    case GranularityKind::kPerTensor: return "per_tensor";
    case GranularityKind::kPerChannel: return "per_channel";
    case GranularityKind::kGroup: return "group:" + std::to_string(g.group_size);
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
             s.find_first_not_of("0123456789", 6) == std::string::npos && std::stoll(s.substr(6)) >= 1) {
    g.kind = GranularityKind::kGroup;
    g.group_size = std::stoll(s.substr(6));
  } else {
    throw std::invalid_argument("got \"" + s +
                                "\", expected \"per_tensor\", \"per_channel\" or \"group:G\" with G >= 1");
  }
  return g;
}

std::string prune_kind_to_string(const PruneSpec& p) {
  switch (p.kind) {
    case PruneKind::kNone: return "none";
    case PruneKind::kUnstructured: return "unstructured";
    case PruneKind::kChannel: return "channel";
    case PruneKind::kNM: return std::to_string(p.n) + ":" + std::to_string(p.m);
  }
  return "?";
}

Recipe recipe_from_json(const json& j, const std::string& source) {
  if (!j.is_object()) fail(source, "(top level)", "got " + dump(j).substr(0, 60) + ", expected a JSON object");
  Recipe r;
  if (!j.contains("format"))
    fail(source, "format", "missing; expected \"compsearch.recipe/1\"");
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
      if (c == "minmax") r.activation_calibration = ActivationCalibration::kMinMax;
      else if (c == "percentile") r.activation_calibration = ActivationCalibration::kPercentile;
      else if (c == "mse") r.activation_calibration = ActivationCalibration::kMse;
      else fail(source, k, "got " + dump(v) + ", expected \"minmax\", \"percentile\" or \"mse\"");
    } else if (k == "activation_percentile") {
      if (!v.is_number() || !(v.get<double>() > 50.0 && v.get<double>() <= 100.0))
        fail(source, k, "got " + dump(v) + ", expected a number in (50, 100]");
      r.activation_percentile = v.get<double>();
    } else {
      fail(source, k,
           "unknown key; allowed keys: format, default, layers, distillation, activation_calibration, "
           "activation_percentile");
    }
  }
  if (j.contains("layers")) {
    const json& layers = j.at("layers");
    if (!layers.is_object()) fail(source, "layers", "got " + dump(layers).substr(0, 60) + ", expected an object keyed by layer name");
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
  j["default"] = setting_to_json(recipe.default_setting);
  json layers = json::object();
  for (const auto& [name, s] : recipe.layers) layers[name] = setting_to_json(s);
  j["layers"] = layers;
  if (recipe.distillation) {
    const auto& d = *recipe.distillation;
    j["distillation"] = {{"epochs", d.epochs}, {"temperature", d.temperature}, {"alpha", d.alpha}, {"lr", d.lr}};
  }
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
  json j;
  try {
    j = json::parse(in);
  } catch (const json::parse_error& e) {
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
          std::to_string(nm_run_axis_length(l)) + ") are not divisible by " + std::to_string(s.prune.m) +
          "; give this layer another prune kind in \"layers\"");
    }
  }
}

}  // namespace compsearch::compressors
