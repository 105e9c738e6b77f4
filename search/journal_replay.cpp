// Replay of Optuna journal records (see journal_replay.h).
#include "search/journal_replay.h"

#include <simdjson.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <exception>

#include "search/python_json.h"

namespace compsearch::search::journal {
namespace {

const char* kNotFound = "Record does not exist.";

const nlohmann::json& field(const nlohmann::json& log, const char* key) {
  auto it = log.find(key);
  if (it == log.end()) {
    throw std::invalid_argument(std::string("journal record lacks \"") + key + "\": " + log.dump());
  }
  return *it;
}

int64_t int_field(const nlohmann::json& log, const char* key) {
  const auto& v = field(log, key);
  if (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)) {
    throw std::invalid_argument(std::string("journal record: \"") + key +
                                "\" is outside the 64-bit integer range: " + v.dump());
  }
  if (v.is_number_integer()) return v.get<int64_t>();
  // A whole float within int64's range (beyond it the conversion is undefined: fuzz_journal_line
  // found op_code 8.9e66).
  if (v.is_number_float() && std::floor(v.get<double>()) == v.get<double>() &&
      v.get<double>() >= -9223372036854775808.0 && v.get<double>() < 9223372036854775808.0)
    return static_cast<int64_t>(v.get<double>());
  throw std::invalid_argument(std::string("journal record: \"") + key +
                              "\" must be an integer, got " + v.dump());
}

double number(const nlohmann::json& v, const char* what) {
  if (v.is_number()) return v.get<double>();
  if (v.is_boolean()) return v.get<bool>() ? 1.0 : 0.0;
  throw std::invalid_argument(std::string("journal record: ") + what + " must be a number, got " +
                              v.dump());
}

std::vector<double> values_of(const nlohmann::json& v) {
  std::vector<double> out;
  if (!v.is_array())
    throw std::invalid_argument("journal record: values must be a list, got " + v.dump());
  for (const auto& x : v) out.push_back(number(x, "a value"));
  return out;
}

TrialState state_of(const nlohmann::json& v) {
  if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > 4) {
    throw std::invalid_argument("journal record: state must be 0..4, got " + v.dump());
  }
  return static_cast<TrialState>(v.get<int>());
}

const nlohmann::json& single_attr(const nlohmann::json& log, const char* key) {
  const auto& a = field(log, key);
  if (!a.is_object() || a.size() != 1) {
    throw std::invalid_argument(std::string("journal record: \"") + key +
                                "\" must hold exactly one key: " + log.dump());
  }
  return a;
}

}  // namespace

std::string now_isoformat() {
  auto now = std::chrono::system_clock::now();
  auto secs = std::chrono::system_clock::to_time_t(now);
  auto micros =
      std::chrono::duration_cast<std::chrono::microseconds>(now.time_since_epoch()).count() %
      1000000;
  std::tm tm{};
  localtime_r(&secs, &tm);
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%06lld", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<long long>(micros));
  return buf;
}

std::string now_frozen() { return datetime_from_journal(now_isoformat()); }

std::string datetime_from_journal(const std::string& iso) {
  if (iso.size() < 19 || (iso[10] != 'T' && iso[10] != ' ')) {
    throw std::invalid_argument("journal datetime \"" + iso +
                                "\" is not YYYY-MM-DDTHH:MM:SS[.ffffff]");
  }
  std::string out = iso.substr(0, 10) + " " + iso.substr(11, 8);
  std::string frac;
  if (iso.size() > 19 && iso[19] == '.') {
    size_t i = 20;
    while (i < iso.size() && std::isdigit(static_cast<unsigned char>(iso[i])))
      frac.push_back(iso[i++]);
  }
  frac.resize(6, '0');
  return out + "." + frac;
}

std::string datetime_to_journal(const std::string& frozen) {
  std::string s = frozen;
  if (s.size() > 10 && s[10] == ' ') s[10] = 'T';
  if (s.size() == 19) s += ".000000";
  return s;
}

nlohmann::ordered_json with_header(Op op, const std::string& worker_id,
                                   nlohmann::ordered_json fields) {
  nlohmann::ordered_json out;
  out["op_code"] = static_cast<int>(op);
  out["worker_id"] = worker_id;
  for (auto it = fields.begin(); it != fields.end(); ++it) out[it.key()] = std::move(it.value());
  return out;
}

nlohmann::ordered_json create_study_log(const std::vector<StudyDirection>& directions,
                                        const std::string& name) {
  nlohmann::ordered_json log;
  log["study_name"] = name;
  nlohmann::ordered_json dirs = nlohmann::ordered_json::array();
  for (auto d : directions) dirs.push_back(static_cast<int>(d));
  log["directions"] = dirs;
  return log;
}

