// Optimizers, learning-rate schedules, the seeded shuffle and the losses: against hand
// computations and PyTorch (scripts/make_training_fixtures.py).
#include <doctest/doctest.h>

#include <cmath>
#include <numeric>
#include <set>

#include "model/loss.h"
#include "model/optimizer.h"
#include "model/training.h"
#include "tests/model/training_test_util.h"

using namespace compsearch::model;
using namespace compsearch::model::training_testing;

namespace {

TrainableParameter scalar_param(float value, float grad) {
  TrainableParameter p;
  p.name = "p";
  p.value = Tensor::floats({1}, {value});
  p.grad = Tensor::floats({1}, {grad});
  return p;
}

OptimizerOptions options_from_json(const nlohmann::json& j) {
  OptimizerOptions o;
  o.kind = optimizer_kind_from_string(j["kind"]);
  o.momentum = j.value("momentum", 0.0);
  o.dampening = j.value("dampening", 0.0);
  o.nesterov = j.value("nesterov", false);
  o.weight_decay = j.value("weight_decay", 0.0);
  return o;
}

}  // namespace

TEST_CASE(
    "SGD with momentum, dampening, Nesterov and weight decay follows the hand-computed updates") {
  std::vector<TrainableParameter> ps = {scalar_param(1.0f, 0.5f)};
  SUBCASE("plain") {
    Optimizer opt({.kind = OptimizerOptions::Kind::kSgd});
    opt.step(ps, 0.1);
    CHECK(ps[0].value.f32[0] == doctest::Approx(0.95));
  }
  SUBCASE("momentum 0.9, dampening 0.5: first buffer is the gradient, then 0.9 b + 0.5 g") {
    Optimizer opt({.kind = OptimizerOptions::Kind::kSgd, .momentum = 0.9, .dampening = 0.5});
    opt.step(ps, 0.1);  // b = 0.5; p = 1 - 0.05
    CHECK(ps[0].value.f32[0] == doctest::Approx(0.95));
    ps[0].grad.f32[0] = 1.0f;
    opt.step(ps, 0.1);  // b = 0.45 + 0.5 = 0.95; p = 0.95 - 0.095
    CHECK(ps[0].value.f32[0] == doctest::Approx(0.855));
  }
  SUBCASE("Nesterov with weight decay") {
    Optimizer opt({.kind = OptimizerOptions::Kind::kSgd,
                   .momentum = 0.9,
                   .nesterov = true,
                   .weight_decay = 0.1});
    opt.step(ps, 0.1);  // g = 0.5 + 0.1 = 0.6; b = 0.6; step g + 0.9 b = 1.14
    CHECK(ps[0].value.f32[0] == doctest::Approx(1.0 - 0.114));
  }
}

TEST_CASE("Adam and AdamW follow the hand-computed bias-corrected updates") {
  std::vector<TrainableParameter> ps = {scalar_param(1.0f, 0.5f)};
  SUBCASE("Adam first step moves by lr * g / (|g| + eps')") {
    Optimizer opt({.kind = OptimizerOptions::Kind::kAdam});
    opt.step(ps, 0.1);
    // m = 0.05, v = 0.00025; step = 0.1 / 0.1 = 1; denom = sqrt(0.00025) / sqrt(0.001) + 1e-8.
    CHECK(ps[0].value.f32[0] == doctest::Approx(1.0 - 0.05 / (0.5 + 1e-8)).epsilon(1e-6));
    ps[0].grad.f32[0] = -1.0f;
    opt.step(ps, 0.1);
    const double m = 0.9 * 0.05 + 0.1 * -1.0, v = 0.999 * 0.00025 + 0.001 * 1.0;
    const double expect =
        0.9 - (0.1 / (1 - 0.81)) * m / (std::sqrt(v) / std::sqrt(1 - 0.998001) + 1e-8);
    CHECK(ps[0].value.f32[0] == doctest::Approx(expect).epsilon(1e-6));
  }
  SUBCASE("Adam adds L2 to the gradient, AdamW decays the weight first") {
    Optimizer adam({.kind = OptimizerOptions::Kind::kAdam, .weight_decay = 0.5});
    adam.step(ps, 0.1);  // g = 0.5 + 0.5 = 1 -> moves by 0.1
    CHECK(ps[0].value.f32[0] == doctest::Approx(0.9).epsilon(1e-6));
    std::vector<TrainableParameter> qs = {scalar_param(1.0f, 0.5f)};
    Optimizer adamw({.kind = OptimizerOptions::Kind::kAdamW, .weight_decay = 0.5});
    adamw.step(qs, 0.1);  // p = 1 * (1 - 0.05) = 0.95, then - 0.1
    CHECK(qs[0].value.f32[0] == doctest::Approx(0.85).epsilon(1e-6));
  }
}

