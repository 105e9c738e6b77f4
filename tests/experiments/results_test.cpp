// The results verbs (experiments/results.h, cli/best.cpp, cli/report.cpp, cli/export.cpp) on a
// study made by a real small search: every answer is checked against values computed here from
// the stored trials (best by hand, the front by hand dominance, the hypervolume by a 2-D sweep).
#include "experiments/results.h"

#include <doctest/doctest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include "compressors/recipe.h"
#include "experiments/experiment_config.h"
#include "experiments/search_runner.h"
#include "model/graph.h"
#include "tests/experiments/cli_runner.h"
#include "tests/experiments/results_study.h"

using namespace compsearch;
namespace fs = std::filesystem;
using nlohmann::json;

using namespace compsearch::results_test;

TEST_CASE("best returns the most accurate feasible trial within the budget, as computed by hand") {
  const auto study = experiments::load_study_results(journal().string(), kStudy);
  REQUIRE(study.trials.size() == 10);
  // A budget at the median latency of the feasible trials, so it really filters.
  std::vector<double> lat;
  for (const auto& t : study.trials)
    if (feasible_by_hand(t)) lat.push_back(*metric(t, kMcu));
  REQUIRE(lat.size() >= 3);
  std::sort(lat.begin(), lat.end());
  const double bound = lat[lat.size() / 2];
  int64_t want = -1;
  double want_acc = -1;
  for (const auto& t : study.trials) {
    if (!feasible_by_hand(t) || *metric(t, kMcu) > bound) continue;
    if (*metric(t, "accuracy") > want_acc) want = t.number, want_acc = *metric(t, "accuracy");
  }
  REQUIRE(want >= 0);

  std::ostringstream budget;
  budget.precision(17);
  budget << kMcu << "<=" << bound;
  experiments::BestRequest req;
  req.budgets.push_back(experiments::parse_budget(budget.str()));
  const json best = experiments::best_trial(study, req);
  CHECK(best["number"].get<int64_t>() == want);
  CHECK(best["metrics"]["accuracy"].get<double>() == want_acc);
  CHECK(best["metrics"][kMcu].get<double>() <= bound);
  CHECK(best["values"][0].get<double>() == want_acc);
  CHECK(best["params"].size() == study.trials[want].params.size());
  CHECK(best["recipe"] == study.trials[want].user_attrs.at("recipe"));

  // --minimize latency: the fastest feasible trial.
  experiments::BestRequest fast;
  fast.metric = kMcu;
  fast.maximize = false;
  CHECK(*metric(study.trials[experiments::best_trial(study, fast)["number"].get<int64_t>()],
                kMcu) == lat.front());

  // Through the CLI: same answer as JSON, exit 0.
  const auto r = testing::run_compsearch("best " + cli_study() + " --budget " +
                                         testing::shell_quote(budget.str()));
  CHECK(r.rc == 0);
  CHECK(json::parse(r.out)["number"].get<int64_t>() == want);
}

TEST_CASE("best fails naming the budget when nothing satisfies it, and usage errors exit 2") {
  const auto r = testing::run_compsearch("best " + cli_study() + " --budget " +
                                         testing::shell_quote(std::string(kMcu) + "<=0.000001"));
  CHECK(r.rc == 1);
  CHECK(r.err.find("latency_ms@mcu:stm32f746<=0.000001") != std::string::npos);
  CHECK(r.out.empty());
  CHECK(testing::run_compsearch("best " + cli_study() + " --budget 'latency_ms < 3'").rc == 2);
  CHECK(testing::run_compsearch("best " + cli_study() + " --budget 'nosuch<=3'").rc == 2);
  CHECK(testing::run_compsearch("best --storage " + testing::shell_quote(journal().string())).rc ==
        2);
  const auto missing = testing::run_compsearch(
      "best --storage " + testing::shell_quote(journal().string()) + " --study-name other");
  CHECK(missing.rc == 1);
  CHECK(missing.err.find("no study \"other\"") != std::string::npos);
}

