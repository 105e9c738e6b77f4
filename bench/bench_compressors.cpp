// Compressor benchmarks (not run by CTest):
//  1. quantize + prune throughput on a 100 M-weight tensor as a ratio to a memcpy of the same
//     bytes in the same run (goal >= 0.5);
//  2. time to apply a recipe to the reference CNN and score 512 calibration images (ms per
//     candidate), when models/fmnist_cnn.onnx and the Fashion-MNIST test set are present.
//
// usage: bench_compressors [--weights N] [--repeats R] [--model PATH]
#include <omp.h>
#include <sys/utsname.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "compressors/weight_kernels.h"
#include "experiments/compress_commands.h"

using namespace compsearch;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

std::string cpu_name() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  return "unknown CPU";
}

void bench_kernels(int64_t n, int repeats) {
  const int64_t O = 10000, R = n / O;
  n = O * R;
  std::vector<float> src(n), dst(n), work(n);
  {
    std::mt19937 rng(42);
    std::normal_distribution<float> d(0.0f, 0.05f);
    for (auto& x : src) x = d(rng);
  }
  std::memcpy(dst.data(), src.data(), n * sizeof(float));  // touch pages before timing
  std::memcpy(work.data(), src.data(), n * sizeof(float));
  compressors::LayerSetting s;
  s.w_bits = 4;
  s.prune = compressors::PruneSpec{compressors::PruneKind::kUnstructured, 0.5, 0, 0};
  const auto layout = compressors::WeightLayout::dense(O, R);
  double best_copy = 1e30, best_kernel = 1e30, best_quant = 1e30;
  for (int r = 0; r < repeats; ++r) {
    auto t0 = Clock::now();
    std::memcpy(dst.data(), src.data(), n * sizeof(float));
    best_copy = std::min(best_copy, seconds_since(t0));
    std::memcpy(work.data(), src.data(), n * sizeof(float));
    t0 = Clock::now();
    compressors::compress_weights(work, layout, s);
    best_kernel = std::min(best_kernel, seconds_since(t0));
    std::memcpy(work.data(), src.data(), n * sizeof(float));
    t0 = Clock::now();
    compressors::quantize_weights(work, layout, 4, compressors::Granularity{});
    best_quant = std::min(best_quant, seconds_since(t0));
  }
  const double gb = n * 4.0 / 1e9;
  std::cout << "weights: " << n << " float32 (" << gb << " GB), [" << O << ", " << R << "], best of " << repeats
            << "\n";
  std::cout << "peer: memcpy of the same bytes (single call, glibc)      " << best_copy * 1e3 << " ms  "
            << gb / best_copy << " GB/s\n";
  std::cout << "compsearch: 50% unstructured + w4 per_channel (fused)    " << best_kernel * 1e3 << " ms  "
            << gb / best_kernel << " GB/s\n";
  std::cout << "compsearch: w4 per_channel only                          " << best_quant * 1e3 << " ms  "
            << gb / best_quant << " GB/s\n";
  std::cout << "ratio (prune+quantize throughput / memcpy throughput): " << best_copy / best_kernel
            << "  (goal >= 0.5)\n";
  std::cout << "ratio (quantize throughput / memcpy throughput):       " << best_copy / best_quant << "\n";
}

}  // namespace

int main(int argc, char** argv) {
  int64_t n = 100'000'000;
  int repeats = 3;
  std::string model = "models/fmnist_cnn.onnx";
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--weights") n = std::stoll(argv[i + 1]);
    else if (a == "--repeats") repeats = std::stoi(argv[i + 1]);
    else if (a == "--model") model = argv[i + 1];
  }
  utsname u{};
  uname(&u);
  std::cout << "machine: " << cpu_name() << ", " << std::thread::hardware_concurrency() << " hardware threads, "
            << omp_get_max_threads() << " OpenMP threads, " << u.sysname << " " << u.release << "\n";
  bench_kernels(n, repeats);
  if (std::filesystem::exists(model)) {
    std::cout << "\n";
    experiments::bench_recipe_candidates(model, 512, repeats, std::cout);
  } else {
    std::cout << "\n(skipping the per-candidate benchmark: " << model << " not found)\n";
  }
  return 0;
}