nlohmann::ordered_json create_trial_log(int64_t study_id, const FrozenTrial* t) {
  nlohmann::ordered_json log;
  log["study_id"] = study_id;
  log["datetime_start"] = now_isoformat();
  if (t == nullptr) return log;
  // Field order and the value/values split follow Optuna's create_new_trial(template_trial).
  log["state"] = static_cast<int>(t->state);
  if (t->values.size() > 1) {
    log["value"] = nullptr;
    log["values"] = t->values;
  } else {
    log["value"] =
        t->values.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(t->values[0]);
    log["values"] = nullptr;
  }
  log["datetime_start"] = t->datetime_start
                              ? nlohmann::ordered_json(datetime_to_journal(*t->datetime_start))
                              : nlohmann::ordered_json(nullptr);
  if (t->datetime_complete) log["datetime_complete"] = datetime_to_journal(*t->datetime_complete);
  nlohmann::ordered_json dists = nlohmann::ordered_json::object();
  nlohmann::ordered_json params = nlohmann::ordered_json::object();
  for (const auto& [name, d] : t->distributions) dists[name] = distribution_to_json_string(d);
  for (const auto& [name, v] : t->params) {
    auto d = t->distributions.find(name);
    if (d == t->distributions.end()) {
      throw std::invalid_argument("template trial: parameter \"" + name + "\" has no distribution");
    }
    if (std::holds_alternative<CategoricalDistribution>(d->second))
      params[name] = static_cast<int64_t>(v);
    else
      params[name] = v;
  }
  log["distributions"] = dists;
  log["params"] = params;
  nlohmann::ordered_json ua = nlohmann::ordered_json::object(),
                         sa = nlohmann::ordered_json::object();
  for (const auto& [k, v] : t->user_attrs) ua[k] = nlohmann::ordered_json(v);
  for (const auto& [k, v] : t->system_attrs) sa[k] = nlohmann::ordered_json(v);
  log["user_attrs"] = ua;
  log["system_attrs"] = sa;
  nlohmann::ordered_json iv = nlohmann::ordered_json::object();
  for (const auto& [step, v] : t->intermediate_values) iv[std::to_string(step)] = v;
  log["intermediate_values"] = iv;
  return log;
}

nlohmann::ordered_json set_trial_param_log(int64_t trial_id, const std::string& name,
                                           double internal, const Distribution& distribution) {
  nlohmann::ordered_json log;
  log["trial_id"] = trial_id;
  log["param_name"] = name;
  // Optuna's CategoricalDistribution.to_internal_repr returns the int index.
  if (std::holds_alternative<CategoricalDistribution>(distribution))
    log["param_value_internal"] = static_cast<int64_t>(internal);
  else
    log["param_value_internal"] = internal;
  log["distribution"] = distribution_to_json_string(distribution);
  return log;
}

nlohmann::ordered_json set_trial_state_values_log(int64_t trial_id, TrialState state,
                                                  const std::vector<double>* values) {
  nlohmann::ordered_json log;
  log["trial_id"] = trial_id;
  log["state"] = static_cast<int>(state);
  log["values"] = values ? nlohmann::ordered_json(*values) : nlohmann::ordered_json(nullptr);
  if (state == TrialState::kRunning)
    log["datetime_start"] = now_isoformat();
  else if (is_finished(state))
    log["datetime_complete"] = now_isoformat();
  return log;
}

bool ReplayState::study_exists(int64_t study_id, bool own) const {
  if (studies_.count(study_id)) return true;
  if (own)
    throw StorageKeyError(std::string(kNotFound) + " (study id " + std::to_string(study_id) + ")");
  return false;
}

bool ReplayState::trial_updatable(int64_t trial_id, bool own) const {
  if (trial_id < 0 || trial_id >= static_cast<int64_t>(trials_.size())) {
    if (own)
      throw StorageKeyError(std::string(kNotFound) + " (trial id " + std::to_string(trial_id) +
                            ")");
    return false;
  }
  const auto& t = trials_[static_cast<size_t>(trial_id)];
  if (is_finished(t.state)) {
    if (own) {
      throw TrialFinishedError("Trial#" + std::to_string(t.number) +
                               " has already finished and can not be updated.");
    }
    return false;
  }
  return true;
}

void ReplayState::create_study(const std::string& name, std::vector<StudyDirection> directions,
                               bool own) {
  if (study_by_name_.count(name)) {
    if (own) {
      throw DuplicatedStudyError(
          "Another study with name '" + name +
          "' already exists. Please specify a different name, or reuse the existing one.");
    }
    return;
  }
  FrozenStudy s;
  s.study_id = next_study_id_++;
  s.study_name = name;
  s.directions = std::move(directions);
  study_trials_[s.study_id];
  study_by_name_[name] = s.study_id;
  studies_[s.study_id] = std::move(s);
}

void ReplayState::delete_study(int64_t study_id, bool own) {
  if (!study_exists(study_id, own)) return;
  study_by_name_.erase(studies_[study_id].study_name);
  studies_.erase(study_id);
}

void ReplayState::set_study_attr(int64_t study_id, bool user, const std::string& key,
                                 const nlohmann::json& value, bool own) {
  if (!study_exists(study_id, own)) return;
  auto& s = studies_[study_id];
  (user ? s.user_attrs : s.system_attrs)[key] = value;
}