TEST_CASE("the front CSV lists the hand-computed front with every metric") {
  const auto study = experiments::load_study_results(journal().string(), kStudy);
  const auto want = front_by_hand(study.trials);
  REQUIRE(!want.empty());
  const fs::path csv = journal().parent_path() / "front.csv";
  const auto r = testing::run_compsearch("report " + cli_study() + " --csv " +
                                         testing::shell_quote(csv.string()));
  REQUIRE(r.rc == 0);
  std::istringstream in(slurp(csv));
  std::string header, line;
  std::getline(in, header);
  CHECK(header.rfind("number,value:accuracy,value:latency_ms@mcu:stm32f746,", 0) == 0);
  CHECK(header.find(",latency_ms@gpu:t4,") != std::string::npos);
  CHECK(header.find(",sram_kb@mcu:stm32f746") != std::string::npos);
  std::vector<int64_t> got;
  while (std::getline(in, line)) {
    const int64_t n = std::stoll(line.substr(0, line.find(',')));
    got.push_back(n);
    const size_t c1 = line.find(',') + 1;
    CHECK(std::stod(line.substr(c1, line.find(',', c1) - c1)) ==
          study.trials[n].user_attrs.at("accuracy").get<double>());
  }
  CHECK(got == want);
}

TEST_CASE("the report is one self-contained escaped HTML file with one front point per plot") {
  const auto study = experiments::load_study_results(journal().string(), kStudy);
  const auto front = front_by_hand(study.trials);
  const fs::path out = journal().parent_path() / "report.html";
  const auto r = testing::run_compsearch("report " + cli_study() + " --out " +
                                         testing::shell_quote(out.string()));
  REQUIRE(r.rc == 0);
  const std::string html = slurp(out);
  // Two targets: each plot holds every front trial once.
  CHECK(count_of(html, "<svg class=\"plot pareto\"") == 2);
  CHECK(count_of(html, "<circle class=\"front\"") == 2 * front.size());
  for (int64_t n : front)
    CHECK(count_of(html, "<circle class=\"front\" data-trial=\"" + std::to_string(n) + "\"") == 2);
  CHECK(count_of(html, "<tr data-trial=") == front.size());
  // No external resource: no src/href attributes, no url(), no remote address.
  CHECK(html.find(" src=") == std::string::npos);
  CHECK(html.find(" href=") == std::string::npos);
  CHECK(html.find("url(") == std::string::npos);
  CHECK(html.find("https:") == std::string::npos);
  CHECK(std::regex_replace(html, std::regex("xmlns=\"http://www.w3.org/2000/svg\""), "")
            .find("http:") == std::string::npos);
  // The study name is escaped everywhere.
  CHECK(html.find("r<&>") == std::string::npos);
  CHECK(html.find("r&lt;&amp;&gt;&quot;&#39;") != std::string::npos);
  // The chosen recipe: the front's most accurate trial, one row per recipe layer + default.
  int64_t best = front[0];
  for (int64_t n : front)
    if (study.trials[n].values[0] > study.trials[best].values[0]) best = n;
  CHECK(html.find("id=\"chosen\" data-trial=\"" + std::to_string(best) + "\"") !=
        std::string::npos);
  const auto recipe =
      compressors::recipe_from_json(study.trials[best].user_attrs.at("recipe"), "r");
  const size_t map_at = html.find("class=\"recipe-map\"");
  REQUIRE(map_at != std::string::npos);
  CHECK(count_of(html.substr(map_at), "<td class=\"name\">") == recipe.layers.size() + 1);
  // --trial picks another; an unknown one is an error.
  CHECK(testing::run_compsearch("report " + cli_study() + " --out " +
                                testing::shell_quote(out.string()) + " --trial 99")
            .rc == 1);
  CHECK(testing::run_compsearch("report " + cli_study()).rc == 2);
}

