// `compsearch compress` (experiments::compress_model and the CLI verb): bad inputs are clear
// errors, and each format writes a file that independent readers take back: the safetensors
// header parsed as plain JSON, the QDQ file inspected and checked by python3-onnx, the float
// ONNX file loaded by compsearch.
#include "experiments/compress_commands.h"

#include <doctest/doctest.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "model/layer_table.h"
#include "tests/compressors/ort_runner.h"
#include "tests/experiments/cli_runner.h"

using namespace compsearch;
namespace fs = std::filesystem;

namespace {

fs::path models_dir() { return fs::path(COMPSEARCH_SOURCE_DIR) / "models"; }

fs::path temp_dir() {
  const fs::path d =
      fs::temp_directory_path() / ("compsearch_compress_test_" + std::to_string(::getpid()));
  fs::create_directories(d);
  return d;
}

std::string read_text(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The safetensors header: 8-byte little-endian length, then JSON.
nlohmann::json safetensors_header(const fs::path& p, std::string* data = nullptr) {
  std::ifstream f(p, std::ios::binary);
  uint64_t n = 0;
  f.read(reinterpret_cast<char*>(&n), 8);
  REQUIRE(f);
  std::string h(n, '\0');
  f.read(h.data(), static_cast<std::streamsize>(n));
  if (data)
    *data = std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  return nlohmann::json::parse(h);
}

using Cli = testing::CliRun;

Cli run_cli(const std::string& args) { return testing::run_compsearch(args); }

constexpr const char* kMixedRecipe =
    R"({"format": "compsearch.recipe/1", "default": {"w_bits": 4, "a_bits": 8},
    "layers": {"fc1": {"w_bits": 8, "granularity": "group:32", "a_bits": 32}, "fc3": {"w_bits": 16}}})";

}  // namespace

