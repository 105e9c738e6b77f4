// bench_training: quantization-aware fine-tuning with distillation on the
// reference CNN (all 2-bit per channel; binary middle layers with 8-bit first and last; 50%
// unstructured + 4 bits), accuracy after PTQ and after fine-tuning, and the same runs by the
// PyTorch reference (scripts/train_reference.py: same ONNX weights, same recipe semantics, same
// data order); then the epoch time of plain training of the CNN and the MLP against PyTorch, on
// the same threads and batch. Run from the repository root after scripts/setup_bench.sh (which
// makes PyTorch use OpenBLAS rather than the reference BLAS):
//
//   build/bench/bench_training [--threads 2] [--samples N] [--no-pytorch] [--only w2_all,...]
//
// --samples caps the training images per epoch for a quicker run (default: all 60,000).
#include <sys/utsname.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "bench/bench_common.h"
#include "compressors/apply.h"
#include "compressors/recipe.h"
#include "evaluators/accuracy.h"
#include "evaluators/finetune.h"
#include "model/dataset.h"
#include "model/graph.h"
#include "model/layer_table.h"

using namespace compsearch;
using nlohmann::json;

namespace {

struct Args {
  int threads = 2;
  int64_t samples = 0;
  bool pytorch = true;
  std::vector<std::string> only;
};

// Runs the PyTorch reference; returns its JSON summary (empty object on failure).
json run_pytorch(const std::string& model, const std::string& recipe, const Args& a,
                 int64_t samples) {
  const auto out = std::filesystem::temp_directory_path() /
                   ("bench_training_torch_" + std::to_string(::getpid()) + ".json");
  std::ostringstream cmd;
  cmd << "OPENBLAS_NUM_THREADS=" << a.threads << " OMP_NUM_THREADS=" << a.threads
      << " /usr/bin/python3 scripts/train_reference.py --quiet-config --model " << model
      << " --threads " << a.threads << " --json " << out.string();
  if (!recipe.empty()) cmd << " --recipe " << recipe;
  if (samples > 0) cmd << " --samples " << samples;
  cmd << " > " << out.string() << ".log 2>&1";
  const int rc = std::system(cmd.str().c_str());
  json j = json::object();
  if (rc == 0) {
    std::ifstream f(out);
    j = json::parse(f, nullptr, false);
    if (j.is_discarded()) j = json::object();
  } else {
    std::ifstream log(out.string() + ".log");
    std::cout << "  PyTorch reference failed (exit " << rc
              << "): " << std::string(std::istreambuf_iterator<char>(log), {}).substr(0, 2000)
              << "\n";
  }
  std::filesystem::remove(out);
  std::filesystem::remove(out.string() + ".log");
  return j;
}

double accuracy_of(const model::Graph& g, const model::Dataset& test, int threads) {
  evaluators::EvaluationOptions eo;
  eo.threads = threads;
  return evaluators::evaluate_model(g, test, eo).accuracy;
}

bool wanted(const Args& a, const std::string& name) {
  if (a.only.empty()) return true;
  for (const auto& o : a.only)
    if (o == name) return true;
  return false;
}

}  // namespace

