// Keyword arguments of a factory (make_sampler, make_pruner): a JSON object whose keys are
// Optuna's keyword names for a class, read with type checks. Every error names the class, the key
// and what is expected.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <utility>

namespace compsearch::search::internal {

class Kwargs {
 public:
  Kwargs(std::string cls, const nlohmann::json& j, std::set<std::string> allowed,
         const std::string& what = "sampler kwargs")
      : cls_(std::move(cls)), j_(j.is_null() ? nlohmann::json::object() : j) {
    if (!j_.is_object()) {
      throw std::invalid_argument(cls_ + ": " + what + " " + j_.dump() +
                                  " must be a JSON object of keyword arguments");
    }
    for (const auto& [key, value] : j_.items()) {
      if (!allowed.count(key)) {
        std::string names;
        for (const auto& a : allowed) names += (names.empty() ? "" : ", ") + a;
        throw std::invalid_argument(cls_ + ": unknown or unsupported keyword argument \"" + key +
                                    "\" (accepted: " + names + ")");
      }
    }
  }

  bool has(const std::string& key) const { return j_.contains(key) && !j_.at(key).is_null(); }

  [[noreturn]] void bad(const std::string& key, const std::string& expected) const {
    throw std::invalid_argument(cls_ + ": " + key + " = " + j_.at(key).dump() + ", expected " +
                                expected);
  }

  std::optional<uint64_t> seed() const {
    if (!has("seed")) return std::nullopt;
    const auto& v = j_.at("seed");
    if (!v.is_number_integer() ||
        (v.is_number_integer() && !v.is_number_unsigned() && v.get<int64_t>() < 0)) {
      bad("seed", "a non-negative integer or null");
    }
    return v.get<uint64_t>();
  }
  bool boolean(const std::string& key, bool dflt) const {
    if (!has(key)) return dflt;
    if (!j_.at(key).is_boolean()) bad(key, "true or false");
    return j_.at(key).get<bool>();
  }
  int64_t integer(const std::string& key, int64_t dflt) const {
    if (!has(key)) return dflt;
    if (!j_.at(key).is_number_integer()) bad(key, "an integer");
    return j_.at(key).get<int64_t>();
  }
  double number(const std::string& key, double dflt) const {
    if (!has(key)) return dflt;
    if (!j_.at(key).is_number()) bad(key, "a number");
    return j_.at(key).get<double>();
  }
  std::optional<double> optional_number(const std::string& key) const {
    if (!has(key)) return std::nullopt;
    if (!j_.at(key).is_number()) bad(key, "a number or null");
    return j_.at(key).get<double>();
  }
  // Keys that only Python callables or objects can fill: only null (the default) is accepted.
  void null_only(const std::string& key, const std::string& why) const {
    if (has(key)) bad(key, "null (" + why + ")");
  }
  const nlohmann::json& at(const std::string& key) const { return j_.at(key); }

 private:
  std::string cls_;
  nlohmann::json j_;
};

}  // namespace compsearch::search::internal
