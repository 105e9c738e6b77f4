// Optuna's distributions (optuna/distributions.py 3.1): validation, the high-to-step-grid
// adjustment in exact decimal arithmetic, JSON in both directions, internal/external values.
#include "search/distributions.h"

#include <charconv>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <sstream>
#include <stdexcept>

#include "search/python_json.h"

namespace compsearch::search {
namespace {

std::string repr(double v) { return python_float_repr(v); }

// A decimal value m * 10^e, as Python's decimal.Decimal(str(x)) sees a float.
struct Decimal {
  __int128 mantissa = 0;
  int exponent = 0;
};

Decimal to_decimal(double v) {
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof(buf), v, std::chars_format::scientific);
  std::string s(buf, res.ptr);
  bool neg = s[0] == '-';
  if (neg) s.erase(0, 1);
  size_t e = s.find('e');
  std::string digits = s.substr(0, e);
  digits.erase(std::remove(digits.begin(), digits.end(), '.'), digits.end());
  int exp10 = std::stoi(s.substr(e + 1)) - static_cast<int>(digits.size() - 1);
  __int128 m = 0;
  for (char c : digits) m = m * 10 + (c - '0');
  return {neg ? -m : m, exp10};
}

bool scale_to(Decimal& d, int exponent) {
  for (int k = d.exponent; k > exponent; --k) {
    if (d.mantissa > (__int128(1) << 120) / 10 || d.mantissa < -((__int128(1) << 120) / 10)) {
      return false;
    }
    d.mantissa *= 10;
  }
  d.exponent = exponent;
  return true;
}

std::string int128_to_string(__int128 v) {
  if (v == 0) return "0";
  bool neg = v < 0;
  if (neg) v = -v;
  std::string s;
  while (v > 0) {
    s.insert(s.begin(), static_cast<char>('0' + static_cast<int>(v % 10)));
    v /= 10;
  }
  return neg ? "-" + s : s;
}

// optuna.distributions._adjust_discrete_uniform_high: the largest low + k*step <= high, in
// decimal arithmetic on the floats' shortest representations (so 0..1 step 0.3 gives 0.9,
// not 0.8999999999999999).
double adjust_discrete_high(double low, double high, double step) {
  Decimal dl = to_decimal(low), dh = to_decimal(high), ds = to_decimal(step);
  int e = std::min({dl.exponent, dh.exponent, ds.exponent});
  if (!scale_to(dl, e) || !scale_to(dh, e) || !scale_to(ds, e)) {
    // Exponents too far apart for exact integers: plain double arithmetic.
    double r = high - low;
    double k = std::floor(r / step);
    return std::fmod(r, step) == 0.0 ? high : k * step + low;
  }
  __int128 r = dh.mantissa - dl.mantissa;
  if (r % ds.mantissa == 0) return high;
  __int128 adjusted = (r / ds.mantissa) * ds.mantissa + dl.mantissa;
  std::string text = int128_to_string(adjusted) + "e" + std::to_string(e);
  return std::strtod(text.c_str(), nullptr);
}

bool categorical_choice_equal(const nlohmann::json& a, const nlohmann::json& b) {
  if (a.is_number() && b.is_number()) {
    double x = a.get<double>(), y = b.get<double>();
    if (std::isnan(x) && std::isnan(y)) return true;
    return x == y;
  }
  return a == b;
}

bool valid_choice(const nlohmann::json& c) {
  return c.is_null() || c.is_boolean() || c.is_number() || c.is_string();
}

template <class T>
const nlohmann::json& require(const nlohmann::json& attrs, const char* key,
                              const std::string& cls) {
  if (!attrs.contains(key)) {
    throw std::invalid_argument(cls + ": missing attribute \"" + key + "\" in " + attrs.dump());
  }
  return attrs.at(key);
}

double number_attr(const nlohmann::json& attrs, const char* key, const std::string& cls) {
  const auto& v = require<double>(attrs, key, cls);
  if (!v.is_number()) {
    throw std::invalid_argument(cls + ": attribute \"" + key + "\" must be a number, got " +
                                v.dump());
  }
  return v.get<double>();
}

int64_t int_attr(const nlohmann::json& attrs, const char* key, const std::string& cls) {
  const auto& v = require<int64_t>(attrs, key, cls);
  if (v.is_number_unsigned() &&
      v.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
    throw std::invalid_argument(cls + ": attribute \"" + key + "\" must be a 64-bit integer, got " +
                                v.dump());
  }
  if (v.is_number_integer()) return v.get<int64_t>();
  // A float outside int64's range cannot be converted (undefined behaviour): not an integer here.
  if (v.is_number_float() && std::floor(v.get<double>()) == v.get<double>() &&
      std::abs(v.get<double>()) < 0x1p63) {
    return static_cast<int64_t>(v.get<double>());
  }
  throw std::invalid_argument(cls + ": attribute \"" + key + "\" must be an integer, got " +
                              v.dump());
}

bool bool_attr(const nlohmann::json& attrs, const char* key, bool fallback,
               const std::string& cls) {
  if (!attrs.contains(key) || attrs.at(key).is_null()) return fallback;
  const auto& v = attrs.at(key);
  if (!v.is_boolean()) {
    throw std::invalid_argument(cls + ": attribute \"" + key + "\" must be a boolean, got " +
                                v.dump());
  }
  return v.get<bool>();
}

}  // namespace

