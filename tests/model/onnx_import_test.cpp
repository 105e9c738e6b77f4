// ONNX import: folding and shape inference, round trip, and clear errors for bad files.
#include <doctest/doctest.h>

#include <fstream>
#include <random>

#include "model/dataset.h"
#include "model/executor.h"
#include "model/graph.h"
#include "tests/model/test_util.h"

using namespace compsearch::model;
using compsearch::model::testing::data_dir;
using compsearch::model::testing::source_dir;
namespace fs = std::filesystem;

namespace {

fs::path temp_dir() {
  const fs::path d = fs::temp_directory_path() / "compsearch_model_import_test";
  fs::create_directories(d);
  return d;
}

std::string read_all(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

void write_all(const fs::path& p, const std::string& bytes) {
  std::ofstream out(p, std::ios::binary);
  out << bytes;
}

}  // namespace

TEST_CASE(
    "Importer infers shapes through the Shape/Gather/Unsqueeze/Concat/Reshape chain with a "
    "symbolic batch") {
  const Graph g = load_onnx(source_dir() / "models" / "fmnist_mlp.onnx");
  CHECK(g.opset_version == 11);
  REQUIRE(g.inputs.size() == 1);
  CHECK(g.inputs[0].shape == Shape{-1, 1, 28, 28});
  // The batch is data-dependent, so the chain stays; everything after it has static features.
  const auto reshape = std::find_if(g.nodes.begin(), g.nodes.end(),
                                    [](const Node& n) { return n.op_type == "Reshape"; });
  REQUIRE(reshape != g.nodes.end());
  CHECK(g.value_info.at(reshape->outputs[0]).shape == Shape{-1, 784});
  CHECK(g.outputs[0].shape == Shape{-1, 10});
}

TEST_CASE("Importer folds constant subgraphs into initializers") {
  // conv_bn_activations has Constant nodes (Clip bounds, HardSigmoid pieces): none survive.
  const Graph g = load_onnx(data_dir() / "fixtures" / "conv_bn_activations.onnx");
  for (const auto& n : g.nodes) CHECK(n.op_type != "Constant");
  CHECK(g.outputs[0].shape == Shape{-1, 8, 6, 6});
}

TEST_CASE("save_onnx then load_onnx gives a graph that computes the same outputs") {
  const Graph g = load_onnx(source_dir() / "models" / "fmnist_cnn.onnx");
  const fs::path p = temp_dir() / "roundtrip.onnx";
  save_onnx(g, p);
  const Graph h = load_onnx(p);
  CHECK(h.nodes.size() == g.nodes.size());
  CHECK(h.initializers.size() == g.initializers.size());
  const Tensor x = load_dataset("fashion-mnist", "test").batch(0, 4);
  const Tensor a = Executor(g, {1}).run({x})[0];
  const Tensor b = Executor(h, {1}).run({x})[0];
  CHECK(a.f32 == b.f32);
}

TEST_CASE("An unsupported op is an error naming the node and its op type and the supported list") {
  Graph g = load_onnx(source_dir() / "models" / "fmnist_cnn.onnx");
  g.nodes[1].op_type = "LSTM";
  const std::string node = g.nodes[1].name;
  const fs::path p = temp_dir() / "unsupported.onnx";
  save_onnx(g, p);
  const std::string expected =
      p.string() + ": node '" + node +
      "' has op type 'LSTM', which is not supported; supported ops: Abs, Add, AveragePool, ";
  CHECK_THROWS_WITH_AS(load_onnx(p), doctest::Contains(expected.c_str()), std::runtime_error);
  try {
    load_onnx(p);
  } catch (const std::runtime_error& e) {
    const std::string what = e.what();
    for (const auto& op : supported_ops()) CHECK(what.find(op) != std::string::npos);
  }
}

TEST_CASE("An opset outside 11 to 17 is rejected with the supported range") {
  Graph g = load_onnx(source_dir() / "models" / "fmnist_cnn.onnx");
  g.opset_version = 9;
  const fs::path p = temp_dir() / "opset9.onnx";
  save_onnx(g, p);
  CHECK_THROWS_WITH_AS(load_onnx(p),
                       doctest::Contains("opset 9 is not supported (expected 11 to 17"),
                       std::runtime_error);
}

TEST_CASE("Truncated and corrupt files are clear errors and never crashes") {
  const std::string bytes = read_all(source_dir() / "models" / "fmnist_cnn.onnx");
  const fs::path p = temp_dir() / "truncated.onnx";
  std::mt19937 rng(7);
  std::vector<size_t> cuts = {0, 1, 7, 100, bytes.size() / 2, bytes.size() - 1};
  for (int i = 0; i < 30; ++i) cuts.push_back(rng() % bytes.size());
  for (size_t cut : cuts) {
    CAPTURE(cut);
    write_all(p, bytes.substr(0, cut));
    CHECK_THROWS_WITH_AS(load_onnx(p), doctest::Contains(p.string().c_str()), std::runtime_error);
  }
  // Flipped bytes: either a clean error or (if the flip lands in weight data) a loadable model.
  for (int i = 0; i < 30; ++i) {
    std::string bad = bytes;
    for (int k = 0; k < 8; ++k) bad[rng() % bad.size()] ^= static_cast<char>(1 + rng() % 255);
    write_all(p, bad);
    try {
      load_onnx(p);
    } catch (const std::runtime_error& e) {
      CHECK(std::string(e.what()).find(p.string()) == 0);
    }
  }
  write_all(p, "this is not an onnx file\n");
  CHECK_THROWS_WITH_AS(load_onnx(p), doctest::Contains("not a valid ONNX model"),
                       std::runtime_error);
  CHECK_THROWS_WITH_AS(load_onnx(temp_dir() / "missing.onnx"),
                       doctest::Contains("missing.onnx: no such file"), std::runtime_error);
}

TEST_CASE("Weights in an external-data file load and a missing data file is named") {
  const fs::path src = data_dir() / "fixtures" / "conv_autopad_external.onnx";
  const Graph g = load_onnx(src);
  CHECK(g.find_initializer("w1")->shape == Shape{4, 3, 3, 3});
  const fs::path lonely = temp_dir() / "lonely" / "conv_autopad_external.onnx";
  fs::create_directories(lonely.parent_path());
  fs::copy_file(src, lonely, fs::copy_options::overwrite_existing);
  CHECK_THROWS_WITH_AS(load_onnx(lonely), doctest::Contains("cannot open external data file"),
                       std::runtime_error);
}

TEST_CASE("External data outside the model's directory is refused as ONNX's checker refuses it") {
  const fs::path fixtures = data_dir() / "fixtures";
  const std::string bytes = read_all(fixtures / "conv_autopad_external.onnx");
  const std::string stored = "conv_autopad_external.data";  // every initializer's location
  // The same model with every location replaced by one of the same length (protobuf lengths stay).
  auto with_location = [&](const std::string& location) {
    REQUIRE(location.size() == stored.size());
    std::string out = bytes;
    int replaced = 0;
    for (size_t at = out.find(stored); at != std::string::npos; at = out.find(stored, at + 1)) {
      out.replace(at, stored.size(), location);
      ++replaced;
    }
    REQUIRE(replaced > 0);
    return out;
  };
  const fs::path root = temp_dir() / "external_escape";
  fs::remove_all(root);
  fs::create_directories(root / "model" / "d");
  // Each location below reaches a real copy of the data, so only the location rule can refuse it.
  const fs::path data = fixtures / "conv_autopad_external.data";
  const fs::path absolute = "/tmp/conv_autopad_ext.data";
  fs::copy_file(data, root / "conv_autopad_exter.data");
  fs::copy_file(data, absolute, fs::copy_options::overwrite_existing);
  fs::copy_file(data, root / "model" / "d" / "conv_autopad_e.data");
  const fs::path up = root / "model" / "up.onnx", abs = root / "model" / "abs.onnx",
                 inside = root / "model" / "inside.onnx";
  write_all(up, with_location("../conv_autopad_exter.data"));
  write_all(abs, with_location(absolute.string()));
  write_all(inside, with_location("d/../d/conv_autopad_e.data"));
  CHECK_THROWS_WITH_AS(load_onnx(up),
                       doctest::Contains("external data location '../conv_autopad_exter.data' "
                                         "points outside the model's directory"),
                       std::runtime_error);
  CHECK_THROWS_WITH_AS(load_onnx(abs),
                       doctest::Contains("external data location '/tmp/conv_autopad_ext.data' "
                                         "must be a relative path"),
                       std::runtime_error);
  CHECK_THROWS_WITH_AS(load_onnx(up), doctest::Contains(up.string().c_str()), std::runtime_error);
  CHECK(load_onnx(inside).find_initializer("w1")->shape == Shape{4, 3, 3, 3});
  fs::remove(absolute);
  fs::remove_all(root);
}
