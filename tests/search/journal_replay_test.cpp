// ReplayState::apply_text (simdjson's on-demand parse of a journal record) against the reference
// it must equal: apply(parse_python_json(text)), nlohmann's parse of the same record, record by
// record (state, trials, exceptions), on records of every op code, odd spellings and bad text.
#include "search/journal_replay.h"

#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "replay_compare.h"
#include "search/journal_storage.h"
#include "search/python_json.h"
#include "search_test_util.h"

using namespace compsearch::search;
using compsearch::search::journal::JournalTextError;
using compsearch::search::journal::ReplayState;
using compsearch::search::testing::apply_with_nlohmann;
using compsearch::search::testing::describe;
using compsearch::search::testing::outcome;

namespace {

const std::string kMe = "me-1";

// Applies every record to two states, one through apply_text and one through the reference, and
// checks they agree after each record. Returns the apply_text state.
ReplayState replay_both(const std::vector<std::string>& records) {
  ReplayState fast, slow;
  for (const auto& text : records) {
    CAPTURE(text);
    bool own = false;
    const std::string a = outcome([&] { fast.apply_text(text, kMe, &own); });
    const std::string b = outcome([&] { apply_with_nlohmann(slow, text, kMe); });
    CHECK(a == b);
    CHECK(own == (text.find("\"me-1\"") != std::string::npos));
    REQUIRE(describe(fast, kMe) == describe(slow, kMe));
  }
  return fast;
}

const char* kCat =
    R"("{\"name\": \"CategoricalDistribution\", \"attributes\": {\"choices\": [1, 2, 4, 8]}}")";
const char* kFloat =
    R"("{\"name\": \"FloatDistribution\", \"attributes\": {\"log\": false, \"step\": 0.05, \"low\": 0.0, \"high\": 0.75}}")";
const char* kLog =
    R"("{\"name\": \"FloatDistribution\", \"attributes\": {\"log\": true, \"step\": null, \"low\": 1e-05, \"high\": 0.01}}")";
const char* kInt =
    R"("{\"name\": \"IntDistribution\", \"attributes\": {\"log\": false, \"step\": 1, \"low\": 0, \"high\": 3}}")";

std::vector<std::string> typical_records() {
  const std::string w = R"("worker_id":"other-7")";
  return {
      R"({"op_code":0,"worker_id":"other-7","study_name":"s","directions":[2,1]})",
      R"({"op_code":2,"worker_id":"other-7","study_id":0,"user_attr":{"k":[1,2.5]}})",
      R"({"op_code":4,)" + w + R"(,"study_id":0,"datetime_start":"2026-11-20T00:00:01.123456"})",
      R"({"op_code":5,)" + w +
          R"(,"trial_id":0,"param_name":"c.w_bits","param_value_internal":2,"distribution":)" +
          kCat + "}",
      R"({"op_code":5,)" + w +
          R"(,"trial_id":0,"param_name":"c.prune_ratio","param_value_internal":0.35000000000000003,"distribution":)" +
          kFloat + "}",
      R"({"op_code":5,)" + w +
          R"(,"trial_id":0,"param_name":"kd.lr","param_value_internal":1.2345678901234567e-05,"distribution":)" +
          kLog + "}",
      R"({"op_code":5,)" + w +
          R"(,"trial_id":0,"param_name":"kd.epochs","param_value_internal":3,"distribution":)" +
          kInt + "}",
      R"({"op_code":7,)" + w + R"(,"trial_id":0,"step":0,"intermediate_value":0.8125})",
      R"({"op_code":7,)" + w + R"(,"trial_id":0,"step":1,"intermediate_value":1e+16})",
      R"({"op_code":8,)" + w +
          R"(,"trial_id":0,"user_attr":{"recipe":{"format":"compsearch.recipe/1","layers":{"c":{"w_bits":4,"x":null,"ok":true,"s":"\u00e9\ud83d\ude00\n"}}}}})",
      R"({"op_code":8,)" + w +
          R"(,"trial_id":0,"user_attr":{"latency_ms@mcu:stm32f746":14.508362573099415}})",
      R"({"op_code":8,)" + w + R"(,"trial_id":0,"user_attr":{"big":18446744073709551615}})",
      R"({"op_code":8,)" + w + R"(,"trial_id":0,"user_attr":{"neg":-9223372036854775808}})",
      R"({"op_code":9,)" + w + R"(,"trial_id":0,"system_attr":{"constraints":[-12.5,0]}})",
      R"({"op_code":6,)" + w +
          R"(,"trial_id":0,"state":1,"values":[0.9,2.5e-07],"datetime_complete":"2026-11-20T00:00:02.5"})",
      // A template trial (enqueue_trial / add_trial), Python's separators.
      R"({"op_code": 4, "worker_id": "other-7", "study_id": 0, "datetime_start": null, "state": 4, "value": null, "values": null, "distributions": {"c.w_bits": )" +
          std::string(kCat) +
          R"(}, "params": {"c.w_bits": 3}, "user_attrs": {"a": {"b": [1, {"c": 2}]}}, "system_attrs": {"fixed_params": {"c.w_bits": 8}}, "intermediate_values": {"2": 0.5, "-1": 0.25}})",
      R"({"op_code":4,)" + w +
          R"(,"study_id":0,"datetime_start":"2026-11-20 00:00:03","datetime_complete":"2026-11-20T00:00:04.000001+01:00","state":1,"value":0.5,"values":null,"distributions":{},"params":{},"user_attrs":{},"system_attrs":{},"intermediate_values":{}})",
      // The current worker's records: it creates trial 3 and takes the queued trial 1.
      R"({"op_code":4,"worker_id":"me-1","study_id":0,"datetime_start":"2026-11-20T00:00:05.000000"})",
      R"({"op_code":6,"worker_id":"me-1","trial_id":1,"state":0,"values":null,"datetime_start":"2026-11-20T00:00:06.000000"})",
      // Keys in another order: another worker fails the current worker's trial.
      R"({"trial_id":3,"state":3,"datetime_complete":"2026-11-20T00:00:07.000000","worker_id":"other-7","op_code":6,"values":null})",
  };
}

}  // namespace