FloatDistribution make_float(double low, double high, bool log, std::optional<double> step) {
  if (std::isnan(low) || std::isnan(high)) {
    throw std::invalid_argument("FloatDistribution: low and high must not be NaN (low=" +
                                repr(low) + ", high=" + repr(high) + ")");
  }
  if (!std::isfinite(low) || !std::isfinite(high)) {
    // Optuna 3.1 accepts them, then samples NaN (uniform(-inf, inf)) or fails in the sampler.
    throw std::invalid_argument(
        "FloatDistribution: the `low` and `high` values must be finite (low=" + repr(low) +
        ", high=" + repr(high) + ")");
  }
  if (log && step) {
    throw std::invalid_argument(
        "FloatDistribution: the parameter `step` is not supported when `log` is true (step=" +
        repr(*step) + ")");
  }
  if (low > high) {
    throw std::invalid_argument(
        "FloatDistribution: the `low` value must be smaller than or equal to the `high` value "
        "(low=" +
        repr(low) + ", high=" + repr(high) + ")");
  }
  if (log && low <= 0.0) {
    throw std::invalid_argument(
        "FloatDistribution: the `low` value must be larger than 0 for a log distribution (low=" +
        repr(low) + ", high=" + repr(high) + ")");
  }
  if (step && !(*step > 0)) {
    throw std::invalid_argument(
        "FloatDistribution: the `step` value must be non-zero positive value, but step=" +
        repr(*step));
  }
  FloatDistribution d;
  d.low = low;
  d.high = step ? adjust_discrete_high(low, high, *step) : high;
  d.log = log;
  d.step = step;
  return d;
}

IntDistribution make_int(int64_t low, int64_t high, bool log, int64_t step) {
  // Internal values are doubles (as in Optuna), exact for integers up to 2^53; beyond, a value
  // may round out of int64 and `high - low` may overflow (Python's ints hide both in Optuna).
  constexpr int64_t kExact = int64_t{1} << 53;
  if (low < -kExact || low > kExact || high < -kExact || high > kExact) {
    throw std::invalid_argument(
        "IntDistribution: the `low` and `high` values must be within -2^53 and 2^53 (" +
        std::to_string(kExact) + "), where the float internal value is exact (low=" +
        std::to_string(low) + ", high=" + std::to_string(high) + ")");
  }
  if (log && step != 1) {
    throw std::invalid_argument(
        "IntDistribution: samplers only accept step 1 when `log` is true (step=" +
        std::to_string(step) + ")");
  }
  if (low > high) {
    throw std::invalid_argument(
        "IntDistribution: the `low` value must be smaller than or equal to the `high` value (low=" +
        std::to_string(low) + ", high=" + std::to_string(high) + ")");
  }
  if (log && low < 1) {
    throw std::invalid_argument(
        "IntDistribution: the `low` value must be equal to or greater than 1 for a log "
        "distribution (low=" +
        std::to_string(low) + ", high=" + std::to_string(high) + ")");
  }
  if (step <= 0) {
    throw std::invalid_argument(
        "IntDistribution: the `step` value must be non-zero positive value, but step=" +
        std::to_string(step));
  }
  IntDistribution d;
  d.low = low;
  d.log = log;
  d.step = step;
  int64_t r = high - low;
  d.high = r % step == 0 ? high : r / step * step + low;
  return d;
}

