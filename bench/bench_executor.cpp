// Executor throughput against ONNX Runtime, same files, same run: images/s of compsearch (kernels
// as the executor picks them, and the Eigen-only kernels it had before oneDNN) and of ONNX Runtime
// (scripts/bench_onnxruntime.js, npm's onnxruntime-node) for every model x batch x threads row.
// Rounds visit every row in turn, each row measuring compsearch, compsearch-Eigen and ONNX Runtime
// back to back, and the best round of each is reported, so a burst of load from other processes
// on a shared machine hits all sides alike. The load average is printed before and after.
//
// --int8 compares integer execution instead: each model made w8a8 (every layer 8-bit weights per
// channel and 8-bit activations calibrated by min/max on 512 images), as the QDQ graph
// compressors::make_qdq_graph builds in memory; compsearch runs it with ExecutorOptions::int8
// (oneDNN u8 x s8), the second column is the same graph in float (fake quantization, the path
// before integer kernels), and ONNX Runtime runs the exported QDQ .onnx with all graph
// optimizations on (its QLinearConv / QGemm int8 kernels).
//
// --ops times each Conv/Gemm/MatMul node of the models alone (with the Relu/Clip the plan fuses
// into it), Eigen against oneDNN, and as kAuto runs it (the direct kernel for a first layer on 1-2
// channels, model/direct_conv.h): the measurements behind the executor's kernel choice.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>

#include "bench/bench_common.h"
#include "compressors/apply.h"
#include "compressors/export.h"
#include "evaluators/accuracy.h"
#include "model/dataset.h"
#include "model/direct_conv.h"
#include "model/executor.h"
#include "model/graph.h"
#include "model/layer_table.h"

namespace fs = std::filesystem;
using namespace compsearch::model;
using Clock = std::chrono::steady_clock;