void ReplayState::create_trial(int64_t study_id, FrozenTrial t, const std::string& worker,
                               bool own) {
  if (!study_exists(study_id, own)) return;
  auto& ids = study_trials_[study_id];
  t.trial_id = static_cast<int64_t>(trials_.size());
  t.number = static_cast<int64_t>(ids.size());
  const int64_t id = t.trial_id;
  const bool running = t.state == TrialState::kRunning;
  auto& first_dists = study_param_dists_[study_id];
  for (const auto& [name, d] : t.distributions) first_dists.emplace(name, d);
  trials_.push_back(std::move(t));
  trial_study_.push_back(study_id);
  ids.push_back(id);
  if (own) {
    last_created_[worker] = id;
    if (running) owned_[worker] = id;
  }
}

namespace {

// map.insert_or_assign(node's key, node's value), using the node's memory when the key is new.
template <class Map>
void insert_or_assign_node(Map& map, typename Map::node_type node) {
  auto r = map.insert(std::move(node));
  if (!r.inserted) r.position->second = std::move(r.node.mapped());
}

template <class Map, class Value>
typename Map::node_type make_node(const std::string& key, Value&& value) {
  Map one;
  one.emplace(key, std::forward<Value>(value));
  return one.extract(one.begin());
}

}  // namespace

void ReplayState::set_trial_param(int64_t trial_id, const std::string& name, double internal,
                                  Distribution dist, bool own) {
  set_trial_param(trial_id, make_node<decltype(FrozenTrial::params)>(name, internal),
                  make_node<decltype(FrozenTrial::distributions)>(name, std::move(dist)), own);
}

void ReplayState::set_trial_param(int64_t trial_id, ParamNode param, DistributionNode dist,
                                  bool own) {
  if (!trial_updatable(trial_id, own)) return;
  const std::string& name = param.key();
  const int64_t study_id = trial_study_[static_cast<size_t>(trial_id)];
  auto& first_dists = study_param_dists_[study_id];
  if (auto it = first_dists.find(name); it != first_dists.end()) {
    try {
      check_distribution_compatibility(name, it->second, dist.mapped());
    } catch (const std::invalid_argument&) {
      if (own) throw;
      return;
    }
  } else {
    first_dists.emplace(name, dist.mapped());
  }
  auto& t = trials_[static_cast<size_t>(trial_id)];
  insert_or_assign_node(t.params, std::move(param));
  insert_or_assign_node(t.distributions, std::move(dist));
}

void ReplayState::set_trial_state_values(int64_t trial_id, TrialState state,
                                         std::optional<std::vector<double>> values,
                                         const std::string& datetime, const std::string& worker,
                                         bool own) {
  if (!trial_updatable(trial_id, own)) return;
  auto& t = trials_[static_cast<size_t>(trial_id)];
  if (state == TrialState::kRunning && t.state == TrialState::kRunning) return;
  if (state == TrialState::kRunning) {
    t.datetime_start = datetime;
    if (own) owned_[worker] = trial_id;
  }
  if (is_finished(state)) t.datetime_complete = datetime;
  t.state = state;
  if (values) t.values = std::move(*values);
}

void ReplayState::set_trial_intermediate_value(int64_t trial_id, int64_t step, double value,
                                               bool own) {
  if (!trial_updatable(trial_id, own)) return;
  trials_[static_cast<size_t>(trial_id)].intermediate_values[step] = value;
}

void ReplayState::set_trial_attr(int64_t trial_id, bool user, const std::string& key,
                                 nlohmann::json value, bool own) {
  set_trial_attr(trial_id, user,
                 make_node<decltype(FrozenTrial::user_attrs)>(key, std::move(value)), own);
}

void ReplayState::set_trial_attr(int64_t trial_id, bool user, AttrNode attr, bool own) {
  if (!trial_updatable(trial_id, own)) return;
  auto& t = trials_[static_cast<size_t>(trial_id)];
  insert_or_assign_node(user ? t.user_attrs : t.system_attrs, std::move(attr));
}

