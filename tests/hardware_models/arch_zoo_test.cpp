// Architecture zoo: parameter and MAC counts against published figures and hand computations.
#include "hardware_models/arch_zoo.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "model/graph.h"
#include "model/layer_table.h"
#include "tests/test_skip.h"

namespace hm = compsearch::hardware_models;

namespace {
int64_t params(const hm::Workload& w) { return w.table.total_params; }
int64_t macs(const hm::Workload& w) { return w.table.total_macs; }
}  // namespace

TEST_CASE("Zoo ImageNet networks match published parameter and MAC counts within 1%") {
  // torchvision model cards: ResNet-18 11.69 M params 1.82 GMACs; ResNet-50 25.56 M 4.09 GMACs;
  // MobileNetV2 3.50 M 0.30 GMACs; ResNeXt-101 32x8d 88.79 M 16.41 GMACs. MobileNetV1 paper
  // (Howard et al. 2017, Table 8): 4.2 M params, 569 M mult-adds.
  struct Ref {
    const char* name;
    double params, macs;
  } refs[] = {{"resnet18", 11.69e6, 1.82e9},
              {"resnet50", 25.56e6, 4.09e9},
              {"mobilenet_v2", 3.50e6, 0.300e9},
              {"resnext101_32x8d", 88.79e6, 16.41e9},
              {"mobilenet_v1", 4.2e6, 0.569e9}};
  for (const auto& r : refs) {
    CAPTURE(r.name);
    const auto w = hm::build_zoo_model(r.name);
    CHECK(double(params(w)) == doctest::Approx(r.params).epsilon(0.011));
    CHECK(double(macs(w)) == doctest::Approx(r.macs).epsilon(0.011));
  }
}

TEST_CASE("Zoo MLPerf Tiny networks match hand-computed MACs") {
  // DS-CNN: conv 25x5x64x(10x4) + 4 x (dw 25x5x64x9 + pw 25x5x64x64) + fc 64x12.
  CHECK(macs(hm::build_zoo_model("ds_cnn_kws")) == 320000 + 4 * (72000 + 512000) + 768);
  // FC autoencoder: 640-128-128-128-128-8-128-128-128-128-640.
  CHECK(macs(hm::build_zoo_model("fc_autoencoder")) ==
        640 * 128 + 3 * 128 * 128 + 128 * 8 + 8 * 128 + 3 * 128 * 128 + 128 * 640);
  // ResNet-8: conv1 32x32x16x27; stack1 2 x 32x32x16x144; stack2 16x16x32x144 + 16x16x32x288 +
  // shortcut 16x16x32x16; stack3 8x8x64x288 + 8x8x64x576 + 8x8x64x32; fc 64x10.
  const int64_t rn8 = 32 * 32 * 16 * 27 + 2 * 32 * 32 * 16 * 144 + 16 * 16 * 32 * 144 +
                      16 * 16 * 32 * 288 + 16 * 16 * 32 * 16 + 8 * 8 * 64 * 288 + 8 * 8 * 64 * 576 +
                      8 * 8 * 64 * 32 + 64 * 10;
  CHECK(macs(hm::build_zoo_model("resnet8_cifar")) == rn8);
  const auto vww = hm::build_zoo_model("mobilenet_v1_vww");
  CHECK(vww.table.layers.front().weight_shape == compsearch::model::Shape{8, 3, 3, 3});
  CHECK(vww.table.layers.back().out_channels == 2);
  CHECK(vww.table.layers.size() == 28);
}

TEST_CASE("Zoo layer names and channel sources follow torchvision and DESIGN.md rule 3") {
  const auto w = hm::build_zoo_model("resnet18");
  REQUIRE(w.table.layers.size() == 21);
  CHECK(w.table.layers[0].name == "conv1");
  CHECK(w.table.layers[1].name == "layer1.0.conv1");
  // conv1 -> (Relu, MaxPool) -> layer1.0.conv1: a channel source; layer1.0.conv2 is fed by conv1 of
  // the block; layer1.1.conv1 follows a residual Add, which is not channel-preserving.
  CHECK(w.channel_source[1] == 0);
  CHECK(w.channel_source[2] == 1);
  CHECK(w.table.layers[3].name == "layer1.1.conv1");
  CHECK(w.channel_source[3] == -1);
  const auto it = std::find_if(w.table.layers.begin(), w.table.layers.end(),
                               [](const auto& l) { return l.name == "layer2.0.downsample.0"; });
  REQUIRE(it != w.table.layers.end());
  CHECK(it->weight_shape == compsearch::model::Shape{128, 64, 1, 1});
  CHECK(w.channel_source[it - w.table.layers.begin()] == -1);
  CHECK(w.table.layers.back().name == "fc");
  CHECK(w.table.layers.back().op == "Gemm");
  const auto mb = hm::build_zoo_model("mobilenet_v2");
  CHECK(mb.table.layers[1].name == "features.1.conv.0.0");
  CHECK(mb.table.layers[1].depthwise);
  CHECK(mb.table.layers.back().name == "classifier.1");
}