CategoricalDistribution make_categorical(std::vector<nlohmann::json> choices) {
  if (choices.empty()) {
    throw std::invalid_argument(
        "CategoricalDistribution: the `choices` must contain one or more elements");
  }
  for (size_t i = 0; i < choices.size(); ++i) {
    if (!valid_choice(choices[i])) {
      throw std::invalid_argument("CategoricalDistribution: choice " + std::to_string(i) + " is " +
                                  choices[i].dump() +
                                  "; expected null, a boolean, a number or a string");
    }
    for (size_t k = 0; k < i; ++k) {
      if (choices[k].type() == choices[i].type() &&
          categorical_choice_equal(choices[k], choices[i])) {
        throw std::invalid_argument("CategoricalDistribution: choice " + choices[i].dump() +
                                    " appears twice (positions " + std::to_string(k) + " and " +
                                    std::to_string(i) + "); choices must be unique");
      }
    }
  }
  return CategoricalDistribution{std::move(choices)};
}

nlohmann::ordered_json distribution_to_ordered_json(const Distribution& d) {
  nlohmann::ordered_json out;
  nlohmann::ordered_json attrs = nlohmann::ordered_json::object();
  if (const auto* f = std::get_if<FloatDistribution>(&d)) {
    out["name"] = "FloatDistribution";
    attrs["step"] = f->step ? nlohmann::ordered_json(*f->step) : nlohmann::ordered_json(nullptr);
    attrs["low"] = f->low;
    attrs["high"] = f->high;
    attrs["log"] = f->log;
  } else if (const auto* i = std::get_if<IntDistribution>(&d)) {
    out["name"] = "IntDistribution";
    attrs["log"] = i->log;
    attrs["step"] = i->step;
    attrs["low"] = i->low;
    attrs["high"] = i->high;
  } else {
    const auto& c = std::get<CategoricalDistribution>(d);
    out["name"] = "CategoricalDistribution";
    nlohmann::ordered_json choices = nlohmann::ordered_json::array();
    for (const auto& ch : c.choices) choices.push_back(nlohmann::ordered_json(ch));
    attrs["choices"] = std::move(choices);
  }
  out["attributes"] = std::move(attrs);
  return out;
}

nlohmann::json distribution_to_json(const Distribution& d) {
  return nlohmann::json(distribution_to_ordered_json(d));
}

std::string distribution_to_json_string(const Distribution& d) {
  return dump_python_json(distribution_to_ordered_json(d), JsonSeparators::kPython);
}

