// Executor throughput against ONNX Runtime on the reference models: images/s at batch 256 with
// 2 threads (defaults; --batch, --threads, --seconds, --rounds override), same files, same run.
// ONNX Runtime runs through scripts/bench_onnxruntime.js (npm's onnxruntime-node). Rounds
// alternate compsearch and ONNX Runtime and the best round of each is reported, so a burst of
// load from other processes on a shared machine hits both sides alike.
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "bench/bench_common.h"
#include "model/dataset.h"
#include "model/executor.h"
#include "model/graph.h"

namespace fs = std::filesystem;
using namespace compsearch::model;

namespace {

std::string run_command(const std::string& cmd) {
  std::unique_ptr<FILE, int (*)(FILE*)> pipe(popen(cmd.c_str(), "r"), pclose);
  if (!pipe) return "";
  std::string out;
  char buf[512];
  while (fgets(buf, sizeof buf, pipe.get())) out += buf;
  return out;
}

double compsearch_images_per_second(const Executor& exec, const Tensor& batch, double seconds) {
  for (int i = 0; i < 3; ++i) exec.run({batch});  // warm-up: buffers reach their final sizes
  int runs = 0;
  const auto t0 = std::chrono::steady_clock::now();
  double elapsed = 0;
  while (elapsed < seconds || runs < 5) {
    exec.run({batch});
    ++runs;
    elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  return runs * static_cast<double>(batch.shape[0]) / elapsed;
}

}  // namespace

constexpr std::string_view kUsage =
    R"(usage: bench_executor [--batch 256] [--threads 2] [--seconds 2] [--rounds 3]
  Images/s of compsearch's executor and of ONNX Runtime (scripts/bench_onnxruntime.js, through
  node) on models/fmnist_cnn.onnx and fmnist_mlp.onnx with the Fashion-MNIST test set: the best of
  `rounds` alternating rounds of `seconds` each side.
)";

int main(int argc, char** argv) {
  if (compsearch::bench::help_requested(argc, argv, kUsage)) return 0;
  int64_t batch = 256;
  int threads = 2, rounds = 3;
  double seconds = 2.0;
  for (int i = 1; i < argc; i += 2) {
    const std::string k = argv[i];
    if (i + 1 == argc) compsearch::bench::usage_error(k + " needs a value", kUsage);
    const std::string v = argv[i + 1];
    if (k == "--batch")
      batch = std::stoll(v);
    else if (k == "--threads")
      threads = std::stoi(v);
    else if (k == "--seconds")
      seconds = std::stod(v);
    else if (k == "--rounds")
      rounds = std::stoi(v);
    else
      compsearch::bench::usage_error("unknown option " + k, kUsage);
  }
  const fs::path root = fs::path(__FILE__).parent_path().parent_path();
  const fs::path script = root / "scripts" / "bench_onnxruntime.js";
  std::printf("%s\n", compsearch::bench::machine_line().c_str());
  std::printf("setup: batch %lld, %d threads, best of %d rounds of %.1f s each side\n",
              static_cast<long long>(batch), threads, rounds, seconds);
  const Dataset data = load_dataset("fashion-mnist", "test");
  Tensor input = data.batch(0, std::min<int64_t>(batch, data.size()));
  std::printf("%-12s %14s %14s %8s  %s\n", "model", "compsearch/s", "peer/s", "ratio", "peer");
  for (const std::string name : {"fmnist_cnn", "fmnist_mlp"}) {
    const fs::path model = root / "models" / (name + ".onnx");
    const Graph graph = load_onnx(model);
    Executor exec(graph, ExecutorOptions{threads});
    double ours = 0, peer = 0;
    std::string peer_name = "onnxruntime-node (not available)";
    for (int r = 0; r < rounds; ++r) {
      ours = std::max(ours, compsearch_images_per_second(exec, input, seconds));
      const std::string out = run_command(
          "node '" + script.string() + "' '" + model.string() + "' " + std::to_string(batch) + " " +
          std::to_string(threads) + " " + std::to_string(seconds) + " 2>&1");
      try {
        const auto j = nlohmann::json::parse(out);
        peer = std::max(peer, j.at("images_per_second").get<double>());
        peer_name = j.at("peer").get<std::string>();
      } catch (const std::exception&) {
        std::fprintf(stderr, "ONNX Runtime run failed: %s\n", out.c_str());
      }
    }
    std::printf("%-12s %14.0f %14.0f %8.2f  %s\n", name.c_str(), ours, peer,
                peer > 0 ? ours / peer : 0.0, peer_name.c_str());
  }
  return 0;
}