TEST_CASE("apply_text replays the search's records as the nlohmann reader does") {
  const ReplayState s = replay_both(typical_records());
  // Independent expectations on the records above (hand-read).
  const FrozenTrial& t = s.trial(0);
  CHECK(t.params.at("c.w_bits") == 2.0);
  CHECK(t.params.at("c.prune_ratio") == 0.35000000000000003);
  CHECK(t.params.at("kd.lr") == 1.2345678901234567e-05);
  CHECK(t.intermediate_values.at(1) == 1e16);
  CHECK(t.values == std::vector<double>{0.9, 2.5e-07});
  CHECK(*t.datetime_complete == "2026-11-20 00:00:02.500000");
  CHECK(t.user_attrs.at("recipe")["layers"]["c"]["s"] == "\u00e9\U0001F600\n");
  CHECK(t.user_attrs.at("big").get<uint64_t>() == 18446744073709551615ull);
  CHECK(t.system_attrs.at("constraints") == nlohmann::json::array({-12.5, 0}));
  const FrozenTrial& queued = s.trial(1);
  CHECK(queued.state == TrialState::kRunning);
  CHECK(*queued.datetime_start == "2026-11-20 00:00:06.000000");
  CHECK(queued.intermediate_values.at(-1) == 0.25);
  CHECK(queued.user_attrs.at("a")["b"][1]["c"] == 2);
  CHECK(s.trial(2).values == std::vector<double>{0.5});
  CHECK(s.trial(3).state == TrialState::kFail);
  CHECK(s.owned_trial(kMe) == 1);
  CHECK(s.last_created_trial(kMe) == 3);
  CHECK(s.logs_applied() == 20);
}

