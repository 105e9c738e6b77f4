// Architecture zoo: layer tables of well-known networks built from their published shapes, for
// costing models whose ONNX files are not at hand (the validation against published latencies, the
// `estimate --model zoo:NAME` command, benchmarks). Layer names follow torchvision's module names
// where torchvision has the network (conv1, layer1.0.conv1, fc, features.0.0, classifier.1);
// the MLPerf Tiny networks use their Keras reference layer order (conv1, dw1, pw1, ..., fc).
//
// Names (options in brackets, defaults after '='):
//   mobilenet_v1   [alpha=1, res=224, classes=1000]   (MLPerf Tiny VWW: alpha=0.25, res=96,
//   classes=2) mobilenet_v2   [alpha=1, res=224, classes=1000] resnet18, resnet50, resnext101_32x8d
//   [res=224, classes=1000] ds_cnn_kws     MLPerf Tiny keyword spotting (DS-CNN, 49x10 MFCC, 12
//   classes) resnet8_cifar  MLPerf Tiny image classification (ResNet-8, 32x32x3, 10 classes)
//   mobilenet_v1_vww  MLPerf Tiny visual wake words (MobileNetV1 0.25, 96x96x3, 2 classes)
//   fc_autoencoder MLPerf Tiny anomaly detection (FC autoencoder, 640 inputs)
#pragma once

#include <string>
#include <vector>

#include "hardware_models/hardware_model.h"

namespace compsearch::hardware_models {

struct ZooOptions {
  double alpha = 1.0;  // width multiplier (MobileNets)
  int resolution = 0;  // input height = width; 0 = the network's default
  int classes = 0;     // 0 = the network's default
};

// The workload (layer table + channel sources) of a zoo network. Throws std::invalid_argument
// naming the network and listing the known names when `name` is unknown.
Workload build_zoo_model(const std::string& name, const ZooOptions& options = {});

// Parses "zoo:NAME[,key=value...]" (keys alpha, res, classes), e.g.
// "zoo:mobilenet_v1,alpha=0.25,res=96,classes=2". Throws std::invalid_argument on bad input.
Workload build_zoo_model_from_spec(const std::string& spec);

std::vector<std::string> zoo_model_names();

}  // namespace compsearch::hardware_models
