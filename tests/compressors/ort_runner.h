// Runs exported models through independent tools: ONNX Runtime (npm onnxruntime-node via
// scripts/ort_run.js) and python3-onnx's checker. Shared by the compressor and evaluator tests.
#pragma once

#include <doctest/doctest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "model/tensor.h"

namespace compsearch::testing {

namespace fs = std::filesystem;

// The model's first output on `x` (float32, any shape; first dim = batch), computed by ONNX
// Runtime. Fails the test with ONNX Runtime's message when it cannot run the model. With
// `optimize` false, graph optimisations are off: QDQ nodes then run as written (float math),
// instead of being fused into integer kernels (QLinearConv etc.) that round differently.
inline std::vector<float> run_ort(const fs::path& model, const model::Tensor& x,
                                  bool optimize = true) {
  const fs::path dir = model.parent_path();
  const fs::path in = dir / "input.f32", out = dir / "output.f32";
  {
    std::ofstream f(in, std::ios::binary);
    f.write(reinterpret_cast<const char*>(x.f32.data()),
            static_cast<std::streamsize>(x.f32.size() * 4));
  }
  std::string dims;
  for (size_t i = 0; i < x.shape.size(); ++i) dims += (i ? "," : "") + std::to_string(x.shape[i]);
  const std::string cmd = std::string(optimize ? "" : "COMPSEARCH_ORT_OPT=disabled ") + "node " +
                          std::string(COMPSEARCH_SOURCE_DIR) + "/scripts/ort_run.js " +
                          model.string() + " " + in.string() + " " + dims + " " + out.string() +
                          " > " + (dir / "ort.log").string() + " 2>&1";
  const int rc = std::system(cmd.c_str());
  if (rc != 0) {
    std::ifstream log(dir / "ort.log");
    std::string text((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
    FAIL("ONNX Runtime failed on " << model << ": " << text);
  }
  std::vector<float> r(fs::file_size(out) / 4);
  std::ifstream g(out, std::ios::binary);
  g.read(reinterpret_cast<char*>(r.data()), static_cast<std::streamsize>(r.size() * 4));
  return r;
}

// True when onnx.checker.check_model(full_check=True) accepts the file.
inline bool onnx_checker_accepts(const fs::path& model) {
  const std::string cmd =
      "/usr/bin/python3 -c \"import onnx, sys; onnx.checker.check_model(onnx.load(sys.argv[1]), "
      "full_check=True)\" " +
      model.string() + " > " + (model.parent_path() / "checker.log").string() + " 2>&1";
  return std::system(cmd.c_str()) == 0;
}

}  // namespace compsearch::testing