TEST_CASE("Optimizer and schedule options are validated with every problem named") {
  CHECK_THROWS_WITH_AS(
      Optimizer({.kind = OptimizerOptions::Kind::kSgd, .momentum = 1.5, .nesterov = true}),
      doctest::Contains("momentum 1.5 must be in [0, 1)"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(Optimizer({.kind = OptimizerOptions::Kind::kAdam, .momentum = 0.9}),
                       doctest::Contains("SGD options, not adam"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(optimizer_kind_from_string("rmsprop"), doctest::Contains("sgd, adam, adamw"),
                       std::invalid_argument);
  LrSchedule s{
      .kind = LrSchedule::Kind::kCosine, .base_lr = 0.1, .warmup_steps = 5, .total_steps = 5};
  CHECK_THROWS_WITH_AS(s.validate(), doctest::Contains("total_steps (5) > warmup_steps (5)"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(schedule_kind_from_string("linear"),
                       doctest::Contains("constant, step, cosine"), std::invalid_argument);
  std::vector<TrainableParameter> ps = {scalar_param(1.0f, 0.5f)};
  Optimizer opt({});
  opt.step(ps, 0.1);
  std::vector<TrainableParameter> more = {scalar_param(1.0f, 0.5f), scalar_param(1.0f, 0.5f)};
  CHECK_THROWS_AS(opt.step(more, 0.1), std::invalid_argument);
}

TEST_CASE("Learning-rate schedules match the hand values and the Python reference") {
  LrSchedule step{.kind = LrSchedule::Kind::kStep,
                  .base_lr = 0.1,
                  .warmup_steps = 2,
                  .step_size = 4,
                  .gamma = 0.5};
  CHECK(step.lr_at(0) == doctest::Approx(0.05));
  CHECK(step.lr_at(1) == doctest::Approx(0.1));
  CHECK(step.lr_at(5) == doctest::Approx(0.1));
  CHECK(step.lr_at(6) == doctest::Approx(0.05));
  CHECK(step.lr_at(14) == doctest::Approx(0.0125));
  LrSchedule cos{
      .kind = LrSchedule::Kind::kCosine, .base_lr = 0.1, .total_steps = 10, .min_lr = 0.02};
  CHECK(cos.lr_at(0) == doctest::Approx(0.1));
  CHECK(cos.lr_at(5) == doctest::Approx(0.06));
  CHECK(cos.lr_at(10) == doctest::Approx(0.02));
  CHECK(cos.lr_at(100) == doctest::Approx(0.02));
  const auto m = manifest();
  REQUIRE(m["schedules"].size() == 4);
  for (const auto& s : m["schedules"]) {
    LrSchedule sched;
    sched.kind = schedule_kind_from_string(s["kind"]);
    sched.base_lr = s["base_lr"];
    sched.warmup_steps = s.value("warmup", 0);
    sched.total_steps = s.value("total", 0);
    sched.step_size = s.value("step_size", 1000);
    sched.gamma = s.value("gamma", 0.1);
    sched.min_lr = s.value("min_lr", 0.0);
    sched.validate();
    for (size_t i = 0; i < s["lr"].size(); ++i) {
      CHECK(sched.lr_at(static_cast<int64_t>(i)) ==
            doctest::Approx(s["lr"][i].get<double>()).epsilon(1e-12));
    }
  }
}

TEST_CASE("epoch_permutation is the documented SplitMix64 Fisher-Yates shuffle") {
  SplitMix64 rng(0);
  // Reference values of SplitMix64 seeded with 0 (Vigna's splitmix64.c).
  CHECK(rng.next() == 0xE220A8397B1DCDAFULL);
  CHECK(rng.next() == 0x6E789E6AA1B965F4ULL);
  const auto m = manifest();
  for (const auto& s : m["shuffles"]) {
    const auto perm = epoch_permutation(s["n"], s["seed"].get<uint64_t>(), s["epoch"]);
    CHECK(perm == s["perm"].get<std::vector<int64_t>>());
  }
  auto a = epoch_permutation(1000, 42, 0), b = epoch_permutation(1000, 42, 1);
  CHECK(a != b);
  std::sort(a.begin(), a.end());
  std::vector<int64_t> iota(1000);
  std::iota(iota.begin(), iota.end(), 0);
  CHECK(a == iota);
}

TEST_CASE("Cross-entropy and distillation losses equal hand values and PyTorch") {
  SUBCASE("hand: logits [0, ln 3], label 1") {
    const Tensor z = Tensor::floats({1, 2}, {0.0f, static_cast<float>(std::log(3.0))});
    const std::vector<int64_t> y = {1};
    Tensor g;
    CHECK(cross_entropy(z, y, &g) == doctest::Approx(std::log(4.0 / 3.0)));
    CHECK(g.f32[0] == doctest::Approx(0.25));
    CHECK(g.f32[1] == doctest::Approx(-0.25));
    // Distillation against itself is pure KL = 0; alpha = 1 needs no labels.
    Tensor gk;
    CHECK(distillation_loss(z, z, {}, {.temperature = 2.0, .alpha = 1.0}, &gk) ==
          doctest::Approx(0.0));
    CHECK(gk.f32[0] == doctest::Approx(0.0));
    CHECK_THROWS_WITH_AS(distillation_loss(z, z, {}, {.temperature = 2.0, .alpha = 0.5}),
                         doctest::Contains("needs labels"), std::invalid_argument);
    CHECK_THROWS_WITH_AS(cross_entropy(z, std::vector<int64_t>{2}), doctest::Contains("label 2"),
                         std::invalid_argument);
    CHECK(count_correct(z, y) == 1);
  }
  SUBCASE("PyTorch goldens") {
    const auto m = manifest();
    const Tensor s = fixture("losses.student.npy");
    const Tensor t = fixture("losses.teacher.npy");
    const Tensor labels = fixture("losses.labels.npy");
    Tensor g;
    CHECK(cross_entropy(s, labels.i64, &g) ==
          doctest::Approx(m["losses"]["cross_entropy"].get<double>()).epsilon(1e-6));
    const Tensor want = fixture("losses.ce_grad.npy");
    for (size_t i = 0; i < want.f32.size(); ++i)
      CHECK(g.f32[i] == doctest::Approx(want.f32[i]).epsilon(1e-5).scale(1.0));
    for (const auto& kd : m["losses"]["distillation"]) {
      const DistillationOptions o{.temperature = kd["temperature"], .alpha = kd["alpha"]};
      CAPTURE(o.temperature);
      CAPTURE(o.alpha);
      const double loss = distillation_loss(s, t, labels.i64, o, &g);
      CHECK(loss == doctest::Approx(kd["loss"].get<double>()).epsilon(1e-5));
      const Tensor w = fixture("losses.kd_grad." + kd["tag"].get<std::string>() + ".npy");
      for (size_t i = 0; i < w.f32.size(); ++i)
        CHECK(g.f32[i] == doctest::Approx(w.f32[i]).epsilon(1e-5).scale(1.0));
    }
  }
}

TEST_CASE("One to three optimizer steps on a tiny MLP reproduce PyTorch's SGD, Adam and AdamW") {
  const auto m = manifest();
  REQUIRE(m["step_cases"].size() == 4);
  for (const auto& c : m["step_cases"]) {
    const std::string name = c["name"];
    CAPTURE(name);
    const Graph g = load_onnx(fixture_dir() / (name + ".onnx"));
    const Tensor x = fixture(name + ".input.npy");
    const Tensor labels = fixture(name + ".labels.npy");
    Trainer trainer(g, TrainerOptions{.threads = 2});
    Optimizer opt(options_from_json(c["optimizer"]));
    Tensor grad;
    for (int s = 0; s < c["steps"].get<int>(); ++s) {
      const double loss = cross_entropy(trainer.forward(x), labels.i64, &grad);
      CHECK(loss == doctest::Approx(c["losses"][s].get<double>()).epsilon(1e-5));
      trainer.backward(grad);
      opt.step(trainer.parameters(), c["lrs"][s].get<double>());
    }
    for (const auto& pname : c["params"]) {
      CAPTURE(pname.get<std::string>());
      const Tensor want = fixture(name + ".after." + pname.get<std::string>() + ".npy");
      const int idx = trainer.find_parameter(pname);
      REQUIRE(idx >= 0);
      const Tensor& got = trainer.parameters()[idx].value;
      for (size_t i = 0; i < want.f32.size(); ++i) {
        CHECK(got.f32[i] == doctest::Approx(want.f32[i]).epsilon(1e-5).scale(1.0));
      }
    }
  }
}