void ReplayState::apply(const nlohmann::json& log, const std::string& current_worker) {
  if (!log.is_object())
    throw std::invalid_argument("journal record is not a JSON object: " + log.dump());
  const auto op = static_cast<Op>(int_field(log, "op_code"));
  const auto& worker_json = field(log, "worker_id");
  const std::string worker =
      worker_json.is_string() ? worker_json.get<std::string>() : worker_json.dump();
  const bool own = worker == current_worker;
  switch (op) {
    case Op::kCreateStudy: {
      const auto& name = field(log, "study_name");
      if (!name.is_string())
        throw std::invalid_argument("journal record: study_name must be a string: " + log.dump());
      std::vector<StudyDirection> dirs;
      for (const auto& d : field(log, "directions")) {
        int v = d.is_number_integer() ? d.get<int>() : -1;
        if (v < 0 || v > 2)
          throw std::invalid_argument("journal record: bad study direction " + d.dump());
        dirs.push_back(static_cast<StudyDirection>(v));
      }
      create_study(name.get<std::string>(), std::move(dirs), own);
      break;
    }
    case Op::kDeleteStudy:
      delete_study(int_field(log, "study_id"), own);
      break;
    case Op::kSetStudyUserAttr:
    case Op::kSetStudySystemAttr: {
      const bool user = op == Op::kSetStudyUserAttr;
      const auto& a = single_attr(log, user ? "user_attr" : "system_attr");
      set_study_attr(int_field(log, "study_id"), user, a.begin().key(), a.begin().value(), own);
      break;
    }
    case Op::kCreateTrial: {
      const int64_t study_id = int_field(log, "study_id");
      FrozenTrial t;
      if (auto it = log.find("distributions"); it != log.end() && it->is_object()) {
        for (auto d = it->begin(); d != it->end(); ++d)
          t.distributions[d.key()] = distribution_from_json(d.value());
      }
      if (auto it = log.find("params"); it != log.end() && it->is_object()) {
        for (auto p = it->begin(); p != it->end(); ++p) {
          if (!t.distributions.count(p.key())) {
            throw std::invalid_argument("journal record: param \"" + p.key() +
                                        "\" has no distribution: " + log.dump());
          }
          t.params[p.key()] = number(p.value(), "a param value");
        }
      }
      const auto& ds = field(log, "datetime_start");
      if (!ds.is_null()) t.datetime_start = datetime_from_journal(ds.get<std::string>());
      if (auto it = log.find("datetime_complete"); it != log.end() && !it->is_null()) {
        t.datetime_complete = datetime_from_journal(it->get<std::string>());
      }
      t.state = log.contains("state") ? state_of(log["state"]) : TrialState::kRunning;
      if (auto it = log.find("user_attrs"); it != log.end() && it->is_object()) {
        for (auto a = it->begin(); a != it->end(); ++a) t.user_attrs[a.key()] = a.value();
      }
      if (auto it = log.find("system_attrs"); it != log.end() && it->is_object()) {
        for (auto a = it->begin(); a != it->end(); ++a) t.system_attrs[a.key()] = a.value();
      }
      if (auto it = log.find("values"); it != log.end() && !it->is_null()) {
        t.values = values_of(*it);
      } else if (auto v = log.find("value"); v != log.end() && !v->is_null()) {
        t.values = {number(*v, "value")};
      }
      if (auto it = log.find("intermediate_values"); it != log.end() && it->is_object()) {
        for (auto a = it->begin(); a != it->end(); ++a) {
          t.intermediate_values[std::stoll(a.key())] = number(a.value(), "an intermediate value");
        }
      }
      create_trial(study_id, std::move(t), worker, own);
      break;
    }
    case Op::kSetTrialParam: {
      const int64_t trial_id = int_field(log, "trial_id");
      const auto& name = field(log, "param_name");
      if (!name.is_string())
        throw std::invalid_argument("journal record: param_name must be a string: " + log.dump());
      const double value = number(field(log, "param_value_internal"), "param_value_internal");
      set_trial_param(trial_id, name.get<std::string>(), value,
                      distribution_from_json(field(log, "distribution")), own);
      break;
    }
    case Op::kSetTrialStateValues: {
      const int64_t trial_id = int_field(log, "trial_id");
      const TrialState state = state_of(field(log, "state"));
      std::optional<std::vector<double>> values;
      if (auto it = log.find("values"); it != log.end() && !it->is_null()) values = values_of(*it);
      std::string datetime;
      if (state == TrialState::kRunning)
        datetime = datetime_from_journal(field(log, "datetime_start").get<std::string>());
      else if (is_finished(state))
        datetime = datetime_from_journal(field(log, "datetime_complete").get<std::string>());
      set_trial_state_values(trial_id, state, std::move(values), datetime, worker, own);
      break;
    }
    case Op::kSetTrialIntermediateValue:
      set_trial_intermediate_value(int_field(log, "trial_id"), int_field(log, "step"),
                                   number(field(log, "intermediate_value"), "intermediate_value"),
                                   own);
      break;
    case Op::kSetTrialUserAttr:
    case Op::kSetTrialSystemAttr: {
      const bool user = op == Op::kSetTrialUserAttr;
      const auto& a = single_attr(log, user ? "user_attr" : "system_attr");
      set_trial_attr(int_field(log, "trial_id"), user, a.begin().key(), a.begin().value(), own);
      break;
    }
    default:
      throw std::invalid_argument("journal record: unknown op_code " +
                                  field(log, "op_code").dump());
  }
  ++logs_applied_;
}

const FrozenStudy& ReplayState::study(int64_t study_id) const {
  auto it = studies_.find(study_id);
  if (it == studies_.end())
    throw StorageKeyError(std::string(kNotFound) + " (study id " + std::to_string(study_id) + ")");
  return it->second;
}

const FrozenTrial& ReplayState::trial(int64_t trial_id) const {
  if (trial_id < 0 || trial_id >= static_cast<int64_t>(trials_.size())) {
    throw StorageKeyError(std::string(kNotFound) + " (trial id " + std::to_string(trial_id) + ")");
  }
  return trials_[static_cast<size_t>(trial_id)];
}

