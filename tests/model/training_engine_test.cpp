// Trainer as an engine: determinism, the QAT hooks, parameter write-back, batch-norm folding
// and that training the bundled CNN on real data lowers the loss.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>

#include "model/dataset.h"
#include "model/executor.h"
#include "model/loss.h"
#include "model/optimizer.h"
#include "model/training.h"
#include "tests/model/training_test_util.h"

using namespace compsearch::model;
using namespace compsearch::model::training_testing;

namespace {

Graph bundled(const std::string& model) {
  return load_onnx(std::filesystem::path(COMPSEARCH_SOURCE_DIR) / "models" / (model + ".onnx"));
}

// A small labelled batch source: Fashion-MNIST training images when installed, else seeded noise
// with seeded labels (the determinism checks do not need real data).
struct Batches {
  Tensor images;
  std::vector<int64_t> labels;
  bool real = false;
};

Batches training_subset(int64_t n) {
  Batches b;
  try {
    Dataset d = load_dataset("fashion-mnist", "train");
    b.images = d.batch(0, n);
    b.labels.assign(d.labels.begin(), d.labels.begin() + n);
    b.real = true;
  } catch (const std::exception&) {
    b.images = random_tensor({n, 1, 28, 28}, 17);
    for (int64_t i = 0; i < n; ++i) b.labels.push_back(i % 10);
  }
  return b;
}

// Runs `steps` SGD+momentum steps over shuffled mini-batches and returns the final weights.
std::vector<TrainableParameter> train_steps(const Graph& g, const Batches& data, int threads,
                                            int steps, uint64_t seed, OptimizerOptions::Kind kind) {
  Trainer trainer(g, TrainerOptions{.threads = threads});
  OptimizerOptions oo{.kind = kind, .weight_decay = 1e-4};
  if (kind == OptimizerOptions::Kind::kSgd) oo.momentum = 0.9;
  Optimizer opt(oo);
  LrSchedule sched{.kind = LrSchedule::Kind::kCosine,
                   .base_lr = kind == OptimizerOptions::Kind::kSgd ? 0.05 : 1e-3,
                   .warmup_steps = 2,
                   .total_steps = steps};
  const int64_t n = data.images.shape[0], bs = 16, sample = 28 * 28;
  const auto perm = epoch_permutation(n, seed, 0);
  Tensor x = Tensor::zeros({bs, 1, 28, 28}), grad;
  std::vector<int64_t> y(bs);
  for (int s = 0; s < steps; ++s) {
    for (int64_t i = 0; i < bs; ++i) {
      const int64_t src = perm[(s * bs + i) % n];
      std::memcpy(x.f32.data() + i * sample, data.images.f32.data() + src * sample,
                  sizeof(float) * sample);
      y[i] = data.labels[src];
    }
    cross_entropy(trainer.forward(x), y, &grad);
    trainer.backward(grad);
    opt.step(trainer.parameters(), sched.lr_at(s));
  }
  return trainer.parameters();
}

}  // namespace

TEST_CASE("Training is byte-identical for the same seed and thread count, and the seed matters") {
  const Batches data = training_subset(128);
  for (const std::string model : {"fmnist_cnn", "fmnist_mlp"}) {
    CAPTURE(model);
    const Graph g = bundled(model);
    for (auto kind : {OptimizerOptions::Kind::kSgd, OptimizerOptions::Kind::kAdamW}) {
      const auto a = train_steps(g, data, 2, 6, 7, kind);
      const auto b = train_steps(g, data, 2, 6, 7, kind);
      const auto c = train_steps(g, data, 2, 6, 8, kind);
      const auto one = train_steps(g, data, 1, 6, 7, kind);
      REQUIRE(a.size() == b.size());
      bool same = true, differs = false;
      double thread_diff = 0.0;
      for (size_t i = 0; i < a.size(); ++i) {
        same = same && std::memcmp(a[i].value.f32.data(), b[i].value.f32.data(),
                                   4 * a[i].value.f32.size()) == 0;
        differs = differs || a[i].value.f32 != c[i].value.f32;
        for (size_t k = 0; k < a[i].value.f32.size(); ++k) {
          thread_diff =
              std::max(thread_diff, double(std::fabs(a[i].value.f32[k] - one[i].value.f32[k])));
        }
      }
      CHECK(same);
      CHECK(differs);
      // One thread sums in another order: close, not necessarily identical.
      CHECK(thread_diff < 1e-3);
    }
  }
}

