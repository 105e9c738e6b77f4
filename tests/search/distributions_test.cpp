// Distributions and Python-compatible JSON against Optuna 3.1 itself: the reference values in
// tests/data/search/optuna_reference.json are printed by scripts/optuna_interop.py reference.
#include "search/distributions.h"

#include <doctest/doctest.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <sstream>

#include "search/python_json.h"
#include "search_test_util.h"

using namespace compsearch::search;

namespace {

nlohmann::json reference() {
  std::ifstream in(std::string(COMPSEARCH_TEST_DATA) + "/search/optuna_reference.json");
  REQUIRE(in.good());
  std::stringstream ss;
  ss << in.rdbuf();
  return nlohmann::json::parse(ss.str());
}

}  // namespace

TEST_CASE("python_float_repr writes every float as Python's repr does") {
  const auto ref = reference();
  REQUIRE(ref["float_repr"].size() >= 15);
  for (const auto& pair : ref["float_repr"]) {
    const double v = std::strtod(pair[0].get<std::string>().c_str(), nullptr);
    CHECK_MESSAGE(python_float_repr(v) == pair[1].get<std::string>(), pair[0]);
  }
  CHECK(python_float_repr(std::numeric_limits<double>::quiet_NaN()) == "NaN");
  CHECK(python_float_repr(-std::numeric_limits<double>::infinity()) == "-Infinity");
}

TEST_CASE("dump_python_json matches json.dumps with both separator styles") {
  const auto ref = reference();
  nlohmann::ordered_json j;
  j["a"] = {1, 2.0, nullptr, true, "\xC3\xA9\xE2\x98\x83\xF0\x9F\x98\x80\n\"x\""};
  j["b"] = std::numeric_limits<double>::quiet_NaN();
  j["c"] = std::numeric_limits<double>::infinity();
  j["d"] = -std::numeric_limits<double>::infinity();
  CHECK(dump_python_json(j) == ref["json_dumps"].get<std::string>());
  nlohmann::ordered_json k;
  k["k"] = {1.5, {{"z", "q"}}};
  CHECK(dump_python_json(k, JsonSeparators::kCompact) ==
        ref["json_dumps_compact"].get<std::string>());
}

TEST_CASE("parse_python_json reads NaN and Infinity outside strings only") {
  auto j =
      parse_python_json(R"({"a": NaN, "b": [Infinity, -Infinity], "s": "NaN Infinity", "n": 1})");
  CHECK(std::isnan(j["a"].get<double>()));
  CHECK(j["b"][0].get<double>() == std::numeric_limits<double>::infinity());
  CHECK(j["b"][1].get<double>() == -std::numeric_limits<double>::infinity());
  CHECK(j["s"] == "NaN Infinity");
  CHECK(j["n"].is_number_integer());
  CHECK_THROWS_AS(parse_python_json("{\"a\": nan}"), nlohmann::json::parse_error);
}

TEST_CASE("distribution JSON text is byte-identical to Optuna's distribution_to_json") {
  const auto ref = reference()["distribution_json"];
  CHECK(distribution_to_json_string(make_float(0.0, 1.0)) == ref["float"].get<std::string>());
  CHECK(distribution_to_json_string(make_float(1e-5, 1.0, true)) ==
        ref["float_log"].get<std::string>());
  CHECK(distribution_to_json_string(make_float(0.0, 1.0, false, 0.3)) ==
        ref["float_step"].get<std::string>());
  CHECK(distribution_to_json_string(make_float(-1.0, 2.05, false, 0.1)) ==
        ref["float_step2"].get<std::string>());
  CHECK(distribution_to_json_string(make_float(0.1, 0.75, false, 0.25)) ==
        ref["float_step3"].get<std::string>());
  CHECK(distribution_to_json_string(make_int(0, 10, false, 3)) == ref["int"].get<std::string>());
  CHECK(distribution_to_json_string(make_int(1, 1024, true)) == ref["int_log"].get<std::string>());
  CHECK(distribution_to_json_string(make_categorical({"a", 1, 2.5, nullptr, true})) ==
        ref["cat"].get<std::string>());
}