std::vector<FrozenStudy> ReplayState::all_studies() const {
  std::vector<FrozenStudy> out;
  for (const auto& [id, s] : studies_) out.push_back(s);
  return out;
}

std::vector<const FrozenTrial*> ReplayState::trial_refs(
    int64_t study_id, const std::vector<TrialState>& states) const {
  study(study_id);
  const auto& ids = study_trials_.at(study_id);
  std::vector<const FrozenTrial*> out;
  out.reserve(ids.size());
  for (int64_t id : ids) {
    const auto& t = trials_[static_cast<size_t>(id)];
    if (states.empty() || std::find(states.begin(), states.end(), t.state) != states.end())
      out.push_back(&t);
  }
  return out;
}

std::vector<FrozenTrial> ReplayState::all_trials(int64_t study_id,
                                                 const std::vector<TrialState>& states) const {
  const auto refs = trial_refs(study_id, states);
  std::vector<FrozenTrial> out;
  out.reserve(refs.size());
  for (const FrozenTrial* t : refs) out.push_back(*t);
  return out;
}

std::vector<FrozenTrial> ReplayState::trials_from(int64_t study_id, int64_t first_number) const {
  study(study_id);
  const auto& ids = study_trials_.at(study_id);
  std::vector<FrozenTrial> out;
  for (size_t n = static_cast<size_t>(std::max<int64_t>(0, first_number)); n < ids.size(); ++n) {
    out.push_back(trials_[static_cast<size_t>(ids[n])]);
  }
  return out;
}

int64_t ReplayState::trial_id_from_number(int64_t study_id, int64_t number) const {
  auto it = study_trials_.find(study_id);
  if (it == study_trials_.end() || number < 0 ||
      number >= static_cast<int64_t>(it->second.size())) {
    throw StorageKeyError("No trial with trial number " + std::to_string(number) +
                          " exists in study with study_id " + std::to_string(study_id) + ".");
  }
  return it->second[static_cast<size_t>(number)];
}

int64_t ReplayState::study_id_from_name(const std::string& name) const {
  auto it = study_by_name_.find(name);
  if (it == study_by_name_.end()) throw StorageKeyError("no study named \"" + name + "\"");
  return it->second;
}

std::optional<int64_t> ReplayState::owned_trial(const std::string& worker) const {
  auto it = owned_.find(worker);
  if (it == owned_.end()) return std::nullopt;
  return it->second;
}

std::optional<int64_t> ReplayState::last_created_trial(const std::string& worker) const {
  auto it = last_created_.find(worker);
  if (it == last_created_.end()) return std::nullopt;
  return it->second;
}

