// Interop with python3-optuna 3.1 itself (/usr/bin/python3 scripts/optuna_interop.py): Optuna
// reads journals compsearch wrote, compsearch reads and continues journals Optuna wrote
// (NSGA-II system attributes included), both CLIs print the same JSON, and Python and
// compsearch workers share one journal at once without losing or renumbering a trial.
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <future>
#include <limits>
#include <map>
#include <set>
#include <thread>

#include "search/in_memory_storage.h"
#include "search/journal_storage.h"
#include "search/python_json.h"
#include "search/random_sampler.h"
#include "search/sampler_factory.h"
#include "search/study.h"
#include "search_test_util.h"

using namespace compsearch::search;
using namespace compsearch::search::testing;

namespace {

const std::string kPython = "/usr/bin/python3";
const std::string kScript = std::string(COMPSEARCH_SOURCE_DIR) + "/scripts/optuna_interop.py";
const std::string kCli = std::string(COMPSEARCH_BINARY_DIR) + "/cli/compsearch";

std::string py(const std::string& args) {
  auto r = run_command(kPython + " " + shell_quote(kScript) + " " + args);
  REQUIRE_MESSAGE(r.exit_code == 0,
                  "python3 optuna_interop.py " << args << " failed (python3-optuna installed?)");
  return r.output;
}

std::string cli(const std::string& args) {
  REQUIRE_MESSAGE(std::filesystem::exists(kCli), "build the compsearch executable first: " << kCli);
  auto r = run_command(shell_quote(kCli) + " " + args);
  REQUIRE_MESSAGE(r.exit_code == 0, "compsearch " << args << " failed");
  return r.output;
}

// NaN != NaN for JSON equality: compare them as a marker string.
nlohmann::json comparable(nlohmann::json j) {
  if (j.is_number_float() && std::isnan(j.get<double>())) return "<NaN>";
  if (j.is_array() || j.is_object()) {
    for (auto& v : j) v = comparable(v);
  }
  return j;
}

// The same canonical form as optuna_interop.py's canonical().
nlohmann::json canonical(Storage& storage) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& s : storage.get_all_studies()) {
    nlohmann::json study;
    study["study_id"] = s.study_id;
    study["study_name"] = s.study_name;
    study["directions"] = nlohmann::json::array();
    for (auto d : s.directions) study["directions"].push_back(to_string(d));
    study["user_attrs"] = nlohmann::json(s.user_attrs);
    study["system_attrs"] = nlohmann::json(s.system_attrs);
    study["trials"] = nlohmann::json::array();
    for (const auto& t : storage.get_all_trials(s.study_id)) {
      nlohmann::json j;
      j["number"] = t.number;
      j["trial_id"] = t.trial_id;
      j["state"] = to_string(t.state);
      j["values"] = t.values.empty() ? nlohmann::json(nullptr) : nlohmann::json(t.values);
      j["datetime_start"] =
          t.datetime_start ? nlohmann::json(*t.datetime_start) : nlohmann::json(nullptr);
      j["datetime_complete"] =
          t.datetime_complete ? nlohmann::json(*t.datetime_complete) : nlohmann::json(nullptr);
      j["params"] = nlohmann::json::object();
      j["distributions"] = nlohmann::json::object();
      for (const auto& [name, d] : t.distributions) {
        j["params"][name] = t.param(name);
        j["distributions"][name] = distribution_to_json(d);
      }
      j["user_attrs"] = nlohmann::json(t.user_attrs);
      j["system_attrs"] = nlohmann::json(t.system_attrs);
      j["intermediate_values"] = nlohmann::json::object();
      for (const auto& [step, v] : t.intermediate_values)
        j["intermediate_values"][std::to_string(step)] = v;
      study["trials"].push_back(j);
    }
    out.push_back(study);
  }
  return comparable(out);
}

nlohmann::json optuna_view(const std::string& journal) {
  return comparable(parse_python_json(py("dump " + journal)));
}