TEST_CASE("the hypervolume history ends at the 2-D hypervolume computed by a sweep") {
  const auto study = experiments::load_study_results(journal().string(), kStudy);
  const auto hv = experiments::hypervolume_history(study);
  REQUIRE(hv.size() == study.trials.size());
  for (size_t i = 1; i < hv.size(); ++i) CHECK(hv[i] >= hv[i - 1]);
  // Reference point: accuracy 0, latency of the uncompressed model (search_runner.h).
  const double ref_lat = study.reference.at(kMcu).get<double>();
  std::vector<std::pair<double, double>> pts;  // (-accuracy, latency)
  for (int64_t n : front_by_hand(study.trials))
    pts.push_back({-study.trials[n].values[0], study.trials[n].values[1]});
  std::sort(pts.begin(), pts.end());
  double area = 0, prev = ref_lat;
  for (const auto& [a, l] : pts) {
    if (l >= prev || a >= 0) continue;
    area += (0 - a) * (prev - l);
    prev = l;
  }
  CHECK(hv.back() == doctest::Approx(area).epsilon(1e-12));
  CHECK(area > 0);
}

TEST_CASE("export writes the trial's recipe, NNI config lists and a loadable QDQ model") {
  const auto study = experiments::load_study_results(journal().string(), kStudy);
  const auto front = front_by_hand(study.trials);
  const int64_t k = front.back();
  const auto& trial = study.trials[k];
  const fs::path dir = journal().parent_path();
  auto run = [&](const std::string& format, const fs::path& out) {
    return testing::run_compsearch("export " + cli_study() + " --trial " + std::to_string(k) +
                                   " --format " + format + " --out " +
                                   testing::shell_quote(out.string()));
  };
  REQUIRE(run("recipe", dir / "r.json").rc == 0);
  CHECK(json::parse(slurp(dir / "r.json")) == trial.user_attrs.at("recipe"));

  REQUIRE(run("nni", dir / "nni.json").rc == 0);
  const json nni = json::parse(slurp(dir / "nni.json"));
  const auto recipe = compressors::recipe_from_json(trial.user_attrs.at("recipe"), "r");
  const auto graph = model::load_onnx(source_dir() / "models" / "fmnist_cnn.onnx");
  const auto table = model::build_layer_table(graph);
  for (const auto& layer : table.layers) {
    CAPTURE(layer.name);
    const auto& s = recipe.setting_for(layer.name);
    auto find = [&](const char* list, const char* target) -> const json* {
      for (const auto& e : nni[list]) {
        const auto& names = e["op_names"];
        if (std::find(names.begin(), names.end(), layer.name) != names.end() &&
            e["target_names"][0] == target)
          return &e;
      }
      return nullptr;
    };
    const json* w = find("quantization", "weight");
    if (s.w_bits <= 8) {
      REQUIRE(w);
      CHECK((*w)["quant_dtype"] == "int" + std::to_string(s.w_bits));
      CHECK((*w)["quant_scheme"] == "symmetric");
    } else {
      CHECK(!w);
    }
    const json* a = find("quantization", "_input_");
    CHECK((a != nullptr) == (s.a_bits <= 8));
    const json* p = find("pruning", "weight");
    if (s.prune.kind == compressors::PruneKind::kUnstructured) {
      REQUIRE(p);
      CHECK((*p)["sparse_ratio"].get<double>() == s.prune.ratio);
      CHECK((*p)["granularity"] == "default");
    } else {
      CHECK(!p);
    }
  }

  const auto q = run("onnx-qdq", dir / "m.onnx");
  REQUIRE_MESSAGE(q.rc == 0, q.err);
  const auto exported = model::load_onnx(dir / "m.onnx");
  size_t dq = 0;
  for (const auto& n : exported.nodes) dq += n.op_type == "DequantizeLinear";
  CHECK(dq > 0);
  REQUIRE(run("safetensors", dir / "m.safetensors").rc == 0);
  CHECK(fs::file_size(dir / "m.safetensors") > 0);
  CHECK(run("tflite", dir / "x").rc == 2);
  CHECK(run("recipe", dir / "y").rc == 0);
  CHECK(testing::run_compsearch("export " + cli_study() + " --trial 999 --format recipe --out " +
                                testing::shell_quote((dir / "z").string()))
            .rc == 1);
}
