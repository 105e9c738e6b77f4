// Helpers for the training tests: a tiny in-memory graph builder, seeded tensors, the
// sum(output * R) test loss and a central-finite-difference gradient check.
#pragma once

#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "model/dataset.h"
#include "model/graph.h"
#include "model/training.h"

namespace compsearch::model::training_testing {

inline std::filesystem::path fixture_dir() {
  return std::filesystem::path(COMPSEARCH_TEST_DATA) / "model" / "training";
}

inline nlohmann::json manifest() {
  std::ifstream in(fixture_dir() / "manifest.json");
  REQUIRE_MESSAGE(in.good(),
                  "missing tests/data/model/training/manifest.json: run /usr/bin/python3 "
                  "scripts/make_training_fixtures.py");
  nlohmann::json j;
  in >> j;
  return j;
}

inline Tensor fixture(const std::string& name) { return read_npy(fixture_dir() / name); }

inline Tensor random_tensor(Shape shape, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> v(static_cast<size_t>(shape_numel(shape)));
  for (auto& x : v) x = nd(rng) * scale;
  return Tensor::floats(std::move(shape), std::move(v));
}

inline Attribute attr_int(int64_t v) {
  Attribute a;
  a.kind = Attribute::Kind::kInt;
  a.i = v;
  return a;
}
inline Attribute attr_float(float v) {
  Attribute a;
  a.kind = Attribute::Kind::kFloat;
  a.f = v;
  return a;
}
inline Attribute attr_ints(std::vector<int64_t> v) {
  Attribute a;
  a.kind = Attribute::Kind::kInts;
  a.ints = std::move(v);
  return a;
}

// Builds a graph node by node; initializers are seeded normal values.
struct GraphBuilder {
  Graph g;
  int counter = 0;
  uint32_t seed = 1;

  explicit GraphBuilder(Shape input_shape) {
    g.name = "test";
    g.inputs.push_back({"x", DType::kFloat32, std::move(input_shape)});
  }
  std::string init(const std::string& name, Shape shape, float scale = 0.5f) {
    g.initializers[name] = random_tensor(std::move(shape), seed++, scale);
    return name;
  }
  std::string init_values(const std::string& name, Tensor t) {
    g.initializers[name] = std::move(t);
    return name;
  }
  std::string node(const std::string& op, std::vector<std::string> inputs,
                   std::map<std::string, Attribute> attrs = {}) {
    Node n;
    n.name = op + std::to_string(counter);
    n.op_type = op;
    n.inputs = std::move(inputs);
    n.outputs = {"v" + std::to_string(counter++)};
    n.attributes = std::move(attrs);
    g.nodes.push_back(n);
    return g.nodes.back().outputs[0];
  }
  Graph finish(const std::string& output) {
    g.outputs = {{output, DType::kFloat32, {}}};
    infer_shapes(g);
    return g;
  }
};

// sum(output * r) in double.
inline double weighted_sum(const Tensor& y, const Tensor& r) {
  REQUIRE(y.f32.size() == r.f32.size());
  double s = 0.0;
  for (size_t i = 0; i < y.f32.size(); ++i) s += double(y.f32[i]) * double(r.f32[i]);
  return s;
}

struct FdReport {
  int checked = 0;
  int failed = 0;
  double worst = 0.0;
  std::string first_failure;
};

// Compares the trainer's gradient of sum(forward(x) * r) with central differences
// (L(p + eps) - L(p - eps)) / (2 eps) for every element of every parameter (at most
// `max_per_param`, evenly spaced). The forward is float32, so the loss is summed in double and
// an element passes within atol + rtol * |analytic|.
inline FdReport finite_difference_check(Trainer& trainer, const Tensor& x, const Tensor& r,
                                        double eps = 5e-3, double atol = 2e-3, double rtol = 2e-2,
                                        int max_per_param = 64) {
  trainer.forward(x, Trainer::Mode::kTrain);
  trainer.backward(r);
  std::vector<Tensor> analytic;
  for (const auto& p : trainer.parameters()) analytic.push_back(p.grad);
  FdReport rep;
  for (size_t pi = 0; pi < trainer.parameters().size(); ++pi) {
    const int64_t n = static_cast<int64_t>(trainer.parameters()[pi].value.f32.size());
    const int64_t stride = std::max<int64_t>(1, n / max_per_param);
    for (int64_t i = 0; i < n; i += stride) {
      float& v = trainer.parameters()[pi].value.f32[static_cast<size_t>(i)];
      const float keep = v;
      v = keep + static_cast<float>(eps);
      const double lp = weighted_sum(trainer.forward(x, Trainer::Mode::kTrain), r);
      v = keep - static_cast<float>(eps);
      const double lm = weighted_sum(trainer.forward(x, Trainer::Mode::kTrain), r);
      v = keep;
      const double h =
          double(keep + static_cast<float>(eps)) - double(keep - static_cast<float>(eps));
      const double fd = (lp - lm) / h;
      const double an = analytic[pi].f32[static_cast<size_t>(i)];
      const double err = std::fabs(fd - an) - (atol + rtol * std::fabs(an));
      ++rep.checked;
      rep.worst = std::max(rep.worst, std::fabs(fd - an));
      if (err > 0) {
        if (!rep.failed) {
          rep.first_failure = trainer.parameters()[pi].name + "[" + std::to_string(i) +
                              "]: finite difference " + std::to_string(fd) + ", backward " +
                              std::to_string(an);
        }
        ++rep.failed;
      }
    }
  }
  return rep;
}

}  // namespace compsearch::model::training_testing