namespace {

std::string run_command(const std::string& cmd) {
  std::unique_ptr<FILE, int (*)(FILE*)> pipe(popen(cmd.c_str(), "r"), pclose);
  if (!pipe) return "";
  std::string out;
  char buf[512];
  while (fgets(buf, sizeof buf, pipe.get())) out += buf;
  return out;
}

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Runs per second of exec on `input` over about `seconds` (at least 3 runs, after a warm-up run
// that creates the primitives and sizes the buffers). The input vector is built once, as ONNX
// Runtime's side builds its feeds once: copying a batch into a fresh vector every run (0.8 MB for
// Fashion-MNIST at 256, page faults included) would time the caller, not the executor.
double runs_per_second(const Executor& exec, const Tensor& input, double seconds) {
  const std::vector<Tensor> inputs = {input};
  exec.run(inputs);
  int runs = 0;
  const auto t0 = Clock::now();
  double elapsed = 0;
  while (elapsed < seconds || runs < 3) {
    exec.run(inputs);
    ++runs;
    elapsed = seconds_since(t0);
  }
  return runs / elapsed;
}

Tensor random_input(Shape shape, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  std::vector<float> v(static_cast<size_t>(shape_numel(shape)));
  for (float& x : v) x = u(rng);
  return Tensor::floats(std::move(shape), std::move(v));
}

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  std::string item;
  while (std::getline(in, item, ','))
    if (!item.empty()) out.push_back(item);
  return out;
}

struct ModelSpec {
  std::string name;    // row label
  fs::path path;       // .onnx
  bool fmnist = true;  // Fashion-MNIST images; otherwise random [3, 224, 224]
};

Executor make_executor(const Graph& g, int threads, ExecutorOptions::Kernels kernels,
                       bool int8 = false) {
  ExecutorOptions o;
  o.threads = threads;
  o.kernels = kernels;
  o.int8 = int8;
  return Executor(g, o);
}

// `g` with 8-bit weights (per channel) and activations (min/max over `calibration`) on every
// layer, as the in-memory QDQ graph; also written to `qdq_path` for ONNX Runtime.
Graph w8a8_qdq(const Graph& g, const Dataset& calibration, const fs::path& qdq_path) {
  namespace cz = compsearch::compressors;
  const LayerTable table = build_layer_table(g);
  nlohmann::json layers = nlohmann::json::object();
  for (const auto& l : table.layers) layers[l.name] = {{"w_bits", 8}, {"a_bits", 8}};
  const cz::Recipe recipe = cz::recipe_from_json(
      {{"format", "compsearch.recipe/1"}, {"layers", layers}}, "bench_executor --int8");
  cz::ApplyOptions ao;
  ao.keep_quantized = true;
  cz::CompressedModel cm = cz::apply_recipe(g, table, recipe, ao);
  compsearch::evaluators::calibrate_activations(cm, calibration, 512);
  cz::export_model(cm, cz::ExportFormat::kOnnxQdq, qdq_path);
  return cz::make_qdq_graph(cm);
}

// One node of `g` (with the Relu/Clip reading it, which the executor fuses) as a graph of its own.
Graph single_node_graph(const Graph& g, size_t i, int64_t* flops_per_sample) {
  const Node& node = g.nodes[i];
  Graph s;
  s.opset_version = g.opset_version;
  const ValueInfo& in =
      g.value_info.count(node.inputs[0]) ? g.value_info.at(node.inputs[0]) : g.inputs.at(0);
  s.inputs.push_back(ValueInfo{node.inputs[0], DType::kFloat32, in.shape});
  s.inputs[0].shape[0] = -1;
  s.nodes.push_back(node);
  std::string out = node.outputs[0];
  if (i + 1 < g.nodes.size()) {
    const Node& next = g.nodes[i + 1];
    if ((next.op_type == "Relu" || next.op_type == "Clip") && next.inputs[0] == out) {
      s.nodes.push_back(next);
      out = next.outputs[0];
    }
  }
  for (const Node& n : s.nodes) {
    for (const auto& name : n.inputs)
      if (g.initializers.count(name)) s.initializers[name] = g.initializers.at(name);
  }
  s.outputs.push_back(ValueInfo{out, DType::kFloat32, {}});
  const Tensor& w = g.initializers.at(node.inputs[1]);
  const Shape& os = g.value_info.at(node.outputs[0]).shape;
  int64_t out_per_sample = 1;
  for (size_t d = 1; d < os.size(); ++d) out_per_sample *= os[d];
  // MACs per sample x 2: output elements x the weight's reduction length.
  const int64_t reduction = node.op_type == "Conv"       ? w.numel() / w.shape[0]
                            : node.attr_int("transB", 0) ? w.shape[1]
                                                         : w.shape[0];
  *flops_per_sample = 2 * out_per_sample * reduction;
  return s;
}

void bench_ops(const std::vector<ModelSpec>& models, const std::vector<int64_t>& batches,
               const std::vector<int>& threads_list, double seconds, int rounds) {
  std::printf("%-14s %-28s %-22s %5s %3s %11s %11s %7s %8s %11s  %s\n", "model", "node", "input",
              "batch", "thr", "eigen us", "onednn us", "ratio", "GFLOP/s", "auto us", "auto runs");
  for (const auto& m : models) {
    const Graph g = load_onnx(m.path);
    for (size_t i = 0; i < g.nodes.size(); ++i) {
      const Node& node = g.nodes[i];
      if (node.op_type != "Conv" && node.op_type != "Gemm" && node.op_type != "MatMul") continue;
      if (node.inputs.size() < 2 || !g.initializers.count(node.inputs[1])) continue;
      int64_t flops = 0;
      const Graph s = single_node_graph(g, i, &flops);
      for (const int64_t batch : batches) {
        Shape shape = s.inputs[0].shape;
        shape[0] = batch;
        const Tensor x = random_input(shape, 1);
        for (const int threads : threads_list) {
          Executor eigen = make_executor(s, threads, ExecutorOptions::Kernels::kEigen);
          Executor onednn = make_executor(s, threads, ExecutorOptions::Kernels::kOneDnn);
          Executor automatic = make_executor(s, threads, ExecutorOptions::Kernels::kAuto);
          double te = 0, to = 0, ta = 0;
          for (int r = 0; r < rounds; ++r) {
            te = std::max(te, runs_per_second(eigen, x, seconds));
            to = std::max(to, runs_per_second(onednn, x, seconds));
            ta = std::max(ta, runs_per_second(automatic, x, seconds));
          }
          // What kAuto ran: the direct kernel (a tiny reduction), oneDNN or Eigen.
          const int64_t before = automatic.onednn_calls();
          automatic.run({x});
          const bool direct = node.op_type == "Conv" && node.inputs.size() >= 2 &&
                              compsearch::model::detail::make_direct_conv(
                                  node, &s.initializers.at(node.inputs[1]), nullptr, {});
          const char* auto_ran = automatic.onednn_calls() > before ? "onednn"
                                 : direct                          ? "direct"
                                                                   : "eigen";
          Shape sample(shape.begin() + 1, shape.end());
          std::printf("%-14s %-28.28s %-22s %5lld %3d %11.1f %11.1f %7.2f %8.1f %11.1f  %s%s\n",
                      m.name.c_str(), node.name.c_str(), shape_to_string(sample).c_str(),
                      static_cast<long long>(batch), threads, 1e6 / te, 1e6 / to, to / te,
                      static_cast<double>(flops) * batch * to / 1e9, 1e6 / ta, auto_ran,
                      onednn.onednn_calls() ? "" : "  (oneDNN declined)");
          std::fflush(stdout);
        }
      }
    }
  }
}

}  // namespace