Distribution distribution_from_json(const nlohmann::json& j_in) {
  nlohmann::json j = j_in;
  if (j.is_string()) {
    try {
      j = parse_python_json(j.get<std::string>());
    } catch (const nlohmann::json::exception& e) {
      throw std::invalid_argument("distribution: cannot parse " + j_in.dump() +
                                  " as JSON: " + e.what());
    }
  }
  if (!j.is_object()) {
    throw std::invalid_argument("distribution: expected a JSON object, got " + j.dump());
  }
  if (j.contains("name")) {
    if (!j["name"].is_string()) {
      throw std::invalid_argument("distribution: \"name\" must be a string, got " +
                                  j["name"].dump());
    }
    const std::string name = j["name"].get<std::string>();
    if (!j.contains("attributes") || !j["attributes"].is_object()) {
      throw std::invalid_argument("distribution " + name + ": missing object \"attributes\" in " +
                                  j.dump());
    }
    const auto& a = j["attributes"];
    auto check_keys = [&](std::initializer_list<const char*> allowed) {
      for (auto it = a.begin(); it != a.end(); ++it) {
        bool ok = false;
        for (const char* k : allowed) ok = ok || it.key() == k;
        if (!ok) {
          std::string list;
          for (const char* k : allowed) list += std::string(list.empty() ? "" : ", ") + k;
          throw std::invalid_argument("distribution " + name + ": unknown attribute \"" + it.key() +
                                      "\"; expected " + list);
        }
      }
    };
    auto opt_step = [&](const char* key) -> std::optional<double> {
      if (!a.contains(key) || a[key].is_null()) return std::nullopt;
      return number_attr(a, key, name);
    };
    if (name == "FloatDistribution") {
      check_keys({"low", "high", "log", "step"});
      return make_float(number_attr(a, "low", name), number_attr(a, "high", name),
                        bool_attr(a, "log", false, name), opt_step("step"));
    }
    if (name == "UniformDistribution") {
      check_keys({"low", "high"});
      return make_float(number_attr(a, "low", name), number_attr(a, "high", name));
    }
    if (name == "LogUniformDistribution") {
      check_keys({"low", "high"});
      return make_float(number_attr(a, "low", name), number_attr(a, "high", name), true);
    }
    if (name == "DiscreteUniformDistribution") {
      check_keys({"low", "high", "q"});
      return make_float(number_attr(a, "low", name), number_attr(a, "high", name), false,
                        number_attr(a, "q", name));
    }
    if (name == "IntDistribution" || name == "IntUniformDistribution" ||
        name == "IntLogUniformDistribution") {
      if (name == "IntDistribution")
        check_keys({"low", "high", "log", "step"});
      else
        check_keys({"low", "high", "step"});
      bool log = name == "IntLogUniformDistribution" ? true : bool_attr(a, "log", false, name);
      int64_t step = a.contains("step") && !a["step"].is_null() ? int_attr(a, "step", name) : 1;
      // Optuna ignores a deprecated IntLogUniformDistribution's step (it is always 1).
      if (name == "IntLogUniformDistribution") step = 1;
      return make_int(int_attr(a, "low", name), int_attr(a, "high", name), log, step);
    }
    if (name == "CategoricalDistribution") {
      check_keys({"choices"});
      const auto& c = require<int>(a, "choices", name);
      if (!c.is_array()) {
        throw std::invalid_argument(
            "distribution CategoricalDistribution: \"choices\" must be an array, got " + c.dump());
      }
      return make_categorical(std::vector<nlohmann::json>(c.begin(), c.end()));
    }
    throw std::invalid_argument(
        "distribution: unknown distribution class \"" + name +
        "\"; expected FloatDistribution, IntDistribution or CategoricalDistribution");
  }
  if (j.contains("type") && j["type"].is_string()) {
    const std::string type = j["type"].get<std::string>();
    if (type == "categorical") {
      const auto& c = require<int>(j, "choices", type);
      if (!c.is_array())
        throw std::invalid_argument("distribution categorical: \"choices\" must be an array");
      return make_categorical(std::vector<nlohmann::json>(c.begin(), c.end()));
    }
    if (type == "float") {
      std::optional<double> step;
      if (j.contains("step") && !j["step"].is_null()) step = number_attr(j, "step", type);
      return make_float(number_attr(j, "low", type), number_attr(j, "high", type),
                        bool_attr(j, "log", false, type), step);
    }
    if (type == "int") {
      int64_t step = j.contains("step") && !j["step"].is_null() ? int_attr(j, "step", type) : 1;
      return make_int(int_attr(j, "low", type), int_attr(j, "high", type),
                      bool_attr(j, "log", false, type), step);
    }
    throw std::invalid_argument("distribution: unknown distribution type \"" + type +
                                "\"; expected categorical, float or int");
  }
  throw std::invalid_argument(
      "distribution: expected {\"name\": ..., \"attributes\": {...}}, got " + j.dump());
}

bool operator==(const Distribution& a, const Distribution& b) {
  if (a.index() != b.index()) return false;
  if (const auto* fa = std::get_if<FloatDistribution>(&a)) {
    const auto& fb = std::get<FloatDistribution>(b);
    return fa->low == fb.low && fa->high == fb.high && fa->log == fb.log && fa->step == fb.step;
  }
  if (const auto* ia = std::get_if<IntDistribution>(&a)) {
    const auto& ib = std::get<IntDistribution>(b);
    return ia->low == ib.low && ia->high == ib.high && ia->log == ib.log && ia->step == ib.step;
  }
  const auto& ca = std::get<CategoricalDistribution>(a).choices;
  const auto& cb = std::get<CategoricalDistribution>(b).choices;
  if (ca.shares(cb)) return true;
  if (ca.size() != cb.size()) return false;
  for (size_t i = 0; i < ca.size(); ++i) {
    if (!categorical_choice_equal(ca[i], cb[i])) return false;
  }
  return true;
}

double to_internal(const Distribution& d, const nlohmann::json& external) {
  if (const auto* c = std::get_if<CategoricalDistribution>(&d)) {
    for (size_t i = 0; i < c->choices.size(); ++i) {
      if (categorical_choice_equal(external, c->choices[i])) return static_cast<double>(i);
    }
    std::string list;
    for (const auto& ch : c->choices) list += (list.empty() ? "" : ", ") + ch.dump();
    throw std::invalid_argument("value " + external.dump() + " is not one of the choices [" + list +
                                "]");
  }
  if (!external.is_number() && !external.is_boolean()) {
    throw std::invalid_argument("value " + external.dump() +
                                " is not a number; a float-castable value is expected");
  }
  double v = external.is_boolean() ? (external.get<bool>() ? 1.0 : 0.0) : external.get<double>();
  if (std::isnan(v)) throw std::invalid_argument("value NaN is not a valid parameter value");
  bool log = std::visit(
      [](const auto& x) -> bool {
        if constexpr (std::is_same_v<std::decay_t<decltype(x)>, CategoricalDistribution>)
          return false;
        else
          return x.log;
      },
      d);
  if (log && v <= 0.0) {
    throw std::invalid_argument("value " + external.dump() +
                                " is invalid for a log distribution (must be > 0)");
  }
  return v;
}