int main(int argc, char** argv) {
  const char* kUsage =
      "usage: bench_training [--threads N] [--samples N] [--no-pytorch] [--only a,b]\n"
      "Quantization-aware fine-tuning with distillation on the bundled CNN (the recipes of\n"
      "bench/training/) and plain training of the CNN and MLP, against PyTorch in the same run.\n";
  if (bench::help_requested(argc, argv, kUsage)) return 0;
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string s = argv[i];
    if (s == "--threads" && i + 1 < argc)
      a.threads = std::atoi(argv[++i]);
    else if (s == "--samples" && i + 1 < argc)
      a.samples = std::atoll(argv[++i]);
    else if (s == "--no-pytorch")
      a.pytorch = false;
    else if (s == "--only" && i + 1 < argc) {
      std::stringstream ss(argv[++i]);
      for (std::string t; std::getline(ss, t, ',');) a.only.push_back(t);
    } else {
      bench::usage_error("bench_training: unknown or incomplete option " + s, kUsage);
    }
  }
  std::cout
      << "bench_training: machine " << bench::machine_line() << "\n"
      << "threads " << a.threads
      << " (ours and PyTorch's), batch 128, seed 0, training images per epoch "
      << (a.samples > 0 ? std::to_string(a.samples) : std::string("60000 (all)")) << "\n"
      << "peer: PyTorch via scripts/train_reference.py (/usr/bin/python3), OPENBLAS_NUM_THREADS="
      << a.threads << "\n"
      << std::endl;

  const std::string cnn = "models/fmnist_cnn.onnx", mlp = "models/fmnist_mlp.onnx";
  const model::Dataset train = model::load_dataset("fashion-mnist", "train");
  const model::Dataset test = model::load_dataset("fashion-mnist", "test");
  const model::Graph cnn_graph = model::load_onnx(cnn);
  const model::LayerTable table = model::build_layer_table(cnn_graph);
  const double fp32 = accuracy_of(cnn_graph, test, a.threads);
  std::cout << "reference CNN FP32 test accuracy (compsearch executor): " << fp32 << "\n"
            << std::endl;

  struct Row {
    std::string name, bar;
  };
  const std::vector<Row> rows = {{"w2_all", "gain >= 20 points over PTQ after 1 epoch"},
                                 {"binary_middle", "within 5 points of FP32 after 2 epochs"},
                                 {"prune50_w4", "within 1 point of FP32 after 1 epoch"}};
  json results = json::array();
  for (const auto& row : rows) {
    if (!wanted(a, row.name)) continue;
    const std::string path = "bench/training/" + row.name + ".json";
    const compressors::Recipe recipe = compressors::load_recipe(path);
    compressors::DistillationSpec spec = evaluators::distillation_or_default(recipe);
    if (a.samples > 0) spec.samples = a.samples;
    evaluators::EvaluationOptions eo;
    eo.threads = a.threads;
    const auto ptq_cm = compressors::apply_recipe(cnn_graph, table, recipe);
    const double ptq = evaluators::evaluate_compressed(cnn_graph, ptq_cm, test, eo).accuracy;
    evaluators::FinetuneOptions fo;
    fo.threads = a.threads;
    fo.eval_data = &test;
    const auto res = evaluators::finetune(cnn_graph, recipe, train, spec, fo);
    const double tuned =
        evaluators::evaluate_compressed(cnn_graph, res.compressed, test, eo).accuracy;
    double our_epoch = 0;
    for (const auto& e : res.epochs)
      our_epoch += e.seconds / static_cast<double>(res.epochs.size());
    std::cout << row.name << " (" << path << ", " << spec.epochs << " epoch(s)): FP32 " << fp32
              << ", PTQ " << ptq << ", after fine-tuning " << tuned << " (" << (tuned - ptq) * 100
              << " points over PTQ, " << (fp32 - tuned) * 100 << " below FP32); epoch " << our_epoch
              << " s\n";
    for (const auto& e : res.epochs)
      std::cout << "  ours  epoch " << e.epoch << ": loss " << e.loss << ", train acc "
                << e.train_accuracy << ", test acc " << e.eval_accuracy << ", " << e.seconds
                << " s\n";
    json r = {{"recipe", row.name}, {"bar", row.bar}, {"fp32", fp32},
              {"ptq", ptq},         {"tuned", tuned}, {"epoch_seconds", our_epoch}};
    if (a.pytorch) {
      const json t = run_pytorch(cnn, path, a, a.samples);
      if (t.contains("final_accuracy")) {
        double torch_epoch = 0;
        for (const auto& e : t["epochs"]) {
          torch_epoch += e["seconds"].get<double>() / static_cast<double>(t["epochs"].size());
          std::cout << "  torch epoch " << e["epoch"] << ": loss " << e["loss"] << ", train acc "
                    << e["train_accuracy"] << ", test acc " << e["test_accuracy"] << ", "
                    << e["seconds"] << " s\n";
        }
        const double tt = t["final_accuracy"].get<double>();
        std::cout << "  PyTorch: PTQ " << t["ptq_accuracy"] << ", after fine-tuning " << tt
                  << "; |ours - PyTorch| = " << std::abs(tuned - tt) * 100
                  << " points; epoch time ratio PyTorch/ours " << torch_epoch / our_epoch << "x\n";
        r["torch_ptq"] = t["ptq_accuracy"];
        r["torch_tuned"] = tt;
        r["torch_epoch_seconds"] = torch_epoch;
        r["torch_blas"] = t["blas"];
      }
    }
    std::cout << "  bar: " << row.bar << "\n" << std::endl;
    results.push_back(r);
  }

  // Plain training speed (one epoch of cross-entropy, Adam, batch 128).
  for (const std::string& m : {cnn, mlp}) {
    const std::string name = std::filesystem::path(m).stem().string();
    if (!wanted(a, name)) continue;
    const model::Graph g = model::load_onnx(m);
    compressors::DistillationSpec spec;
    spec.epochs = 1;
    spec.alpha = 0.0;
    spec.samples = a.samples;
    evaluators::FinetuneOptions fo;
    fo.threads = a.threads;
    const auto res = evaluators::finetune(g, compressors::Recipe{}, train, spec, fo);
    const double ours = res.epochs.at(0).seconds;
    const double acc = accuracy_of(res.graph, test, a.threads);
    std::cout << name << " plain training, 1 epoch: ours " << ours << " s ("
              << res.epochs.at(0).images_per_second << " img/s, test acc after " << acc << ")";
    json r = {{"model", name}, {"epoch_seconds", ours}, {"accuracy", acc}};
    if (a.pytorch) {
      const json t = run_pytorch(m, "", a, a.samples);
      if (t.contains("epochs") && !t["epochs"].empty()) {
        const double ts = t["epochs"][0]["seconds"].get<double>();
        std::cout << "; PyTorch " << ts << " s (test acc after " << t["final_accuracy"]
                  << "); ratio PyTorch/ours " << ts / ours << "x (goal >= 1.0, first bar 0.7)";
        r["torch_epoch_seconds"] = ts;
        r["ratio"] = ts / ours;
      }
    }
    std::cout << std::endl;
    results.push_back(r);
  }
  std::cout << "\nmachine at the end: " << bench::machine_line() << "\n" << results.dump() << "\n";
  return 0;
}
