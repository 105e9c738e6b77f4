// Experiment config, search space and the search runner: errors that name the key, the space's
// parameters and recipes on the bundled CNN, a small search end to end, resume, Spearman.
#include <doctest/doctest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "experiments/experiment_config.h"
#include "experiments/llm_search.h"
#include "experiments/search_runner.h"
#include "experiments/search_space.h"
#include "model/layer_table.h"
#include "search/journal_storage.h"
#include "search/study.h"
#include "tests/test_skip.h"

using namespace compsearch;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

fs::path source_dir() { return fs::path(COMPSEARCH_SOURCE_DIR); }

json small_config(const fs::path& storage) {
  return json{{"study_name", "t"},
              {"model", (source_dir() / "models" / "fmnist_cnn.onnx").string()},
              {"data",
               {{"source", "fashion-mnist"},
                {"validation_samples", 300},
                {"subset_samples", 100},
                {"calibration_samples", 64},
                {"report_test", false}}},
              {"space", {{"w_bits", {2, 4, 8}}, {"prune_kind", {"none", "unstructured"}}}},
              {"targets", {"mcu:stm32f746"}},
              {"objectives", json::array({json::array({"accuracy", "maximize"}),
                                          json::array({"latency_ms@mcu:stm32f746", "minimize"})})},
              {"constraints", {"sram_kb@mcu:stm32f746 <= 320"}},
              {"sampler", {{"name", "random"}, {"seed", 1}}},
              {"budget", {{"trials", 4}, {"jobs", 1}}},
              {"storage", storage.string()}};
}

