// inspect / evaluate logic: JSON keys, and accuracy equal to PyTorch's on the reference models.
#include "experiments/model_commands.h"

#include <doctest/doctest.h>

#include <fstream>

using namespace compsearch;
namespace fs = std::filesystem;

TEST_CASE("evaluate matches PyTorch's test accuracy on both reference models within 5 images") {
  std::ifstream in(fs::path(COMPSEARCH_SOURCE_DIR) / "models" / "reference_accuracy.json");
  REQUIRE(in);
  nlohmann::json ref;
  in >> ref;
  const model::Dataset data = model::load_dataset("fashion-mnist", "test");
  for (const std::string name : {"fmnist_cnn", "fmnist_mlp"}) {
    CAPTURE(name);
    const model::Graph g =
        model::load_onnx(fs::path(COMPSEARCH_SOURCE_DIR) / "models" / (name + ".onnx"));
    const auto r = experiments::evaluate_graph(g, data, evaluators::EvaluationOptions{}, name);
    CHECK(r.samples == 10000);
    CHECK(std::llabs(r.correct - ref[name]["correct"].get<int64_t>()) <= 5);
    const auto j = r.to_json();
    CHECK(j.at("accuracy").get<double>() == doctest::Approx(r.correct / 10000.0));
    CHECK(j.at("samples").get<int64_t>() == 10000);
    CHECK(r.to_text().find("accuracy:") != std::string::npos);
  }
}

TEST_CASE("inspect JSON has the layer keys and totals of the issue") {
  const model::Graph g =
      model::load_onnx(fs::path(COMPSEARCH_SOURCE_DIR) / "models" / "fmnist_mlp.onnx");
  const auto j = experiments::inspect_graph(g, "mlp").to_json();
  CHECK(j.at("total_params") == 109386);
  CHECK(j.at("total_macs") == 109184);
  REQUIRE(j.at("layers").size() == 3);
  const auto& l = j["layers"][0];
  CHECK(l.size() == 7);
  CHECK(l.at("name") == "fc1");
  CHECK(l.at("op") == "Gemm");
  CHECK(l.at("weight_shape") == nlohmann::json::array({128, 784}));
  CHECK(l.at("params") == 100480);
  CHECK(l.at("macs") == 100352);
  CHECK(l.at("input_elements") == 784);
  CHECK(l.at("output_elements") == 128);
  CHECK(experiments::inspect_graph(g, "mlp").to_text().find("total: 109,386 params") !=
        std::string::npos);
}

TEST_CASE("evaluate refuses unlabelled data and a limit counts only the first samples") {
  const model::Graph g =
      model::load_onnx(fs::path(COMPSEARCH_SOURCE_DIR) / "models" / "fmnist_cnn.onnx");
  model::Dataset data = model::load_dataset("fashion-mnist", "test");
  evaluators::EvaluationOptions opts;
  opts.limit = 100;
  opts.batch = 7;  // a last partial batch
  const auto r = experiments::evaluate_graph(g, data, opts, "cnn");
  CHECK(r.samples == 100);
  data.labels.clear();
  CHECK_THROWS_WITH_AS(experiments::evaluate_graph(g, data, opts, "cnn"),
                       doctest::Contains("has no labels"), std::invalid_argument);
}