void check_same(const nlohmann::json& ours, const nlohmann::json& theirs) {
  REQUIRE(ours.size() == theirs.size());
  for (size_t s = 0; s < ours.size(); ++s) {
    const auto& a = ours[s]["trials"];
    const auto& b = theirs[s]["trials"];
    REQUIRE(a.size() == b.size());
    for (size_t i = 0; i < a.size(); ++i)
      CHECK_MESSAGE(a[i] == b[i], "study " << s << " trial " << i << "\nours:   " << a[i].dump()
                                           << "\noptuna: " << b[i].dump());
    nlohmann::json sa = ours[s], sb = theirs[s];
    sa.erase("trials");
    sb.erase("trials");
    CHECK(sa == sb);
  }
}

}  // namespace

TEST_CASE("Optuna opens a journal compsearch wrote and sees the same studies and trials") {
  TempDir dir;
  const auto path = dir.file("ours.journal");
  auto storage = std::make_shared<JournalStorage>(path);
  auto multi =
      Study::create(storage, "multi", {StudyDirection::kMinimize, StudyDirection::kMaximize},
                    std::make_shared<RandomSampler>(11));
  multi->set_user_attr("owner", "compsearch \xE2\x98\x83");
  multi->set_system_attr("nested", {{"a", {1, 2.5, nullptr}}});
  const std::vector<std::pair<std::string, Distribution>> space = {
      {"conv1.w_bits", make_categorical({1, 2, 4, 8})},
      {"conv1.prune_kind", make_categorical({"unstructured", "channel", "2:4", nullptr, true})},
      {"conv1.prune_ratio", make_float(0, 0.75, false, 0.25)},
      {"kd.lr", make_float(1e-5, 1e-1, true)},
      {"kd.epochs", make_int(0, 8, false, 2)},
      {"kd.temperature", make_int(1, 16, true)},
      {"x", make_float(-1, 1)}};
  for (int k = 0; k < 6; ++k) {
    auto t = multi->ask(space);
    t.set_user_attr("latency_ms@mcu:stm32f746", 1.5 * k);
    t.set_system_attr("constraints", {k - 3.0, -1.0});
    if (k == 3)
      multi->tell(t.number(), std::nullopt, TrialState::kFail);
    else if (k == 4)
      continue;  // left RUNNING
    else
      multi->tell(t.number(),
                  std::vector<double>{0.1 * k, std::numeric_limits<double>::infinity()});
  }
  multi->enqueue_trial({{"x", 0.5}}, {{"why", "queued"}});
  auto single = Study::create(storage, "single", {StudyDirection::kMaximize},
                              std::make_shared<RandomSampler>(2));
  auto t = single->ask({{"lr", make_float(1e-4, 1, true)}});
  t.report(0.25, 0);
  t.report(std::numeric_limits<double>::quiet_NaN(), 1);
  t.report(0.5, 3);
  single->tell(t.number(), std::nullopt, TrialState::kPruned);

  check_same(canonical(*storage), optuna_view(path));
}