// apply_text: simdjson's on-demand parser reads the records the search writes by the hundred
// thousand (trials, params, values, attributes); anything unusual in a record (other op codes,
// unknown or repeated keys, -0, integers past 64 bits, nesting, trailing text, malformed JSON,
// NaN tokens, which simdjson rejects) goes to the slow path, nlohmann through
// parse_python_json and apply(), which decides and words the error. The fast path changes
// nothing before it has read the whole record, so falling back never applies a record twice.
namespace {

namespace od = simdjson::ondemand;

struct Fallback {};  // the fast path leaves this record to the slow one

// Deeper attribute values go to the slow path, which enforces kMaxJsonNesting.
constexpr size_t kFastNesting = 64;

template <class T, class Result>
T take(Result&& r) {
  T out;
  if (std::forward<Result>(r).get(out) != simdjson::SUCCESS) throw Fallback{};
  return out;
}

// A number as nlohmann reads it, or Fallback. simdjson reads "-0" as the double -0.0 where
// nlohmann reads the integer 0: every negative zero falls back. simdjson 3.0.1 misreads some
// floats of more than 19 significant digits (found by fuzz/fuzz_journal_line.cpp: get_number()
// gives 0 for 5.00011861732452867461, get_double() 0.0390... for 0.96134199547895267462); Python
// writes at most 17, so such a float falls back too.
// Digits of a number's mantissa from its first nonzero digit on.
size_t significant_digits(std::string_view number) {
  size_t n = 0;
  for (char c : number) {
    if (c == 'e' || c == 'E') break;
    if (c >= '1' && c <= '9') ++n;
    if (c == '0' && n > 0) ++n;
  }
  return n;
}

nlohmann::json number_json(od::value v) {
  switch (take<od::number_type>(v.get_number_type())) {
    case od::number_type::signed_integer:
      return take<int64_t>(v.get_int64());
    case od::number_type::unsigned_integer:
      return take<uint64_t>(v.get_uint64());
    case od::number_type::floating_point_number: {
      if (significant_digits(v.raw_json_token()) > 19) throw Fallback{};
      const double d = take<double>(v.get_double());
      if (d == 0 && std::signbit(d)) throw Fallback{};
      return d;
    }
    default:  // integers past 64 bits: nlohmann's double, from the slow path
      throw Fallback{};
  }
}

nlohmann::json json_of(od::value v, size_t depth) {
  if (depth > kFastNesting) throw Fallback{};
  switch (take<od::json_type>(v.type())) {
    case od::json_type::object: {
      nlohmann::json out = nlohmann::json::object();
      for (auto f : take<od::object>(v.get_object())) {
        od::field field = take<od::field>(std::move(f));
        // nlohmann keeps a repeated key's last value, as this assignment does.
        out[std::string(take<std::string_view>(field.unescaped_key()))] =
            json_of(field.value(), depth + 1);
      }
      return out;
    }
    case od::json_type::array: {
      nlohmann::json out = nlohmann::json::array();
      for (auto x : take<od::array>(v.get_array()))
        out.push_back(json_of(take<od::value>(std::move(x)), depth + 1));
      return out;
    }
    case od::json_type::number:
      return number_json(v);
    case od::json_type::string:
      return std::string(take<std::string_view>(v.get_string()));
    case od::json_type::boolean:
      return take<bool>(v.get_bool());
    case od::json_type::null:
      if (!take<bool>(v.is_null())) throw Fallback{};
      return nullptr;
  }
  throw Fallback{};
}

// number() of the slow path: a number or a bool.
double double_of(od::value v) {
  if (take<od::json_type>(v.type()) == od::json_type::boolean)
    return take<bool>(v.get_bool()) ? 1.0 : 0.0;
  return number_json(v).get<double>();
}

int64_t int_of(od::value v) {
  const nlohmann::json n = number_json(v);
  if (!n.is_number_integer() || n.is_number_unsigned()) throw Fallback{};
  return n.get<int64_t>();
}

bool is_null(od::value v) {
  return take<od::json_type>(v.type()) == od::json_type::null && take<bool>(v.is_null());
}

std::optional<std::string> datetime_or_null(od::value v) {
  if (is_null(v)) return std::nullopt;
  try {
    return datetime_from_journal(std::string(take<std::string_view>(v.get_string())));
  } catch (const std::invalid_argument&) {
    throw Fallback{};
  }
}

std::vector<double> doubles_of(od::value v) {
  std::vector<double> out;
  for (auto x : take<od::array>(v.get_array())) out.push_back(double_of(take<od::value>(x)));
  return out;
}

// An object that holds exactly one key (the attribute ops' "user_attr" / "system_attr").
std::pair<std::string, nlohmann::json> single_attr_of(od::value v) {
  std::optional<std::pair<std::string, nlohmann::json>> out;
  for (auto f : take<od::object>(v.get_object())) {
    if (out) throw Fallback{};
    od::field field = take<od::field>(std::move(f));
    out.emplace(std::string(take<std::string_view>(field.unescaped_key())),
                json_of(field.value(), 2));
  }
  if (!out) throw Fallback{};
  return std::move(*out);
}

// std::stoll of an intermediate value's key, for keys std::to_string writes only.
int64_t step_of_key(std::string_view key) {
  int64_t step = 0;
  auto [end, ec] = std::from_chars(key.data(), key.data() + key.size(), step);
  if (ec != std::errc() || end != key.data() + key.size() || key.empty() || key[0] == '+')
    throw Fallback{};
  return step;
}

// The record keys the fast path knows; any other key, or one seen twice, falls back.
enum Key : unsigned {
  kOpCode,
  kWorkerId,
  kStudyId,
  kTrialId,
  kDatetimeStart,
  kDatetimeComplete,
  kState,
  kValue,
  kValues,
  kDistributions,
  kParams,
  kUserAttrs,
  kSystemAttrs,
  kIntermediateValues,
  kParamName,
  kParamValueInternal,
  kDistribution,
  kStep,
  kIntermediateValue,
  kUserAttr,
  kSystemAttr,
  kKeyCount
};

constexpr std::pair<std::string_view, Key> kKeys[] = {
    {"op_code", kOpCode},
    {"worker_id", kWorkerId},
    {"study_id", kStudyId},
    {"trial_id", kTrialId},
    {"datetime_start", kDatetimeStart},
    {"datetime_complete", kDatetimeComplete},
    {"state", kState},
    {"value", kValue},
    {"values", kValues},
    {"distributions", kDistributions},
    {"params", kParams},
    {"user_attrs", kUserAttrs},
    {"system_attrs", kSystemAttrs},
    {"intermediate_values", kIntermediateValues},
    {"param_name", kParamName},
    {"param_value_internal", kParamValueInternal},
    {"distribution", kDistribution},
    {"step", kStep},
    {"intermediate_value", kIntermediateValue},
    {"user_attr", kUserAttr},
    {"system_attr", kSystemAttr},
};

Key key_of(std::string_view name) {
  for (const auto& [text, key] : kKeys) {
    if (text == name) return key;
  }
  throw Fallback{};
}

}  // namespace

struct RecordParser::Impl {
  od::parser parser;
  std::string buffer;  // the record followed by simdjson's padding
  // Every trial's set_trial_param names its distribution as one of a few texts.
  struct TextHash {
    using is_transparent = void;
    size_t operator()(std::string_view text) const { return std::hash<std::string_view>{}(text); }
  };
  std::unordered_map<std::string, Distribution, TextHash, std::equal_to<>> distributions;