TEST_CASE(
    "distributions round-trip through JSON, including Optuna's strings and deprecated classes") {
  const auto ref = reference()["distribution_json"];
  for (auto it = ref.begin(); it != ref.end(); ++it) {
    Distribution d = distribution_from_json(it.value());  // the journal stores a JSON string
    CHECK(distribution_to_json_string(d) == it.value().get<std::string>());
    CHECK(distribution_from_json(distribution_to_json(d)) == d);
  }
  auto uni = distribution_from_json(nlohmann::json::parse(
      R"({"name": "UniformDistribution", "attributes": {"low": 1, "high": 2}})"));
  CHECK(uni == Distribution(make_float(1, 2)));
  auto disc = distribution_from_json(nlohmann::json::parse(
      R"({"name": "DiscreteUniformDistribution", "attributes": {"low": 0, "high": 1, "q": 0.3}})"));
  CHECK(std::get<FloatDistribution>(disc).high == 0.9);
  auto ilog = distribution_from_json(nlohmann::json::parse(
      R"({"name": "IntLogUniformDistribution", "attributes": {"low": 1, "high": 8, "step": 1}})"));
  CHECK(std::get<IntDistribution>(ilog).log);
  auto old = distribution_from_json(
      nlohmann::json::parse(R"({"type": "int", "low": 0, "high": 7, "step": 2})"));
  CHECK(std::get<IntDistribution>(old).high == 6);
  CHECK_THROWS_WITH_AS(
      distribution_from_json(nlohmann::json::parse(R"({"name": "Foo", "attributes": {}})")),
      doctest::Contains("unknown distribution class \"Foo\""), std::invalid_argument);
  CHECK_THROWS_WITH_AS(distribution_from_json(nlohmann::json::parse(
                           R"({"name": "FloatDistribution", "attributes": {"low": 0}})")),
                       doctest::Contains("missing attribute \"high\""), std::invalid_argument);
  CHECK_THROWS_WITH_AS(
      distribution_from_json(nlohmann::json::parse(
          R"({"name": "IntDistribution", "attributes": {"low": 0, "high": 1, "lo": 2}})")),
      doctest::Contains("unknown attribute \"lo\""), std::invalid_argument);
}