TEST_CASE("Training the bundled CNN from scratch-like weights on real data lowers the loss") {
  const Batches data = training_subset(512);
  if (!data.real) {
    MESSAGE("SKIPPED: Fashion-MNIST is not installed (Debian dataset-fashion-mnist)");
    return;
  }
  Graph g = bundled("fmnist_cnn");
  // Shrink the trained weights so that there is something left to learn.
  for (auto& [name, t] : g.initializers) {
    if (name.ends_with(".weight"))
      for (auto& v : t.f32) v *= 0.3f;
  }
  Trainer trainer(g, TrainerOptions{.threads = 2});
  Optimizer opt({.kind = OptimizerOptions::Kind::kAdam});
  Tensor grad;
  auto eval_loss = [&]() {
    double total = 0.0;
    for (int64_t i = 0; i < 512; i += 128) {
      const Tensor x = Tensor::floats(
          {128, 1, 28, 28}, std::vector<float>(data.images.f32.begin() + i * 784,
                                               data.images.f32.begin() + (i + 128) * 784));
      total += cross_entropy(trainer.forward(x, Trainer::Mode::kEval),
                             std::span<const int64_t>(data.labels.data() + i, 128));
    }
    return total / 4;
  };
  const double before = eval_loss();
  for (int epoch = 0; epoch < 3; ++epoch) {
    const auto perm = epoch_permutation(512, 1, epoch);
    for (int64_t b = 0; b < 512; b += 64) {
      Tensor x = Tensor::zeros({64, 1, 28, 28});
      std::vector<int64_t> y(64);
      for (int64_t i = 0; i < 64; ++i) {
        std::memcpy(x.f32.data() + i * 784, data.images.f32.data() + perm[b + i] * 784, 784 * 4);
        y[i] = data.labels[perm[b + i]];
      }
      cross_entropy(trainer.forward(x), y, &grad);
      trainer.backward(grad);
      opt.step(trainer.parameters(), 2e-3);
    }
  }
  const double after = eval_loss();
  CHECK(after < 0.8 * before);
  // The trained weights written into the graph run in the executor with the same loss.
  trainer.write_parameters(g);
  Executor exec(g, ExecutorOptions{2});
  const Tensor x = Tensor::floats(
      {128, 1, 28, 28},
      std::vector<float>(data.images.f32.begin(), data.images.f32.begin() + 128 * 784));
  const Tensor logits = exec.run({x})[0];
  const Tensor& mine = trainer.forward(x, Trainer::Mode::kEval);
  for (size_t i = 0; i < logits.f32.size(); ++i)
    CHECK(mine.f32[i] == doctest::Approx(logits.f32[i]).epsilon(1e-4).scale(1.0));
}