  // distribution_from_json of a distribution's JSON text, parsed once per distinct text.
  const Distribution& distribution_of_text(std::string_view text) {
    auto it = distributions.find(text);
    if (it != distributions.end()) return it->second;
    Distribution d;
    try {
      d = distribution_from_json(nlohmann::json(std::string(text)));
    } catch (const std::exception&) {
      throw Fallback{};
    }
    return distributions.emplace(std::string(text), std::move(d)).first->second;
  }
};

RecordParser::RecordParser() : impl_(std::make_unique<Impl>()) {}
RecordParser::RecordParser(const RecordParser&) : impl_(std::make_unique<Impl>()) {}
RecordParser& RecordParser::operator=(const RecordParser&) { return *this; }
RecordParser::RecordParser(RecordParser&&) noexcept = default;
RecordParser& RecordParser::operator=(RecordParser&&) noexcept = default;
RecordParser::~RecordParser() = default;

bool RecordParser::parse(std::string_view text, const std::string& current_worker,
                         ParsedRecord& out) {
  Impl& p = *impl_;
  if (p.buffer.size() < text.size() + simdjson::SIMDJSON_PADDING)
    p.buffer.resize(2 * (text.size() + simdjson::SIMDJSON_PADDING));
  std::memcpy(p.buffer.data(), text.data(), text.size());
  // Everything a record holds, read before anything applies.
  bool seen[kKeyCount] = {};
  int64_t op = -1, study_id = -1, trial_id = -1, step = 0, state = -1;
  std::string_view worker, param_name;
  std::optional<std::string> datetime_start, datetime_complete;
  std::optional<std::vector<double>> values;
  std::optional<double> value;
  double param_value = 0, intermediate_value = 0;
  const Distribution* distribution = nullptr;
  std::unique_ptr<FrozenTrial> created;  // built only for a create-trial record
  auto trial = [&]() -> FrozenTrial& {
    if (!created) created = std::make_unique<FrozenTrial>();
    return *created;
  };
  std::optional<std::pair<std::string, nlohmann::json>> user_attr, system_attr;
  try {
    od::document doc =
        take<od::document>(p.parser.iterate(p.buffer.data(), text.size(), p.buffer.size()));
    for (auto f : take<od::object>(doc.get_object())) {
      od::field field = take<od::field>(std::move(f));
      const Key key = key_of(take<std::string_view>(field.unescaped_key()));
      if (seen[key]) throw Fallback{};
      seen[key] = true;
      od::value v = field.value();
      switch (key) {
        case kOpCode:
          op = int_of(v);
          break;
        case kWorkerId:
          worker = take<std::string_view>(v.get_string());
          break;
        case kStudyId:
          study_id = int_of(v);
          break;
        case kTrialId:
          trial_id = int_of(v);
          break;
        case kDatetimeStart:
          datetime_start = datetime_or_null(v);
          break;
        case kDatetimeComplete:
          datetime_complete = datetime_or_null(v);
          break;
        case kState:
          state = int_of(v);
          break;
        case kValue:
          if (!is_null(v)) value = double_of(v);
          break;
        case kValues:
          if (!is_null(v)) values = doubles_of(v);
          break;
        case kDistributions:
          for (auto d : take<od::object>(v.get_object())) {
            od::field df = take<od::field>(std::move(d));
            std::string name(take<std::string_view>(df.unescaped_key()));
            trial().distributions[std::move(name)] =
                p.distribution_of_text(take<std::string_view>(df.value().get_string()));
          }
          break;
        case kParams:
          for (auto x : take<od::object>(v.get_object())) {
            od::field pf = take<od::field>(std::move(x));
            trial().params[std::string(take<std::string_view>(pf.unescaped_key()))] =
                double_of(pf.value());
          }
          break;
        case kUserAttrs:
        case kSystemAttrs: {
          auto& attrs = key == kUserAttrs ? trial().user_attrs : trial().system_attrs;
          for (auto x : take<od::object>(v.get_object())) {
            od::field af = take<od::field>(std::move(x));
            attrs[std::string(take<std::string_view>(af.unescaped_key()))] = json_of(af.value(), 2);
          }
          break;
        }
        case kIntermediateValues:
          for (auto x : take<od::object>(v.get_object())) {
            od::field sf = take<od::field>(std::move(x));
            trial().intermediate_values[step_of_key(take<std::string_view>(sf.unescaped_key()))] =
                double_of(sf.value());
          }
          break;
        case kParamName:
          param_name = take<std::string_view>(v.get_string());
          break;
        case kParamValueInternal:
          param_value = double_of(v);
          break;
        case kIntermediateValue:
          intermediate_value = double_of(v);
          break;
        case kDistribution:
          distribution = &p.distribution_of_text(take<std::string_view>(v.get_string()));
          break;
        case kStep:
          step = int_of(v);
          break;
        case kUserAttr:
          user_attr = single_attr_of(v);
          break;
        case kSystemAttr:
          system_attr = single_attr_of(v);
          break;
        case kKeyCount:
          throw Fallback{};
      }
    }
    // Text after the object (another value, garbage) is not one JSON document.
    const char* rest = nullptr;
    if (doc.current_location().get(rest) != simdjson::OUT_OF_BOUNDS) throw Fallback{};
  } catch (const Fallback&) {
    return false;
  } catch (const simdjson::simdjson_error&) {
    return false;
  }
  if (!seen[kOpCode] || !seen[kWorkerId]) return false;
  auto need = [&](std::initializer_list<Key> keys) {
    for (Key k : keys) {
      if (!seen[k]) return false;
    }
    return true;
  };
  // The op's own fields must be there (the slow path words the error). Fields of other ops were
  // read without error, and are ignored, as the slow path ignores them.
  out.op = static_cast<Op>(op);
  out.own = worker == current_worker;
  out.study_id = study_id;
  out.trial_id = trial_id;
  switch (out.op) {
    case Op::kCreateTrial: {
      if (!need({kStudyId, kDatetimeStart})) return false;
      FrozenTrial& t = trial();
      for (const auto& [name, v] : t.params) {
        if (!t.distributions.count(name)) return false;
      }
      if (seen[kState] && (state < 0 || state > 4)) return false;
      t.state = seen[kState] ? static_cast<TrialState>(state) : TrialState::kRunning;
      t.datetime_start = std::move(datetime_start);
      t.datetime_complete = std::move(datetime_complete);
      if (values) {
        t.values = std::move(*values);
      } else if (value) {
        t.values = {*value};
      }
      out.created = std::move(created);
      return true;
    }
    case Op::kSetTrialParam: {
      if (!need({kTrialId, kParamName, kParamValueInternal, kDistribution})) return false;
      const std::string name(param_name);
      out.param = make_node<decltype(FrozenTrial::params)>(name, param_value);
      out.distribution = make_node<decltype(FrozenTrial::distributions)>(name, *distribution);
      return true;
    }
    case Op::kSetTrialStateValues: {
      if (!need({kTrialId, kState}) || state < 0 || state > 4) return false;
      out.state = static_cast<TrialState>(state);
      out.datetime.clear();
      if (out.state == TrialState::kRunning) {
        if (!datetime_start) return false;
        out.datetime = std::move(*datetime_start);
      } else if (is_finished(out.state)) {
        if (!datetime_complete) return false;
        out.datetime = std::move(*datetime_complete);
      }
      out.values = std::move(values);
      return true;
    }
    case Op::kSetTrialIntermediateValue:
      if (!need({kTrialId, kStep, kIntermediateValue})) return false;
      out.step = step;
      out.number = intermediate_value;
      return true;
    case Op::kSetTrialUserAttr:
    case Op::kSetTrialSystemAttr: {
      auto& attr = out.op == Op::kSetTrialUserAttr ? user_attr : system_attr;
      if (!seen[kTrialId] || !attr) return false;
      out.attr = make_node<decltype(FrozenTrial::user_attrs)>(attr->first, std::move(attr->second));
      return true;
    }
    default:  // studies' ops are rare: the slow path
      return false;
  }
}

