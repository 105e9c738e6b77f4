// Target profiles: every preset loads and names a source for every number; a user's profile file
// loads the same way; bad files fail with the file, the key, the value and what is expected.
#include <doctest/doctest.h>

#include <algorithm>
#include <fstream>
#include <functional>

#include "hardware_models/hardware_model.h"

namespace hm = compsearch::hardware_models;

namespace {

// Walks a profile JSON and calls `f` on every {"value", "source"} object.
void each_sourced(const nlohmann::json& j, const std::string& path,
                  const std::function<void(const std::string&, const nlohmann::json&)>& f) {
  if (j.is_object() && j.contains("value") && j.contains("source")) {
    f(path, j);
    return;
  }
  if (j.is_object()) {
    for (auto it = j.begin(); it != j.end(); ++it) {
      if (it.key() == "bits")
        continue;  // a datapath's operand width names it; it is not a measurement
      each_sourced(*it, path + "." + it.key(), f);
    }
  } else if (j.is_array()) {
    for (size_t i = 0; i < j.size(); ++i)
      each_sourced(j[i], path + "[" + std::to_string(i) + "]", f);
  } else if (j.is_number()) {
    FAIL("bare number without a source at " << path);
  }
}

nlohmann::json read(const std::string& path) {
  std::ifstream in(path);
  REQUIRE(in.good());
  return nlohmann::json::parse(in);
}

}  // namespace

TEST_CASE("All twelve preset targets load and every number in their files names a source") {
  const auto presets = hm::list_presets();
  for (const char* name : {"gpu:t4", "gpu:a100", "gpu:h100", "gpu:orin-nano", "npu:ethos-u55-128",
                           "npu:ethos-u55-256", "npu:ethos-u65-512", "npu:edgetpu", "mcu:stm32f746",
                           "mcu:stm32h743", "mcu:stm32l4r5", "mcu:stm32u585"}) {
    const std::string target = name;
    CAPTURE(target);
    CHECK(std::find(presets.begin(), presets.end(), name) != presets.end());
    const auto p = hm::load_profile(name);
    CHECK(p.name == name);
    const auto model = hm::make_hardware_model(p);  // NPUs also load their host profile
    CHECK(model->profile().name == name);
    int numbers = 0;
    each_sourced(read(p.file), p.name, [&](const std::string& path, const nlohmann::json& s) {
      ++numbers;
      CHECK_MESSAGE(!s["source"].get<std::string>().empty(), path);
      CHECK_MESSAGE(s["value"].is_number(), path);
    });
    CHECK(numbers >= 15);
  }
  const auto l4 = hm::load_profile("mcu:stm32l4r5");
  CHECK(l4.target_class == hm::TargetClass::kMcu);
  CHECK(l4.sram_bytes.value == 640 * 1024);
  CHECK(l4.sram_bytes.source.find("DS12023") != std::string::npos);
}

TEST_CASE("A user's profile file loads like a preset and round-trips through JSON") {
  const std::string path = std::string(COMPSEARCH_TEST_DATA) + "/hw/stm32h7a3.json";
  const auto p = hm::load_profile(path);
  CHECK(p.name == "user:stm32h7a3");
  CHECK(p.datapaths[0].peak_macs_per_s.value == doctest::Approx(560e6));
  const auto again = hm::profile_from_json(hm::profile_to_json(p), "roundtrip");
  CHECK(hm::profile_to_json(again) == hm::profile_to_json(p));
}

TEST_CASE("Bad profiles are rejected naming the file, the key, the value and what is expected") {
  auto j = hm::profile_to_json(hm::load_profile("gpu:t4"));
  SUBCASE("a number without a source") {
    j["layer_overhead_us"] = 3.0;
    CHECK_THROWS_WITH_AS(
        hm::profile_from_json(j, "my.json"),
        doctest::Contains(
            "my.json: key 'layer_overhead_us': expected {\"value\": number, \"source\""),
        std::invalid_argument);
  }
  SUBCASE("an unknown key") {
    j["utilisation"]["winograd"] = {{"value", 1}, {"source", "x"}};
    CHECK_THROWS_WITH_AS(
        hm::profile_from_json(j, "my.json"),
        doctest::Contains("my.json: key 'utilisation.winograd': unknown key; allowed keys are: "),
        std::invalid_argument);
  }
  SUBCASE("an out-of-range value") {
    j["utilisation"]["conv"]["value"] = 1.5;
    CHECK_THROWS_WITH_AS(hm::profile_from_json(j, "my.json"),
                         doctest::Contains("efficiencies must be in (0, 1]"),
                         std::invalid_argument);
    j["utilisation"]["conv"]["value"] = 0.5;
    j["memory_bandwidth_bytes_per_s"]["value"] = -1;
    CHECK_THROWS_WITH_AS(
        hm::profile_from_json(j, "my.json"),
        doctest::Contains(
            "key 'memory_bandwidth_bytes_per_s.value': value -1 out of range; expected > 0"),
        std::invalid_argument);
  }
  SUBCASE("a bad class and bad datapath bits") {
    j["class"] = "fpga";
    CHECK_THROWS_WITH_AS(
        hm::profile_from_json(j, "my.json"),
        doctest::Contains("key 'class': value \"fpga\" not allowed; expected gpu, npu, mcu or cpu"),
        std::invalid_argument);
    j["class"] = "gpu";
    j["datapaths"][0]["bits"] = 12;
    CHECK_THROWS_WITH_AS(hm::profile_from_json(j, "my.json"),
                         doctest::Contains("key 'datapaths[0].bits': value 12 not allowed"),
                         std::invalid_argument);
  }
  SUBCASE("a missing section") {
    j["class"] = "mcu";
    CHECK_THROWS_WITH_AS(hm::profile_from_json(j, "my.json"),
                         doctest::Contains("key 'mcu': an mcu profile needs"),
                         std::invalid_argument);
  }
  CHECK_THROWS_WITH_AS(
      hm::load_profile("gpu:v100"),
      doctest::Contains("target 'gpu:v100': not a preset and not a profile file; presets are: "),
      std::invalid_argument);
}

TEST_CASE("A target profile nested 100000 deep is refused, naming the file") {
  // tests/data/fuzz_regressions/profile: a "name" nested 100,000 deep overflowed the stack while
  // its error message was built (load_profile parsed without the nesting check).
  const std::string path =
      std::string(COMPSEARCH_TEST_DATA) + "/fuzz_regressions/profile/nested_100000_deep.json";
  REQUIRE(std::ifstream(path).good());
  CHECK_THROWS_WITH_AS(hm::load_profile(path),
                       doctest::Contains((path + ": JSON nested deeper than 512 levels").c_str()),
                       std::invalid_argument);
}
