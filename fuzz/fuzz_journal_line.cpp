// libFuzzer: one journal record's text through ReplayState::apply_text (simdjson's fast path and
// its nlohmann fallback), checked against the reference reader, apply(parse_python_json(text)):
// the two must agree on the outcome and on the state (a difference aborts, a finding).
#include <cstdlib>
#include <iostream>

#include "fuzz/fuzz_util.h"
#include "search/journal_replay.h"
#include "search/python_json.h"
#include "tests/search/replay_compare.h"

using namespace compsearch::search;
using compsearch::search::testing::describe;
using compsearch::search::testing::outcome;

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

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const journal::ReplayState base = seeded();
  const auto text = compsearch::fuzz::text_of(data, size);
  journal::ReplayState fast = base, slow = base;
  const std::string a = outcome([&] { fast.apply_text(text, "w"); });
  const std::string b =
      outcome([&] { compsearch::search::testing::apply_with_nlohmann(slow, text, "w"); });
  if (a != b || describe(fast, "w") != describe(slow, "w")) {
    std::cerr << "apply_text and the nlohmann reader disagree\n  fast: " << a << "\n  slow: " << b
              << "\n  " << describe(fast, "w") << "\n  " << describe(slow, "w") << "\n";
    std::abort();
  }
  return 0;
}