void ReplayState::apply(ParsedRecord&& r, const std::string& current_worker) {
  static const std::string kNoWorker;
  const std::string& as_worker = r.own ? current_worker : kNoWorker;
  switch (r.op) {
    case Op::kCreateTrial:
      create_trial(r.study_id, std::move(*r.created), as_worker, r.own);
      break;
    case Op::kSetTrialParam:
      set_trial_param(r.trial_id, std::move(r.param), std::move(r.distribution), r.own);
      break;
    case Op::kSetTrialStateValues:
      set_trial_state_values(r.trial_id, r.state, std::move(r.values), r.datetime, as_worker,
                             r.own);
      break;
    case Op::kSetTrialIntermediateValue:
      set_trial_intermediate_value(r.trial_id, r.step, r.number, r.own);
      break;
    case Op::kSetTrialUserAttr:
    case Op::kSetTrialSystemAttr:
      set_trial_attr(r.trial_id, r.op == Op::kSetTrialUserAttr, std::move(r.attr), r.own);
      break;
    default:
      throw std::logic_error("ReplayState::apply: op " + std::to_string(static_cast<int>(r.op)) +
                             " is not parsed by RecordParser");
  }
  ++logs_applied_;
}

void ReplayState::apply_text(std::string_view text, const std::string& current_worker, bool* own) {
  ParsedRecord r;
  if (!parser_.parse(text, current_worker, r)) {
    apply_text_slow(text, current_worker, own);
    return;
  }
  if (own) *own = r.own;  // before applying: the caller tells its own failures from others'
  apply(std::move(r), current_worker);
}

void ReplayState::apply_text_slow(std::string_view text, const std::string& current_worker,
                                  bool* own) {
  if (own) *own = false;
  nlohmann::json log;
  try {
    log = parse_python_json(text);
  } catch (const std::exception& e) {  // nlohmann's parse errors, and JSON nested too deep
    throw JournalTextError(e.what());
  }
  if (own) {
    *own = log.is_object() && log.contains("worker_id") && log["worker_id"] == current_worker;
  }
  apply(log, current_worker);
}

}  // namespace compsearch::search::journal