TEST_CASE("apply_text agrees with the nlohmann reader on odd and bad records") {
  auto records = typical_records();
  records.resize(3);  // a study and trial 0
  const std::string w = R"("worker_id":"other-7")";
  const std::vector<std::string> odd = {
      // Python's NaN and Infinity tokens (simdjson rejects them: the slow path reads them).
      R"({"op_code":7,)" + w + R"(,"trial_id":0,"step":0,"intermediate_value":NaN})",
      R"({"op_code":8,)" + w + R"(,"trial_id":0,"user_attr":{"x":[-Infinity,Infinity]}})",
      // -0 is nlohmann's integer 0 but simdjson's double -0.0; -0.0 is a double in both.
      R"({"op_code":8,)" + w + R"(,"trial_id":0,"user_attr":{"z":-0}})",
      R"({"op_code":8,)" + w + R"(,"trial_id":0,"user_attr":{"z2":-0.0}})",
      R"({"op_code":7,)" + w + R"(,"trial_id":0,"step":3,"intermediate_value":-0})",
      // More than 19 digits (simdjson 3.0's get_number() reads 0), negative past 64 bits.
      R"({"op_code":8,)" + w + R"(,"trial_id":0,"user_attr":{"lr":5.00011861732452867461}})",
      R"({"op_code":8,)" + w + R"(,"trial_id":0,"user_attr":{"lr2":0.96134199547895267462}})",
      R"({"op_code":7,)" + w +
          R"(,"trial_id":0,"step":10,"intermediate_value":0.96134199547895267462})",
      R"({"op_code":7,)" + w +
          R"(,"trial_id":0,"step":9,"intermediate_value":1.00000000000000000000001})",
      R"({"op_code":8,)" + w +
          R"(,"trial_id":0,"user_attr":{"nh":-123456789012345678901234567890}})",
      // Integers past 64 bits, exponents past double, a float trial id, a bool value.
      R"({"op_code":8,)" + w +
          R"(,"trial_id":0,"user_attr":{"huge":123456789012345678901234567890}})",
      R"({"op_code":8,)" + w + R"(,"trial_id":0,"user_attr":{"inf":1e400}})",
      R"({"op_code":7,)" + w + R"(,"trial_id":0.0,"step":4,"intermediate_value":true})",
      // Repeated and unknown keys.
      R"({"op_code":8,)" + w + R"(,"trial_id":0,"user_attr":{"d":1,"d":2}})",
      R"({"op_code":8,)" + w + R"(,"trial_id":0,"user_attr":{"e":{"f":1,"f":[2]}}})",
      R"({"op_code":7,)" + w + R"(,"trial_id":0,"trial_id":5,"step":5,"intermediate_value":1})",
      R"({"op_code":7,)" + w + R"(,"trial_id":0,"step":6,"intermediate_value":1,"extra":{}})",
      // Malformed records: missing or mistyped fields.
      R"({"op_code":7,)" + w + R"(,"trial_id":0,"intermediate_value":1})",
      R"({"op_code":7,)" + w + R"(,"trial_id":"0","step":7,"intermediate_value":1})",
      R"({"op_code":6,)" + w + R"(,"trial_id":0,"state":7,"values":null})",
      R"({"op_code":6,)" + w + R"(,"trial_id":0,"state":0,"values":null,"datetime_start":null})",
      R"({"op_code":5,)" + w +
          R"(,"trial_id":0,"param_name":"p","param_value_internal":0,"distribution":"{\"name\": \"Nope\"}"})",
      R"({"op_code":5,)" + w +
          R"(,"trial_id":0,"param_name":"c.w_bits","param_value_internal":0,"distribution":)" +
          kFloat + "}",  // incompatible with the first distribution: ignored (not ours)
      R"({"op_code":8,)" + w + R"(,"trial_id":0,"user_attr":{"a":1,"b":2}})",
      R"({"op_code":8,)" + w + R"(,"trial_id":0,"user_attr":{}})",
      R"({"op_code":8,)" + w + R"(,"trial_id":0,"system_attr":{"a":1}})",
      R"({"op_code":4,)" + w + R"(,"study_id":0})",
      R"({"op_code":4,)" + w + R"(,"study_id":0,"datetime_start":"yesterday"})",
      R"({"op_code":4,)" + w +
          R"(,"study_id":0,"datetime_start":null,"params":{"q":1},"distributions":{}})",
      R"({"op_code":4,)" + w +
          R"(,"study_id":0,"datetime_start":null,"intermediate_values":{" 3":1,"+4":2,"5x":3}})",
      R"({"op_code":4,)" + w + R"(,"study_id":0,"datetime_start":null,"state":null})",
      R"({"op_code":11,)" + w + R"(})",
      R"({"op_code":1,)" + w + R"(,"study_id":3})",
      R"([1,2,3])",
      // Not JSON: torn, trailing text, two objects, bad UTF-8, bad escapes.
      R"({"op_code":7,)" + w + R"(,"trial_id":0,"st)",
      R"({"op_code":7,)" + w + R"(,"trial_id":0,"step":8,"intermediate_value":1} x)",
      R"({"op_code":7,)" + w + R"(,"trial_id":0,"step":9,"intermediate_value":1}{"a":1})",
      R"({"op_code":8,)" + w + "," + R"("trial_id":0,"user_attr":{"u":")" + "\xff\xfe" + R"("}})",
      R"({"op_code":8,)" + w + R"(,"trial_id":0,"user_attr":{"u":"\ud800"}})",
      R"({"op_code":8,)" + w + R"(,"trial_id":0,"user_attr":{"u":"\q"}})",
      std::string(600, '[') + std::string(600, ']'),
      // The current worker's errors throw; everyone else's are ignored.
      R"({"op_code":7,"worker_id":"me-1","trial_id":99,"step":0,"intermediate_value":1})",
      R"({"op_code":7,"worker_id":"other-7","trial_id":99,"step":0,"intermediate_value":1})",
      R"({"op_code":6,"worker_id":"other-7","trial_id":0,"state":1,"values":[1,2],"datetime_complete":"2026-11-20T00:00:09"})",
      R"({"op_code":7,"worker_id":"me-1","trial_id":0,"step":0,"intermediate_value":1})",
      R"({"op_code":5,"worker_id":"me-1","trial_id":0,"param_name":"p","param_value_internal":0,"distribution":)" +
          std::string(kInt) + "}",
  };
  records.insert(records.end(), odd.begin(), odd.end());
  const ReplayState s = replay_both(records);
  const FrozenTrial& t = s.trial(0);
  CHECK(std::isnan(t.intermediate_values.at(0)));
  CHECK(t.user_attrs.at("z").is_number_integer());
  CHECK(std::signbit(t.user_attrs.at("z2").get<double>()));
  CHECK(t.user_attrs.at("d") == 2);
  CHECK(t.user_attrs.at("lr") == 5.000118617324529);
  CHECK(t.user_attrs.at("lr2") == 0.9613419954789527);
  CHECK(t.intermediate_values.at(10) == 0.9613419954789527);
  CHECK(t.intermediate_values.at(9) == 1.0);
  CHECK(t.state == TrialState::kComplete);
}

