// libFuzzer: one journal record's text through ReplayState::apply_text (simdjson's fast path and
// its nlohmann fallback), checked against the reference reader, apply(parse_python_json(text)):
// the two must agree on the outcome and on the state (a difference aborts, a finding).
#include <cstdlib>
#include <iostream>

#include "fuzz/fuzz_util.h"
#include "search/journal_replay.h"
#include "search/python_json.h"

using namespace compsearch::search;

namespace {

// A study with a running trial owned by "w" and a finished one, for records to apply to.
journal::ReplayState seeded() {
  journal::ReplayState s;
  for (
      const char* r : {
          R"({"op_code":0,"worker_id":"w","study_name":"s","directions":[1,2]})",
          R"({"op_code":4,"worker_id":"w","study_id":0,"datetime_start":"2026-01-01T00:00:00.000000"})",
          R"({"op_code":4,"worker_id":"x","study_id":0,"datetime_start":null,"state":1,"values":[1,2]})",
      })
    s.apply_text(r, "w");
  return s;
}

std::string describe(const journal::ReplayState& s) {
  std::string out = std::to_string(s.logs_applied());
  for (const auto& study : s.all_studies()) {
    out += "|" + study.study_name;
    for (const FrozenTrial* t : s.trial_refs(study.study_id, {})) {
      nlohmann::ordered_json j;
      j["state"] = static_cast<int>(t->state);
      j["values"] = t->values;
      j["start"] = t->datetime_start.value_or("-");
      j["complete"] = t->datetime_complete.value_or("-");
      for (const auto& [k, v] : t->params) j["p"][k] = v;
      for (const auto& [k, d] : t->distributions) j["d"][k] = distribution_to_json_string(d);
      for (const auto& [k, v] : t->user_attrs) j["u"][k] = nlohmann::ordered_json::parse(v.dump());
      for (const auto& [k, v] : t->system_attrs)
        j["s"][k] = nlohmann::ordered_json::parse(v.dump());
      for (const auto& [k, v] : t->intermediate_values) j["i"][std::to_string(k)] = v;
      out += "|" + dump_python_json(j);
    }
  }
  if (auto t = s.owned_trial("w")) out += "|owned " + std::to_string(*t);
  return out;
}

template <class F>
std::string outcome(F&& f) {
  try {
    f();
    return "ok";
  } catch (const journal::JournalTextError&) {
    return "not JSON";
  } catch (const std::exception& e) {
    return e.what();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const journal::ReplayState base = seeded();
  const auto text = compsearch::fuzz::text_of(data, size);
  journal::ReplayState fast = base, slow = base;
  const std::string a = outcome([&] { fast.apply_text(text, "w"); });
  const std::string b = outcome([&] {
    nlohmann::json log;
    try {
      log = parse_python_json(text);
    } catch (const std::exception&) {
      throw journal::JournalTextError("");
    }
    slow.apply(log, "w");
  });
  if (a != b || describe(fast) != describe(slow)) {
    std::cerr << "apply_text and the nlohmann reader disagree\n  fast: " << a << "\n  slow: " << b
              << "\n  " << describe(fast) << "\n  " << describe(slow) << "\n";
    std::abort();
  }
  return 0;
}