TEST_CASE(
    "compress rejects an unknown format a missing recipe and an unwritable output with clear "
    "errors") {
  const model::Graph g = model::load_onnx(models_dir() / "fmnist_mlp.onnx");
  const auto w8 = compressors::recipe_from_json(
      nlohmann::json::parse(R"({"format": "compsearch.recipe/1", "default": {"w_bits": 8}})"));
  CHECK_THROWS_WITH_AS(compressors::export_format_from_string("tflite"),
                       "export format: got \"tflite\", expected onnx-qdq, onnx or safetensors",
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(compressors::load_recipe("/nonexistent/recipe.json"),
                       "/nonexistent/recipe.json: cannot open recipe file", std::invalid_argument);
  const fs::path bad = "/nonexistent_dir_compsearch/model.out";
  CHECK_THROWS_WITH_AS(
      experiments::compress_model(g, w8, compressors::ExportFormat::kOnnxQdq, bad, nullptr, 1),
      doctest::Contains("/nonexistent_dir_compsearch/model.out: cannot open for writing"),
      std::runtime_error);
  CHECK_THROWS_WITH_AS(
      experiments::compress_model(g, w8, compressors::ExportFormat::kOnnx, bad, nullptr, 1),
      doctest::Contains("/nonexistent_dir_compsearch/model.out: cannot open for writing"),
      std::runtime_error);
  CHECK_THROWS_WITH_AS(
      experiments::compress_model(g, w8, compressors::ExportFormat::kSafetensors, bad, nullptr, 1),
      doctest::Contains("/nonexistent_dir_compsearch/model.out: cannot write"), std::runtime_error);
  // Activation quantization needs calibration data.
  const auto a8 = compressors::recipe_from_json(nlohmann::json::parse(kMixedRecipe));
  CHECK_THROWS_WITH_AS(experiments::compress_model(g, a8, compressors::ExportFormat::kOnnxQdq,
                                                   temp_dir() / "x.onnx", nullptr, 1),
                       doctest::Contains("a_bits 4 or 8): give --calibration-data"),
                       std::invalid_argument);
  fs::remove_all(temp_dir());
}

TEST_CASE("The compress verb reports bad flags and files on stderr with a non-zero exit") {
  const fs::path dir = temp_dir();
  const std::string model = (models_dir() / "fmnist_mlp.onnx").string();
  const fs::path recipe = dir / "w8.json";
  std::ofstream(recipe) << R"({"format": "compsearch.recipe/1", "default": {"w_bits": 8}})";
  SUBCASE("unknown format") {
    const Cli r = run_cli("compress --model " + model + " --recipe " + recipe.string() +
                          " --format tflite --out " + (dir / "m.onnx").string());
    CHECK(r.rc == 2);
    CHECK(r.err.find("compsearch compress: --format: export format: got \"tflite\", expected "
                     "onnx-qdq, onnx or safetensors") != std::string::npos);
  }
  SUBCASE("missing --recipe") {
    const Cli r =
        run_cli("compress --model " + model + " --format onnx --out " + (dir / "m.onnx").string());
    CHECK(r.rc == 2);
    CHECK(r.err.find("compsearch compress: missing --recipe") != std::string::npos);
  }
  SUBCASE("recipe file that does not exist") {
    const Cli r =
        run_cli("compress --model " + model + " --recipe " + (dir / "none.json").string() +
                " --format onnx --out " + (dir / "m.onnx").string());
    CHECK(r.rc == 1);
    CHECK(r.err.find("error: " + (dir / "none.json").string() + ": cannot open recipe file") !=
          std::string::npos);
  }
  SUBCASE("recipe naming a layer the model does not have") {
    const fs::path bad = dir / "bad.json";
    std::ofstream(bad)
        << R"({"format": "compsearch.recipe/1", "layers": {"conv9": {"w_bits": 4}}})";
    const Cli r = run_cli("compress --model " + model + " --recipe " + bad.string() +
                          " --format onnx --out " + (dir / "m.onnx").string());
    CHECK(r.rc == 1);
    CHECK(r.err.find("conv9") != std::string::npos);
  }
  SUBCASE("unwritable --out") {
    const Cli r = run_cli("compress --model " + model + " --recipe " + recipe.string() +
                          " --format safetensors --out /nonexistent_dir_compsearch/m.safetensors");
    CHECK(r.rc == 1);
    CHECK(r.err.find("error: /nonexistent_dir_compsearch/m.safetensors: cannot write") !=
          std::string::npos);
  }
  SUBCASE("a good run prints the JSON summary") {
    const Cli r = run_cli("compress --model " + model + " --recipe " + recipe.string() +
                          " --format onnx-qdq --out " + (dir / "m.onnx").string() + " --json");
    CHECK(r.rc == 0);
    const auto j = nlohmann::json::parse(r.out);
    CHECK(j.at("format") == "onnx-qdq");
    CHECK(j.at("layers") == 3);
    CHECK(j.at("layers_quantized") == 3);
    CHECK(j.at("calibration_samples") == 0);
    CHECK(fs::exists(dir / "m.onnx"));
  }
  fs::remove_all(dir);
}

TEST_CASE("Each compress format writes a file that reads back") {
  const model::Graph g = model::load_onnx(models_dir() / "fmnist_mlp.onnx");
  const auto recipe = compressors::recipe_from_json(nlohmann::json::parse(kMixedRecipe));
  const model::Dataset calib = model::load_dataset("fashion-mnist", "train");
  const fs::path dir = temp_dir();
  // The in-memory compressed weights, for comparison with what the files hold.
  compressors::ApplyOptions ao;
  ao.keep_quantized = true;
  const auto cm = compressors::apply_recipe(g, model::build_layer_table(g), recipe, ao);

  SUBCASE("safetensors: integer tensors, F64 scales and the recipe as metadata") {
    const fs::path p = dir / "m.safetensors";
    const auto summary = experiments::compress_model(
        g, recipe, compressors::ExportFormat::kSafetensors, p, &calib, 64);
    CHECK(summary.at("calibration_samples") == 64);
    CHECK(summary.at("layers_quantized") == 2);  // fc1 w8, fc2 w4; fc3 is w16
    std::string data;
    const auto h = safetensors_header(p, &data);
    // fc2: w4 per_channel -> I8 values in [-7, 7], one F64 scale per output channel; q * scale is
    // the in-memory weight.
    REQUIRE(h.at("fc2.weight").at("dtype") == "I8");
    CHECK(h.at("fc2.weight").at("shape") == nlohmann::json::array({64, 128}));
    CHECK(h.at("fc2.weight.scale").at("dtype") == "F64");
    CHECK(h.at("fc2.weight.scale").at("shape") == nlohmann::json::array({64}));
    const uint64_t q0 = h["fc2.weight"]["data_offsets"][0],
                   s0 = h["fc2.weight.scale"]["data_offsets"][0];
    const auto& w = cm.graph.initializers.at("fc2.weight").f32;
    int64_t nonzero = 0;
    for (int64_t o = 0; o < 64; ++o) {
      double scale;
      std::memcpy(&scale, data.data() + s0 + 8 * o, 8);
      for (int64_t i = 0; i < 128; ++i) {
        const int8_t q = static_cast<int8_t>(data[q0 + o * 128 + i]);
        REQUIRE(std::abs(q) <= 7);
        nonzero += q != 0;
        REQUIRE(static_cast<float>(q * scale) == w[o * 128 + i]);
      }
    }
    CHECK(nonzero > 64 * 128 / 2);
    // fc1: w8 group:32 -> [128, ceil(784 / 32) = 25] scales; fc3 w16 -> F16; biases F32.
    CHECK(h.at("fc1.weight").at("dtype") == "I8");
    CHECK(h.at("fc1.weight.scale").at("shape") == nlohmann::json::array({128, 25}));
    CHECK(h.at("fc3.weight").at("dtype") == "F16");
    CHECK(h.at("fc1.bias").at("dtype") == "F32");
    const auto meta = h.at("__metadata__");
    CHECK(nlohmann::json::parse(meta.at("recipe").get<std::string>()) ==
          compressors::recipe_to_json(recipe));
    const auto layers = nlohmann::json::parse(meta.at("layers").get<std::string>());
    CHECK(layers.at("fc1").at("granularity") == "group:32");
    CHECK(layers.at("fc2").at("w_bits") == 4);
  }
  SUBCASE(
      "onnx-qdq: int8 initializers, DequantizeLinear and Q/DQ pairs, accepted by python3-onnx's "
      "checker") {
    const fs::path p = dir / "m_qdq.onnx";
    experiments::compress_model(g, recipe, compressors::ExportFormat::kOnnxQdq, p, &calib, 64);
    CHECK(testing::onnx_checker_accepts(p));
    // Count what the file holds with python3-onnx (an independent reader).
    const std::string cmd =
        "/usr/bin/python3 -c \"import onnx, sys, collections; m = onnx.load(sys.argv[1]); "
        "c = collections.Counter(n.op_type for n in m.graph.node); "
        "i8 = sum(1 for t in m.graph.initializer if t.data_type == onnx.TensorProto.INT8 and "
        "len(t.dims) == 2); "
        "print(c['DequantizeLinear'], c['QuantizeLinear'], i8, m.opset_import[0].version)\" " +
        p.string() + " > " + (dir / "count.txt").string();
    REQUIRE(std::system(cmd.c_str()) == 0);
    std::istringstream counts(read_text(dir / "count.txt"));
    int dq = 0, q = 0, i8 = 0, opset = 0;
    counts >> dq >> q >> i8 >> opset;
    CHECK(i8 == 2);      // fc1, fc2 weights
    CHECK(dq == 2 + 2);  // their weights + the a8 activations of fc2 and fc3
    CHECK(q == 2);
    CHECK(opset >= 13);
    // compsearch reads its own QDQ file back: the weights fold to float, fc2's equal in memory
    // within one ulp (float32 DequantizeLinear against double rule-5 arithmetic).
    const model::Graph back = model::load_onnx(p);
    const auto& got = back.initializers.at("fc2.weight").f32;
    const auto& want = cm.graph.initializers.at("fc2.weight").f32;
    REQUIRE(got.size() == want.size());
    for (size_t i = 0; i < got.size(); ++i)
      REQUIRE(std::abs(got[i] - want[i]) <= std::abs(want[i]) * 1.2e-7f);
  }
  SUBCASE("onnx: float weights that compsearch loads back unchanged") {
    const fs::path p = dir / "m.onnx";
    experiments::compress_model(g, recipe, compressors::ExportFormat::kOnnx, p, &calib, 64);
    const model::Graph back = model::load_onnx(p);
    for (const char* w : {"fc1.weight", "fc2.weight", "fc3.weight"}) {
      CAPTURE(w);
      CHECK(back.initializers.at(w).dtype == model::DType::kFloat32);
      CHECK(back.initializers.at(w).f32 == cm.graph.initializers.at(w).f32);
    }
  }
  fs::remove_all(dir);
}
