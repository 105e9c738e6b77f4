// evaluate --recipe, inspect --recipe and compress: logic and renderings.
#include "experiments/compress_commands.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <sstream>
#include <stdexcept>

#include "evaluators/standard_evaluators.h"
#include "experiments/text_table.h"
#include "experiments/usage_error.h"
#include "model/layer_table.h"

namespace compsearch::experiments {

namespace {

using Clock = std::chrono::steady_clock;

compressors::Recipe uncompressed_recipe() { return compressors::Recipe{}; }

}  // namespace

bool recipe_needs_calibration(const model::Graph& graph, const compressors::Recipe& recipe) {
  for (const auto& l : model::build_layer_table(graph).layers) {
    const int a = recipe.setting_for(l.name).a_bits;
    if (a == 4 || a == 8) return true;
  }
  return false;
}

RecipeEvaluateResult evaluate_recipe(const model::Graph& graph, const compressors::Recipe& recipe,
                                     const model::Dataset& data, const model::Dataset& calibration,
                                     const RecipeEvaluateOptions& options,
                                     const std::string& model_label,
                                     const std::string& recipe_label) {
  if (!data.labelled())
    throw std::invalid_argument("dataset " + data.name + " has no labels; accuracy needs labels");
  model::check_dataset_matches_model(data, graph);
  const auto t0 = Clock::now();
  const model::LayerTable table = model::build_layer_table(graph);
  compressors::CompressedModel cm = compressors::apply_recipe(graph, table, recipe);
  const evaluators::EvaluationOptions& eo = options.eval;
  evaluators::check_evaluation_options(eo);
  RecipeEvaluateResult r;
  if (cm.needs_calibration()) {
    model::check_dataset_matches_model(calibration, graph);
    evaluators::calibrate_activations(cm, calibration, options.calibration_samples, eo);
    r.calibration_samples = std::min(calibration.size(), options.calibration_samples);
  }
  int64_t classes = 0;
  const auto ref = evaluators::run_model(graph, data, nullptr, eo, classes);
  std::vector<int64_t> labels(data.labels.begin(),
                              data.labels.begin() + static_cast<int64_t>(ref.size()) / classes);
  r.reference_accuracy = evaluators::compare_outputs(ref, ref, classes, labels).accuracy;
  r.result = evaluators::evaluate_compressed(graph, cm, data, eo, &ref);
  const auto base = compressors::model_cost(graph, table, uncompressed_recipe(), {});
  r.model = model_label;
  r.data = data.name;
  r.recipe = recipe_label;
  r.size_bytes = cm.cost.size_bytes();
  r.macs = cm.cost.effective_macs;
  r.reference_size_bytes = base.size_bytes();
  r.reference_macs = base.effective_macs;
  r.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  return r;
}

nlohmann::json RecipeEvaluateResult::to_json() const {
  return {{"model", model},
          {"data", data},
          {"recipe", recipe},
          {"accuracy", result.accuracy},
          {"agreement", result.agreement},
          {"kl", result.kl},
          {"size_bytes", size_bytes},
          {"macs", macs},
          {"samples", result.samples},
          {"reference_accuracy", reference_accuracy},
          {"reference_size_bytes", reference_size_bytes},
          {"reference_macs", reference_macs},
          {"calibration_samples", calibration_samples},
          {"seconds", seconds}};
}

std::string RecipeEvaluateResult::to_text() const {
  char buf[1024];
  std::snprintf(buf, sizeof buf,
                "model:     %s\nrecipe:    %s\ndata:      %s (%lld samples)\n"
                "accuracy:  %.2f%% (uncompressed %.2f%%)\n"
                "agreement: %.2f%% top-1 with the uncompressed model\n"
                "kl:        %.6f nats (mean KL(uncompressed || compressed))\n"
                "size:      %.0f bytes (uncompressed %.0f, %.2fx smaller)\n"
                "macs:      %lld per sample (uncompressed %lld)\n"
                "time:      %.2f s%s\n",
                model.c_str(), recipe.c_str(), data.c_str(), static_cast<long long>(result.samples),
                result.accuracy * 100.0, reference_accuracy * 100.0, result.agreement * 100.0,
                result.kl, size_bytes, reference_size_bytes,
                size_bytes > 0 ? reference_size_bytes / size_bytes : 0.0,
                static_cast<long long>(macs), static_cast<long long>(reference_macs), seconds,
                calibration_samples
                    ? (" (" + std::to_string(calibration_samples) + " calibration samples)").c_str()
                    : "");
  return buf;
}

RecipeInspectResult inspect_recipe(const model::Graph& graph, const compressors::Recipe& recipe,
                                   const std::string& model_label,
                                   const std::string& recipe_label) {
  const model::LayerTable table = model::build_layer_table(graph);
  return RecipeInspectResult{model_label, recipe_label,
                             compressors::apply_recipe(graph, table, recipe)};
}

nlohmann::json RecipeInspectResult::to_json() const {
  const auto& cm = compressed;
  nlohmann::json layers = nlohmann::json::array();
  for (size_t i = 0; i < cm.table.layers.size(); ++i) {
    const auto& l = cm.table.layers[i];
    const auto& c = cm.cost.layers[i];
    const auto& s = cm.recipe.setting_for(l.name);
    nlohmann::json layer = s;  // the setting as the recipe file writes it
    layer.update({{"name", l.name},
                  {"op", l.op},
                  {"weight_shape", l.weight_shape},
                  {"params", l.params},
                  {"macs", l.macs},
                  {"effective_macs", c.effective_macs},
                  {"pruned_channels", c.pruned_channels.size()},
                  {"dropped_inputs", c.dropped_inputs.size()},
                  {"kept_weights", c.kept_weights},
                  {"stored_weights", c.stored_weights},
                  {"size_bits", c.total_bits}});
    layers.push_back(layer);
  }
  const auto base = compressors::model_cost(cm.graph, cm.table, compressors::Recipe{}, {});
  return {{"model", model},
          {"recipe", recipe_label},
          {"layers", layers},
          {"total_params", cm.table.total_params},
          {"total_macs", cm.table.total_macs},
          {"effective_macs", cm.cost.effective_macs},
          {"size_bytes", cm.cost.size_bytes()},
          {"reference_size_bytes", base.size_bytes()}};
}

std::string RecipeInspectResult::to_text() const {
  const auto& cm = compressed;
  const std::vector<std::string> head = {"layer",    "op",      "setting",  "MACs", "eff. MACs",
                                         "kept out", "kept in", "stored w", "bytes"};
  std::vector<std::vector<std::string>> rows;
  for (size_t i = 0; i < cm.table.layers.size(); ++i) {
    const auto& l = cm.table.layers[i];
    const auto& c = cm.cost.layers[i];
    const auto& s = cm.recipe.setting_for(l.name);
    std::string setting =
        "w" + std::to_string(s.w_bits) + " " + compressors::granularity_to_string(s.granularity);
    if (s.prune.kind != compressors::PruneKind::kNone) {
      char r[32];
      std::snprintf(r, sizeof r, " %s %.2f", compressors::prune_kind_to_string(s.prune).c_str(),
                    s.prune.ratio);
      setting += r;
    }
    if (s.a_bits != 32) setting += " a" + std::to_string(s.a_bits);
    char bytes[32];
    std::snprintf(bytes, sizeof bytes, "%.1f", c.total_bits / 8.0);
    rows.push_back(
        {l.name, l.op, setting, std::to_string(l.macs), std::to_string(c.effective_macs),
         std::to_string(l.out_channels - static_cast<int64_t>(c.pruned_channels.size())) + "/" +
             std::to_string(l.out_channels),
         std::to_string(l.in_channels - static_cast<int64_t>(c.dropped_inputs.size())) + "/" +
             std::to_string(l.in_channels),
         std::to_string(c.stored_weights), bytes});
  }
  std::ostringstream out;
  out << model << " with recipe " << recipe_label << ": " << cm.table.layers.size() << " layers\n";
  out << text_table(head, rows, 3);
  const auto base = compressors::model_cost(cm.graph, cm.table, compressors::Recipe{}, {});
  char buf[256];
  std::snprintf(
      buf, sizeof buf,
      "total: %.0f bytes stored (uncompressed %.0f, %.2fx), %lld effective MACs per sample "
      "(uncompressed %lld)\n",
      cm.cost.size_bytes(), base.size_bytes(),
      base.size_bytes() / std::max(1.0, cm.cost.size_bytes()),
      static_cast<long long>(cm.cost.effective_macs), static_cast<long long>(cm.table.total_macs));
  out << buf;
  return out.str();
}

nlohmann::json compress_model(const model::Graph& graph, const compressors::Recipe& recipe,
                              compressors::ExportFormat format, const std::filesystem::path& out,
                              const model::Dataset* calibration, int64_t calibration_samples) {
  const model::LayerTable table = model::build_layer_table(graph);
  compressors::ApplyOptions ao;
  ao.keep_quantized = true;
  compressors::CompressedModel cm = compressors::apply_recipe(graph, table, recipe, ao);
  int64_t calibrated = 0;
  if (cm.needs_calibration()) {
    if (!calibration)
      throw std::invalid_argument(
          "the recipe quantizes activations (a_bits 4 or 8): give --calibration-data");
    model::check_dataset_matches_model(*calibration, graph);
    evaluators::calibrate_activations(cm, *calibration, calibration_samples);
    calibrated = std::min(calibration->size(), calibration_samples);
  }
  compressors::export_model(cm, format, out);
  int64_t quantized = 0;
  for (const auto& l : table.layers) quantized += recipe.setting_for(l.name).w_bits <= 8;
  return {{"format", compressors::export_format_to_string(format)},
          {"out", out.string()},
          {"size_bytes", cm.cost.size_bytes()},
          {"macs", cm.cost.effective_macs},
          {"layers", table.layers.size()},
          {"layers_quantized", quantized},
          {"calibration_samples", calibrated}};
}

std::optional<model::Dataset> load_calibration_if_needed(const model::Graph& graph,
                                                         const compressors::Recipe& recipe,
                                                         const CalibrationSource& source) {
  if (!recipe_needs_calibration(graph, recipe)) return std::nullopt;
  return model::load_dataset(source.data, source.split);
}

namespace {

void check_calibration_samples(const CalibrationSource& c) {
  if (c.samples < 1) throw UsageError("--calibration-samples must be >= 1");
}

}  // namespace

nlohmann::json EvaluateReport::to_json() const {
  return std::visit([](const auto& r) { return r.to_json(); }, result);
}

std::string EvaluateReport::to_text() const {
  return std::visit([](const auto& r) { return r.to_text(); }, result);
}

EvaluateReport run_evaluate(const EvaluateRequest& request) {
  if (request.split != "train" && request.split != "test") {
    throw UsageError("--split must be train or test, got '" + request.split + "'");
  }
  if (request.batch_size < 1) throw UsageError("--batch must be >= 1");
  if (request.limit == 0 || request.limit < -1)
    throw UsageError("--limit must be >= 1, or -1 for all samples, got " +
                     std::to_string(request.limit));
  if (!request.recipe.empty()) check_calibration_samples(request.calibration);
  const model::Graph graph = model::load_onnx(request.model);
  const model::Dataset data = model::load_dataset(request.data, request.split);
  if (request.recipe.empty()) {
    evaluators::EvaluationOptions options;
    options.batch = request.batch_size;
    options.threads = request.threads;
    options.limit = request.limit;
    return {evaluate_graph(graph, data, options, request.model)};
  }
  const compressors::Recipe recipe = compressors::load_recipe(request.recipe);
  RecipeEvaluateOptions ro;
  ro.eval.batch = request.batch_size;
  ro.eval.threads = request.threads;
  ro.eval.limit = request.limit;
  ro.calibration_samples = request.calibration.samples;
  const std::optional<model::Dataset> calibration =
      load_calibration_if_needed(graph, recipe, request.calibration);
  return {evaluate_recipe(graph, recipe, data, calibration ? *calibration : model::Dataset{}, ro,
                          request.model, request.recipe)};
}

nlohmann::json InspectReport::to_json() const {
  return std::visit([](const auto& r) { return r.to_json(); }, result);
}

std::string InspectReport::to_text() const {
  return std::visit([](const auto& r) { return r.to_text(); }, result);
}

InspectReport run_inspect(const InspectRequest& request) {
  const model::Graph graph = model::load_onnx(request.model);
  if (request.recipe.empty()) return {inspect_graph(graph, request.model)};
  return {inspect_recipe(graph, compressors::load_recipe(request.recipe), request.model,
                         request.recipe)};
}

CompressReport run_compress(const CompressRequest& request) {
  compressors::ExportFormat format;
  try {
    format = compressors::export_format_from_string(request.format);
  } catch (const std::invalid_argument& e) {
    throw UsageError(std::string("--format: ") + e.what());
  }
  check_calibration_samples(request.calibration);
  const model::Graph graph = model::load_onnx(request.model);
  const compressors::Recipe recipe = compressors::load_recipe(request.recipe);
  const std::optional<model::Dataset> calibration =
      load_calibration_if_needed(graph, recipe, request.calibration);
  return {compress_model(graph, recipe, format, request.out, calibration ? &*calibration : nullptr,
                         request.calibration.samples)};
}

std::string CompressReport::to_text() const {
  std::ostringstream out;
  out << "wrote " << summary["out"].get<std::string>() << " ("
      << summary["format"].get<std::string>() << "): " << summary["layers_quantized"] << " of "
      << summary["layers"] << " layers quantized to <= 8 bits, stored size "
      << summary["size_bytes"].get<double>() << " bytes, " << summary["macs"]
      << " effective MACs per sample\n";
  return out.str();
}

void bench_recipe_candidates(const std::string& model_path, int64_t images, int repeats,
                             std::ostream& out) {
  const model::Graph graph = model::load_onnx(model_path);
  const model::LayerTable table = model::build_layer_table(graph);
  model::Dataset calib = model::load_dataset("fashion-mnist", "train");
  calib.images.resize(static_cast<size_t>(images * model::shape_numel(calib.sample_shape)));
  calib.labels.resize(static_cast<size_t>(images));
  evaluators::EvaluationOptions eo;
  // The search's path: the accuracy evaluator over a prepared context (reference outputs and
  // reference activation statistics computed once).
  auto ctx = std::make_shared<evaluators::EvaluationContext>();
  ctx->graph = &graph;
  ctx->table = table;
  ctx->validation = &calib;
  ctx->calibration = &calib;
  ctx->calibration_samples = images;
  evaluators::prepare_context(*ctx);
  const auto evaluator = evaluators::make_standard_evaluator("accuracy", ctx);
  const char* recipes[] = {
      R"({"format": "compsearch.recipe/1", "default": {"w_bits": 4}})",
      R"({"format": "compsearch.recipe/1", "default": {"w_bits": 8, "prune": {"kind": "unstructured", "ratio": 0.5}}})",
      R"({"format": "compsearch.recipe/1", "default": {"w_bits": 4, "prune": {"kind": "channel", "ratio": 0.25}}})",
      R"({"format": "compsearch.recipe/1", "default": {"w_bits": 8, "a_bits": 8}})",
  };
  out << "per-candidate cost on " << model_path << " (" << table.layers.size() << " layers), "
      << images << " images of fashion-mnist train, best of " << repeats << "\n";
  double t_ref = 1e30;
  for (int r = 0; r < repeats; ++r) {
    const auto t0 = Clock::now();
    int64_t c = 0;
    evaluators::run_model(graph, calib, nullptr, eo, c);
    t_ref = std::min(t_ref, std::chrono::duration<double>(Clock::now() - t0).count());
  }
  out << "  peer: uncompressed inference alone on the same images: " << t_ref * 1e3 << " ms\n";
  for (const char* text : recipes) {
    const auto recipe = compressors::recipe_from_json(nlohmann::json::parse(text), "bench");
    double best = 1e30, best_old = 1e30;
    evaluators::Metrics m;
    evaluators::EvaluationResult res;
    for (int r = 0; r < repeats; ++r) {
      auto t0 = Clock::now();
      evaluators::Candidate c;
      c.recipe = &recipe;
      m = evaluator->evaluate(c);
      best = std::min(best, std::chrono::duration<double>(Clock::now() - t0).count());
      // Before: a calibration run on the candidate itself, then the comparison.
      t0 = Clock::now();
      auto cm = compressors::apply_recipe(graph, table, recipe);
      if (cm.needs_calibration()) evaluators::calibrate_activations(cm, calib, images, eo);
      res = evaluators::evaluate_compressed(graph, cm, calib, eo, &ctx->reference_outputs);
      best_old = std::min(best_old, std::chrono::duration<double>(Clock::now() - t0).count());
    }
    out << "  " << text << "\n    search evaluator " << best * 1e3
        << " ms per candidate (ratio to plain inference " << best / t_ref << ", accuracy "
        << m.at("accuracy") << "); with a calibration run per candidate " << best_old * 1e3
        << " ms (accuracy " << res.accuracy << ")\n";
  }
}

}  // namespace compsearch::experiments
