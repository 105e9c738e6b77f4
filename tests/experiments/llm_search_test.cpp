// The LLM sensitivity table (cached, resumable after kill -9, equal to evaluate --kld of the same
// one-tensor recipe) and the LLM search (exact route into an Optuna-format study that best and
// export read).
#include "experiments/llm_search.h"

#include <doctest/doctest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <thread>

#include "experiments/llm_commands.h"
#include "experiments/results.h"
#include "llm/cost_model.h"
#include "llm/decoder.h"
#include "llm/llama_mixes.h"
#include "tests/experiments/cli_runner.h"
#include "tests/llm/llm_test_util.h"

using namespace compsearch;
using namespace compsearch::experiments;
namespace fs = std::filesystem;
using compsearch::testing::llm_fixture;

namespace {

const llm::LlmModel& tiny() {
  static const llm::LlmModel m = llm::load_llm(llm_fixture("tiny_llama"));
  return m;
}

std::vector<int32_t> calibration() {
  return llm::load_tokens(llm_fixture("fortunes_calibration.u8.npy"), 256);
}

// [["kld", "minimize"], ["size_bytes", "minimize"]] (braces alone would make an object).
nlohmann::json objectives() {
  return nlohmann::json::array({nlohmann::json::array({"kld", "minimize"}),
                                nlohmann::json::array({"size_bytes", "minimize"})});
}

LlmSensitivityRequest request(const std::vector<int32_t>& tokens, const fs::path& cache) {
  LlmSensitivityRequest r;
  r.model = &tiny();
  r.tokens = tokens;
  r.context = 64;
  r.windows = 2;
  r.threads = 1;  // OpenMP threads spin: on a loaded 2-core machine one thread is faster
  r.model_key = llm_model_key(llm_fixture("tiny_llama").string());
  r.types = {llm::TensorType::kQ8_0, llm::TensorType::kQ4_K, llm::TensorType::kQ2_K};
  r.cache_dir = cache;
  return r;
}

}  // namespace

TEST_CASE("LLM sensitivity table: one entry per tensor and distinct stored type, cached") {
  const std::vector<int32_t> tokens = calibration();
  const fs::path dir = compsearch::testing::fresh_dir("llm_sensitivity");
  int64_t last_total = 0;
  const evaluators::SensitivityTable first =
      llm_sensitivity(request(tokens, dir),
                      [&](const evaluators::SensitivityProgress& p) { last_total = p.total; });
  // 15 matrices (token_embd + 2 x 7) x {q8_0, q4_k, q2_k}; ffn_down's 640-long rows store q4_k
  // as q5_0 and q2_k as q4_0, still three distinct types each.
  CHECK(first.options.size() == 45u);
  CHECK(last_total == 46);
  CHECK(first.measured == 46);
  CHECK(first.options.contains("blk.1.ffn_down|q4_0"));
  CHECK_FALSE(first.options.contains("blk.1.ffn_down|q2_k"));
  CHECK(first.reference.at("kld") == 0.0);
  for (const auto& entry : first.options) {
    const auto& key = entry.first;  // not a structured binding: clang 14's CAPTURE
    const auto& m = entry.second;
    CAPTURE(key);
    CHECK(m.at("kld") >= 0.0);
  }
  // Fewer bits hurt more, tensor by tensor (the table is not noise).
  for (const char* t : {"blk.0.ffn_up", "blk.1.attn_output", "token_embd"}) {
    CAPTURE(t);
    const std::string s = t;
    CHECK(first.options.at(s + "|q8_0").at("kld") < first.options.at(s + "|q4_k").at("kld"));
    CHECK(first.options.at(s + "|q4_k").at("kld") < first.options.at(s + "|q2_k").at("kld"));
  }
  // A second run reads everything back.
  const evaluators::SensitivityTable second = llm_sensitivity(request(tokens, dir));
  CHECK(second.measured == 0);
  CHECK(second.options == first.options);
  // Other tokens are another key: measured again (into another file).
  std::vector<int32_t> other = tokens;
  other[3] = (other[3] + 1) % 256;
  LlmSensitivityRequest r = request(other, dir);
  r.types = {llm::TensorType::kQ8_0};
  CHECK(llm_sensitivity(r).measured == 16);

  // Entries equal `evaluate --kld` of the same one-tensor recipe (q2_k asked, q4_0 stored).
  {
    std::ofstream f(dir / "one.json");
    f << R"({"layers": {"blk.1.ffn_down": {"type": "q2_k"}}})";
  }
  LlmEvaluateRequest e;
  e.model = llm_fixture("tiny_llama").string();
  e.data = llm_fixture("fortunes_calibration.u8.npy").string();
  e.context = 64;
  e.max_windows = 2;
  e.recipe = (dir / "one.json").string();
  e.kld = true;
  e.threads = 1;
  const LlmEvaluateResult direct = evaluate_llm(e);
  REQUIRE(direct.kld);
  CHECK(direct.kld->mean_kld ==
        doctest::Approx(first.options.at("blk.1.ffn_down|q4_0").at("kld")).epsilon(1e-9));
  CHECK(direct.kld->delta_nll ==
        doctest::Approx(first.options.at("blk.1.ffn_down|q4_0").at("delta_nll")).epsilon(1e-9));
}