TEST_CASE("apply_text throws JournalTextError for text that is not one JSON value") {
  ReplayState s;
  s.apply_text(R"({"op_code":0,"worker_id":"w","study_name":"s","directions":[1]})", "w");
  for (const std::string& bad :
       {std::string("{\"op_code\":4,\"worker_id\":\"w\",\"study_id\":0,\"datetime_start\":null} "
                    "trailing"),
        std::string("{\"op_code\":4"), std::string("")}) {
    CAPTURE(bad);
    CHECK_THROWS_AS(s.apply_text(bad, "w"), JournalTextError);
  }
  CHECK(s.all_trials(0, {}).empty());
  CHECK(s.logs_applied() == 1);
}

TEST_CASE("JournalStorage reads a journal larger than its 4 MB read chunk, and then new bytes") {
  compsearch::search::testing::TempDir dir;
  const auto path = dir.file("big.journal");
  std::string text = R"({"op_code":0,"worker_id":"w","study_name":"s","directions":[1]})"
                     "\n";
  // 3,000 trials of ~2.9 KB: about 8.7 MB, so lines straddle both chunk ends.
  const std::string pad(2800, 'x');
  for (int i = 0; i < 3000; ++i) {
    text += R"({"op_code":4,"worker_id":"w","study_id":0,"datetime_start":null})"
            "\n";
    text += R"({"op_code":8,"worker_id":"w","trial_id":)" + std::to_string(i) +
            R"(,"user_attr":{"pad":")" + pad + std::to_string(i) + "\"}}\n";
    text += R"({"op_code":6,"worker_id":"w","trial_id":)" + std::to_string(i) +
            R"(,"state":1,"values":[)" + std::to_string(i) +
            R"(.5],"datetime_complete":"2026-01-01T00:00:00"})"
            "\n";
  }
  REQUIRE(text.size() > 8u << 20);
  std::ofstream(path, std::ios::binary) << text;
  JournalStorage reader(path);
  const auto trials = reader.get_all_trials(0);
  REQUIRE(trials.size() == 3000);
  for (const auto& t : trials) {
    CHECK(t.state == TrialState::kComplete);
    CHECK(t.values == std::vector<double>{t.number + 0.5});
    CHECK(t.user_attrs.at("pad").get<std::string>() == pad + std::to_string(t.number));
  }
  // Another writer appends a trial: the reader reads it (and only the new bytes: offsets go on).
  std::ofstream(path, std::ios::binary | std::ios::app)
      << R"({"op_code":4,"worker_id":"v","study_id":0,"datetime_start":null})"
      << "\n";
  CHECK(reader.get_all_trials(0).size() == 3001);
  CHECK(reader.get_trial(3000).state == TrialState::kRunning);
}

