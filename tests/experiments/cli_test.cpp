// The `compsearch` executable end to end: every verb answers --help on stdout with exit 0, a
// malformed flag or flag value is a usage error (exit 2, "see compsearch VERB --help") in every
// verb, a request that is well formed but fails (a missing file or study) exits 1, and
// --version prints project(VERSION) of the top-level CMakeLists.txt.
#include <doctest/doctest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include "tests/experiments/cli_runner.h"

using compsearch::testing::run_compsearch;
using compsearch::testing::shell_quote;
namespace fs = std::filesystem;

namespace {

fs::path source_dir() { return COMPSEARCH_SOURCE_DIR; }

struct TempDir {
  fs::path path;
  TempDir() {
    static int counter = 0;
    path = fs::temp_directory_path() /
           ("compsearch_cli_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
};

// Runs `args`; checks the exit code and that stderr holds `message`.
void expect(const std::string& args, int rc, const std::string& message) {
  CAPTURE(args);
  const auto r = run_compsearch(args);
  CHECK(r.rc == rc);
  CHECK_MESSAGE(r.err.find(message) != std::string::npos, "stderr: " << r.err);
  if (rc == 2 && args.rfind("-", 0) != 0 && args.find(' ') != std::string::npos) {
    const std::string verb = args.substr(0, args.find(' '));
    CHECK_MESSAGE(r.err.find("(see compsearch " + verb + " --help)") != std::string::npos,
                  "stderr: " << r.err);
  }
}

}  // namespace

TEST_CASE("Every verb prints its usage for --help and exits 0") {
  const auto top = run_compsearch("--help");
  CHECK(top.rc == 0);
  CHECK(top.out.find("usage: compsearch <command>") != std::string::npos);
  // The verbs `compsearch --help` lists ("  <verb>  <summary>"), so a new verb is covered too.
  std::set<std::string> verbs;
  std::istringstream lines(top.out);
  const std::regex verb_line(R"(^  ([a-z][a-z-]*) +\S.*$)");
  for (std::string line; std::getline(lines, line);) {
    std::smatch m;
    if (std::regex_match(line, m, verb_line)) verbs.insert(m[1].str());
  }
  for (const char* known : {"create-study", "ask", "tell", "trials", "best-trials", "studies",
                            "inspect", "evaluate", "compress", "estimate", "hw"}) {
    CHECK_MESSAGE(verbs.count(known) == 1, known << " is not listed by compsearch --help");
  }
  for (const std::string& verb : verbs) {
    CAPTURE(verb);
    const auto r = run_compsearch(verb + " --help");
    CHECK(r.rc == 0);
    CHECK(r.out.rfind("usage: compsearch " + verb, 0) == 0);
    CHECK(r.out.find("--help") != std::string::npos);
    CHECK(r.err.empty());
  }
}

TEST_CASE("--version prints the project version CMake was configured with") {
  std::ifstream in(source_dir() / "CMakeLists.txt");
  std::stringstream text;
  text << in.rdbuf();
  std::smatch m;
  const std::string s = text.str();
  REQUIRE(std::regex_search(s, m, std::regex(R"(project\(compsearch\s+VERSION\s+([0-9.]+))")));
  const auto r = run_compsearch("--version");
  CHECK(r.rc == 0);
  CHECK(r.out == "compsearch " + m[1].str() + "\n");
}

TEST_CASE("Malformed flags and flag values are usage errors with exit code 2 in every verb") {
  TempDir dir;
  const std::string storage = " --storage " + shell_quote((dir.path / "j.log").string());
  const std::string mlp = (source_dir() / "models" / "fmnist_mlp.onnx").string();
  const fs::path recipe = dir.path / "w8.json";
  std::ofstream(recipe) << R"({"format": "compsearch.recipe/1", "default": {"w_bits": 8}})";
  REQUIRE(run_compsearch("create-study --study-name s" + storage).rc == 0);

  SUBCASE("no command, an unknown command, an unknown flag, a value of the wrong type") {
    CHECK(run_compsearch("").rc == 2);
    expect("frobnicate", 2, "compsearch: unknown command 'frobnicate'");
    expect("inspect " + mlp + " --frobnicate", 2, "unrecognised option '--frobnicate'");
    expect("evaluate --model " + mlp + " --data fashion-mnist --batch many", 2, "--batch");
    expect("tell --study-name s --trial-number zero" + storage, 2, "--trial-number");
  }
  SUBCASE("study verbs") {
    expect("create-study --study-name t --directions up" + storage, 2,
           "--directions: invalid choice 'up' (choose from 'minimize', 'maximize')");
    expect("create-study --study-name t --direction up" + storage, 2,
           "--direction: invalid choice 'up'");
    expect("ask --study-name s --directions up" + storage, 2,
           "--directions: invalid choice 'up' (choose from 'minimize', 'maximize')");
    expect("ask --study-name s --direction minimize --directions minimize" + storage, 2,
           "Specify only one of `direction` and `directions`.");
    expect("ask --study-name s --search-space '{'" + storage, 2, "--search-space: not JSON");
    expect("ask --study-name s --search-space " +
               shell_quote(R"({"x": {"name": "Nope", "attributes": {}}})") + storage,
           2, "--search-space: parameter \"x\": distribution: unknown distribution class \"Nope\"");
    expect("ask --study-name s --sampler SobolSampler" + storage, 2,
           "unknown sampler \"SobolSampler\"");
    expect("ask --study-name s --sampler RandomSampler --sampler-kwargs " +
               shell_quote(R"({"seed": "zero"})") + storage,
           2, "RandomSampler: seed");
    expect("ask --study-name s --sampler-kwargs '{\"seed\": 1}'" + storage, 2,
           "`--sampler_kwargs` is set without `--sampler`");
    expect("ask --study-name s -f xml" + storage, 2,
           "--format: invalid choice 'xml' (choose from 'json', 'table')");
    expect("ask --storage sqlite:///x.db --study-name s", 2, "database URLs are not supported");
    expect("ask --study-name s", 2, "--storage PATH is required");
    expect("tell --study-name s --trial-number 0 --state done" + storage, 2,
           "--state: invalid choice 'done' (choose from 'complete', 'pruned', 'fail')");
    expect("tell --study-name s --trial-number 0 --values 1 x2" + storage, 2,
           "--values: invalid float value: 'x2'");
    expect("tell --study-name s" + storage, 2, "--trial-number is required");
    expect("trials" + storage, 2, "--study-name is required");
    expect("studies -f csv" + storage, 2, "--format: invalid choice 'csv'");
    // None of them touched the study: it still has no trials.
    const auto trials = run_compsearch("trials --study-name s" + storage);
    CHECK(trials.rc == 0);
    CHECK(trials.out == "[]\n");
  }
  SUBCASE("model verbs") {
    expect("inspect", 2, "missing MODEL.onnx");
    expect("evaluate --data fashion-mnist", 2, "missing --model");
    expect("evaluate --model " + mlp + " --data fashion-mnist --split val", 2,
           "--split must be train or test, got 'val'");
    expect("evaluate --model " + mlp + " --data fashion-mnist --batch 0", 2,
           "--batch must be >= 1");
    expect("evaluate --model " + mlp + " --data fashion-mnist --recipe " + recipe.string() +
               " --calibration-samples 0",
           2, "--calibration-samples must be >= 1");
    expect("compress --model " + mlp + " --recipe " + recipe.string() + " --format tflite --out " +
               (dir.path / "m.onnx").string(),
           2, "--format: export format: got \"tflite\"");
    expect("compress --model " + mlp + " --recipe " + recipe.string() + " --format onnx --out " +
               (dir.path / "m.onnx").string() + " --calibration-samples 0",
           2, "--calibration-samples must be >= 1");
    expect("estimate --model zoo:ds_cnn_kws --target gpu:t4 --batch 0", 2,
           "--batch: value 0 out of range; expected >= 1");
    expect("estimate --model zoo:ds_cnn_kws", 2, "missing --target");
    // 100,000 threads crashed in OpenMP's thread creation: bounded, and the bound is named.
    expect("evaluate --model " + mlp + " --data fashion-mnist --threads 100000", 2,
           "--threads: value 100000 out of range; expected 0 (all cores) to 1024");
    expect("evaluate --model " + mlp + " --data fashion-mnist --threads -1", 2,
           "--threads: value -1 out of range");
    expect("train --model " + mlp + " --out " + (dir.path / "t.onnx").string() + " --threads 1025",
           2, "--threads: value 1025 out of range; expected 0 (all cores) to 1024");
    expect("hw frobnicate", 2, "unknown action 'frobnicate'; expected list or show");
    expect("hw show", 2, "hw show needs a TARGET");
  }
}

TEST_CASE("Well-formed requests that fail exit 1 with the reason") {
  TempDir dir;
  const std::string storage = " --storage " + shell_quote((dir.path / "j.log").string());
  REQUIRE(
      run_compsearch("create-study --study-name s --directions minimize maximize" + storage).rc ==
      0);
  expect("create-study --study-name s" + storage, 1,
         "compsearch create-study: error: Another study with name 's' already exists");
  expect("trials --study-name nope" + storage, 1, "study \"nope\" does not exist");
  expect("ask --study-name s --directions minimize" + storage, 1,
         "Cannot overwrite study direction of \"s\".");
  expect("tell --study-name s --trial-number 3 --values 1 2" + storage, 1,
         "Cannot tell for trial with number 3 since it has not been created.");
  expect("inspect " + (dir.path / "none.onnx").string(), 1, "none.onnx");
  expect("estimate --model zoo:ds_cnn_kws --target tpu:v5", 1,
         "target 'tpu:v5': not a preset and not a profile file");
}