TEST_CASE("A weight transform sets the weight the layer computes with and maps its gradient back") {
  const Graph g = bundled("fmnist_cnn");
  const Tensor x = random_tensor({4, 1, 28, 28}, 21);
  Trainer trainer(g, TrainerOptions{.threads = 2});
  REQUIRE(trainer.layer_names() == std::vector<std::string>{"conv1", "conv2", "fc1", "fc2"});
  // Effective weight: rounded to multiples of 0.05; its gradient is zeroed for negative masters.
  int forwards = 0;
  trainer.set_weight_transform(
      "conv2", WeightTransform{.forward =
                                   [&](const Tensor& master, Tensor& eff) {
                                     ++forwards;
                                     for (size_t i = 0; i < master.f32.size(); ++i)
                                       eff.f32[i] = std::nearbyint(master.f32[i] / 0.05f) * 0.05f;
                                   },
                               .backward =
                                   [](const Tensor& master, const Tensor&, Tensor& grad) {
                                     for (size_t i = 0; i < master.f32.size(); ++i)
                                       if (master.f32[i] < 0) grad.f32[i] = 0.0f;
                                   }});
  const Tensor y = trainer.forward(x);
  CHECK(forwards == 1);
  // Same output as the executor on a graph holding the rounded weights.
  Graph rounded = g;
  for (auto& v : rounded.initializers["conv2.weight"].f32) v = std::nearbyint(v / 0.05f) * 0.05f;
  const Tensor want = Executor(rounded, ExecutorOptions{2}).run({x})[0];
  for (size_t i = 0; i < want.f32.size(); ++i)
    CHECK(y.f32[i] == doctest::Approx(want.f32[i]).epsilon(1e-4).scale(1.0));
  CHECK(trainer.effective_weight("conv2").f32 == rounded.initializers["conv2.weight"].f32);
  // Its gradient is the rounded graph's gradient w.r.t. the weight, masked.
  const Tensor r = random_tensor(y.shape, 5);
  trainer.backward(r);
  Trainer plain(rounded, TrainerOptions{.threads = 2});
  plain.forward(x);
  plain.backward(r);
  const int idx = trainer.find_parameter("conv2.weight");
  const auto& master = trainer.parameters()[idx].value.f32;
  const auto& got = trainer.parameters()[idx].grad.f32;
  const auto& ref = plain.parameters()[plain.find_parameter("conv2.weight")].grad.f32;
  int zeroed = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (master[i] < 0) {
      CHECK(got[i] == 0.0f);
      ++zeroed;
    } else {
      CHECK(got[i] == doctest::Approx(ref[i]).epsilon(1e-5).scale(1.0));
    }
  }
  CHECK(zeroed > 0);
  CHECK_THROWS_WITH_AS(trainer.set_weight_transform("conv9", {}),
                       doctest::Contains("unknown layer 'conv9'"), std::invalid_argument);
  // Removing the hook restores the master weight.
  trainer.set_weight_transform("conv2", {});
  CHECK(trainer.effective_weight("conv2").f32 == g.initializers.at("conv2.weight").f32);
}

TEST_CASE("An input transform changes only the layer's own input and its backward is applied") {
  // Doubling the input of conv2 and of fc1 (backward: doubling the gradient) computes exactly
  // what the graph with conv2's and fc1's weights doubled computes. Batch 3 runs op by op,
  // batch 8 as two slices whose transformed inputs the hook still sees as one whole batch.
  const Graph g = bundled("fmnist_cnn");
  Graph doubled = g;
  for (auto& v : doubled.initializers["conv2.weight"].f32) v *= 2.0f;
  for (auto& v : doubled.initializers["fc1.weight"].f32) v *= 2.0f;
  for (int64_t batch : {3, 8}) {
    CAPTURE(batch);
    const Tensor x = random_tensor({batch, 1, 28, 28}, 22);
    Trainer trainer(g, TrainerOptions{.threads = 2});
    std::vector<bool> seen_training;
    std::vector<int64_t> seen_batch;
    for (const std::string layer : {"conv2", "fc1"}) {
      trainer.set_input_transform(layer,
                                  InputTransform{.forward =
                                                     [&](Tensor& a, bool training) {
                                                       seen_training.push_back(training);
                                                       seen_batch.push_back(a.shape[0]);
                                                       for (auto& v : a.f32) v *= 2.0f;
                                                     },
                                                 .backward =
                                                     [&](const Tensor& original, Tensor& grad) {
                                                       seen_batch.push_back(original.shape[0]);
                                                       for (auto& v : grad.f32) v *= 2.0f;
                                                     }});
    }
    const Tensor want = Executor(doubled, ExecutorOptions{2}).run({x})[0];
    const Tensor y = trainer.forward(x, Trainer::Mode::kEval);
    for (size_t i = 0; i < want.f32.size(); ++i) {
      CHECK(y.f32[i] == doctest::Approx(want.f32[i]).epsilon(1e-4).scale(1.0));
    }
    trainer.forward(x, Trainer::Mode::kTrain);
    CHECK(seen_training == std::vector<bool>{false, false, true, true});
    // Gradients: those of the doubled graph (conv2's and fc1's weights' twice over, as they
    // see 2x), which needs the transforms' backward on the way to conv1.
    const Tensor r = random_tensor(y.shape, 23);
    trainer.backward(r);
    CHECK(seen_batch == std::vector<int64_t>(6, batch));
    Trainer plain(doubled, TrainerOptions{.threads = 2});
    plain.forward(x);
    plain.backward(r);
    for (const auto& p : trainer.parameters()) {
      CAPTURE(p.name);
      const auto& ref = plain.parameters()[plain.find_parameter(p.name)].grad.f32;
      const float k = p.name == "fc1.weight" || p.name == "conv2.weight" ? 2.0f : 1.0f;
      for (size_t i = 0; i < ref.size(); ++i) {
        CHECK(p.grad.f32[i] == doctest::Approx(k * ref[i]).epsilon(1e-4).scale(1e-3));
      }
    }
  }
}

