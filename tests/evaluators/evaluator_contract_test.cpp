// One contract over every Evaluator (accuracy, fidelity, weight_error, proxy, external) on a
// hand-made two-layer model: every declared metric returned and finite, the uncompressed recipe
// scoring as the uncompressed model (values worked out by hand), the same answer twice and from
// several threads at once, and multi-fidelity evaluators stopping when `report` says so.
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <thread>

#include "compressors/apply.h"
#include "evaluators/external_evaluator.h"
#include "evaluators/sensitivity.h"
#include "evaluators/standard_evaluators.h"
#include "model/layer_table.h"

using namespace compsearch;

namespace {

model::Node gemm(const std::string& name, const std::string& in, const std::string& out) {
  model::Node n;
  n.op_type = "Gemm";
  n.name = name;
  n.inputs = {in, name + ".weight", name + ".bias"};
  n.outputs = {out};
  model::Attribute tb;
  tb.kind = model::Attribute::Kind::kInt;
  tb.i = 1;
  n.attributes["transB"] = tb;
  return n;
}

// x[N,4] -> fc1 (4->6) -> Relu -> fc2 (6->3): weights from a fixed formula.
model::Graph two_layer() {
  model::Graph g;
  g.opset_version = 13;
  g.inputs = {model::ValueInfo{"x", model::DType::kFloat32, {-1, 4}}};
  g.outputs = {model::ValueInfo{"y", model::DType::kFloat32, {-1, 3}}};
  std::vector<float> w1(24), w2(18);
  for (size_t i = 0; i < w1.size(); ++i) w1[i] = std::sin(1.7f * i + 0.3f);
  for (size_t i = 0; i < w2.size(); ++i) w2[i] = std::cos(0.9f * i + 0.1f);
  g.initializers["fc1.weight"] = model::Tensor::floats({6, 4}, w1);
  g.initializers["fc1.bias"] = model::Tensor::floats({6}, std::vector<float>(6, 0.1f));
  g.initializers["fc2.weight"] = model::Tensor::floats({3, 6}, w2);
  g.initializers["fc2.bias"] = model::Tensor::floats({3}, {0.0f, 0.05f, -0.05f});
  g.nodes.push_back(gemm("fc1", "x", "h"));
  model::Node relu;
  relu.op_type = "Relu";
  relu.name = "relu";
  relu.inputs = {"h"};
  relu.outputs = {"hr"};
  g.nodes.push_back(relu);
  g.nodes.push_back(gemm("fc2", "hr", "y"));
  model::infer_shapes(g);
  return g;
}

model::Dataset data(int64_t n) {
  model::Dataset d;
  d.name = "contract";
  d.sample_shape = {4};
  for (int64_t i = 0; i < n * 4; ++i) d.images.push_back(std::sin(0.37f * i) + 0.2f);
  for (int64_t i = 0; i < n; ++i) d.labels.push_back(i % 3);
  return d;
}

compressors::Recipe bits(int fc1, int fc2) {
  compressors::Recipe r;
  r.layers["fc1"].w_bits = fc1;
  r.layers["fc2"].w_bits = fc2;
  return r;
}

struct Impl {
  std::string name;
  std::shared_ptr<evaluators::Evaluator> ev;
  evaluators::Metrics uncompressed;  // what the uncompressed recipe must give
  bool multi_fidelity = false;
};

}  // namespace

