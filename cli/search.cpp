// `compsearch search --config X.json [...]`: runs or resumes a compression search.
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <filesystem>
#include <functional>
#include <iostream>
#include <memory>

#include "cli/command.h"
#include "cli/options.h"
#include "experiments/experiment_config.h"
#include "experiments/llm_search.h"
#include "experiments/search_runner.h"
#include "search/open_storage.h"

namespace po = boost::program_options;

namespace compsearch::cli {
namespace {

std::atomic<bool> g_stop{false};
std::atomic<int> g_interrupts{0};

extern "C" void on_interrupt(int) {
  g_stop = true;
  if (g_interrupts.fetch_add(1) >= 1)
    _exit(130);  // a second Ctrl-C: leave now (journal is append-only)
}

// Prints the progress lines of a search: in place on a terminal, every 10 s otherwise.
std::function<void(const std::string&, bool)> progress_printer() {
  const bool tty = isatty(STDERR_FILENO);
  auto last = std::make_shared<std::chrono::steady_clock::time_point>(
      std::chrono::steady_clock::now() - std::chrono::hours(1));
  return [tty, last](const std::string& line, bool final) {
    const auto now = std::chrono::steady_clock::now();
    if (tty) {
      std::cerr << "\r\033[K" << line << (final ? "\n" : "") << std::flush;
    } else if (final || now - *last >= std::chrono::seconds(10)) {
      std::cerr << line << "\n";
      *last = now;
    }
  };
}

// An LLM search config (experiments/llm_search.h): per-tensor llama.cpp types.
int run_llm_search_verb(const VerbOptions& o, const nlohmann::json& j, const std::string& path) {
  experiments::LlmSearchConfig config =
      experiments::llm_search_config_from_json(j, path, std::filesystem::path(path).parent_path());
  if (auto v = o.optional<std::string>("model")) config.model = *v;
  if (auto v = o.optional<std::string>("data")) config.data = *v;
  if (auto v = o.optional<int64_t>("trials")) config.trials = *v;
  if (auto v = o.optional<std::string>("storage")) config.storage = *v;
  if (auto v = o.optional<std::string>("study-name")) config.study_name = *v;
  if (o.has("jobs") || o.has("timeout") || o.has("sampler")) {
    throw UsageError("--jobs, --timeout and --sampler are not supported for LLM configs");
  }
  std::signal(SIGINT, on_interrupt);
  std::signal(SIGTERM, on_interrupt);
  experiments::LlmSearchCallbacks cb;
  cb.stop = &g_stop;
  if (!o.has("quiet")) cb.progress = progress_printer();
  std::cerr << "compsearch search: LLM study \"" << config.study_name << "\" in "
            << search::storage_display(config.storage) << ", " << config.trials
            << " trials, sampler " << config.sampler.name << "\n";
  const auto summary = experiments::run_llm_search(config, cb);
  std::cout << (o.has("json") ? summary.to_json().dump(2) + "\n" : summary.to_text());
  return g_stop.load() ? 130 : 0;
}

int run_search_verb(const std::vector<std::string>& args) {
  VerbOptions o(
      "usage: compsearch search --config X.json [--trials N] [--timeout 8h] [--jobs N]\n"
      "                         [--storage S] [--study-name N] [--sampler nsga2|tpe|random] "
      "[--json]\n"
      "       compsearch search --config LLM.json [--model LLM_DIR|M.gguf] [--data TOKENS.npy] "
      "[--trials N]\n\n"
      "Searches per-layer compression recipes for the config's model: every trial applies a "
      "recipe,\n"
      "scores it (validation split carved from the training data), costs it on every target and\n"
      "records it in an Optuna-compatible study. Re-running the same command resumes the study:\n"
      "--trials is the study's total, completed trials are never re-run, trials a killed run left\n"
      "RUNNING are failed and re-queued once. Ctrl-C stops starting trials and waits for the\n"
      "running ones; a second Ctrl-C exits at once. Config keys: docs/search.md.\n"
      "A config with the key \"llm\" searches llama.cpp types per tensor of an LLM (sensitivity "
      "table,\nexact front, trials scored by KL divergence on the calibration tokens; "
      "docs/llm.md).\n\noptions");
  o.add()("config", po::value<std::string>(), "experiment config (JSON)")(
      "trials", po::value<int64_t>(), "total trials of the study (overrides budget.trials)")(
      "timeout", po::value<std::string>(),
      "stop starting trials after this long, e.g. 8h, 30m (overrides budget.timeout)")(
      "jobs", po::value<int>(), "parallel trials (overrides budget.jobs)")(
      "storage", po::value<std::string>(), "journal file or redis:// URL (overrides storage)")(
      "study-name", po::value<std::string>(), "study name (overrides study_name)")(
      "sampler", po::value<std::string>(), "nsga2, tpe or random (overrides sampler.name)")(
      "model", po::value<std::string>(), "LLM configs: the checkpoint (overrides model)")(
      "data", po::value<std::string>(), "LLM configs: calibration tokens (overrides data)")(
      "json", "print the final summary as JSON")("quiet", "no progress line");
  if (!o.parse(args)) return 0;
  const std::string config_path = o.required<std::string>("config", "missing --config X.json");
  const nlohmann::json config_json = experiments::read_config_json(config_path);
  if (experiments::is_llm_search_config(config_json)) {
    return run_llm_search_verb(o, config_json, config_path);
  }
  if (o.has("model") || o.has("data")) {
    throw UsageError("--model and --data override an LLM search config (one with \"llm\")");
  }
  experiments::ExperimentConfig config = experiments::config_from_json(
      config_json, config_path, std::filesystem::path(config_path).parent_path());
  experiments::SearchOverrides ov;
  ov.trials = o.optional<int64_t>("trials");
  ov.jobs = o.optional<int>("jobs");
  ov.storage = o.optional<std::string>("storage");
  ov.study_name = o.optional<std::string>("study-name");
  ov.sampler = o.optional<std::string>("sampler");
  try {
    if (auto t = o.optional<std::string>("timeout"))
      ov.timeout_s = experiments::parse_duration_s(*t, "--timeout");
    experiments::apply_overrides(config, ov);
  } catch (const std::invalid_argument& e) {
    throw UsageError(e.what());
  }

  std::signal(SIGINT, on_interrupt);
  std::signal(SIGTERM, on_interrupt);
  experiments::SearchCallbacks cb;
  cb.stop = &g_stop;
  if (!o.has("quiet")) cb.progress = progress_printer();
  std::cerr << "compsearch search: study \"" << config.study_name << "\" in "
            << search::storage_display(config.storage) << ", " << config.budget.trials
            << " trials, " << config.budget.jobs << " job(s), sampler " << config.sampler.name
            << "\n";
  const auto summary = experiments::run_search(config, cb);
  if (o.has("json")) {
    std::cout << summary.to_json().dump(2) << "\n";
  } else {
    std::cout << summary.to_text();
  }
  return g_stop.load() ? 130 : 0;
}

const CommandRegistration kRegistration("search",
                                        "search compression recipes for an experiment config",
                                        run_search_verb);

}  // namespace
}  // namespace compsearch::cli
