// Experiment config parsing and validation (see experiment_config.h).
#include "experiments/experiment_config.h"

#include <cmath>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <regex>
#include <set>
#include <sstream>
#include <stdexcept>

#include "common/json_nesting.h"
#include "common/read_file.h"
#include "compressors/recipe.h"
#include "search/pruner.h"

namespace compsearch::experiments {

namespace {

using nlohmann::json;

// Collects every problem of a config so the user fixes them in one go.
struct Problems {
  std::string source;
  std::vector<std::string> lines;
  void add(const std::string& key, const std::string& what) { lines.push_back(key + ": " + what); }
  void throw_if_any() const {
    if (lines.empty()) return;
    std::string msg = source + ": " + std::to_string(lines.size()) + " problem" +
                      (lines.size() > 1 ? "s" : "") + " in the experiment config:";
    for (const auto& l : lines) msg += "\n  " + l;
    throw std::invalid_argument(msg);
  }
};

std::string short_dump(const json& v) {
  std::string s = v.dump();
  return s.size() > 80 ? s.substr(0, 77) + "..." : s;
}

void check_keys(const json& obj, const std::string& path, const std::set<std::string>& allowed,
                Problems& p) {
  for (const auto& [k, v] : obj.items()) {
    if (!allowed.count(k)) {
      std::string list;
      for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
      p.add(path + "." + k, "unknown key (allowed: " + list + ")");
    }
  }
}

bool is_object(const json& j, const std::string& path, Problems& p) {
  if (j.is_object()) return true;
  p.add(path, "expected a JSON object, got " + short_dump(j));
  return false;
}

std::optional<std::string> get_string(const json& obj, const std::string& key,
                                      const std::string& path, Problems& p) {
  if (!obj.contains(key)) return std::nullopt;
  if (!obj[key].is_string()) {
    p.add(path + "." + key, "expected a string, got " + short_dump(obj[key]));
    return std::nullopt;
  }
  return obj[key].get<std::string>();
}

std::optional<double> get_number(const json& obj, const std::string& key, const std::string& path,
                                 Problems& p, double low, double high) {
  if (!obj.contains(key)) return std::nullopt;
  const json& v = obj[key];
  if (!v.is_number() || !std::isfinite(v.get<double>())) {
    p.add(path + "." + key, "expected a number, got " + short_dump(v));
    return std::nullopt;
  }
  const double x = v.get<double>();
  if (x < low || x > high) {
    std::ostringstream os;
    os << "value " << x << " is out of range [" << low << ", " << high << "]";
    p.add(path + "." + key, os.str());
    return std::nullopt;
  }
  return x;
}

std::optional<int64_t> get_int(const json& obj, const std::string& key, const std::string& path,
                               Problems& p, int64_t low, int64_t high) {
  if (!obj.contains(key)) return std::nullopt;
  const json& v = obj[key];
  if (!v.is_number_integer()) {
    p.add(path + "." + key, "expected an integer, got " + short_dump(v));
    return std::nullopt;
  }
  const int64_t x = v.get<int64_t>();
  if (x < low || x > high) {
    p.add(path + "." + key, "value " + std::to_string(x) + " is out of range [" +
                                std::to_string(low) + ", " + std::to_string(high) + "]");
    return std::nullopt;
  }
  return x;
}

std::optional<bool> get_bool(const json& obj, const std::string& key, const std::string& path,
                             Problems& p) {
  if (!obj.contains(key)) return std::nullopt;
  if (!obj[key].is_boolean()) {
    p.add(path + "." + key, "expected true or false, got " + short_dump(obj[key]));
    return std::nullopt;
  }
  return obj[key].get<bool>();
}

// A non-empty list of ints from `allowed`.
std::vector<int> int_choices(const json& v, const std::string& path, const std::set<int>& allowed,
                             Problems& p) {
  std::vector<int> out;
  std::string list;
  for (int a : allowed) list += (list.empty() ? "" : ", ") + std::to_string(a);
  if (!v.is_array() || v.empty()) {
    p.add(path, "expected a non-empty list of integers from {" + list + "}, got " + short_dump(v));
    return out;
  }
  for (size_t i = 0; i < v.size(); ++i) {
    if (!v[i].is_number_integer() || !allowed.count(v[i].get<int>())) {
      p.add(path + "[" + std::to_string(i) + "]",
            "value " + short_dump(v[i]) + " is not allowed (allowed: " + list + ")");
      continue;
    }
    if (std::find(out.begin(), out.end(), v[i].get<int>()) == out.end())
      out.push_back(v[i].get<int>());
  }
  return out;
}

std::vector<double> number_choices(const json& v, const std::string& path, double low, double high,
                                   Problems& p) {
  std::vector<double> out;
  if (!v.is_array() || v.empty()) {
    p.add(path, "expected a non-empty list of numbers, got " + short_dump(v));
    return out;
  }
  for (size_t i = 0; i < v.size(); ++i) {
    if (!v[i].is_number() || !(v[i].get<double>() >= low && v[i].get<double>() <= high)) {
      std::ostringstream os;
      os << "value " << short_dump(v[i]) << " is not a number in [" << low << ", " << high << "]";
      p.add(path + "[" + std::to_string(i) + "]", os.str());
      continue;
    }
    out.push_back(v[i].get<double>());
  }
  return out;
}

std::vector<std::string> string_list(const json& v, const std::string& path, Problems& p) {
  std::vector<std::string> out;
  if (!v.is_array()) {
    p.add(path, "expected a list of strings, got " + short_dump(v));
    return out;
  }
  for (size_t i = 0; i < v.size(); ++i) {
    if (!v[i].is_string()) {
      p.add(path + "[" + std::to_string(i) + "]", "expected a string, got " + short_dump(v[i]));
      continue;
    }
    out.push_back(v[i].get<std::string>());
  }
  return out;
}

const std::set<int> kWBits = {1, 2, 3, 4, 5, 6, 7, 8, 16, 32};
const std::set<int> kABits = {4, 8, 16, 32};

LayerChoices parse_choices(const json& obj, const std::string& path, Problems& p) {
  LayerChoices c;
  if (obj.contains("w_bits")) c.w_bits = int_choices(obj["w_bits"], path + ".w_bits", kWBits, p);
  if (obj.contains("a_bits")) c.a_bits = int_choices(obj["a_bits"], path + ".a_bits", kABits, p);
  if (obj.contains("granularity")) {
    c.granularity = string_list(obj["granularity"], path + ".granularity", p);
    for (size_t i = 0; i < c.granularity.size(); ++i) {
      try {
        compressors::granularity_from_string(c.granularity[i]);
      } catch (const std::exception& e) {
        p.add(path + ".granularity[" + std::to_string(i) + "]", e.what());
      }
    }
    if (obj["granularity"].is_array() && obj["granularity"].empty()) {
      p.add(path + ".granularity", "expected a non-empty list");
    }
  }
  if (obj.contains("prune_kind")) {
    c.prune_kind = string_list(obj["prune_kind"], path + ".prune_kind", p);
    static const std::regex nm(R"(([1-9][0-9]*):([1-9][0-9]*))");
    for (size_t i = 0; i < c.prune_kind.size(); ++i) {
      const std::string& k = c.prune_kind[i];
      std::smatch m;
      const bool ok = k == "none" || k == "unstructured" || k == "channel" ||
                      (std::regex_match(k, m, nm) && std::stoi(m[1]) < std::stoi(m[2]) &&
                       std::stoi(m[2]) <= 64);
      if (!ok) {
        p.add(path + ".prune_kind[" + std::to_string(i) + "]",
              "value \"" + k +
                  "\" is not allowed (allowed: none, unstructured, channel, N:M with N < M <= 64)");
      }
    }
    if (obj["prune_kind"].is_array() && obj["prune_kind"].empty()) {
      p.add(path + ".prune_kind", "expected a non-empty list");
    }
  }
  return c;
}

}  // namespace

double parse_duration_s(const std::string& text, const std::string& key) {
  static const std::regex part(R"(([0-9]+(?:\.[0-9]+)?)([hms]?))");
  if (text.empty())
    throw std::invalid_argument(key + ": empty duration (expected e.g. 8h, 10m, 30s, 1h30m)");
  double total = 0.0;
  auto begin = std::sregex_iterator(text.begin(), text.end(), part);
  size_t covered = 0;
  bool bare = false;
  for (auto it = begin; it != std::sregex_iterator(); ++it) {
    if (static_cast<size_t>(it->position()) != covered || bare) {
      covered = std::string::npos;
      break;
    }
    covered += static_cast<size_t>(it->length());
    const double v = std::stod((*it)[1]);
    const std::string unit = (*it)[2];
    if (unit.empty()) bare = true;
    total += v * (unit == "h" ? 3600.0 : unit == "m" ? 60.0 : 1.0);
  }
  if (covered != text.size()) {
    throw std::invalid_argument(
        key + ": \"" + text +
        "\" is not a duration (expected e.g. 8h, 10m, 30s, 1h30m or seconds)");
  }
  return total;
}

ConstraintConfig parse_constraint(const std::string& text, const std::string& key) {
  static const std::regex re(
      R"(\s*([A-Za-z_][A-Za-z0-9_]*(?:@[A-Za-z0-9_:.\-/]+)?)\s*(<=|>=)\s*([-+0-9.eE]+)\s*)");
  std::smatch m;
  if (!std::regex_match(text, m, re)) {
    throw std::invalid_argument(
        key + ": \"" + text +
        "\" is not a constraint (expected METRIC <= NUMBER or METRIC >= NUMBER, "
        "e.g. \"sram_kb@mcu:stm32f746 <= 320\")");
  }
  ConstraintConfig c;
  c.metric = m[1];
  c.less_equal = m[2] == "<=";
  try {
    size_t used = 0;
    c.bound = std::stod(m[3], &used);
    if (used != m[3].length() || !std::isfinite(c.bound)) throw std::invalid_argument("");
  } catch (const std::exception&) {
    throw std::invalid_argument(key + ": \"" + std::string(m[3]) + "\" in \"" + text +
                                "\" is not a number");
  }
  c.text = text;
  return c;
}

ExperimentConfig config_from_json(const json& j, const std::string& source,
                                  const std::filesystem::path& base_dir) {
  Problems p{source, {}};
  ExperimentConfig c;
  c.source = source;
  if (!j.is_object()) {
    p.add("(top level)", "expected a JSON object");
    p.throw_if_any();
  }
  check_keys(j, "",
             {"study_name", "model", "data", "space", "targets", "objectives", "constraints",
              "evaluator", "fidelity", "sampler", "budget", "storage", "batch", "description"},
             p);
  auto resolve = [&](const std::string& s) {
    std::filesystem::path path(s);
    return path.is_absolute() ? path : (base_dir / path).lexically_normal();
  };

  if (auto v = get_string(j, "study_name", "", p)) {
    if (v->empty()) p.add(".study_name", "must not be empty");
    c.study_name = *v;
  } else if (!j.contains("study_name")) {
    p.add(".study_name", "missing (a name for the study in the storage)");
  }
  if (auto v = get_string(j, "model", "", p)) {
    c.model = resolve(*v);
    if (!std::filesystem::exists(c.model)) {
      p.add(".model", "file " + c.model.string() + " does not exist");
    }
  } else if (!j.contains("model")) {
    p.add(".model", "missing (path to the ONNX model, relative to the config file)");
  }

  if (j.contains("data") && is_object(j["data"], ".data", p)) {
    const json& d = j["data"];
    check_keys(d, ".data",
               {"source", "validation_samples", "validation_seed", "subset_samples",
                "calibration_samples", "report_test"},
               p);
    if (d.contains("source") && d["source"].is_null()) {
      c.data.source = "";
    } else if (auto v = get_string(d, "source", ".data", p)) {
      c.data.source = *v == "fashion-mnist" ? *v : resolve(*v).string();
      if (*v != "fashion-mnist" && !std::filesystem::exists(c.data.source)) {
        p.add(".data.source",
              "\"" + *v + "\" is neither \"fashion-mnist\" nor an existing dataset JSON file");
      }
    }
    if (auto v = get_int(d, "validation_samples", ".data", p, 1, 100000000))
      c.data.validation_samples = *v;
    if (auto v = get_int(d, "validation_seed", ".data", p, 0, INT64_MAX))
      c.data.validation_seed = *v;
    if (auto v = get_int(d, "subset_samples", ".data", p, 0, 100000000)) c.data.subset_samples = *v;
    if (auto v = get_int(d, "calibration_samples", ".data", p, 1, 100000000))
      c.data.calibration_samples = *v;
    if (auto v = get_bool(d, "report_test", ".data", p)) c.data.report_test = *v;
  } else if (!j.contains("data")) {
    c.data.source = "";  // data-free
  }

  if (j.contains("space") && is_object(j["space"], ".space", p)) {
    const json& s = j["space"];
    check_keys(s, ".space",
               {"w_bits", "granularity", "prune_kind", "prune_ratio", "a_bits", "distillation",
                "freeze", "tie", "keep_first_last_8bit", "layers"},
               p);
    c.space.choices = parse_choices(s, ".space", p);
    if (s.contains("prune_ratio") && is_object(s["prune_ratio"], ".space.prune_ratio", p)) {
      const json& r = s["prune_ratio"];
      check_keys(r, ".space.prune_ratio", {"low", "high", "step"}, p);
      auto lo = get_number(r, "low", ".space.prune_ratio", p, 0.0, 0.99);
      auto hi = get_number(r, "high", ".space.prune_ratio", p, 0.0, 0.99);
      auto st = get_number(r, "step", ".space.prune_ratio", p, 1e-6, 1.0);
      if (lo) c.space.prune_ratio.low = *lo;
      if (hi) c.space.prune_ratio.high = *hi;
      if (st) c.space.prune_ratio.step = *st;
      if (c.space.prune_ratio.high < c.space.prune_ratio.low) {
        p.add(".space.prune_ratio", "high must be >= low");
      }
    }
    if (s.contains("distillation") && is_object(s["distillation"], ".space.distillation", p)) {
      const json& d = s["distillation"];
      check_keys(d, ".space.distillation", {"epochs", "temperature", "alpha", "lr", "samples"}, p);
      if (auto v = get_int(d, "samples", ".space.distillation", p, 0, 100000000))
        c.space.distillation.samples = *v;
      if (d.contains("epochs")) {
        for (double e : number_choices(d["epochs"], ".space.distillation.epochs", 0, 1000, p)) {
          if (e != std::floor(e)) p.add(".space.distillation.epochs", "epochs must be integers");
          c.space.distillation.epochs.push_back(static_cast<int>(e));
        }
      }
      if (d.contains("temperature"))
        c.space.distillation.temperature =
            number_choices(d["temperature"], ".space.distillation.temperature", 0.01, 1000, p);
      if (d.contains("alpha"))
        c.space.distillation.alpha =
            number_choices(d["alpha"], ".space.distillation.alpha", 0, 1, p);
      if (d.contains("lr"))
        c.space.distillation.lr = number_choices(d["lr"], ".space.distillation.lr", 1e-9, 10, p);
    }
    if (s.contains("freeze")) c.space.freeze = string_list(s["freeze"], ".space.freeze", p);
    if (s.contains("tie")) {
      if (!s["tie"].is_array()) {
        p.add(".space.tie",
              "expected a list of groups (a list of layer names, or {\"regex\": \"...\"})");
      } else {
        for (size_t i = 0; i < s["tie"].size(); ++i) {
          const json& g = s["tie"][i];
          const std::string path = ".space.tie[" + std::to_string(i) + "]";
          TieGroup tg;
          if (g.is_array()) {
            tg.layers = string_list(g, path, p);
            if (tg.layers.size() < 2) p.add(path, "a tie group needs at least two layers");
          } else if (g.is_object()) {
            check_keys(g, path, {"regex"}, p);
            if (auto r = get_string(g, "regex", path, p)) {
              try {
                std::regex test(*r);
              } catch (const std::regex_error& e) {
                p.add(path + ".regex",
                      "\"" + *r + "\" is not a valid regular expression: " + e.what());
              }
              tg.regex = *r;
            } else {
              p.add(path, "expected {\"regex\": \"...\"}");
            }
          } else {
            p.add(path,
                  "expected a list of layer names or {\"regex\": \"...\"}, got " + short_dump(g));
          }
          c.space.tie.push_back(tg);
        }
      }
    }
    if (auto v = get_bool(s, "keep_first_last_8bit", ".space", p))
      c.space.keep_first_last_8bit = *v;
    if (s.contains("layers") && is_object(s["layers"], ".space.layers", p)) {
      for (const auto& [name, o] : s["layers"].items()) {
        const std::string path = ".space.layers." + name;
        if (!is_object(o, path, p)) continue;
        check_keys(o, path, {"w_bits", "granularity", "prune_kind", "a_bits"}, p);
        c.space.layer_overrides.emplace_back(name, parse_choices(o, path, p));
      }
    }
  } else if (!j.contains("space")) {
    c.space.choices.w_bits = {2, 4, 8};
  }

  if (j.contains("targets")) c.targets = string_list(j["targets"], ".targets", p);
  if (j.contains("objectives")) {
    const json& o = j["objectives"];
    if (!o.is_array() || o.empty()) {
      p.add(".objectives",
            "expected a non-empty list of [METRIC, \"maximize\"|\"minimize\"] pairs");
    } else {
      for (size_t i = 0; i < o.size(); ++i) {
        const std::string path = ".objectives[" + std::to_string(i) + "]";
        if (!o[i].is_array() || o[i].size() != 2 || !o[i][0].is_string() || !o[i][1].is_string() ||
            (o[i][1] != "maximize" && o[i][1] != "minimize")) {
          p.add(path, "expected [METRIC, \"maximize\"|\"minimize\"], got " + short_dump(o[i]));
          continue;
        }
        c.objectives.push_back({o[i][0].get<std::string>(), o[i][1] == "maximize"});
      }
    }
  } else {
    p.add(".objectives",
          "missing (e.g. [[\"accuracy\", \"maximize\"], [\"size_bytes\", \"minimize\"]])");
  }
  if (j.contains("constraints")) {
    auto list = string_list(j["constraints"], ".constraints", p);
    for (size_t i = 0; i < list.size(); ++i) {
      try {
        c.constraints.push_back(
            parse_constraint(list[i], ".constraints[" + std::to_string(i) + "]"));
      } catch (const std::exception& e) {
        p.lines.push_back(e.what());
      }
    }
  }

  if (j.contains("evaluator") && is_object(j["evaluator"], ".evaluator", p)) {
    const json& e = j["evaluator"];
    check_keys(e, ".evaluator", {"kind", "command", "timeout", "int8"}, p);
    if (auto v = get_bool(e, "int8", ".evaluator", p)) c.evaluator.int8 = *v;
    if (e.contains("command")) {
      c.evaluator.kind = "external";
      c.evaluator.command = string_list(e["command"], ".evaluator.command", p);
      if (c.evaluator.command.empty())
        p.add(".evaluator.command", "expected a non-empty list: program and arguments");
    }
    if (auto k = get_string(e, "kind", ".evaluator", p)) {
      static const std::set<std::string> kinds = {"accuracy", "fidelity", "weight_error",
                                                  "external"};
      if (!kinds.count(*k)) {
        p.add(
            ".evaluator.kind",
            "\"" + *k + "\" is not allowed (allowed: accuracy, fidelity, weight_error, external)");
      } else if (e.contains("command") && *k != "external") {
        p.add(".evaluator", "\"command\" is only for kind \"external\"");
      } else {
        c.evaluator.kind = *k;
      }
    }
    if (c.evaluator.kind == "external" && c.evaluator.command.empty() && !e.contains("command")) {
      p.add(".evaluator.command", "missing: kind \"external\" needs the program to run");
    }
    if (auto t = get_string(e, "timeout", ".evaluator", p)) {
      try {
        c.evaluator.timeout_s = parse_duration_s(*t, ".evaluator.timeout");
      } catch (const std::exception& ex) {
        p.lines.push_back(ex.what());
      }
    }
  }

  if (j.contains("fidelity") && is_object(j["fidelity"], ".fidelity", p)) {
    const json& f = j["fidelity"];
    check_keys(
        f, ".fidelity",
        {"proxy", "subset", "sensitivity_samples", "pruner", "pruner_kwargs", "dominance_margin"},
        p);
    if (auto v = get_int(f, "sensitivity_samples", ".fidelity", p, 0, 100000000))
      c.fidelity.sensitivity_samples = *v;
    if (auto v = get_bool(f, "proxy", ".fidelity", p)) c.fidelity.proxy = *v;
    if (auto v = get_bool(f, "subset", ".fidelity", p)) c.fidelity.subset = *v;
    if (auto v = get_string(f, "pruner", ".fidelity", p)) c.fidelity.pruner = *v;
    if (f.contains("pruner_kwargs")) {
      if (f["pruner_kwargs"].is_object())
        c.fidelity.pruner_kwargs = f["pruner_kwargs"];
      else
        p.add(".fidelity.pruner_kwargs", "expected a JSON object");
    }
    if (auto v = get_number(f, "dominance_margin", ".fidelity", p, 0.0, 1.0))
      c.fidelity.dominance_margin = *v;
    try {  // the pruner's own checks (name and kwargs, as Optuna's constructors)
      search::make_pruner(c.fidelity.pruner, c.fidelity.pruner_kwargs);
    } catch (const std::invalid_argument& e) {
      p.add(".fidelity.pruner", e.what());
    }
  }

  if (j.contains("sampler") && is_object(j["sampler"], ".sampler", p)) {
    const json& s = j["sampler"];
    check_keys(s, ".sampler", {"name", "seed", "kwargs"}, p);
    if (auto v = get_string(s, "name", ".sampler", p)) {
      static const std::set<std::string> names = {
          "nsga2", "tpe", "random", "exact", "NSGAIISampler", "TPESampler", "RandomSampler"};
      if (!names.count(*v)) {
        p.add(".sampler.name",
              "\"" + *v + "\" is not allowed (allowed: nsga2, tpe, random, exact)");
      } else {
        c.sampler.name = *v == "NSGAIISampler"   ? "nsga2"
                         : *v == "TPESampler"    ? "tpe"
                         : *v == "RandomSampler" ? "random"
                                                 : *v;
      }
    }
    if (auto v = get_int(s, "seed", ".sampler", p, 0, INT64_MAX))
      c.sampler.seed = static_cast<uint64_t>(*v);
    if (s.contains("kwargs")) {
      if (s["kwargs"].is_object())
        c.sampler.kwargs = s["kwargs"];
      else
        p.add(".sampler.kwargs",
              "expected a JSON object of the Optuna sampler's keyword arguments");
    }
  }

  if (j.contains("budget") && is_object(j["budget"], ".budget", p)) {
    const json& b = j["budget"];
    check_keys(b, ".budget", {"trials", "timeout", "jobs"}, p);
    if (auto v = get_int(b, "trials", ".budget", p, 1, 10000000)) c.budget.trials = *v;
    if (auto v = get_int(b, "jobs", ".budget", p, 1, 256)) c.budget.jobs = static_cast<int>(*v);
    if (auto t = get_string(b, "timeout", ".budget", p)) {
      try {
        c.budget.timeout_s = parse_duration_s(*t, ".budget.timeout");
      } catch (const std::exception& ex) {
        p.lines.push_back(ex.what());
      }
    }
  }
  if (auto v = get_string(j, "storage", "", p)) c.storage = *v;
  if (auto v = get_int(j, "batch", "", p, 1, 1 << 20)) c.batch = static_cast<int>(*v);

  // Cross-key checks.
  if (c.data.source.empty() && (c.evaluator.kind == "accuracy" || c.evaluator.kind == "fidelity")) {
    if (j.contains("evaluator") && j["evaluator"].contains("kind")) {
      p.add(".evaluator.kind",
            "\"" + c.evaluator.kind + "\" needs data: set .data.source, or use weight_error");
    } else {
      c.evaluator.kind = "weight_error";  // data-free default
    }
  }
  if (c.data.subset_samples >= c.data.validation_samples) c.data.subset_samples = 0;
  std::set<std::string> targets(c.targets.begin(), c.targets.end());
  auto check_metric = [&](const std::string& metric, const std::string& path) {
    const auto at = metric.find('@');
    if (at != std::string::npos) {
      static const std::set<std::string> per_target = {"latency_ms", "energy_mj", "sram_kb",
                                                       "flash_kb"};
      const std::string m = metric.substr(0, at), t = metric.substr(at + 1);
      if (!per_target.count(m)) {
        p.add(path, "\"" + m +
                        "\" is not a per-target metric (allowed: latency_ms, energy_mj, sram_kb, "
                        "flash_kb)");
      }
      if (!targets.count(t)) p.add(path, "target \"" + t + "\" is not listed in .targets");
      return;
    }
    if (c.evaluator.kind == "external") return;  // the user's program names its metrics
    static const std::set<std::string> plain = {"accuracy", "accuracy_drop", "agreement",
                                                "kl",       "weight_error",  "size_bytes",
                                                "size_kb",  "macs"};
    if (!plain.count(metric)) {
      p.add(path,
            "unknown metric \"" + metric +
                "\" (allowed: accuracy, accuracy_drop, agreement, kl, weight_error, size_bytes, "
                "size_kb, macs, or latency_ms|energy_mj|sram_kb|flash_kb@TARGET)");
      return;
    }
    const bool needs_labels = metric == "accuracy" || metric == "accuracy_drop";
    const bool needs_data = needs_labels || metric == "agreement" || metric == "kl";
    if (needs_labels && c.evaluator.kind != "accuracy") {
      p.add(path, "\"" + metric + "\" needs the accuracy evaluator (labelled data)");
    } else if (needs_data && c.data.source.empty()) {
      p.add(path, "\"" + metric + "\" needs data (.data.source)");
    }
  };
  for (size_t i = 0; i < c.objectives.size(); ++i) {
    check_metric(c.objectives[i].metric, ".objectives[" + std::to_string(i) + "]");
  }
  for (size_t i = 0; i < c.constraints.size(); ++i) {
    check_metric(c.constraints[i].metric, ".constraints[" + std::to_string(i) + "]");
  }
  if (c.storage.empty() && !c.study_name.empty())
    c.storage = "runs/" + c.study_name + "/study.journal";
  p.throw_if_any();
  return c;
}

ExperimentConfig load_config(const std::filesystem::path& path) {
  return config_from_json(read_config_json(path), path.string(), path.parent_path());
}

json read_config_json(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) throw std::invalid_argument(path.string() + ": cannot open the experiment config");
  const std::string text = read_all(in, path);  // a directory is named, not libstdc++'s message
  // A value nested 100,000 deep overflowed the stack while its error message was built.
  require_json_nesting_within(text, path.string());
  json j;
  try {
    j = json::parse(text, nullptr, true, /*ignore_comments=*/false);
  } catch (const json::exception& e) {  // malformed, or a number past double's range (1e999)
    throw std::invalid_argument(path.string() + ": not valid JSON: " + e.what());
  }
  return j;
}

