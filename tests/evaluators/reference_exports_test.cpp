// On the reference models (models/fmnist_cnn.onnx, models/fmnist_mlp.onnx) and 300 Fashion-MNIST
// test images: the accuracy of the in-memory compressed model equals the accuracy of each export
// run by ONNX Runtime (onnx-qdq, onnx) and by compsearch (onnx, safetensors).
#include <doctest/doctest.h>

#include <algorithm>
#include <filesystem>

#include <unistd.h>

#include "compressors/apply.h"
#include "compressors/export.h"
#include "evaluators/accuracy.h"
#include "model/dataset.h"
#include "model/layer_table.h"
#include "tests/compressors/ort_runner.h"

using namespace compsearch;
namespace fs = std::filesystem;

namespace {

constexpr int64_t kImages = 300;

double accuracy_of(const std::vector<float>& out, int64_t classes, const model::Dataset& data) {
  int64_t correct = 0;
  const int64_t n = static_cast<int64_t>(out.size()) / classes;
  for (int64_t i = 0; i < n; ++i) {
    const float* row = out.data() + i * classes;
    correct += (std::max_element(row, row + classes) - row) == data.labels[i];
  }
  return static_cast<double>(correct) / n;
}

void check_exports(const std::string& model_file, const std::string& recipe_text) {
  const fs::path model_path = fs::path(COMPSEARCH_SOURCE_DIR) / "models" / model_file;
  if (!fs::exists(model_path)) {
    MESSAGE("skipped: " << model_path << " is missing (scripts/make_reference_models.py makes it)");
    return;
  }
  const model::Graph g = model::load_onnx(model_path);
  const model::LayerTable t = model::build_layer_table(g);
  const model::Dataset data = model::load_dataset("fashion-mnist", "test");
  const model::Dataset calib = model::load_dataset("fashion-mnist", "train");
  compressors::ApplyOptions ao;
  ao.keep_quantized = true;
  auto cm = compressors::apply_recipe(g, t, compressors::recipe_from_json(nlohmann::json::parse(recipe_text)), ao);
  evaluators::calibrate_activations(cm, calib, 256);
  evaluators::EvaluationOptions eo;
  eo.limit = kImages;
  int64_t classes = 0;
  const auto mem = evaluators::run_model(cm.graph, data, &cm.activations, eo, classes);
  const double want = accuracy_of(mem, classes, data);
  const fs::path dir = fs::temp_directory_path() / ("compsearch_ref_exports_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const model::Tensor x = data.batch(0, kImages);
  const bool has_activations = !cm.activations.empty();
  {
    const fs::path p = dir / "qdq.onnx";
    compressors::export_model(cm, compressors::ExportFormat::kOnnxQdq, p);
    CHECK(testing::onnx_checker_accepts(p));
    // As written (optimisations off), the QDQ graph computes what compsearch computes in memory.
    // QuantizeLinear divides in float32 where compsearch divides in double: an activation that
    // lands exactly between two steps may round the other way; allow one image of difference.
    const double exact = accuracy_of(testing::run_ort(p, x, false), classes, data);
    CHECK(std::abs(exact - want) <= 1.0 / kImages + 1e-12);
    // With its default optimisations ONNX Runtime fuses DQ -> Conv/Gemm -> Q chains into integer
    // kernels (int32 bias, requantization), as a deployment runtime would: close, not identical.
    const double fused = accuracy_of(testing::run_ort(p, x), classes, data);
    MESSAGE(model_file << ": in-memory accuracy " << want << ", ONNX Runtime on the QDQ export " << exact
                       << " (as written), " << fused << " (optimised, integer kernels)");
    CHECK(std::abs(fused - want) <= 0.05);
  }
  if (!has_activations) {
    const fs::path p = dir / "fake.onnx";
    compressors::export_model(cm, compressors::ExportFormat::kOnnx, p);
    CHECK(accuracy_of(testing::run_ort(p, x), classes, data) == want);
    const model::Graph back = model::load_onnx(p);
    int64_t c2 = 0;
    const auto back_out = evaluators::run_model(back, data, nullptr, eo, c2);
    CHECK(accuracy_of(back_out, c2, data) == want);
    const fs::path s = dir / "model.safetensors";
    compressors::export_model(cm, compressors::ExportFormat::kSafetensors, s);
    const model::Graph st = compressors::load_safetensors_weights(g, s);
    const auto st_out = evaluators::run_model(st, data, nullptr, eo, c2);
    CHECK(accuracy_of(st_out, c2, data) == want);
  }
  fs::remove_all(dir);
}

}  // namespace

TEST_CASE("Exports of the reference CNN give the in-memory compressed accuracy") {
  check_exports("fmnist_cnn.onnx",
                R"({"format": "compsearch.recipe/1", "default": {"w_bits": 4},
                    "layers": {"conv2": {"w_bits": 3, "granularity": "group:16", "prune": {"kind": "2:4"}},
                               "fc1": {"w_bits": 8, "prune": {"kind": "unstructured", "ratio": 0.5}}}})");
  check_exports("fmnist_cnn.onnx",
                R"({"format": "compsearch.recipe/1", "default": {"w_bits": 8, "a_bits": 8},
                    "layers": {"conv1": {"prune": {"kind": "channel", "ratio": 0.25}}, "fc2": {"w_bits": 1, "a_bits": 4}}})");
}

TEST_CASE("Exports of the reference MLP give the in-memory compressed accuracy") {
  check_exports("fmnist_mlp.onnx", R"({"format": "compsearch.recipe/1", "default": {"w_bits": 2, "granularity": "group:32"}})");
  check_exports("fmnist_mlp.onnx", R"({"format": "compsearch.recipe/1", "default": {"w_bits": 4, "a_bits": 8}})");
}
