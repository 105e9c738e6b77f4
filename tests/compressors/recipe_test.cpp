// Recipe files (compsearch.recipe/1): parsing, overlay of defaults, round trip, and the errors
// that must name the key, the value and what is allowed.
#include "compressors/recipe.h"

#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <utility>

#include "model/layer_table.h"

using namespace compsearch::compressors;
using nlohmann::json;

namespace {

Recipe parse(const std::string& text) { return recipe_from_json(json::parse(text), "r.json"); }

compsearch::model::LayerTable table_with_conv1_fc1() {
  compsearch::model::LayerTable t;
  compsearch::model::LayerInfo conv;
  conv.name = "conv1";
  conv.op = "Conv";
  conv.weight_shape = {16, 1, 3, 3};
  conv.reduction_length = 9;
  compsearch::model::LayerInfo fc;
  fc.name = "fc1";
  fc.op = "Gemm";
  fc.weight_shape = {10, 64};
  fc.reduction_length = 64;
  t.layers = {conv, fc};
  return t;
}

}  // namespace

TEST_CASE("A recipe overlays each layer on the default") {
  const Recipe r = parse(R"({"format": "compsearch.recipe/1",
    "default": {"w_bits": 8, "granularity": "per_channel"},
    "layers": {"conv1": {"w_bits": 4, "granularity": "group:16"},
               "fc1": {"w_bits": 2, "prune": {"kind": "unstructured", "ratio": 0.3}, "a_bits": 8}},
    "distillation": {"epochs": 1, "temperature": 4, "alpha": 0.9, "lr": 0.001}})");
  CHECK(r.default_setting.w_bits == 8);
  const LayerSetting& c = r.setting_for("conv1");
  CHECK(c.w_bits == 4);
  CHECK(c.granularity.kind == GranularityKind::kGroup);
  CHECK(c.granularity.group_size == 16);
  CHECK(c.a_bits == 32);
  const LayerSetting& f = r.setting_for("fc1");
  CHECK(f.w_bits == 2);
  CHECK(f.granularity.kind == GranularityKind::kPerChannel);  // from the default
  CHECK(f.prune.kind == PruneKind::kUnstructured);
  CHECK(f.prune.ratio == 0.3);
  CHECK(f.a_bits == 8);
  CHECK(r.setting_for("other").w_bits == 8);
  REQUIRE(r.distillation);
  CHECK(r.distillation->epochs == 1);
  CHECK(r.distillation->alpha == 0.9);
}

TEST_CASE("N:M prune kinds set the ratio to 1 - N/M") {
  const Recipe r =
      parse(R"({"format": "compsearch.recipe/1", "default": {"prune": {"kind": "2:4"}}})");
  CHECK(r.default_setting.prune.kind == PruneKind::kNM);
  CHECK(r.default_setting.prune.n == 2);
  CHECK(r.default_setting.prune.m == 4);
  CHECK(r.default_setting.prune.ratio == 0.5);
  CHECK(prune_kind_to_string(r.default_setting.prune) == "2:4");
  CHECK_THROWS_WITH_AS(
      parse(
          R"({"format": "compsearch.recipe/1", "default": {"prune": {"kind": "2:4", "ratio": 0.25}}})"),
      doctest::Contains("r.json: default.prune.ratio: got 0.25, but kind \"2:4\" fixes the ratio"),
      std::invalid_argument);
}

TEST_CASE("A recipe survives a save and load round trip") {
  Recipe r = parse(
      R"({"format": "compsearch.recipe/1", "default": {"w_bits": 4, "granularity": "per_tensor"},
    "layers": {"a": {"prune": {"kind": "channel", "ratio": 0.25}, "w_calibration": "mse"},
               "b": {"w_bits": 1, "prune": {"kind": "1:4"}, "a_bits": 16}},
    "activation_calibration": "percentile", "activation_percentile": 99.9})");
  const auto path = std::filesystem::temp_directory_path() / "compsearch_recipe_roundtrip.json";
  save_recipe(r, path);
  const Recipe back = load_recipe(path);
  std::filesystem::remove(path);
  CHECK(recipe_to_json(back) == recipe_to_json(r));
  CHECK(back.setting_for("a").prune.kind == PruneKind::kChannel);
  CHECK(back.setting_for("a").w_calibration == WeightCalibration::kMse);
  CHECK(back.setting_for("a").granularity.kind == GranularityKind::kPerTensor);
  CHECK(back.setting_for("b").prune.n == 1);
  CHECK(back.setting_for("b").a_bits == 16);
  CHECK(back.activation_calibration == ActivationCalibration::kPercentile);
  CHECK(back.activation_percentile == 99.9);
}