namespace {

json choices_json(const LayerChoices& c) {
  json j = json::object();
  if (!c.w_bits.empty()) j["w_bits"] = c.w_bits;
  if (!c.granularity.empty()) j["granularity"] = c.granularity;
  if (!c.prune_kind.empty()) j["prune_kind"] = c.prune_kind;
  if (!c.a_bits.empty()) j["a_bits"] = c.a_bits;
  return j;
}

// Seconds as a duration parse_duration_s reads back ("600.000000s").
std::string duration_text(double s) {
  char b[64];
  std::snprintf(b, sizeof b, "%.6fs", s);
  return b;
}

}  // namespace

json ExperimentConfig::to_json() const {
  json objectives_j = json::array();
  for (const auto& o : objectives)
    objectives_j.push_back({o.metric, o.maximize ? "maximize" : "minimize"});
  json constraints_j = json::array();
  for (const auto& k : constraints) constraints_j.push_back(k.text);
  json space_j = choices_json(space.choices);
  space_j["prune_ratio"] = {{"low", space.prune_ratio.low},
                            {"high", space.prune_ratio.high},
                            {"step", space.prune_ratio.step}};
  json kd = json::object();
  if (!space.distillation.epochs.empty()) kd["epochs"] = space.distillation.epochs;
  if (!space.distillation.temperature.empty()) kd["temperature"] = space.distillation.temperature;
  if (!space.distillation.alpha.empty()) kd["alpha"] = space.distillation.alpha;
  if (!space.distillation.lr.empty()) kd["lr"] = space.distillation.lr;
  if (space.distillation.samples > 0) kd["samples"] = space.distillation.samples;
  if (!kd.empty()) space_j["distillation"] = kd;
  space_j["freeze"] = space.freeze;
  json tie = json::array();
  for (const auto& g : space.tie) {
    if (g.regex.empty())
      tie.push_back(g.layers);
    else
      tie.push_back({{"regex", g.regex}});
  }
  space_j["tie"] = tie;
  space_j["keep_first_last_8bit"] = space.keep_first_last_8bit;
  json layers = json::object();
  for (const auto& [name, c] : space.layer_overrides) layers[name] = choices_json(c);
  space_j["layers"] = layers;
  json evaluator_j = {{"kind", evaluator.kind}, {"timeout", duration_text(evaluator.timeout_s)}};
  if (!evaluator.command.empty()) evaluator_j["command"] = evaluator.command;
  if (evaluator.int8) evaluator_j["int8"] = true;
  json budget_j = {{"trials", budget.trials}, {"jobs", budget.jobs}};
  if (budget.timeout_s > 0) budget_j["timeout"] = duration_text(budget.timeout_s);
  return {{"study_name", study_name},
          {"model", model.string()},
          {"data",
           {{"source", data.source},
            {"validation_samples", data.validation_samples},
            {"validation_seed", data.validation_seed},
            {"subset_samples", data.subset_samples},
            {"calibration_samples", data.calibration_samples},
            {"report_test", data.report_test}}},
          {"space", space_j},
          {"targets", targets},
          {"objectives", objectives_j},
          {"constraints", constraints_j},
          {"evaluator", evaluator_j},
          {"fidelity",
           {{"proxy", fidelity.proxy},
            {"subset", fidelity.subset},
            {"sensitivity_samples", fidelity.sensitivity_samples},
            {"pruner", fidelity.pruner},
            {"pruner_kwargs", fidelity.pruner_kwargs},
            {"dominance_margin", fidelity.dominance_margin}}},
          {"sampler", {{"name", sampler.name}, {"seed", sampler.seed}, {"kwargs", sampler.kwargs}}},
          {"budget", budget_j},
          {"storage", storage},
          {"batch", batch}};
}

}  // namespace compsearch::experiments