TEST_CASE("every Evaluator keeps the contract") {
  static const model::Graph graph = two_layer();
  static const model::Dataset validation = data(40), calibration = data(16);
  auto ctx = std::make_shared<evaluators::EvaluationContext>();
  ctx->graph = &graph;
  ctx->validation = &validation;
  ctx->calibration = &calibration;
  ctx->subset_samples = 10;
  evaluators::prepare_context(*ctx);
  // The uncompressed model's own accuracy, counted here from its outputs and the labels.
  int64_t correct = 0;
  for (int64_t i = 0; i < validation.size(); ++i) {
    const float* row = ctx->reference_outputs.data() + i * 3;
    const int64_t top = std::max_element(row, row + 3) - row;
    correct += top == validation.labels[i];
  }
  const double acc = static_cast<double>(correct) / validation.size();

  std::vector<Impl> impls;
  impls.push_back(
      {"accuracy",
       evaluators::make_standard_evaluator("accuracy", ctx),
       {{"accuracy", acc}, {"accuracy_drop", 0}, {"agreement", 1}, {"kl", 0}, {"weight_error", 0}},
       true});
  impls.push_back({"fidelity",
                   evaluators::make_standard_evaluator("fidelity", ctx),
                   {{"agreement", 1}, {"kl", 0}, {"weight_error", 0}},
                   true});
  impls.push_back({"weight_error",
                   evaluators::make_standard_evaluator("weight_error", ctx),
                   {{"weight_error", 0}}});
  // The proxy over a table of per-layer bit widths, measured with the accuracy evaluator.
  std::vector<evaluators::SensitivityOption> options;
  for (const char* layer : {"fc1", "fc2"})
    for (int b : {2, 4, 8}) {
      compressors::Recipe r;
      r.layers[layer].w_bits = b;
      options.push_back({std::string(layer) + "=" + std::to_string(b), r});
    }
  auto table = std::make_shared<const evaluators::SensitivityTable>(
      evaluators::measure_sensitivity(*impls[0].ev, options, {}, "k"));
  auto keys = [](const evaluators::Candidate& c) {
    std::vector<std::string> k;
    for (const auto& [name, s] : c.recipe->layers)
      if (s.w_bits != 32) k.push_back(name + "=" + std::to_string(s.w_bits));
    return k;
  };
  impls.push_back({"proxy",
                   evaluators::make_additive_proxy(table, keys),
                   {{"proxy_accuracy", acc},
                    {"proxy_accuracy_drop", 0},
                    {"proxy_agreement", 1},
                    {"proxy_kl", 0},
                    {"proxy_weight_error", 0}}});
  // The external evaluator: a program that counts the recipe's 2-bit layers.
  const auto prog = std::filesystem::temp_directory_path() / "compsearch_contract_eval.py";
  std::ofstream(prog) << "import json, sys\nt = json.load(sys.stdin)\n"
                         "print(json.dumps({'two_bit': sum(1 for l in t['recipe']['layers']."
                         "values() if l.get('w_bits') == 2), 'number': t['number']}))\n";
  evaluators::ExternalEvaluatorOptions eo;
  eo.command = {"/usr/bin/python3", prog.string()};
  eo.timeout_s = 30;
  eo.metrics = {"two_bit", "number"};
  impls.push_back(
      {"external", evaluators::make_external_evaluator(eo), {{"two_bit", 0}, {"number", -1}}});

  const std::vector<compressors::Recipe> recipes = {bits(32, 32), bits(2, 32), bits(4, 2),
                                                    bits(8, 8)};
  for (const auto& impl : impls) {
    CAPTURE(impl.name);
    CHECK(impl.ev->name() == impl.name);
    // Every declared metric, finite; the uncompressed recipe scores as the model itself.
    std::vector<evaluators::Metrics> seq;
    for (const auto& r : recipes) {
      evaluators::Candidate c;
      c.recipe = &r;
      seq.push_back(impl.ev->evaluate(c));
      for (const auto& m : impl.ev->metric_names()) {
        CAPTURE(m);
        REQUIRE(seq.back().count(m) == 1);
        CHECK(std::isfinite(seq.back().at(m)));
      }
    }
    for (const auto& entry : impl.uncompressed) {
      const auto& k = entry.first;  // not a structured binding: clang 14's CAPTURE
      const auto& v = entry.second;
      CAPTURE(k);
      CHECK(seq[0].at(k) == doctest::Approx(v).epsilon(1e-12));
    }
    // The same answers again, from four threads at once.
    std::vector<evaluators::Metrics> par(recipes.size());
    std::vector<std::thread> threads;
    for (size_t i = 0; i < recipes.size(); ++i)
      threads.emplace_back([&, i] {
        evaluators::Candidate c;
        c.recipe = &recipes[i];
        par[i] = impl.ev->evaluate(c);
      });
    for (auto& t : threads) t.join();
    for (size_t i = 0; i < recipes.size(); ++i) CHECK(par[i] == seq[i]);
    // A multi-fidelity evaluator reports its levels in order and stops when asked.
    std::vector<int64_t> steps;
    evaluators::Candidate c;
    c.recipe = &recipes[2];
    impl.ev->evaluate(c, [&](double, int64_t step) {
      steps.push_back(step);
      return false;
    });
    if (impl.multi_fidelity) {
      CHECK(steps == std::vector<int64_t>{1, 2});
      CHECK_THROWS_AS(impl.ev->evaluate(c, [](double, int64_t) { return true; }),
                      evaluators::EvaluationPruned);
    } else {
      CHECK(steps.empty());
    }
  }
  // Hand-checked relations: 2-bit fc1 counted once by the external program; the proxy of a
  // one-layer recipe is that layer's table entry.
  CHECK(impls[4].ev->evaluate({&recipes[1]}).at("two_bit") == 1);
  CHECK(impls[4].ev->evaluate({&recipes[2]}).at("two_bit") == 1);
  CHECK(impls[3].ev->evaluate({&recipes[1]}).at("proxy_accuracy") ==
        table->options.at("fc1=2").at("accuracy"));
  std::filesystem::remove(prog);
}