TEST_CASE("compsearch opens a journal Optuna wrote with NSGA-II and continues it") {
  TempDir dir;
  const auto path = dir.file("optuna.journal");
  py("write " + shell_quote(path) + " nsga");
  auto storage = std::make_shared<JournalStorage>(path);
  check_same(canonical(*storage), optuna_view(path));
  auto trials = storage->get_all_trials(storage->get_study_id_from_name("nsga"));
  REQUIRE(trials.size() == 13);
  CHECK(trials[0].system_attrs.count("nsga2:generation"));
  CHECK(trials[5].state == TrialState::kFail);
  CHECK(trials[10].state == TrialState::kPruned);
  CHECK(trials[11].state == TrialState::kRunning);
  CHECK(trials[12].state == TrialState::kWaiting);

  // Continue in-process with our NSGA-II (the enqueued trial runs first), then through the CLI.
  auto study = Study::load(storage, "nsga",
                           std::shared_ptr<Sampler>(make_sampler(
                               "NSGAIISampler", {{"seed", 1}, {"population_size", 4}})));
  study->optimize(
      [](Trial& t) {
        double x = t.suggest_float("x", -2.0, 2.0);
        int64_t n = t.suggest_int("n", 1, 64, 1, true);
        return std::vector<double>{x * x, static_cast<double>(n)};
      },
      5);
  auto after = study->get_trials();
  REQUIRE(after.size() == 17);                     // the enqueued trial was one of the 5
  CHECK(after[11].state == TrialState::kRunning);  // a Python worker's, no heartbeat: left alone
  CHECK(after[12].state == TrialState::kComplete);
  CHECK(after[12].param("x") == 0.5);  // the enqueued value
  for (size_t i = 13; i < after.size(); ++i) {
    CHECK(after[i].state == TrialState::kComplete);
    CHECK(after[i].system_attrs.count("nsga2:generation"));
  }
  const std::string space = shell_quote(
      R"({"x": {"name": "FloatDistribution", "attributes": {"low": -2.0, "high": 2.0, "step": null, "log": false}}})");
  for (int k = 0; k < 2; ++k) {
    auto asked = parse_python_json(
        cli("ask --storage " + shell_quote(path) +
            " --study-name nsga --sampler NSGAIISampler "
            "--sampler-kwargs '{\"seed\": 1, \"population_size\": 4}' --search-space " +
            space));
    const int64_t number = asked["number"].get<int64_t>();
    CHECK(number == 17 + k);
    const double x = asked["params"]["x"].get<double>();
    cli("tell --storage " + shell_quote(path) + " --study-name nsga --trial-number " +
        std::to_string(number) + " --values " + python_float_repr(x * x) + " -3.5");
  }
  py("continue " + shell_quote(path) + " nsga 2");  // and Optuna continues after us
  JournalStorage reread(path);
  auto final_trials = reread.get_all_trials(reread.get_study_id_from_name("nsga"));
  REQUIRE(final_trials.size() == 21);
  const double x18 = final_trials[18].param("x").get<double>();
  CHECK(final_trials[18].values == std::vector<double>{x18 * x18, -3.5});
  CHECK(final_trials[20].state == TrialState::kComplete);
  CHECK(final_trials[20].user_attrs.empty());
  check_same(canonical(reread), optuna_view(path));
}

TEST_CASE("compsearch's CLI prints what Optuna's CLI prints, as JSON and as tables") {
  TempDir dir;
  const auto path = dir.file("optuna.journal");
  py("write " + shell_quote(path) + " cli");
  const std::string storage = " --storage " + shell_quote(path);
  // Optuna's side runs in one Python process (cli-batch), each command on a fresh study load.
  std::vector<std::vector<std::string>> commands;
  std::vector<std::string> ours;
  for (const std::string verb : {"trials", "best-trials"}) {
    for (const std::string study : {"cli", "cli-single"}) {
      for (const bool flatten : {false, true}) {
        for (const std::string format : {"json", "table"}) {
          std::vector<std::string> args{verb, "--study-name", study, "-f", format};
          if (flatten) args.push_back("--flatten");
          commands.push_back(args);
          ours.push_back(cli(verb + " --study-name " + study + " -f " + format +
                             (flatten ? " --flatten" : "") + storage));
        }
      }
    }
  }
  // ask with single-valued distributions gives the same params whatever the sampler; the order
  // of params is the search space's.
  const std::string space =
      R"({"b": {"name": "IntDistribution", "attributes": {"low": 3, "high": 3}}, "a": {"name": "CategoricalDistribution", "attributes": {"choices": ["only"]}}, "c": {"name": "FloatDistribution", "attributes": {"low": 0.5, "high": 0.5}}})";
  cli("create-study --study-name fresh" + storage);
  CHECK(cli("ask --study-name fresh --search-space " + shell_quote(space) + storage) ==
        "{\"number\": 0, \"params\": {\"b\": 3, \"a\": \"only\", \"c\": 0.5}}\n");
  CHECK(cli("ask --study-name fresh --flatten" + storage) == "{\"number\": 1}\n");
  // Listed after our two asks, before Optuna's (the batch below lists first, then asks).
  commands.push_back({"studies", "-f", "json"});
  ours.push_back(cli("studies" + storage));
  commands.push_back({"studies", "-f", "json", "--flatten"});
  ours.push_back(cli("studies --flatten" + storage));
  commands.push_back({"studies", "-f", "table"});
  ours.push_back(cli("studies -f table" + storage));
  commands.push_back({"ask", "--study-name", "fresh", "--search-space", space});
  commands.push_back({"ask", "--study-name", "fresh", "--flatten"});
  const std::string batch_file = dir.file("batch.json");
  {
    std::ofstream out(batch_file);
    out << nlohmann::json(commands).dump();
  }
  auto theirs =
      nlohmann::json::parse(py("cli-batch " + shell_quote(path) + " " + shell_quote(batch_file)));
  REQUIRE(theirs.size() == commands.size());
  for (size_t i = 0; i < ours.size(); ++i) {
    CHECK_MESSAGE(ours[i] == theirs[i].get<std::string>(), nlohmann::json(commands[i]).dump());
  }
  CHECK(theirs[ours.size()] ==
        "{\"number\": 2, \"params\": {\"b\": 3, \"a\": \"only\", \"c\": 0.5}}\n");
  CHECK(theirs[ours.size() + 1] == "{\"number\": 3}\n");
}

