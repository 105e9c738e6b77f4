// Accuracy table of the reference compression recipes on a model (not run by CTest): for each
// recipe, top-1 accuracy on the 10,000 Fashion-MNIST test images, agreement and KL against the
// uncompressed model, stored size (DESIGN.md rule 9) and effective MACs. 4/8-bit activations
// calibrate on 512 train images (min/max).
//
// usage: compressor_accuracy_table MODEL.onnx
// Conventions: the 25% channel recipe leaves the classifier (last layer) unpruned, since its
// output channels are the classes; an N:M recipe leaves ineligible layers unpruned (named).
#include <cstdio>
#include <iostream>

#include "bench/bench_common.h"
#include "experiments/compress_commands.h"
#include "model/layer_table.h"
using namespace compsearch;
constexpr std::string_view kUsage = R"(usage: compressor_accuracy_table MODEL.onnx
  Top-1 accuracy, agreement and KL against the uncompressed model, stored bytes and effective MACs
  of twelve reference recipes (fp32, w8 ... w1, group and per-tensor, 50% unstructured, 2:4, 25%
  channel, w8a8) on the 10,000 Fashion-MNIST test images.
)";

int main(int argc, char** argv) {
  if (bench::help_requested(argc, argv, kUsage)) return 0;
  if (argc != 2) bench::usage_error("expected one MODEL.onnx argument", kUsage);
  const std::string path = argv[1];
  auto g = model::load_onnx(path);
  auto t = model::build_layer_table(g);
  const std::string last = t.layers.back().name;
  auto data = model::load_dataset("fashion-mnist", "test");
  auto calib = model::load_dataset("fashion-mnist", "train");
  struct R {
    std::string label, json;
  };
  std::vector<R> rs = {
      {"fp32", R"({})"},
      {"w8 per_channel", R"({"default": {"w_bits": 8}})"},
      {"w4 per_channel", R"({"default": {"w_bits": 4}})"},
      {"w3 per_channel", R"({"default": {"w_bits": 3}})"},
      {"w2 per_channel", R"({"default": {"w_bits": 2}})"},
      {"w1 per_channel", R"({"default": {"w_bits": 1}})"},
      {"w4 per_tensor", R"({"default": {"w_bits": 4, "granularity": "per_tensor"}})"},
      {"w3 group:16", R"({"default": {"w_bits": 3, "granularity": "group:16"}})"},
      {"50% unstructured + w8",
       R"({"default": {"w_bits": 8, "prune": {"kind": "unstructured", "ratio": 0.5}}})"},
      {"2:4 + w4", R"({"default": {"w_bits": 4, "prune": {"kind": "2:4"}}})"},
      {"25% channel (fp32)",
       R"({"default": {"prune": {"kind": "channel", "ratio": 0.25}}, "layers": {")" + last +
           R"(": {"prune": {"kind": "none"}}}})"},
      {"w8 + a8 (minmax)", R"({"default": {"w_bits": 8, "a_bits": 8}})"},
  };
  std::printf("%-40s %8s %8s %9s %10s %9s\n", "recipe", "acc", "agree", "kl", "bytes", "MACs");
  for (auto& r : rs) {
    auto j = nlohmann::json::parse(r.json);
    j["format"] = "compsearch.recipe/1";
    auto recipe = compressors::recipe_from_json(j, r.label);
    // N:M on an ineligible layer: that layer keeps the rest of the setting without pruning.
    for (auto& l : t.layers) {
      if (recipe.setting_for(l.name).prune.kind == compressors::PruneKind::kNM &&
          !compressors::nm_eligible(l, 4)) {
        auto s = recipe.default_setting;
        s.prune = {};
        recipe.layers[l.name] = s;
        r.label += " [" + l.name + " unpruned]";
      }
    }
    experiments::RecipeEvaluateOptions o;
    auto res = experiments::evaluate_recipe(g, recipe, data, calib, o, path, r.label);
    std::printf("%-40s %7.2f%% %7.2f%% %9.5f %10.0f %9lld\n", r.label.c_str(),
                res.result.accuracy * 100, res.result.agreement * 100, res.result.kl,
                res.size_bytes, static_cast<long long>(res.macs));
  }
}