TEST_CASE("Zoo specs parse options and reject unknown names and keys") {
  const auto w = hm::build_zoo_model_from_spec("zoo:mobilenet_v1,alpha=0.25,res=96,classes=5");
  CHECK(w.table.layers.front().out_channels == 8);
  CHECK(w.table.layers.back().out_channels == 5);
  CHECK(w.table.layers.front().output_positions == 48 * 48);
  CHECK_THROWS_WITH_AS(hm::build_zoo_model_from_spec("zoo:vgg16"),
                       doctest::Contains("zoo model 'vgg16' is unknown; known models: "),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(hm::build_zoo_model_from_spec("zoo:resnet18,depth=3"),
                       doctest::Contains("option 'depth=3': unknown option 'depth'"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(hm::build_zoo_model_from_spec("zoo:resnet18,res=abc"),
                       doctest::Contains("option 'res=abc'"), std::invalid_argument);
}

TEST_CASE("Zoo specs whose layer sizes overflow are errors naming the model and the layer") {
  // res = 2e9: the stem's 64 x 1e9 x 1e9 outputs (6.4e19) exceed int64.
  CHECK_THROWS_WITH_AS(hm::build_zoo_model_from_spec("zoo:resnet18,res=2000000000"),
                       doctest::Contains("zoo model 'resnet18': layer 'conv1'"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(hm::build_zoo_model_from_spec("zoo:resnet18,res=2000000000"),
                       doctest::Contains("has more elements than a 64-bit count holds"),
                       std::invalid_argument);
  // alpha = 1e15: 1024e15 channels, whose 1x1 convolution weights overflow.
  CHECK_THROWS_WITH_AS(hm::build_zoo_model_from_spec("zoo:mobilenet_v1,alpha=1e15"),
                       doctest::Contains("zoo model 'mobilenet_v1': layer '"),
                       std::invalid_argument);
  // alpha = 1e300: the channel count itself is not an int64.
  CHECK_THROWS_WITH_AS(hm::build_zoo_model_from_spec("zoo:mobilenet_v1,alpha=1e300"),
                       doctest::Contains("zoo model 'mobilenet_v1'"), std::invalid_argument);
  CHECK(hm::build_zoo_model_from_spec("zoo:resnet18,res=448").table.total_macs > 0);
}

namespace {

// The MLPerf Tiny exports of scripts/make_mlperf_tiny_models.py, made in the build tree on first
// use. Empty = unavailable (python3-torch missing), with the reason in `why`.
std::filesystem::path mlperf_tiny_model(const std::string& name, std::string& why) {
  const std::filesystem::path dir = std::filesystem::path(COMPSEARCH_BINARY_DIR) / "mlperf_tiny";
  const auto path = dir / (name + ".onnx");
  if (std::filesystem::exists(path)) return path;
  const std::string cmd = "/usr/bin/python3 '" COMPSEARCH_SOURCE_DIR
                          "/scripts/make_mlperf_tiny_models.py' --out '" +
                          dir.string() + "' > /dev/null 2>&1";
  if (std::system(cmd.c_str()) != 0 || !std::filesystem::exists(path)) {
    why = "scripts/make_mlperf_tiny_models.py failed (python3-torch missing?): " + cmd;
    return {};
  }
  return path;
}

}  // namespace

TEST_CASE("The MLPerf Tiny ONNX exports have the zoo's layers: shapes, MACs and weights") {
  const char* names[] = {"ds_cnn_kws", "resnet8_cifar", "mobilenet_v1_vww", "fc_autoencoder"};
  std::vector<std::filesystem::path> paths;
  for (const char* n : names) {
    std::string why;
    paths.push_back(mlperf_tiny_model(n, why));
    if (paths.back().empty()) COMPSEARCH_SKIP_TEST(why);
  }
  for (size_t m = 0; m < paths.size(); ++m) {
    CAPTURE(names[m]);
    const auto zoo = hm::build_zoo_model(names[m]);
    const auto graph = compsearch::model::load_onnx(paths[m]);
    const auto table = compsearch::model::build_layer_table(graph);
    REQUIRE(table.layers.size() == zoo.table.layers.size());
    for (size_t i = 0; i < table.layers.size(); ++i) {
      CAPTURE(i);
      CHECK(table.layers[i].op == zoo.table.layers[i].op);
      CHECK(table.layers[i].macs == zoo.table.layers[i].macs);
      CHECK(table.layers[i].weight_elements == zoo.table.layers[i].weight_elements);
      CHECK(table.layers[i].output_elements == zoo.table.layers[i].output_elements);
      CHECK(table.layers[i].depthwise == zoo.table.layers[i].depthwise);
    }
    CHECK(table.total_macs == zoo.table.total_macs);
  }
}
