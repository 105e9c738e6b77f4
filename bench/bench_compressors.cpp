// Compressor benchmarks (not run by CTest):
//  1. quantize + prune throughput on a 100 M-weight tensor as a ratio to a memcpy of the same
//     bytes in the same run (goal >= 0.5);
//  2. time to apply a recipe to the reference CNN and score 512 calibration images (ms per
//     candidate), when models/fmnist_cnn.onnx and the Fashion-MNIST test set are present.
//
// usage: bench_compressors [--weights N] [--repeats R] [--model PATH]
#include <omp.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <iostream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "bench/bench_common.h"
#include "compressors/weight_kernels.h"
#include "experiments/compress_commands.h"

using namespace compsearch;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// CPU seconds of the whole process (all threads): on a shared machine the wall time of a
// 2-thread kernel depends on what else runs; the CPU time says how much work it was.
double cpu_seconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         1e-6 * static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}

// Medians over `repeats` rounds; each round times every peer and kernel once, interleaved, so a
// burst of load from other processes hits peers and kernels alike.
void bench_kernels(int64_t n, int repeats) {
  const int64_t O = 10000, R = n / O;
  n = O * R;
  std::vector<float> src(n), dst(n), work(n);
  {
    std::mt19937 rng(42);
    std::normal_distribution<float> d(0.0f, 0.05f);
    for (auto& x : src) x = d(rng);
  }
  const size_t bytes = static_cast<size_t>(n) * sizeof(float);
  std::memcpy(dst.data(), src.data(), bytes);  // touch pages before timing
  std::memcpy(work.data(), src.data(), bytes);
  const int threads = omp_get_max_threads();
  // The honest peer for kernels that run on `threads` OpenMP threads is a memcpy on as many
  // threads (each copies a contiguous slice); the single glibc call is printed too.
  auto threaded_copy = [&] {
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) {
      pool.emplace_back([&, t] {
        const size_t b = bytes * t / threads / 64 * 64,
                     e = t + 1 == threads ? bytes : bytes * (t + 1) / threads / 64 * 64;
        std::memcpy(reinterpret_cast<char*>(dst.data()) + b,
                    reinterpret_cast<const char*>(src.data()) + b, e - b);
      });
    }
    for (auto& th : pool) th.join();
  };
  const auto layout = compressors::WeightLayout::dense(O, R);
  struct Case {
    std::string name;
    std::function<void()> run;
    std::vector<double> s;
    std::vector<double> cpu;
  };
  auto setting = [](int bits, bool prune) {
    compressors::LayerSetting s;
    s.w_bits = bits;
    if (prune) s.prune = compressors::PruneSpec{compressors::PruneKind::kUnstructured, 0.5, 0, 0};
    return s;
  };
  const auto pq4 = setting(4, true), pq8 = setting(8, true);
  // The other pruning kinds need no global threshold, so they are one sweep per row.
  auto nm24_w4 = setting(4, false), ch25_w4 = setting(4, false);
  nm24_w4.prune = compressors::PruneSpec{compressors::PruneKind::kNM, 0.5, 2, 4};
  ch25_w4.prune = compressors::PruneSpec{compressors::PruneKind::kChannel, 0.25, 0, 0};
  std::vector<Case> peers = {
      {"memcpy, single glibc call", [&] { std::memcpy(dst.data(), src.data(), bytes); }, {}, {}},
      {"memcpy, " + std::to_string(threads) + " threads (slices)", threaded_copy, {}, {}},
  };
  std::vector<Case> kernels = {
      {"50% unstructured + w4 per_channel",
       [&] { compressors::compress_weights(work, layout, pq4); },
       {},
       {}},
      {"50% unstructured + w8 per_channel",
       [&] { compressors::compress_weights(work, layout, pq8); },
       {},
       {}},
      {"2:4 + w4 per_channel",
       [&] { compressors::compress_weights(work, layout, nm24_w4); },
       {},
       {}},
      {"25% channel + w4 per_channel",
       [&] { compressors::compress_weights(work, layout, ch25_w4); },
       {},
       {}},
      {"w4 per_channel only",
       [&] { compressors::quantize_weights(work, layout, 4, compressors::Granularity{}); },
       {},
       {}},
      {"w8 per_channel only",
       [&] { compressors::quantize_weights(work, layout, 8, compressors::Granularity{}); },
       {},
       {}},
      {"50% unstructured prune only", [&] { compressors::prune_unstructured(work, 0.5); }, {}, {}},
      // Out of place (src -> dst, src intact): the same bytes a memcpy reads and writes.
      {"50% unstructured + w4, out of place",
       [&] { compressors::compress_weights(src, dst, layout, pq4); },
       {},
       {}},
      {"50% unstructured + w8, out of place",
       [&] { compressors::compress_weights(src, dst, layout, pq8); },
       {},
       {}},
      {"w4 per_channel only, out of place",
       [&] { compressors::compress_weights(src, dst, layout, setting(4, false)); },
       {},
       {}},
  };
  for (int r = 0; r < repeats; ++r) {
    for (auto& c : peers) {
      const double c0 = cpu_seconds();
      const auto t0 = Clock::now();
      c.run();
      c.s.push_back(seconds_since(t0));
      c.cpu.push_back(cpu_seconds() - c0);
    }
    for (auto& c : kernels) {
      std::memcpy(work.data(), src.data(), bytes);  // fresh input, pages warm
      const double c0 = cpu_seconds();
      const auto t0 = Clock::now();
      c.run();
      c.s.push_back(seconds_since(t0));
      c.cpu.push_back(cpu_seconds() - c0);
    }
  }
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
  };
  const double gb = static_cast<double>(bytes) / 1e9;
  std::cout << "weights: " << n << " float32 (" << gb << " GB), [" << O << ", " << R
            << "], median of " << repeats << " interleaved rounds, " << threads
            << " OpenMP threads\n";
  double peer = 1e30;
  for (auto& c : peers) {
    const double m = median(c.s);
    peer = std::min(peer, m);
    std::printf("peer:       %-38s %8.1f ms  %6.2f GB/s  cpu %6.1f ms\n", c.name.c_str(), m * 1e3,
                gb / m, median(c.cpu) * 1e3);
  }
  for (auto& c : kernels) {
    const double m = median(c.s);
    std::printf(
        "compsearch: %-38s %8.1f ms  %6.2f GB/s  cpu %6.1f ms  ratio to the faster memcpy %.3f%s\n",
        c.name.c_str(), m * 1e3, gb / m, median(c.cpu) * 1e3, peer / m,
        c.name.rfind("50% unstructured +", 0) == 0 ? "  (goal >= 0.5)" : "");
  }
}

}  // namespace