TEST_CASE("Python and compsearch workers share one journal without losing or renumbering trials") {
  TempDir dir;
  const auto path = dir.file("shared.journal");
  cli("create-study --study-name shared --storage " + shell_quote(path));
  constexpr int kPerWorker = 12;
  auto python_worker = [&](const std::string& tag) {
    return std::async(std::launch::async, [&, tag] {
      return run_command(kPython + " " + shell_quote(kScript) + " worker " + shell_quote(path) +
                         " shared " + std::to_string(kPerWorker) + " " + tag)
          .exit_code;
    });
  };
  auto cpp_worker = [&](const std::string& tag, uint64_t seed) {
    return std::async(std::launch::async, [&, tag, seed] {
      auto study = Study::load(std::make_shared<JournalStorage>(path), "shared",
                               std::make_shared<RandomSampler>(seed));
      for (int i = 0; i < kPerWorker; ++i) {
        auto t = study->ask();
        t.set_user_attr("worker", tag);
        study->tell(t.number(), std::vector<double>{t.suggest_float("x", 0, 1)});
      }
      return 0;
    });
  };
  auto cli_worker = [&](const std::string& tag) {
    return std::async(std::launch::async, [&, tag] {
      for (int i = 0; i < 4; ++i) {
        auto r = run_command(shell_quote(kCli) + " ask --storage " + shell_quote(path) +
                             " --study-name shared --sampler RandomSampler");
        if (r.exit_code != 0) return r.exit_code;
        auto n = parse_python_json(r.output)["number"].get<int64_t>();
        auto told =
            run_command(shell_quote(kCli) + " tell --storage " + shell_quote(path) +
                        " --study-name shared --trial-number " + std::to_string(n) + " --values 7");
        if (told.exit_code != 0) return told.exit_code;
      }
      return 0;
    });
  };
  REQUIRE(std::filesystem::exists(kCli));
  std::vector<std::future<int>> jobs;
  jobs.push_back(python_worker("py1"));
  jobs.push_back(python_worker("py2"));
  jobs.push_back(cpp_worker("cpp1", 1));
  jobs.push_back(cpp_worker("cpp2", 2));
  jobs.push_back(cli_worker("cli"));
  for (auto& j : jobs) CHECK(j.get() == 0);

  JournalStorage storage(path);
  auto trials = storage.get_all_trials(0);
  REQUIRE(trials.size() == 4 * kPerWorker + 4);
  std::map<std::string, int> per_worker;
  std::set<int64_t> ids;
  for (size_t i = 0; i < trials.size(); ++i) {
    CHECK(trials[i].number == static_cast<int64_t>(i));
    CHECK(trials[i].state == TrialState::kComplete);
    ids.insert(trials[i].trial_id);
    auto w = trials[i].user_attrs.find("worker");
    per_worker[w == trials[i].user_attrs.end() ? "cli" : w->second.get<std::string>()]++;
  }
  CHECK(ids.size() == trials.size());
  CHECK(per_worker == std::map<std::string, int>{{"cli", 4},
                                                 {"cpp1", kPerWorker},
                                                 {"cpp2", kPerWorker},
                                                 {"py1", kPerWorker},
                                                 {"py2", kPerWorker}});
  check_same(canonical(storage), optuna_view(path));
}

