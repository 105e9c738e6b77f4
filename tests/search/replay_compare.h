// Comparing ReplayState::apply_text with its reference, the nlohmann reader
// (apply(parse_python_json(text))): the state as text and the outcome of applying a record.
// Shared by tests/search/journal_replay_test.cpp and fuzz/fuzz_journal_line.cpp.
#pragma once

#include <string>
#include <string_view>

#include "search/journal_replay.h"
#include "search/python_json.h"

namespace compsearch::search::testing {

// Everything a trial holds, as text (floats in Python's repr, so NaN and -0.0 compare too).
inline std::string describe(const FrozenTrial& t) {
  nlohmann::ordered_json j;
  j["number"] = t.number;
  j["id"] = t.trial_id;
  j["state"] = static_cast<int>(t.state);
  j["values"] = t.values;
  j["start"] = t.datetime_start ? nlohmann::ordered_json(*t.datetime_start) : nullptr;
  j["complete"] = t.datetime_complete ? nlohmann::ordered_json(*t.datetime_complete) : nullptr;
  for (const auto& [k, v] : t.params) j["params"][k] = v;
  for (const auto& [k, d] : t.distributions) j["dists"][k] = distribution_to_json_string(d);
  for (const auto& [k, v] : t.user_attrs) j["user"][k] = nlohmann::ordered_json::parse(v.dump());
  for (const auto& [k, v] : t.system_attrs) j["sys"][k] = nlohmann::ordered_json::parse(v.dump());
  for (const auto& [k, v] : t.intermediate_values) j["iv"][std::to_string(k)] = v;
  // nlohmann::json::dump writes NaN as null; dump_python_json keeps it and the float spelling.
  return dump_python_json(j);
}

// Every study and trial, and what `worker` owns and last created.
inline std::string describe(const journal::ReplayState& s, const std::string& worker) {
  std::string out = "logs " + std::to_string(s.logs_applied()) + "\n";
  for (const auto& study : s.all_studies()) {
    out += study.study_name + "\n";
    for (const FrozenTrial* t : s.trial_refs(study.study_id, {})) out += describe(*t) + "\n";
  }
  if (auto t = s.owned_trial(worker)) out += "owned " + std::to_string(*t) + "\n";
  if (auto t = s.last_created_trial(worker)) out += "last " + std::to_string(*t) + "\n";
  return out;
}

// The reference reader: parse_python_json (its errors as JournalTextError), then apply.
inline void apply_with_nlohmann(journal::ReplayState& s, std::string_view text,
                                const std::string& worker) {
  nlohmann::json log;
  try {
    log = parse_python_json(text);
  } catch (const std::exception& e) {
    throw journal::JournalTextError(e.what());
  }
  s.apply(log, worker);
}

// What running `f` did: "ok", or the exception's kind and message.
template <class F>
std::string outcome(F&& f) {
  try {
    f();
    return "ok";
  } catch (const journal::JournalTextError& e) {
    return std::string("not JSON: ") + e.what();
  } catch (const StorageKeyError& e) {
    return std::string("key: ") + e.what();
  } catch (const TrialFinishedError& e) {
    return std::string("finished: ") + e.what();
  } catch (const std::invalid_argument& e) {
    return std::string("invalid: ") + e.what();
  } catch (const std::exception& e) {
    return std::string("other: ") + e.what();
  }
}

}  // namespace compsearch::search::testing