constexpr std::string_view kUsage =
    R"(usage: bench_compressors [--weights N] [--repeats R] [--model PATH]
  Quantize + prune throughput on an N-weight tensor (default 100,000,000) as a ratio to memcpy,
  median of R rounds (default 5); then ms per recipe candidate on the reference CNN (PATH, default
  models/fmnist_cnn.onnx) when it and the Fashion-MNIST test set are present.
)";

int main(int argc, char** argv) {
  if (bench::help_requested(argc, argv, kUsage)) return 0;
  int64_t n = 100'000'000;
  int repeats = 5;
  std::string model = "models/fmnist_cnn.onnx";
  for (int i = 1; i < argc; i += 2) {
    const std::string a = argv[i];
    if (i + 1 == argc) bench::usage_error(a + " needs a value", kUsage);
    if (a == "--weights")
      n = std::stoll(argv[i + 1]);
    else if (a == "--repeats")
      repeats = std::stoi(argv[i + 1]);
    else if (a == "--model")
      model = argv[i + 1];
    else
      bench::usage_error("unknown option " + a, kUsage);
  }
  std::cout << bench::machine_line() << ", " << omp_get_max_threads() << " OpenMP threads\n";
  bench_kernels(n, repeats);
  if (std::filesystem::exists(model)) {
    std::cout << "\n";
    experiments::bench_recipe_candidates(model, 512, repeats, std::cout);
  } else {
    std::cout << "\n(skipping the per-candidate benchmark: " << model << " not found)\n";
  }
  return 0;
}