TEST_CASE("fold_batch_norms folds Conv -> BatchNormalization into the convolution") {
  GraphBuilder b({2, 3, 6, 6});
  auto c = b.node("Conv", {"x", b.init("conv.weight", {4, 3, 3, 3})},
                  {{"kernel_shape", attr_ints({3, 3})}, {"pads", attr_ints({1, 1, 1, 1})}});
  b.init_values("bn.running_mean", random_tensor({4}, 30, 0.3f));
  Tensor var = random_tensor({4}, 31);
  for (auto& v : var.f32) v = v * v + 0.5f;
  b.init_values("bn.running_var", var);
  auto bn = b.node("BatchNormalization", {c, b.init("bn.weight", {4}), b.init("bn.bias", {4}),
                                          "bn.running_mean", "bn.running_var"});
  auto y = b.node("Relu", {bn});
  Graph g = b.finish(y);
  const Tensor x = random_tensor({2, 3, 6, 6}, 32);
  const Tensor want = Executor(g, ExecutorOptions{1}).run({x})[0];
  Graph folded = g;
  CHECK(fold_batch_norms(folded) == 1);
  CHECK(folded.nodes.size() == 2);
  CHECK(folded.find_initializer("conv.bias"));
  CHECK_FALSE(folded.find_initializer("bn.running_var"));
  const Tensor got = Executor(folded, ExecutorOptions{1}).run({x})[0];
  for (size_t i = 0; i < want.f32.size(); ++i)
    CHECK(got.f32[i] == doctest::Approx(want.f32[i]).epsilon(1e-5).scale(1.0));
  // A BN after a Relu is not a layer's direct output: left alone.
  const Graph fixture_graph = load_onnx(fixture_dir() / "conv_group.onnx");
  Graph copy = fixture_graph;
  CHECK(fold_batch_norms(copy) == 0);
}

TEST_CASE("Frozen batch-norm statistics train with the running averages and leave them unchanged") {
  const Graph g = load_onnx(fixture_dir() / "conv_group.onnx");
  const Tensor x = fixture("conv_group.input.npy");
  Trainer trainer(g, TrainerOptions{.threads = 2, .freeze_batch_norm_statistics = true});
  const Tensor y = trainer.forward(x, Trainer::Mode::kTrain);
  const Tensor want = Executor(g, ExecutorOptions{1}).run({x})[0];
  for (size_t i = 0; i < want.f32.size(); ++i)
    CHECK(y.f32[i] == doctest::Approx(want.f32[i]).epsilon(1e-4).scale(1.0));
  Graph written = g;
  trainer.write_parameters(written);
  CHECK(written.initializers.at("bn.running_mean").f32 == g.initializers.at("bn.running_mean").f32);
  const FdReport rep = finite_difference_check(trainer, x, random_tensor(y.shape, 40));
  INFO(rep.first_failure);
  CHECK(rep.failed <= rep.checked / 50);
}