TEST_CASE("LLM sensitivity table resumes after kill -9 of compsearch search") {
  const fs::path dir = compsearch::testing::fresh_dir("llm_sensitivity_kill");
  const nlohmann::json config = {
      {"study_name", "kill"},
      {"model", llm_fixture("tiny_llama").string()},
      {"data", llm_fixture("fortunes_calibration.u8.npy").string()},
      {"llm",
       {{"context", 64}, {"windows", 4}, {"threads", 1}, {"types", {"q8_0", "q4_k", "q2_k"}}}},
      {"objectives", objectives()},
      {"budget", {{"trials", 2}}},
      {"storage", (dir / "study.journal").string()}};
  {
    std::ofstream f(dir / "config.json");
    f << config.dump();
  }
  const std::string cmd = compsearch::testing::compsearch_binary().string() +
                          " search --quiet --config " + (dir / "config.json").string() +
                          " > /dev/null 2>&1 & echo $! > " + (dir / "pid").string();
  REQUIRE(std::system(cmd.c_str()) == 0);
  pid_t pid = 0;
  for (int i = 0; i < 100 && pid == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    std::ifstream(dir / "pid") >> pid;
  }
  REQUIRE(pid > 0);
  // Kill it once the cache holds a few entries (of 46).
  size_t cached = 0;
  fs::path cache;
  for (int i = 0; i < 3000 && cached < 5; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    for (const auto& e : fs::directory_iterator(dir)) {
      if (e.path().filename().string().rfind("llm-sensitivity-", 0) != 0) continue;
      std::ifstream f(e.path());
      const auto j = nlohmann::json::parse(f, nullptr, false);
      if (j.is_object() && j.contains("options")) {
        cached = j["options"].size();
        cache = e.path();
      }
    }
  }
  REQUIRE(::kill(pid, SIGKILL) == 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  REQUIRE(cached >= 5);
  std::ifstream f(cache);
  const size_t at_kill = nlohmann::json::parse(f)["options"].size();
  // Resume: the rest is measured, nothing twice.
  const LlmSearchConfig c =
      llm_search_config_from_json(config, (dir / "config.json").string(), dir);
  const std::vector<int32_t> tokens = calibration();
  LlmSensitivityRequest r;
  r.model = &tiny();
  r.tokens = tokens;
  r.context = 64;
  r.windows = 4;
  r.threads = 1;
  r.types = c.types;
  r.model_key = llm_model_key(c.model);
  r.cache_dir = dir;
  const evaluators::SensitivityTable t = llm_sensitivity(r);
  MESSAGE("killed with " << at_kill << " of " << t.options.size() + 1 << " entries cached");
  REQUIRE(at_kill < t.options.size() + 1);
  CHECK(t.measured == static_cast<int64_t>(t.options.size() + 1 - at_kill));
}

TEST_CASE("LLM search: the exact route's front as trials that best and export read") {
  const fs::path dir = compsearch::testing::fresh_dir("llm_search");
  const nlohmann::json j = {
      {"study_name", "tiny"},
      {"model", llm_fixture("tiny_llama").string()},
      {"data", llm_fixture("fortunes_calibration.u8.npy").string()},
      {"llm",
       {{"context", 64},
        {"windows", 2},
        {"threads", 1},
        {"types", {"q8_0", "q4_k", "q2_k"}},
        {"run", {{"context", 2048}}}}},
      {"objectives", objectives()},
      // A cost model metric as a constraint: computed for every trial and stored.
      {"constraints", {"decode_tok_s@gpu:rtx4090 >= 1"}},
      {"sampler", {{"name", "exact"}}},
      {"budget", {{"trials", 6}}},
      {"storage", (dir / "study.journal").string()}};
  const LlmSearchConfig config = llm_search_config_from_json(j, "tiny.json", dir);
  const LlmSearchSummary s = run_llm_search(config);
  CHECK(s.table_entries == 45);
  CHECK(s.front_size > 6u);
  CHECK(s.enqueued == 6);
  CHECK(s.trials_run == 6);
  const StudyResults study = load_study_results((dir / "study.journal").string(), "tiny");
  REQUIRE(study.trials.size() == 6u);
  double prev_size = 0;
  for (const auto& t : study.trials) {
    CAPTURE(t.number);
    CHECK(t.state == search::TrialState::kComplete);
    const double size = t.user_attrs.at("size_bytes").get<double>();
    CHECK(size > prev_size);  // enqueued cheapest first
    prev_size = size;
    CHECK(t.user_attrs.at("kld").get<double>() == t.values[0]);
    CHECK(t.user_attrs.contains("proxy_kld"));
    // size_bytes is the GGUF file: the tensors plus the source's metadata and padding.
    CHECK(size > t.user_attrs.at("tensor_bytes").get<double>());
    CHECK(t.user_attrs.at("decode_tok_s@gpu:rtx4090").get<double>() > 1.0);
  }
  {  // llama.cpp's mixes, measured the same way, are kept for the report.
    REQUIRE(s.baselines.size() == 5u);
    REQUIRE(study.baselines.size() == 5u);
    const llm::LlmModel m = llm::load_llm(config.model, /*with_data=*/false);
    const llm::AppliedRecipe q4km = llm::plan_llm_recipe(m, llm::llama_mix_recipe(m, "q4_k_m"));
    CHECK(study.baselines["q4_k_m"]["size_bytes"].get<double>() ==
          static_cast<double>(llm::gguf_file_bytes(m, q4km)));
    CHECK(study.baselines["q2_k"]["kld"].get<double>() >
          study.baselines["q6_k"]["kld"].get<double>());
    const std::string html = report_html(study);
    CHECK(html.find("llama.cpp Q4_K_M: kld") != std::string::npos);
    size_t circles = 0;
    for (size_t at = html.find("<circle class=\"baseline\""); at != std::string::npos;
         at = html.find("<circle class=\"baseline\"", at + 1))
      ++circles;
    CHECK(circles == 5);
  }
  {  // The cost metrics equal the cost model's own answer for the trial's recipe.
    const auto& t = study.trials[2];
    const llm::LlmModel m = llm::load_llm(config.model, /*with_data=*/false);
    llm::LlmRecipe r;
    for (const auto& [tensor, type] : t.params)
      r.types[tensor] = llm::parse_tensor_type(t.param(tensor).get<std::string>(), "test");
    const llm::AppliedRecipe plan = llm::plan_llm_recipe(m, r);
    llm::LlmRunSettings run;
    run.context = 2048;
    LlmObjectives costs(m, run);
    CHECK(t.user_attrs.at("size_bytes").get<double>() ==
          static_cast<double>(llm::gguf_file_bytes(m, plan)));
    CHECK(t.user_attrs.at("decode_tok_s@gpu:rtx4090").get<double>() ==
          costs.value("decode_tok_s@gpu:rtx4090", plan));
  }
  // The smallest point stores everything at q2_k (q4_0 for ffn_down); the largest keeps the
  // checkpoint's bf16 (loss 0 in the proxy, KLD 0 for real).
  CHECK(study.trials.front().params.size() == 15u);
  CHECK(study.trials.front().param("blk.0.attn_q") == "q2_k");
  CHECK(study.trials.back().param("blk.0.attn_q") == "bf16");
  CHECK(study.trials.back().user_attrs.at("kld").get<double>() < 1e-6);
  // best --budget "size_bytes<=N" --minimize kld.
  const double budget = study.trials[3].user_attrs.at("size_bytes").get<double>();
  BestRequest b;
  b.budgets = {parse_budget("size_bytes<=" + std::to_string(budget))};
  b.metric = "kld";
  b.maximize = false;
  const nlohmann::json best = best_trial(study, b);
  CHECK(best["metrics"]["size_bytes"].get<double>() <= budget);
  // export --format recipe gives a recipe that evaluate --kld scores the same.
  const int64_t n = best["number"].get<int64_t>();
  export_trial(study, n, ExportKind::kRecipe, dir / "best.json");
  LlmEvaluateRequest e;
  e.model = config.model;
  e.data = config.data;
  e.context = 64;
  e.max_windows = 2;
  e.recipe = (dir / "best.json").string();
  e.kld = true;
  e.threads = 1;
  const LlmEvaluateResult r = evaluate_llm(e);
  CHECK(r.kld->mean_kld == doctest::Approx(best["metrics"]["kld"].get<double>()).epsilon(1e-9));
  CHECK(static_cast<double>(r.applied->total_bytes) ==
        best["metrics"]["tensor_bytes"].get<double>());
  CHECK(static_cast<double>(r.file_bytes) == best["metrics"]["size_bytes"].get<double>());
  // A second run with the same budget runs nothing and measures no table entry.
  const LlmSearchSummary again = run_llm_search(config);
  CHECK(again.trials_run == 0);
  CHECK(again.table_measured == 0);
}

TEST_CASE("LLM search config errors name the file and key") {
  const fs::path base = ".";
  CHECK_THROWS_WITH(llm_search_config_from_json({{"llm", {}}, {"model", "m"}}, "c.json", base),
                    doctest::Contains("c.json: .study_name: missing"));
  CHECK_THROWS_WITH(
      llm_search_config_from_json({{"study_name", "s"}, {"llm", {{"ctx", 4}}}}, "c.json", base),
      doctest::Contains("c.json: .llm.ctx: unknown key"));
  CHECK_THROWS_WITH(llm_search_config_from_json(
                        {{"study_name", "s"},
                         {"llm", nlohmann::json::object()},
                         {"objectives", nlohmann::json::array(
                                            {nlohmann::json::array({"accuracy", "maximize"})})}},
                        "c.json", base),
                    doctest::Contains("metric \"accuracy\" is not measured for LLMs"));
  CHECK_THROWS_WITH(llm_search_config_from_json(
                        {{"study_name", "s"}, {"llm", {{"types", {"q9_k"}}}}}, "c.json", base),
                    doctest::Contains("unknown tensor type 'q9_k'"));
  CHECK_THROWS_WITH(
      llm_search_config_from_json({{"study_name", "s"}, {"llm", {{"run", {{"kv_type", "q9"}}}}}},
                                  "c.json", base),
      doctest::Contains("c.json: .llm.run.kv_type"));
}