TEST_CASE(
    "a loop of fresh compsearch ask/tell processes proposes what one in-process loop proposes") {
  TempDir dir;
  const auto path = dir.file("loop.journal");
  const std::string sampler_kwargs = R"({"seed": 0, "population_size": 4})";
  const std::string space_json =
      R"({"x": {"name": "FloatDistribution", "attributes": {"low": 0.0, "high": 1.0}}, "k": {"name": "CategoricalDistribution", "attributes": {"choices": ["a", "b"]}}, "n": {"name": "IntDistribution", "attributes": {"low": 1, "high": 5}}})";
  auto objective = [](double x, const std::string& k, int64_t n) {
    return std::vector<double>{x + 0.1 * static_cast<double>(n),
                               1.0 - std::sqrt(x) + (k == "a" ? 0.2 : 0.0)};
  };
  constexpr int kTrials = 12;
  cli("create-study --study-name s --directions minimize minimize --storage " + shell_quote(path));
  for (int i = 0; i < kTrials; ++i) {
    auto asked = parse_python_json(cli("ask --storage " + shell_quote(path) +
                                       " --study-name s --sampler NSGAIISampler --sampler-kwargs " +
                                       shell_quote(sampler_kwargs) + " --search-space " +
                                       shell_quote(space_json)));
    const auto& p = asked["params"];
    auto v = objective(p["x"].get<double>(), p["k"].get<std::string>(), p["n"].get<int64_t>());
    cli("tell --storage " + shell_quote(path) + " --study-name s --trial-number " +
        std::to_string(asked["number"].get<int64_t>()) + " --values " + python_float_repr(v[0]) +
        " " + python_float_repr(v[1]));
  }
  auto in_process = Study::create(
      std::make_shared<InMemoryStorage>(), "s",
      {StudyDirection::kMinimize, StudyDirection::kMinimize},
      std::shared_ptr<Sampler>(make_sampler("NSGAIISampler", parse_python_json(sampler_kwargs))));
  std::vector<std::pair<std::string, Distribution>> space;
  auto ordered = parse_python_json_ordered(space_json);
  for (auto it = ordered.begin(); it != ordered.end(); ++it) {
    space.emplace_back(it.key(), distribution_from_json(nlohmann::json(it.value())));
  }
  for (int i = 0; i < kTrials; ++i) {
    auto t = in_process->ask(space);
    auto v =
        objective(t.cached().param("x").get<double>(), t.cached().param("k").get<std::string>(),
                  t.cached().param("n").get<int64_t>());
    in_process->tell(t.number(), v);
  }
  JournalStorage journal(path);
  auto a = journal.get_all_trials(0);
  auto b = in_process->get_trials();
  REQUIRE(a.size() == b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    CHECK_MESSAGE(a[i].params == b[i].params, "trial " << i);
    CHECK(a[i].values == b[i].values);
  }
}