TEST_CASE("Recipe errors name the file, the key, the value and what is allowed") {
  CHECK_THROWS_WITH_AS(
      parse(R"({"format": "compsearch.recipe/1", "default": {"w_bits": 9}})"),
      "r.json: default.w_bits: got 9, expected one of {1, 2, 3, 4, 5, 6, 7, 8, 16, 32}",
      std::invalid_argument);
  CHECK_THROWS_WITH_AS(
      parse(R"({"format": "compsearch.recipe/1", "layers": {"fc1": {"a_bits": 2}}})"),
      "r.json: layers.fc1.a_bits: got 2, expected one of {4, 8, 16, 32}", std::invalid_argument);
  CHECK_THROWS_WITH_AS(parse(R"({"format": "compsearch.recipe/1", "default": {"wbits": 4}})"),
                       "r.json: default.wbits: unknown key; allowed keys: w_bits, granularity, "
                       "prune, a_bits, w_calibration",
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(
      parse(R"({"format": "compsearch.recipe/1", "extra": 1})"),
      doctest::Contains("r.json: extra: unknown key; allowed keys: format, default, layers"),
      std::invalid_argument);
  CHECK_THROWS_WITH_AS(parse(R"({"default": {}})"),
                       "r.json: format: missing; expected \"compsearch.recipe/1\"",
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(
      parse(R"({"format": "compsearch.recipe/1", "default": {"granularity": "group:0"}})"),
      doctest::Contains("default.granularity: got \"group:0\", expected \"per_tensor\", "
                        "\"per_channel\" or \"group:G\""),
      std::invalid_argument);
  CHECK_THROWS_WITH_AS(
      parse(
          R"({"format": "compsearch.recipe/1", "default": {"prune": {"kind": "channel", "ratio": 1.0}}})"),
      "r.json: default.prune.ratio: got 1.0, expected a number in [0, 1)", std::invalid_argument);
  CHECK_THROWS_WITH_AS(
      parse(R"({"format": "compsearch.recipe/1", "default": {"prune": {"kind": "unstructured"}}})"),
      "r.json: default.prune.ratio: missing; kind \"unstructured\" needs a ratio in [0, 1)",
      std::invalid_argument);
  CHECK_THROWS_WITH_AS(
      parse(R"({"format": "compsearch.recipe/1", "default": {"prune": {"kind": "block"}}})"),
      doctest::Contains(
          "default.prune.kind: got \"block\", expected \"unstructured\", \"channel\", \"N:M\""),
      std::invalid_argument);
  CHECK_THROWS_WITH_AS(
      parse(R"({"format": "compsearch.recipe/1", "default": {"prune": {"kind": "5:4"}}})"),
      doctest::Contains("default.prune.kind: got \"5:4\", expected N:M with 1 <= N <= M <= 64"),
      std::invalid_argument);
  CHECK_THROWS_WITH_AS(parse(R"({"format": "compsearch.recipe/1", "distillation": {"alpha": 2}})"),
                       "r.json: distillation.alpha: got 2, expected a number in [0, 1]",
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(load_recipe("/nonexistent/recipe.json"),
                       "/nonexistent/recipe.json: cannot open recipe file", std::invalid_argument);
}

TEST_CASE("A recipe path that is a directory, or a number past double's range, names the file") {
  const auto dir = std::filesystem::temp_directory_path() / "compsearch_recipe_bad_files";
  std::filesystem::create_directories(dir / "adir");
  // Before: "basic_filebuf::underflow error reading the file: Is a directory", no path.
  CHECK_THROWS_WITH_AS(load_recipe(dir / "adir"),
                       ((dir / "adir").string() + ": is a directory; expected a file").c_str(),
                       std::runtime_error);
  // Before: "[json.exception.out_of_range.406] number overflow parsing '1e999'", no path.
  std::ofstream(dir / "big.json")
      << R"({"format": "compsearch.recipe/1", "default": {"prune": {"kind": "unstructured", )"
         R"("ratio": 1e999}}})";
  CHECK_THROWS_WITH_AS(load_recipe(dir / "big.json"),
                       doctest::Contains(((dir / "big.json").string() +
                                          ": not valid JSON: [json.exception.out_of_range.406] "
                                          "number overflow parsing '1e999'")
                                             .c_str()),
                       std::invalid_argument);
}

TEST_CASE("Validation against a model rejects unknown layers and ineligible N:M layers") {
  const auto table = table_with_conv1_fc1();
  CHECK_NOTHROW(validate_recipe(
      parse(R"({"format": "compsearch.recipe/1", "layers": {"fc1": {"prune": {"kind": "2:4"}}}})"),
      table));
  CHECK_THROWS_WITH_AS(
      validate_recipe(
          parse(R"({"format": "compsearch.recipe/1", "layers": {"fc9": {"w_bits": 4}}})"), table),
      "recipe: layers.fc9: unknown layer \"fc9\"; the model's layers are: conv1, fc1",
      std::invalid_argument);
  CHECK_THROWS_WITH_AS(
      validate_recipe(
          parse(R"({"format": "compsearch.recipe/1", "default": {"prune": {"kind": "2:4"}}})"),
          table),
      "recipe: default.prune.kind: layer \"conv1\" (Conv, weight [16, 1, 3, 3]) is not eligible "
      "for 2:4: its input "
      "channels per group (1) are not divisible by 4; give this layer another prune kind in "
      "\"layers\"",
      std::invalid_argument);
  // Overriding the ineligible layer makes the same default acceptable.
  CHECK_NOTHROW(validate_recipe(
      parse(R"({"format": "compsearch.recipe/1", "default": {"prune": {"kind": "2:4"}},
                                          "layers": {"conv1": {"prune": {"kind": "none"}}}})"),
      table));
  CHECK(nm_eligible(table.layers[1], 4));
  CHECK(nm_eligible(table.layers[1], 64));
  CHECK_FALSE(nm_eligible(table.layers[1], 3));
}

TEST_CASE("A recipe's distillation schedule parses every key and survives a round trip") {
  const Recipe r =
      parse(R"({"format": "compsearch.recipe/1", "distillation": {"epochs": 2, "lr": 0.01,
    "optimizer": {"name": "sgd", "momentum": 0.9, "nesterov": true, "weight_decay": 0.0005},
    "schedule": {"name": "step", "warmup_steps": 50, "step_size": 400, "gamma": 0.5},
    "temperature": 2, "alpha": 1, "batch_size": 64, "samples": 6000}})");
  REQUIRE(r.distillation);
  const DistillationSpec& d = *r.distillation;
  CHECK(d.epochs == 2);
  CHECK(d.lr == 0.01);
  CHECK(d.optimizer.kind == OptimizerKind::kSgd);
  CHECK(d.optimizer.momentum == 0.9);
  CHECK(d.optimizer.nesterov);
  CHECK(d.optimizer.weight_decay == 0.0005);
  CHECK(d.schedule.kind == ScheduleKind::kStep);
  CHECK(d.schedule.warmup_steps == 50);
  CHECK(d.schedule.step_size == 400);
  CHECK(d.schedule.gamma == 0.5);
  CHECK(d.temperature == 2.0);
  CHECK(d.alpha == 1.0);  // label-free
  CHECK(d.batch_size == 64);
  CHECK(d.samples == 6000);

  const auto path = std::filesystem::temp_directory_path() / "compsearch_recipe_distillation.json";
  save_recipe(r, path);
  const Recipe back = load_recipe(path);
  std::filesystem::remove(path);
  CHECK(recipe_to_json(back) == recipe_to_json(r));
  CHECK(
      recipe_to_json(back)["distillation"]["optimizer"] ==
      json::parse(R"({"name": "sgd", "momentum": 0.9, "nesterov": true, "weight_decay": 0.0005})"));
  CHECK(back.distillation->schedule.step_size == 400);
  CHECK(back.distillation->samples == 6000);
}

