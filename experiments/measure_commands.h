// `compsearch measure`: the latency of a (compressed) model on the machine compsearch runs on,
// measured with the executor (median of repeats, per layer and in total), fp32 or with int8
// kernels, optionally beside a hardware model's estimate of the same layers (its error per layer
// and in total). This is the host CPU as a measured target, and how a modelled host profile is
// checked against measurement (scripts/calibrate_host.py fits one from these numbers).
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace compsearch::experiments {

struct MeasureRequest {
  std::string model;   // .onnx file
  std::string recipe;  // compsearch.recipe/1 file; "" = the model as stored
  bool int8 = false;   // layers with 8-bit weights and activations on integer kernels
  int batch = 1;
  int threads = 1;
  int repeats = 30;
  int warmup = 3;
  std::string compare_target;  // a target preset or profile file to estimate beside; "" = none
};

struct MeasuredLayer {
  std::string name;
  std::string op;      // Conv, Gemm, MatMul
  double macs = 0.0;   // whole batch, dense
  bool int8 = false;   // ran on integer kernels (in the last timed run)
  std::string kernel;  // which kernel ran, in the last timed run (Executor::StepTime::kernel)
  double median_ms = 0.0;
  double estimate_ms = -1.0;  // with compare_target; -1 otherwise
};

// JSON: {"model", "recipe", "batch", "threads", "repeats", "int8", "int8_available", "machine",
// "total_ms" (median
// of whole runs), "layers_ms" (sum of the layers' medians), "other_ms" (median of the other ops),
// "layers": [{"name", "op", "macs", "int8", "kernel", "median_ms", "estimate_ms"?}], and with a
// target "target", "estimate_ms", "error" (estimate / measured - 1)}.
struct MeasureResult {
  MeasureRequest request;
  int threads = 1;              // request.threads resolved (0 = all cores)
  bool int8_available = false;  // model::int8_kernels_available()
  std::string machine;
  double total_ms = 0.0;
  double other_ms = 0.0;
  std::vector<MeasuredLayer> layers;
  double estimate_ms = -1.0;

  nlohmann::json to_json() const;
  std::string to_text() const;
};

MeasureResult run_measure(const MeasureRequest& request);

}  // namespace compsearch::experiments