nlohmann::json to_external(const Distribution& d, double internal) {
  if (std::holds_alternative<FloatDistribution>(d)) return internal;
  if (std::holds_alternative<IntDistribution>(d)) return static_cast<int64_t>(internal);
  const auto& c = std::get<CategoricalDistribution>(d);
  auto index = static_cast<int64_t>(internal);
  if (index < 0 || index >= static_cast<int64_t>(c.choices.size())) {
    throw std::out_of_range("categorical index " + repr(internal) + " is outside [0, " +
                            std::to_string(c.choices.size()) + ")");
  }
  return c.choices[static_cast<size_t>(index)];
}

bool contains(const Distribution& d, double v) {
  if (const auto* f = std::get_if<FloatDistribution>(&d)) {
    if (!f->step) return f->low <= v && v <= f->high;
    // Optuna's FloatDistribution._contains: on the grid up to a 1e-8 step-relative rounding.
    double k = (v - f->low) / *f->step;
    return f->low <= v && v <= f->high && std::abs(k - std::nearbyint(k)) < 1.0e-8;
  }
  if (const auto* i = std::get_if<IntDistribution>(&d)) {
    if (!(i->low <= v && v <= i->high)) return false;
    // Python's float modulo: (value - low) % step == 0
    return std::fmod(v - static_cast<double>(i->low), static_cast<double>(i->step)) == 0.0;
  }
  const auto& c = std::get<CategoricalDistribution>(d);
  auto index = static_cast<int64_t>(v);
  return 0 <= index && index < static_cast<int64_t>(c.choices.size());
}

bool is_single(const Distribution& d) {
  if (const auto* f = std::get_if<FloatDistribution>(&d)) {
    if (f->low == f->high) return true;
    if (!f->step) return false;
    Decimal dl = to_decimal(f->low), dh = to_decimal(f->high), ds = to_decimal(*f->step);
    int e = std::min({dl.exponent, dh.exponent, ds.exponent});
    if (!scale_to(dl, e) || !scale_to(dh, e) || !scale_to(ds, e))
      return (f->high - f->low) < *f->step;
    return dh.mantissa - dl.mantissa < ds.mantissa;
  }
  if (const auto* i = std::get_if<IntDistribution>(&d)) {
    if (i->log) return i->low == i->high;
    return i->low == i->high || (i->high - i->low) < i->step;
  }
  return std::get<CategoricalDistribution>(d).choices.size() == 1;
}

double single_value(const Distribution& d) {
  if (const auto* f = std::get_if<FloatDistribution>(&d)) return f->low;
  if (const auto* i = std::get_if<IntDistribution>(&d)) return static_cast<double>(i->low);
  return 0.0;
}

void check_distribution_compatibility(const std::string& param_name, const Distribution& old_d,
                                      const Distribution& new_d) {
  if (old_d.index() != new_d.index()) {
    throw std::invalid_argument(
        "parameter \"" + param_name + "\": cannot set different distribution kind (" +
        distribution_to_json_string(old_d) + " then " + distribution_to_json_string(new_d) +
        ") to the same parameter name");
  }
  auto log_of = [](const Distribution& d) {
    if (const auto* f = std::get_if<FloatDistribution>(&d)) return f->log;
    if (const auto* i = std::get_if<IntDistribution>(&d)) return i->log;
    return false;
  };
  if (log_of(old_d) != log_of(new_d)) {
    throw std::invalid_argument(
        "parameter \"" + param_name +
        "\": cannot set different log configuration to the same parameter name");
  }
  if (std::holds_alternative<CategoricalDistribution>(old_d) && !(old_d == new_d)) {
    throw std::invalid_argument(
        "parameter \"" + param_name +
        "\": CategoricalDistribution does not support dynamic value space (" +
        distribution_to_json_string(old_d) + " then " + distribution_to_json_string(new_d) + ")");
  }
}

}  // namespace compsearch::search