TEST_CASE("apply_text agrees with the nlohmann reader on every kept fuzzing finding") {
  // tests/data/fuzz_regressions/journal_line: inputs fuzz/fuzz_journal_line.cpp found, applied
  // after a study and trial 0 as that harness does.
  const std::filesystem::path dir =
      std::filesystem::path(COMPSEARCH_TEST_DATA) / "fuzz_regressions" / "journal_line";
  REQUIRE(std::filesystem::is_directory(dir));
  size_t n = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    std::ifstream in(entry.path(), std::ios::binary);
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    auto records = typical_records();
    records.resize(3);
    records.push_back(text);
    replay_both(records);
    ++n;
  }
  CHECK(n >= 1);
}

TEST_CASE("integer fields beyond int64 are errors, not undefined conversions") {
  // fuzz_journal_line and fuzz_journal found op_code 8.9e66 (a whole float) converted to int64:
  // undefined behaviour (UBSan), garbage op codes without a sanitizer.
  for (const std::string big : {"8.8888888e66", "-9.3e18", "18446744073709551615"}) {
    CAPTURE(big);
    ReplayState state;
    CHECK_THROWS_WITH_AS(state.apply_text(R"({"op_code": )" + big + R"(, "worker_id": "w"})", "w"),
                         doctest::Contains("op_code"), std::invalid_argument);
  }
  ReplayState state;  // the edge that still fits is read
  CHECK_THROWS_WITH_AS(state.apply_text(R"({"op_code": 9.0e18, "worker_id": "w"})", "w"),
                       doctest::Contains("op_code"), std::invalid_argument);
}

TEST_CASE("every kept whole-journal fuzzing finding opens without a crash") {
  // tests/data/fuzz_regressions/journal: journals fuzz/fuzz_journal.cpp found.
  const std::filesystem::path dir =
      std::filesystem::path(COMPSEARCH_TEST_DATA) / "fuzz_regressions" / "journal";
  REQUIRE(std::filesystem::is_directory(dir));
  size_t n = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    const auto copy = std::filesystem::temp_directory_path() /
                      ("compsearch_fuzz_regression_" + entry.path().filename().string());
    std::filesystem::copy_file(entry.path(), copy,
                               std::filesystem::copy_options::overwrite_existing);
    JournalStorage storage(copy.string());
    for (const auto& study : storage.get_all_studies())
      CHECK(storage.get_all_trials(study.study_id).size() < 100000);
    std::filesystem::remove(copy);
    ++n;
  }
  CHECK(n >= 1);
}