constexpr std::string_view kUsage =
    R"(usage: bench_executor [--batches 1,256] [--threads 1,2] [--seconds 1] [--rounds 3]
                      [--models fmnist_cnn,fmnist_mlp,resnet18,mobilenet_v2] [--ops] [--int8]
  Images/s of compsearch's executor (kernels as it picks them, and Eigen only, as before oneDNN)
  and of ONNX Runtime (scripts/bench_onnxruntime.js through node) for every model, batch and
  thread count: the best of `rounds` rounds of `seconds` per side, rounds interleaving all rows.
  fmnist_* run on the Fashion-MNIST test images; resnet18 and mobilenet_v2 are the torchvision
  exports of scripts/make_torchvision_models.py (not committed: their rows are skipped with a
  note when absent) on random 3x224x224 images, at batch 1 and 32 (a batch of 256 would take
  seconds per run). --ops: each Conv/Gemm/MatMul node alone, Eigen against oneDNN, instead.
  --int8: w8a8 QDQ models, integer kernels against the float path and ONNX Runtime's int8.
)";

int main(int argc, char** argv) {
  if (compsearch::bench::help_requested(argc, argv, kUsage)) return 0;
  std::vector<int64_t> batches = {1, 256};
  std::vector<int> threads_list = {1, 2};
  std::vector<std::string> model_names = {"fmnist_cnn", "fmnist_mlp", "resnet18", "mobilenet_v2"};
  int rounds = 3;
  double seconds = 1.0;
  bool ops = false, int8 = false;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    if (k == "--ops" || k == "--int8") {
      (k == "--ops" ? ops : int8) = true;
      continue;
    }
    if (i + 1 == argc) compsearch::bench::usage_error(k + " needs a value", kUsage);
    const std::string v = argv[++i];
    try {
      if (k == "--batches") {
        batches.clear();
        for (const auto& b : split_list(v)) batches.push_back(std::stoll(b));
      } else if (k == "--threads") {
        threads_list.clear();
        for (const auto& t : split_list(v)) threads_list.push_back(std::stoi(t));
      } else if (k == "--seconds") {
        seconds = std::stod(v);
      } else if (k == "--rounds") {
        rounds = std::stoi(v);
      } else if (k == "--models") {
        model_names = split_list(v);
      } else {
        compsearch::bench::usage_error("unknown option " + k, kUsage);
      }
    } catch (const std::logic_error&) {
      compsearch::bench::usage_error(k + ": '" + v + "' is not a number (list)", kUsage);
    }
  }
  const fs::path root = fs::path(__FILE__).parent_path().parent_path();
  const fs::path script = root / "scripts" / "bench_onnxruntime.js";
  std::vector<ModelSpec> models;
  for (const auto& name : model_names) {
    const bool fmnist = name.rfind("fmnist_", 0) == 0;
    const fs::path path = root / "models" / (name + (fmnist ? ".onnx" : ".torchvision.onnx"));
    if (!fs::exists(path)) {
      std::printf(
          "note: %s not found, its rows are skipped%s\n", path.string().c_str(),
          fmnist ? "" : " (make it with /usr/bin/python3 scripts/make_torchvision_models.py)");
      continue;
    }
    models.push_back(ModelSpec{name, path, fmnist});
  }
  std::printf("%s\n", compsearch::bench::machine_line().c_str());
  if (ops) {
    std::printf("setup: each node alone, best of %d rounds of %.2f s per kernel family\n", rounds,
                seconds);
    bench_ops(models, batches, threads_list, seconds, rounds);
    return 0;
  }
  std::printf("setup: best of %d interleaved rounds of %.1f s per side; images/s\n", rounds,
              seconds);

  struct Row {
    const ModelSpec* model;
    int64_t batch;
    int threads;
    std::shared_ptr<const Graph> graph;
    std::unique_ptr<Executor> ours, eigen;
    Tensor input;
    double ours_ips = 0, eigen_ips = 0, peer_ips = 0;
    int64_t onednn_calls = 0;
    std::string peer = "onnxruntime-node (not available)";
  };
  std::vector<Row> rows;
  std::unique_ptr<Dataset> data;
  const fs::path tmp = fs::temp_directory_path() / ("bench_executor_" + std::to_string(getpid()));
  std::vector<ModelSpec> qdq_models;  // --int8: the exported QDQ files ONNX Runtime runs
  qdq_models.reserve(models.size());
  for (const auto& spec : models) {
    const ModelSpec* mp = &spec;
    auto graph = std::make_shared<Graph>(load_onnx(spec.path));
    if (int8) {
      fs::create_directories(tmp);
      Dataset calibration;
      if (spec.fmnist) {
        if (!data) data = std::make_unique<Dataset>(load_dataset("fashion-mnist", "test"));
        calibration = *data;
      } else {
        calibration.name = "random images";
        calibration.sample_shape = {3, 224, 224};
        calibration.images = random_input({16, 3, 224, 224}, 2).f32;
      }
      qdq_models.push_back(
          ModelSpec{spec.name + "-w8a8", tmp / (spec.name + "_qdq.onnx"), spec.fmnist});
      mp = &qdq_models.back();
      graph = std::make_shared<Graph>(w8a8_qdq(*graph, calibration, mp->path));
    }
    const ModelSpec& m = *mp;
    const std::vector<int64_t> model_batches = m.fmnist ? batches : std::vector<int64_t>{1, 32};
    for (const int64_t batch : model_batches) {
      for (const int threads : threads_list) {
        Row r;
        r.model = &m;
        r.batch = batch;
        r.threads = threads;
        r.graph = graph;
        r.ours = std::make_unique<Executor>(
            make_executor(*r.graph, threads, ExecutorOptions::Kernels::kAuto, int8));
        r.eigen = std::make_unique<Executor>(make_executor(
            *r.graph, threads,
            int8 ? ExecutorOptions::Kernels::kAuto : ExecutorOptions::Kernels::kEigen));
        if (m.fmnist) {
          if (!data) data = std::make_unique<Dataset>(load_dataset("fashion-mnist", "test"));
          r.input = data->batch(0, std::min<int64_t>(batch, data->size()));
        } else {
          r.input = random_input({batch, 3, 224, 224}, 1);
        }
        rows.push_back(std::move(r));
      }
    }
  }
  for (int round = 0; round < rounds; ++round) {
    for (Row& r : rows) {
      // Short rows (a batch of 1) still get `seconds` each side; big ones at least 3 runs.
      r.ours_ips =
          std::max(r.ours_ips, runs_per_second(*r.ours, r.input, seconds) * r.input.shape[0]);
      r.eigen_ips =
          std::max(r.eigen_ips, runs_per_second(*r.eigen, r.input, seconds) * r.input.shape[0]);
      r.onednn_calls = int8 ? r.ours->int8_calls() : r.ours->onednn_calls();
      const std::string shape = r.model->fmnist ? "" : "SHAPE=3,224,224 ";
      const std::string out =
          run_command(shape + "node '" + script.string() + "' '" + r.model->path.string() + "' " +
                      std::to_string(r.batch) + " " + std::to_string(r.threads) + " " +
                      std::to_string(seconds) + " 2>&1");
      try {
        const auto j = nlohmann::json::parse(out);
        r.peer_ips = std::max(r.peer_ips, j.at("images_per_second").get<double>());
        r.peer = j.at("peer").get<std::string>();
      } catch (const std::exception&) {
        std::fprintf(stderr, "ONNX Runtime run failed: %s\n", out.c_str());
      }
    }
  }
  std::printf("%-19s %5s %3s %13s %13s %13s %7s %7s  %s\n", "model", "batch", "thr",
              int8 ? "int8/s" : "compsearch/s", int8 ? "float-qdq/s" : "eigen-only/s", "peer/s",
              "ratio", "before", "peer");
  for (const Row& r : rows) {
    std::printf("%-19s %5lld %3d %13.0f %13.0f %13.0f %7.2f %7.2f  %s%s\n", r.model->name.c_str(),
                static_cast<long long>(r.batch), r.threads, r.ours_ips, r.eigen_ips, r.peer_ips,
                r.peer_ips > 0 ? r.ours_ips / r.peer_ips : 0.0,
                r.peer_ips > 0 ? r.eigen_ips / r.peer_ips : 0.0, r.peer.c_str(),
                r.onednn_calls ? ""
                : int8         ? " (no int8 node)"
                               : " (no oneDNN node)");
  }
  if (int8) {
    std::printf(
        "ratio = compsearch int8 / peer int8; before = the same QDQ graph in float / peer\n");
    fs::remove_all(tmp);
  } else {
    std::printf(
        "ratio = compsearch / peer; before = eigen-only / peer (the executor before oneDNN)\n");
  }
  std::printf("%s\n", compsearch::bench::machine_line().c_str());
  return 0;
}