TEST_CASE("distribution constructors reject Optuna's invalid arguments with the values") {
  CHECK_THROWS_WITH_AS(make_float(2, 1), doctest::Contains("(low=2.0, high=1.0)"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(make_float(0, 1, true), doctest::Contains("larger than 0 for a log"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(make_float(1, 2, true, 0.5),
                       doctest::Contains("not supported when `log` is true"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(make_float(0, 1, false, 0.0), doctest::Contains("step=0.0"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(make_int(0, 5, true), doctest::Contains("(low=0, high=5)"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(make_int(1, 5, true, 2), doctest::Contains("step=2"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(make_int(0, 5, false, 0), doctest::Contains("step=0"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(make_categorical({}), doctest::Contains("one or more"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(make_categorical({"a", "a"}), doctest::Contains("appears twice"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(make_categorical({nlohmann::json::array()}),
                       doctest::Contains("choice 0 is []"), std::invalid_argument);
}

TEST_CASE("ranges whose arithmetic overflows or is not finite are rejected at the API and CLI") {
  // Optuna 3.1 accepts both and then fails or samples nonsense: IntDistribution(-2**63, 2**63-1)
  // and FloatDistribution(-inf, inf) (uniform(-inf, inf) is NaN). Internal values are doubles,
  // exact for integers up to 2^53 only.
  constexpr int64_t kMin = std::numeric_limits<int64_t>::min();
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  constexpr int64_t k53 = int64_t{1} << 53;
  CHECK_THROWS_WITH_AS(make_int(kMin, kMax),
                       doctest::Contains("(low=-9223372036854775808, high=9223372036854775807)"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(make_int(0, k53 + 1), doctest::Contains("IntDistribution: the `low` and"),
                       std::invalid_argument);
  CHECK_THROWS_AS(make_int(-k53 - 1, 0), std::invalid_argument);
  CHECK(make_int(-k53, k53).high == k53);
  const double inf = std::numeric_limits<double>::infinity();
  CHECK_THROWS_WITH_AS(make_float(-inf, inf),
                       doctest::Contains("FloatDistribution: the `low` and `high` values must be "
                                         "finite (low=-Infinity, high=Infinity)"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(make_float(0, inf), doctest::Contains("(low=0.0, high=Infinity)"),
                       std::invalid_argument);
  CHECK_THROWS_AS(make_float(-inf, 0, false, 0.5), std::invalid_argument);
  CHECK_THROWS_AS(distribution_from_json(nlohmann::json::parse(
                      R"({"name": "IntDistribution", "attributes": {"low": -9223372036854775808,
                          "high": 9223372036854775807, "log": false, "step": 1}})")),
                  std::invalid_argument);
  CHECK_THROWS_WITH_AS(
      distribution_from_json(nlohmann::json::parse(
          R"({"name": "IntDistribution", "attributes": {"low": 0, "high": 1e30}})")),
      doctest::Contains("\"high\" must be an integer"), std::invalid_argument);
  CHECK_THROWS_AS(
      distribution_from_json(
          R"({"name": "FloatDistribution", "attributes": {"low": -Infinity, "high": Infinity, "log": false, "step": null}})"),
      std::invalid_argument);
  // The CLI reports the same errors and writes no trial.
  compsearch::search::testing::TempDir dir;
  const std::string cli = std::string(COMPSEARCH_BINARY_DIR) + "/cli/compsearch";
  const std::string storage = compsearch::search::testing::shell_quote(dir.file("j.log"));
  for (
      const std::string space :
      {R"({"x": {"name": "FloatDistribution", "attributes": {"low": -Infinity, "high": Infinity, "log": false, "step": null}}})",
       R"({"n": {"name": "IntDistribution", "attributes": {"low": -9223372036854775808, "high": 9223372036854775807, "log": false, "step": 1}}})"}) {
    CAPTURE(space);
    const auto r = compsearch::search::testing::run_command(
        cli + " ask --storage " + storage + " --study-name s --search-space " +
        compsearch::search::testing::shell_quote(space) + " 2>&1");
    CHECK(r.exit_code != 0);
    CHECK(r.output.find("the `low` and `high` values must be") != std::string::npos);
  }
}

TEST_CASE("single, contains and internal/external values follow Optuna") {
  const auto single = reference()["single"];
  CHECK(is_single(make_float(0.0, 1.0)) == single["float"].get<bool>());
  CHECK(is_single(make_float(0.1, 0.75, false, 0.25)) == single["float_step3"].get<bool>());
  CHECK(is_single(make_float(0.1, 0.3, false, 0.25)));  // 0.3 - 0.1 < 0.25 in decimal
  CHECK(is_single(make_int(3, 4, false, 2)));
  CHECK(is_single(make_categorical({"only"})));

  auto fs = make_float(0.0, 1.0, false, 0.25);
  CHECK(contains(fs, 0.75));
  CHECK_FALSE(contains(fs, 0.7));
  CHECK_FALSE(contains(fs, 1.25));
  auto is = make_int(1, 9, false, 2);
  CHECK(contains(is, 5.0));
  CHECK_FALSE(contains(is, 4.0));
  auto cat = make_categorical({"a", 2, nullptr});
  CHECK(to_internal(cat, 2) == 1.0);
  CHECK(to_internal(cat, nullptr) == 2.0);
  CHECK(to_external(cat, 0.0) == "a");
  CHECK_THROWS_WITH_AS(to_internal(cat, "b"), doctest::Contains("\"b\" is not one of the choices"),
                       std::invalid_argument);
  CHECK(to_external(is, 5.0).is_number_integer());
  CHECK(to_external(make_float(0, 1), 0.5).get<double>() == 0.5);
  CHECK_THROWS_AS(to_internal(make_float(1, 2, true), -1.0), std::invalid_argument);
  CHECK_THROWS_WITH_AS(check_distribution_compatibility("p", make_float(0, 1), make_int(0, 1)),
                       doctest::Contains("different distribution kind"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(check_distribution_compatibility("p", cat, make_categorical({"a"})),
                       doctest::Contains("dynamic value space"), std::invalid_argument);
  CHECK_NOTHROW(check_distribution_compatibility("p", make_float(0, 1), make_float(-5, 5)));
}