std::string error_of(const json& j) {
  try {
    experiments::config_from_json(j, "cfg.json", source_dir());
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("the experiment config names every bad key at once") {
  json j = small_config("/tmp/x.journal");
  j["space"]["w_bits"] = {2, 9};
  j["budgett"] = 1;
  j["objectives"][1][0] = "latency_ms@gpu:t4";
  j["sampler"]["name"] = "cma";
  const std::string e = error_of(j);
  CHECK(e.find("cfg.json: 4 problems") != std::string::npos);
  CHECK(e.find(
            ".space.w_bits[1]: value 9 is not allowed (allowed: 1, 2, 3, 4, 5, 6, 7, 8, 16, 32)") !=
        std::string::npos);
  CHECK(e.find(".budgett: unknown key") != std::string::npos);
  CHECK(e.find("target \"gpu:t4\" is not listed in .targets") != std::string::npos);
  CHECK(e.find(".sampler.name: \"cma\" is not allowed") != std::string::npos);
}

TEST_CASE("the experiment config rejects metrics the evaluator cannot measure") {
  json j = small_config("/tmp/x.journal");
  j.erase("data");
  const std::string e = error_of(j);
  CHECK(e.find(".objectives[0]: \"accuracy\" needs the accuracy evaluator") != std::string::npos);
  json k = small_config("/tmp/x.journal");
  k["constraints"] = {"sram_kb@mcu:stm32f746 < 320"};
  CHECK(error_of(k).find("is not a constraint (expected METRIC <= NUMBER") != std::string::npos);
  json m = small_config("/tmp/x.journal");
  m["model"] = "nope.onnx";
  CHECK(error_of(m).find(".model: file") != std::string::npos);
}

TEST_CASE("durations and constraints parse as written") {
  CHECK(experiments::parse_duration_s("8h", "t") == 28800.0);
  CHECK(experiments::parse_duration_s("1h30m", "t") == 5400.0);
  CHECK(experiments::parse_duration_s("90", "t") == 90.0);
  CHECK(experiments::parse_duration_s("2.5m", "t") == 150.0);
  CHECK_THROWS_WITH(experiments::parse_duration_s("8x", "--timeout"),
                    doctest::Contains("--timeout: \"8x\" is not a duration"));
  CHECK_THROWS(experiments::parse_duration_s("5 h", "t"));
  const auto c = experiments::parse_constraint("flash_kb@mcu:stm32f746>=1.5e2", "k");
  CHECK(c.metric == "flash_kb@mcu:stm32f746");
  CHECK_FALSE(c.less_equal);
  CHECK(c.bound == 150.0);
}

TEST_CASE("the bundled preset configs load and build their search spaces") {
  // Presets on committed models must load; a preset on a torchvision export (too big to commit)
  // has it made by scripts/make_torchvision_models.py, or is reported skipped with the reason.
  std::vector<fs::path> presets;
  for (const auto& entry : fs::directory_iterator(source_dir() / "experiments" / "configs"))
    if (entry.path().extension() == ".json") presets.push_back(entry.path());
  std::sort(presets.begin(), presets.end());
  for (const auto& path : presets) {
    std::ifstream in(path);
    const json j = json::parse(in);
    const fs::path model =
        (path.parent_path() / j.at("model").get<std::string>()).lexically_normal();
    const std::string file = model.filename().string();
    const auto dot = file.find(".torchvision.onnx");
    if (!fs::exists(model) && dot != std::string::npos) {
      const std::string cmd = "/usr/bin/python3 " +
                              (source_dir() / "scripts" / "make_torchvision_models.py").string() +
                              " --models " + file.substr(0, dot) + " > /dev/null 2>&1";
      if (std::system(cmd.c_str()) != 0 || !fs::exists(model)) {
        COMPSEARCH_SKIP_TEST("preset "
                             << path.filename() << " needs " << model
                             << ", which scripts/make_torchvision_models.py could not make "
                                "(python3-torchvision missing?)");
      }
    }
  }
  REQUIRE(presets.size() >= 3);
  for (const auto& path : presets) {
    CAPTURE(path);
    std::ifstream in(path);
    const json j = json::parse(in);
    if (experiments::is_llm_search_config(j)) {  // an LLM preset: experiments/llm_search.h
      const auto llm_cfg =
          experiments::llm_search_config_from_json(j, path.string(), path.parent_path());
      CHECK(compsearch::llm::load_llm(llm_cfg.model, /*with_data=*/false).config.layers > 0);
      CHECK(fs::exists(llm_cfg.data));
      continue;
    }
    const auto cfg = experiments::load_config(path);
    const model::Graph g = model::load_onnx(cfg.model);
    const auto table = model::build_layer_table(g);
    const experiments::CompressionSpace space(g, table, cfg.space);
    CHECK(space.quant_slots().size() + space.frozen().size() == table.layers.size());
    CHECK(space.size() > 1.0);
  }
}

TEST_CASE(
    "the CNN's search space offers 2:4 only where rows allow it and never channel-prunes the "
    "output") {
  json j = small_config("/tmp/x.journal");
  j["space"]["prune_kind"] = {"none", "unstructured", "channel", "2:4"};
  const auto cfg = experiments::config_from_json(j, "cfg.json", source_dir());
  const model::Graph g = model::load_onnx(cfg.model);
  const auto table = model::build_layer_table(g);
  const experiments::CompressionSpace space(g, table, cfg.space);
  REQUIRE(space.quant_slots().size() == 4);
  REQUIRE(space.prune_slots().size() == 4);
  // conv1 has one input channel: runs of 4 would straddle kernel positions (DESIGN rule 4).
  const auto& first = space.prune_slots().front();
  CHECK(std::find(first.kinds.begin(), first.kinds.end(), "2:4") == first.kinds.end());
  const auto& last = space.prune_slots().back();
  CHECK(std::find(last.kinds.begin(), last.kinds.end(), "channel") == last.kinds.end());
  CHECK(std::find(last.kinds.begin(), last.kinds.end(), "2:4") != last.kinds.end());
  // 4 layers x 3 bit widths, and per layer: none + 3 ratios per ratio kind + N:M where eligible.
  CHECK(space.size() == doctest::Approx(std::pow(3.0, 4) * (1 + 3 + 3) * (1 + 3 + 3 + 1) *
                                        (1 + 3 + 3 + 1) * (1 + 3 + 1)));

  experiments::Params p;
  const std::string l0 = table.layers[0].name, l3 = table.layers[3].name;
  p[l0 + ".w_bits"] = 2;
  p[l0 + ".prune_kind"] = "channel";
  p[l0 + ".prune_ratio"] = 0.5;
  p[l3 + ".prune_kind"] = "2:4";
  const auto r = space.recipe(p);
  CHECK(r.setting_for(l0).w_bits == 2);
  CHECK(r.setting_for(l0).prune.kind == compressors::PruneKind::kChannel);
  CHECK(r.setting_for(l0).prune.ratio == 0.5);
  CHECK(r.setting_for(l3).prune.kind == compressors::PruneKind::kNM);
  CHECK(r.setting_for(l3).prune.n == 2);
  CHECK(r.setting_for(l3).w_bits == 2);  // missing parameter: first choice
}

TEST_CASE("tie groups share parameters and freeze keeps a layer at fp32") {
  json j = small_config("/tmp/x.journal");
  const model::Graph g = model::load_onnx(source_dir() / "models" / "fmnist_cnn.onnx");
  const auto table = model::build_layer_table(g);
  j["space"]["tie"] = json::array({json::array({table.layers[1].name, table.layers[2].name})});
  j["space"]["freeze"] = {table.layers[0].name};
  j["space"]["keep_first_last_8bit"] = true;
  const auto cfg = experiments::config_from_json(j, "cfg.json", source_dir());
  const experiments::CompressionSpace space(g, table, cfg.space);
  REQUIRE(space.quant_slots().size() == 2);
  CHECK(space.quant_slots()[0].layers.size() == 2);
  CHECK(space.quant_slots()[1].w_bits == std::vector<int>{8});  // last layer >= 8 bits
  CHECK(space.frozen() == std::vector<std::string>{table.layers[0].name});
  experiments::Params p{{space.quant_slots()[0].name + ".w_bits", 4}};
  const auto r = space.recipe(p);
  CHECK(r.setting_for(table.layers[0].name).w_bits == 32);
  CHECK(r.setting_for(table.layers[1].name).w_bits == 4);
  CHECK(r.setting_for(table.layers[2].name).w_bits == 4);
  json bad = small_config("/tmp/x.journal");
  bad["space"]["freeze"] = {"conv9"};
  const auto bad_cfg = experiments::config_from_json(bad, "cfg.json", source_dir());
  CHECK_THROWS_WITH(experiments::CompressionSpace(g, table, bad_cfg.space),
                    doctest::Contains(".space.freeze: the model has no layer \"conv9\""));
}

TEST_CASE("Spearman correlation matches hand computations") {
  CHECK(experiments::spearman({1, 2, 3, 4}, {10, 20, 30, 40}) == doctest::Approx(1.0));
  CHECK(experiments::spearman({1, 2, 3, 4}, {4, 3, 2, 1}) == doctest::Approx(-1.0));
  // ranks a = 1,2,3,4,5; b = 2,1,4,3,5: d^2 = 1+1+1+1+0 = 4; rho = 1 - 6*4/(5*24) = 0.8
  CHECK(experiments::spearman({1, 2, 3, 4, 5}, {2, 1, 4, 3, 5}) == doctest::Approx(0.8));
  CHECK(std::isnan(experiments::spearman({1, 2}, {1, 2})));
}

TEST_CASE("a small search runs, records metrics and constraints, and resumes to the total") {
  const fs::path dir =
      fs::temp_directory_path() / ("compsearch_search_test_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  const fs::path journal = dir / "study.journal";
  auto cfg = experiments::config_from_json(small_config(journal), "cfg.json", source_dir());
  const auto s1 = experiments::run_search(cfg);
  CHECK(s1.run_now == 4);
  CHECK(s1.completed + s1.pruned + s1.failed == 4);
  CHECK(s1.failed == 0);
  CHECK(s1.front_size >= 1);

  auto storage = std::make_shared<search::JournalStorage>(journal.string());
  auto study = search::Study::load(storage, "t");
  for (const auto& t : study->get_trials({search::TrialState::kComplete})) {
    CAPTURE(t.number);
    REQUIRE(t.values.size() == 2);
    CHECK(t.values[0] == t.user_attrs.at("accuracy").get<double>());
    CHECK(t.values[1] == t.user_attrs.at("latency_ms@mcu:stm32f746").get<double>());
    const double sram = t.user_attrs.at("sram_kb@mcu:stm32f746").get<double>();
    REQUIRE(t.constraints());
    CHECK((*t.constraints())[0] == doctest::Approx(sram - 320.0));
    CHECK(t.user_attrs.count("recipe"));
    CHECK(t.values[0] > 0.1);
  }
  const json ref = storage->get_study(study->study_id()).user_attrs.at("compsearch.reference");
  CHECK(ref.at("accuracy").get<double>() > 0.85);  // fp32 CNN on 300 validation images

  // python3-optuna opens the study and finds the same Pareto front (the trials' values and
  // constraints are Optuna's own format).
  {
    const std::string cmd =
        "/usr/bin/python3 -c \"import optuna, json; from optuna.storages import JournalStorage, "
        "JournalFileStorage as F; s = optuna.load_study(study_name='t', "
        "storage=JournalStorage(F('" +
        journal.string() +
        "'))); print(json.dumps(sorted(t.number for t in s.best_trials)))\" 2>&1";
    FILE* f = ::popen(cmd.c_str(), "r");
    REQUIRE(f);
    std::string out;
    char buf[256];
    while (fgets(buf, sizeof buf, f)) out += buf;
    const int rc = ::pclose(f);
    INFO("python3-optuna said: " << out);
    REQUIRE(rc == 0);
    std::vector<int64_t> ours;
    for (const auto& t : search::best_trials_of(study->get_trials(), study->directions()))
      ours.push_back(t.number);
    const auto last = out.find_last_of('[');  // Optuna prints an ExperimentalWarning first
    REQUIRE(last != std::string::npos);
    CHECK(json::parse(out.substr(last)).get<std::vector<int64_t>>() == ours);
  }

  // Same command again: nothing left to run. A larger total runs only the difference.
  const auto s2 = experiments::run_search(cfg);
  CHECK(s2.run_now == 0);
  CHECK(s2.trials_total == 4);
  cfg.budget.trials = 6;
  const auto s3 = experiments::run_search(cfg);
  CHECK(s3.run_now == 2);
  CHECK(s3.trials_total == 6);
  fs::remove_all(dir);
}

TEST_CASE("an experiment config nested 100000 deep is refused, naming the file") {
  // tests/data/fuzz_regressions/config: {"study_name": [[[...]]]} overflowed the stack while the
  // error message for study_name was built (load_config parsed without the nesting check).
  const std::string path =
      std::string(COMPSEARCH_TEST_DATA) + "/fuzz_regressions/config/nested_100000_deep.json";
  REQUIRE(fs::file_size(path) > 200000);
  CHECK_THROWS_WITH_AS(experiments::load_config(path),
                       doctest::Contains((path + ": JSON nested deeper than 512 levels").c_str()),
                       std::invalid_argument);
}

TEST_CASE("an experiment config that is a directory or holds 1e999 is an error naming the file") {
  // Both named no file before: libstdc++'s "basic_filebuf::underflow error reading the file: Is
  // a directory", and nlohmann's "number overflow parsing '1e999'" (an out_of_range, not a
  // parse_error, so it escaped the catch).
  const fs::path dir = fs::temp_directory_path() / "compsearch_config_bad_inputs";
  fs::remove_all(dir);
  fs::create_directories(dir / "config_dir.json");
  CHECK_THROWS_WITH_AS(
      experiments::load_config(dir / "config_dir.json"),
      doctest::Contains(((dir / "config_dir.json").string() + ": is a directory").c_str()),
      std::runtime_error);
  { std::ofstream(dir / "huge.json") << R"({"study_name": "x", "budget": {"trials": 1e999}})"; }
  CHECK_THROWS_WITH_AS(
      experiments::load_config(dir / "huge.json"),
      doctest::Contains(((dir / "huge.json").string() + ": not valid JSON").c_str()),
      std::invalid_argument);
  fs::remove_all(dir);
}

TEST_CASE("evaluator.int8 is read, kept in the stored config, and must be a boolean") {
  const fs::path dir = fs::temp_directory_path() / "compsearch_config_int8";
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::string model = (source_dir() / "models" / "fmnist_cnn.onnx").string();
  {
    std::ofstream(dir / "on.json") << R"({"study_name": "s", "model": ")" << model
                                   << R"(", "data": {"source": "fashion-mnist"},
                                      "objectives": [["accuracy", "maximize"]],
                                      "evaluator": {"kind": "accuracy", "int8": true}})";
    std::ofstream(dir / "bad.json") << R"({"study_name": "s", "model": ")" << model
                                    << R"(", "data": {"source": "fashion-mnist"},
                                       "objectives": [["accuracy", "maximize"]],
                                       "evaluator": {"int8": 1}})";
  }
  const auto on = experiments::load_config(dir / "on.json");
  CHECK(on.evaluator.int8);
  CHECK(on.to_json()["evaluator"]["int8"] == true);
  CHECK_THROWS_WITH(experiments::load_config(dir / "bad.json"),
                    doctest::Contains(".evaluator.int8"));
  fs::remove_all(dir);
}