TEST_CASE("Batch slices over threads give the gradients of the whole batch") {
  // With 2 threads a batch of >= 4 runs as per-thread slices (one fork per pass); the summed
  // slice gradients must equal the single-threaded whole-batch gradients up to float rounding.
  for (const std::string model : {"fmnist_cnn", "fmnist_mlp"}) {
    CAPTURE(model);
    const Graph g = bundled(model);
    const Tensor x = random_tensor({9, 1, 28, 28}, 50);
    Trainer one(g, TrainerOptions{.threads = 1});
    Trainer two(g, TrainerOptions{.threads = 2});
    const Tensor y1 = one.forward(x);
    const Tensor y2 = two.forward(x);
    REQUIRE(y2.shape == y1.shape);
    for (size_t i = 0; i < y1.f32.size(); ++i) {
      CHECK(y2.f32[i] == doctest::Approx(y1.f32[i]).epsilon(1e-5).scale(1.0));
    }
    const Tensor r = random_tensor(y1.shape, 51);
    one.backward(r);
    two.backward(r);
    for (size_t p = 0; p < one.parameters().size(); ++p) {
      CAPTURE(one.parameters()[p].name);
      const auto& a = one.parameters()[p].grad.f32;
      const auto& b = two.parameters()[p].grad.f32;
      double worst = 0.0, scale = 0.0;
      for (size_t i = 0; i < a.size(); ++i) {
        worst = std::max(worst, std::fabs(double(a[i]) - double(b[i])));
        scale = std::max(scale, std::fabs(double(a[i])));
      }
      CHECK(worst <= 1e-5 * std::max(1.0, scale));
    }
    // Eval mode and a batch too small to slice agree too.
    const Tensor e1 = one.forward(x, Trainer::Mode::kEval);
    const Tensor e2 = two.forward(x, Trainer::Mode::kEval);
    for (size_t i = 0; i < e1.f32.size(); ++i)
      CHECK(e2.f32[i] == doctest::Approx(e1.f32[i]).epsilon(1e-5).scale(1.0));
    const Tensor small = random_tensor({3, 1, 28, 28}, 52);
    const Tensor s1 = one.forward(small), s2 = two.forward(small);
    for (size_t i = 0; i < s1.f32.size(); ++i)
      CHECK(s2.f32[i] == doctest::Approx(s1.f32[i]).epsilon(1e-5).scale(1.0));
  }
}

TEST_CASE("Trainer rejects bad inputs, gradients and graphs with messages naming them") {
  const Graph g = bundled("fmnist_cnn");
  Trainer trainer(g, TrainerOptions{.threads = 2});
  CHECK_THROWS_WITH_AS(trainer.backward(Tensor::zeros({1, 10})),
                       doctest::Contains("preceding forward in Mode::kTrain"), std::logic_error);
  CHECK_THROWS_WITH_AS(trainer.forward(Tensor::zeros({2, 1, 28, 27})),
                       doctest::Contains("[2, 1, 28, 27]"), std::invalid_argument);
  trainer.forward(Tensor::zeros({2, 1, 28, 28}));
  CHECK_THROWS_WITH_AS(trainer.backward(Tensor::zeros({3, 10})),
                       doctest::Contains("does not match the output [2, 10]"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(Trainer(g, TrainerOptions{.threads = -1}).threads(),
                       doctest::Contains("TrainerOptions::threads: value -1 out of range"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(Trainer(g, TrainerOptions{.threads = 100000}).threads(),
                       doctest::Contains("value 100000 out of range; expected 0 (all cores) to "
                                         "1024"),
                       std::invalid_argument);
  Graph other = g;
  other.initializers.erase("fc2.bias");
  CHECK_THROWS_WITH_AS(trainer.write_parameters(other), doctest::Contains("'fc2.bias'"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(trainer.read_parameters(other), doctest::Contains("'fc2.bias'"),
                       std::invalid_argument);
}

TEST_CASE("read_parameters restores a graph's weights and write_parameters round-trips them") {
  const Graph g = bundled("fmnist_mlp");
  Trainer trainer(g, TrainerOptions{.threads = 1});
  REQUIRE(trainer.parameters().size() == 6);
  CHECK(trainer.parameters()[0].name == "fc1.weight");
  CHECK(trainer.parameters()[0].layer == "fc1");
  CHECK(trainer.parameters()[0].role == TrainableParameter::Role::kWeight);
  CHECK(trainer.parameters()[1].role == TrainableParameter::Role::kBias);
  for (auto& p : trainer.parameters()) {
    for (auto& v : p.value.f32) v += 1.0f;
  }
  Graph changed = g;
  trainer.write_parameters(changed);
  CHECK(changed.initializers.at("fc3.bias").f32[0] == g.initializers.at("fc3.bias").f32[0] + 1.0f);
  trainer.read_parameters(g);
  for (const auto& p : trainer.parameters()) CHECK(p.value.f32 == g.initializers.at(p.name).f32);
}