TEST_CASE("the external evaluator fails with the reason: exit status, signal, timeout, output") {
  const compressors::Recipe r = bits(4, 4);
  evaluators::Candidate c;
  c.recipe = &r;
  auto run = [&](const std::string& script, double timeout = 30) -> std::string {
    evaluators::ExternalEvaluatorOptions eo;
    eo.command = {"/bin/sh", "-c", script};
    eo.timeout_s = timeout;
    eo.metrics = {"accuracy"};
    try {
      evaluators::make_external_evaluator(eo)->evaluate(c);
    } catch (const std::runtime_error& e) {
      return e.what();
    }
    return "";
  };
  CHECK(run("cat >/dev/null; echo oops >&2; exit 3")
            .find("exited with status 3; its stderr "
                  "ends: oops") != std::string::npos);
  CHECK(run("kill -9 $$").find("died of signal 9") != std::string::npos);
  const auto t0 = std::chrono::steady_clock::now();
  CHECK(run("sleep 20", 0.5).find("timed out after 0.5 s") != std::string::npos);
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(10));
  CHECK(run("echo '{\"accuracy\": \"high\"}'")
            .find("metric \"accuracy\" is \"high\", expected a "
                  "number") != std::string::npos);
  CHECK(run("echo '{\"acc\": 1}'").find("did not print metric \"accuracy\"") != std::string::npos);
  CHECK(run("echo '[1, 2]'").find("printed no JSON object") != std::string::npos);
  CHECK(run("/nonexistent/program").find("exited with status 127") != std::string::npos);
  CHECK(run("cat >/dev/null; echo '{\"accuracy\": 0.25}'") == "");
}

TEST_CASE(
    "activation ranges from the reference statistics equal a calibration run when only "
    "activations are quantized") {
  const model::Graph graph = two_layer();
  const model::Dataset calibration = data(16);
  const model::LayerTable table = model::build_layer_table(graph);
  compressors::Recipe r;  // fp32 weights, 8-bit activations into both layers
  r.layers["fc1"].a_bits = 8;
  r.layers["fc2"].a_bits = 8;
  compressors::CompressedModel a = compressors::apply_recipe(graph, table, r);
  compressors::CompressedModel b = compressors::apply_recipe(graph, table, r);
  evaluators::calibrate_activations(a, calibration, 16);
  const auto observers = evaluators::observe_reference_activations(graph, table, calibration, 16);
  evaluators::calibrate_from_reference(b, observers);
  REQUIRE(a.activations.size() == 2);
  REQUIRE(b.activations.size() == 2);
  for (const auto& entry : a.activations) {
    const auto& node = entry.first;  // not a structured binding: clang 14's CAPTURE
    const auto& p = entry.second;
    CAPTURE(node);
    CHECK(b.activations.at(node).scale == p.scale);
    CHECK(b.activations.at(node).zero_point == p.zero_point);
  }
}

TEST_CASE("evaluation refuses labels outside the model's classes and non-finite inputs") {
  const model::Graph graph = two_layer();  // 3 classes
  model::Dataset d = data(8);
  d.labels[5] = 3;
  CHECK_THROWS_WITH_AS(evaluators::evaluate_model(graph, d),
                       "dataset contract: label 3 of sample 5 is outside the model's classes 0..2",
                       std::invalid_argument);
  d.labels[5] = 2;
  d.images[4 * 6 + 1] = std::nanf("");
  CHECK_THROWS_WITH_AS(evaluators::evaluate_model(graph, d),
                       "dataset contract: sample 6 holds a NaN or infinite value (element 1)",
                       std::invalid_argument);
  evaluators::EvaluationOptions o;
  o.limit = 0;
  CHECK_THROWS_WITH_AS(evaluators::evaluate_model(graph, d, o),
                       "limit must be >= 1, or -1 for all samples, got 0", std::invalid_argument);
  o.limit = 6;  // the bad sample is outside the first six
  CHECK(evaluators::evaluate_model(graph, d, o).samples == 6);
}