TEST_CASE("the study verbs report bad input naming the flag, the value and what was expected") {
  TempDir dir;
  const std::string storage = " --storage " + shell_quote(dir.file("j.log"));
  auto run = [&](const std::string& args) {
    REQUIRE(std::filesystem::exists(kCli));
    return run_command(shell_quote(kCli) + " " + args + storage + " 2>&1");
  };
  CHECK(run("create-study --study-name s --directions minimize").exit_code == 0);
  auto dup = run("create-study --study-name s");
  CHECK(dup.exit_code == 1);
  CHECK(dup.output.find("Another study with name 's' already exists") != std::string::npos);
  auto state = run("tell --study-name s --trial-number 0 --state done");
  CHECK(state.exit_code == 2);
  CHECK(state.output.find(
            "--state: invalid choice 'done' (choose from 'complete', 'pruned', 'fail')") !=
        std::string::npos);
  auto unknown = run("tell --study-name s --trial-number 3 --values 1");
  CHECK(unknown.exit_code == 1);
  CHECK(unknown.output.find("Cannot tell for trial with number 3 since it has not been created.") !=
        std::string::npos);
  auto space = run("ask --study-name s --search-space " +
                   shell_quote(R"({"x": {"name": "Nope", "attributes": {}}})"));
  CHECK(space.exit_code == 2);  // a malformed flag value: a usage error
  CHECK(space.output.find(
            "--search-space: parameter \"x\": distribution: unknown distribution class \"Nope\"") !=
        std::string::npos);
  auto sampler = run("ask --study-name s --sampler SobolSampler");
  CHECK(sampler.exit_code == 2);
  CHECK(sampler.output.find("SobolSampler") != std::string::npos);
  auto kwargs = run("ask --study-name s --sampler-kwargs '{\"seed\": 1}'");
  CHECK(kwargs.exit_code == 2);
  CHECK(kwargs.output.find("`--sampler_kwargs` is set without `--sampler`") != std::string::npos);
  auto missing = run("trials --study-name nope");
  CHECK(missing.exit_code == 1);
  CHECK(missing.output.find("study \"nope\" does not exist") != std::string::npos);
  auto values = run("tell --study-name s --trial-number 0 --values 1 x2");
  CHECK(values.exit_code == 2);
  CHECK(values.output.find("--values: invalid float value: 'x2'") != std::string::npos);
}

TEST_CASE(
    "A complete last record without its newline counts as Optuna counts it and is kept by the "
    "next write") {
  TempDir dir;
  const auto path = dir.file("tail.journal");
  {
    auto storage = std::make_shared<JournalStorage>(path);
    auto study = Study::create(storage, "tail", {StudyDirection::kMinimize},
                               std::make_shared<RandomSampler>(3));
    for (int k = 0; k < 2; ++k) {
      auto t = study->ask({{"x", make_float(-1, 1)}});
      study->tell(t.number(), std::vector<double>{0.5 * k});
    }
  }
  // An editor, a copy or a writer killed between the record and its newline.
  std::string text = read_file(path);
  REQUIRE(text.back() == '\n');
  text.pop_back();
  std::ofstream(path, std::ios::binary | std::ios::trunc) << text;
  const auto theirs = optuna_view(path);
  REQUIRE(theirs[0]["trials"].size() == 2);
  CHECK(theirs[0]["trials"][1]["state"] == "COMPLETE");  // Optuna 3.1 parses the last line
  JournalStorage reader(path);
  check_same(canonical(reader), theirs);
  CHECK(reader.get_trial(1).state == TrialState::kComplete);
  // The next write ends the record with its newline instead of cutting it off.
  auto study = Study::load(std::make_shared<JournalStorage>(path), "tail",
                           std::make_shared<RandomSampler>(4));
  auto t = study->ask({{"x", make_float(-1, 1)}});
  study->tell(t.number(), std::vector<double>{2.0});
  const std::string after = read_file(path);
  CHECK(after.substr(0, text.size() + 1) == text + "\n");
  const auto optuna_after = optuna_view(path);
  REQUIRE(optuna_after[0]["trials"].size() == 3);
  CHECK(optuna_after[0]["trials"][1]["state"] == "COMPLETE");
  CHECK(optuna_after[0]["trials"][1]["values"] == nlohmann::json::array({0.5}));
  check_same(canonical(reader), optuna_after);
  check_same(canonical(*std::make_shared<JournalStorage>(path)), optuna_after);
}