TEST_CASE("A distillation key left out takes its default and short forms stay short") {
  const Recipe r = parse(R"({"format": "compsearch.recipe/1",
    "distillation": {"epochs": 1, "optimizer": "adamw", "schedule": "cosine"}})");
  REQUIRE(r.distillation);
  CHECK(r.distillation->optimizer.kind == OptimizerKind::kAdamW);
  CHECK(r.distillation->schedule.kind == ScheduleKind::kCosine);
  CHECK(r.distillation->schedule.warmup_steps == 0);
  CHECK(r.distillation->lr == 1e-3);
  CHECK(r.distillation->temperature == 4.0);
  CHECK(r.distillation->alpha == 0.9);
  CHECK(r.distillation->batch_size == 128);
  CHECK(r.distillation->samples == 0);  // the whole training split
  const json out = recipe_to_json(r)["distillation"];
  CHECK(out == json::parse(R"({"epochs": 1, "lr": 0.001, "temperature": 4.0, "alpha": 0.9,
                               "optimizer": "adamw", "schedule": "cosine", "batch_size": 128})"));
  CHECK(recipe_to_json(parse(
            R"({"format": "compsearch.recipe/1", "distillation": {}})"))["distillation"]
                                                                        ["optimizer"] == "adam");
}

TEST_CASE("Distillation errors name the key, the value and what is allowed") {
  auto distill = [](const std::string& body) {
    return parse(R"({"format": "compsearch.recipe/1", "distillation": )" + body + "}");
  };
  CHECK_THROWS_WITH_AS(
      distill(R"({"epoch": 1})"),
      "r.json: distillation.epoch: unknown key; allowed keys: epochs, lr, optimizer, schedule, "
      "temperature, alpha, batch_size, samples",
      std::invalid_argument);
  CHECK_THROWS_WITH_AS(distill(R"({"epochs": -1})"),
                       "r.json: distillation.epochs: got -1, expected an integer >= 0",
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(distill(R"({"epochs": 1.5})"),
                       "r.json: distillation.epochs: got 1.5, expected an integer >= 0",
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(distill(R"({"lr": 0})"),
                       "r.json: distillation.lr: got 0, expected a number > 0",
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(distill(R"({"temperature": "4"})"),
                       "r.json: distillation.temperature: got \"4\", expected a number > 0",
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(distill(R"({"batch_size": 0})"),
                       "r.json: distillation.batch_size: got 0, expected an integer >= 1",
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(distill(R"({"samples": 0})"),
                       "r.json: distillation.samples: got 0, expected an integer >= 1",
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(
      distill(R"({"optimizer": "rmsprop"})"),
      "r.json: distillation.optimizer: got \"rmsprop\", expected \"adam\", \"adamw\" or \"sgd\"",
      std::invalid_argument);
  CHECK_THROWS_WITH_AS(
      distill(R"({"optimizer": {"name": "adam", "momentum": 0.9}})"),
      "r.json: distillation.optimizer.momentum: only for \"sgd\"; allowed keys for \"adam\": name, "
      "weight_decay",
      std::invalid_argument);
  CHECK_THROWS_WITH_AS(
      distill(R"({"optimizer": {"name": "sgd", "nesterov": true}})"),
      doctest::Contains("distillation.optimizer.nesterov: true needs momentum > 0"),
      std::invalid_argument);
  CHECK_THROWS_WITH_AS(
      distill(R"({"optimizer": {"name": "sgd", "momentum": 1}})"),
      "r.json: distillation.optimizer.momentum: got 1, expected a number in [0, 1)",
      std::invalid_argument);
  CHECK_THROWS_WITH_AS(
      distill(R"({"optimizer": {"momentum": 0.5}})"),
      "r.json: distillation.optimizer.name: missing; expected \"adam\", \"adamw\" or \"sgd\"",
      std::invalid_argument);
  CHECK_THROWS_WITH_AS(distill(R"({"schedule": "linear"})"),
                       "r.json: distillation.schedule: got \"linear\", expected \"constant\", "
                       "\"step\" or \"cosine\"",
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(
      distill(R"({"schedule": {"name": "cosine", "gamma": 0.5}})"),
      "r.json: distillation.schedule.gamma: only for \"step\"; allowed keys for \"cosine\": name, "
      "warmup_steps",
      std::invalid_argument);
  CHECK_THROWS_WITH_AS(distill(R"({"schedule": {"name": "step", "gamma": 0}})"),
                       "r.json: distillation.schedule.gamma: got 0, expected a number in (0, 1]",
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(
      distill(R"({"schedule": {"name": "cosine", "warmup": 10}})"),
      "r.json: distillation.schedule.warmup: unknown key; allowed keys: name, warmup_steps, "
      "step_size, gamma",
      std::invalid_argument);
  CHECK_THROWS_WITH_AS(distill("[1]"), "r.json: distillation: got [1], expected an object",
                       std::invalid_argument);
}

TEST_CASE("A recipe nested 100000 deep is an error naming the file and not a stack overflow") {
  const auto dir = std::filesystem::temp_directory_path();
  const size_t deep = 100000;
  // Valid JSON in both cases: the error message used to print the value, recursing per level.
  const std::pair<std::string, std::string> cases[] = {
      {"compsearch_recipe_deep_default.json", R"({"format": "compsearch.recipe/1", "default": )" +
                                                  std::string(deep, '[') + std::string(deep, ']') +
                                                  "}"},
      {"compsearch_recipe_deep_top.json", std::string(deep, '{')},  // and not JSON
      {"compsearch_recipe_deep_array.json", std::string(deep, '[') + std::string(deep, ']')}};
  for (const auto& c : cases) {
    const std::string& name = c.first;  // not a structured binding: clang 14's CAPTURE
    const std::string& text = c.second;
    CAPTURE(name);
    const auto path = dir / name;
    std::ofstream(path) << text;
    CHECK_THROWS_WITH_AS(
        load_recipe(path),
        doctest::Contains(
            (path.string() + ": JSON nested deeper than 512 levels (at byte ").c_str()),
        std::invalid_argument);
    std::filesystem::remove(path);
  }
  // The nesting a real recipe has still loads.
  const auto ok = dir / "compsearch_recipe_shallow.json";
  std::ofstream(ok) << R"({"format": "compsearch.recipe/1", "default": {"w_bits": 4}})";
  CHECK(load_recipe(ok).default_setting.w_bits == 4);
  std::filesystem::remove(ok);
}
