// `compsearch train` and `compsearch finetune`: request -> schedule (validated by the recipe
// parser, so command-line overrides get the same messages as recipe files), training, held-out
// evaluation and an atomic write of the result.
#include "experiments/train_commands.h"

#include <cmath>
#include <cstdio>
#include <sstream>
#include <system_error>

#include "common/atomic_file.h"
#include "compressors/apply.h"
#include "compressors/export.h"
#include "evaluators/accuracy.h"
#include "experiments/usage_error.h"
#include "model/dataset.h"
#include "model/graph.h"
#include "model/layer_table.h"

namespace compsearch::experiments {

namespace {

using nlohmann::json;

// The recipe's distillation block (or `base` when it has none) with the request's overrides,
// parsed by the recipe parser so every value is checked in one place.
compressors::DistillationSpec schedule_for(const compressors::Recipe& recipe, const json& base,
                                           const TrainRequest& r) {
  json d = recipe.distillation ? compressors::recipe_to_json(recipe)["distillation"] : base;
  if (r.epochs) d["epochs"] = *r.epochs;
  if (r.lr) d["lr"] = *r.lr;
  if (r.batch_size) d["batch_size"] = *r.batch_size;
  if (r.samples) d["samples"] = *r.samples;
  if (r.optimizer) d["optimizer"] = *r.optimizer;
  if (r.schedule) d["schedule"] = *r.schedule;
  if (r.temperature) d["temperature"] = *r.temperature;
  if (r.alpha) d["alpha"] = *r.alpha;
  try {
    return *compressors::recipe_from_json({{"format", "compsearch.recipe/1"}, {"distillation", d}},
                                          "training schedule")
                .distillation;
  } catch (const std::invalid_argument& e) {
    throw UsageError(e.what());
  }
}

std::string clock_text(double seconds) {
  const int64_t s = static_cast<int64_t>(std::llround(std::max(0.0, seconds)));
  char buf[32];
  if (s >= 3600)
    std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", static_cast<long long>(s / 3600),
                  static_cast<long long>(s / 60 % 60), static_cast<long long>(s % 60));
  else
    std::snprintf(buf, sizeof buf, "%lld:%02lld", static_cast<long long>(s / 60),
                  static_cast<long long>(s % 60));
  return buf;
}

std::optional<model::Dataset> load_eval_set(const TrainRequest& r) {
  std::string name = r.eval_data;
  if (name == "auto") name = r.data == "fashion-mnist" ? "fashion-mnist" : "";
  if (name.empty() || name == "none") return std::nullopt;
  if (r.eval_split != "train" && r.eval_split != "test")
    throw UsageError("--eval-split must be train or test, got '" + r.eval_split + "'");
  model::Dataset d = model::load_dataset(name, r.eval_split);
  if (r.eval_limit >= 0 && r.eval_limit < d.size()) {
    const int64_t per = model::shape_numel(d.sample_shape);
    d.images.resize(static_cast<size_t>(r.eval_limit * per));
    if (d.labelled()) d.labels.resize(static_cast<size_t>(r.eval_limit));
  }
  return d;
}

TrainReport run(const TrainRequest& r, bool finetune,
                const std::function<void(const evaluators::FinetuneProgress&)>& progress,
                const std::atomic<bool>* stop) {
  if (r.model.empty()) throw UsageError("missing --model");
  if (r.out.empty()) throw UsageError("missing --out");
  if (r.format != "onnx" && r.format != "onnx-qdq")
    throw UsageError("--format must be onnx or onnx-qdq, got '" + r.format + "'");
  if (r.calibration_samples < 1) throw UsageError("--calibration-samples must be >= 1");
  if (r.progress_every < 1) throw UsageError("--progress-every must be >= 1");
  if (finetune && r.recipe.empty()) throw UsageError("missing --recipe");

  const model::Graph graph = model::load_onnx(r.model);
  const compressors::Recipe recipe =
      finetune ? compressors::load_recipe(r.recipe) : compressors::Recipe{};
  // `train` is plain cross-entropy training (alpha 0: no teacher), one epoch unless told.
  const json base = finetune ? json{{"epochs", 1}} : json{{"epochs", 1}, {"alpha", 0.0}};
  compressors::DistillationSpec spec = schedule_for(recipe, base, r);
  if (!finetune) spec.alpha = 0.0;
  const model::LayerTable table = model::build_layer_table(graph);
  compressors::validate_recipe(recipe, table);

  // The training split only; the evaluation set (if any) is never trained on.
  const model::Dataset train = model::load_dataset(r.data, "train");
  const std::optional<model::Dataset> eval = load_eval_set(r);

  json summary = {{"command", finetune ? "finetune" : "train"},
                  {"model", r.model},
                  {"data", r.data},
                  {"out", r.out},
                  {"format", r.format},
                  {"seed", r.seed}};
  compressors::Recipe schedule_only;
  schedule_only.distillation = spec;
  summary["schedule"] = compressors::recipe_to_json(schedule_only)["distillation"];
  if (finetune) summary["recipe"] = r.recipe;

  evaluators::EvaluationOptions eo;
  eo.threads = r.threads;
  if (eval) {
    summary["eval_data"] = eval->name + " (" + r.eval_split + ")";
    summary["reference_accuracy"] = evaluators::evaluate_model(graph, *eval, eo).accuracy;
    if (finetune) {
      compressors::CompressedModel ptq = compressors::apply_recipe(graph, table, recipe);
      if (ptq.needs_calibration())
        evaluators::calibrate_activations(ptq, train, r.calibration_samples, eo);
      summary["ptq_accuracy"] = evaluators::evaluate_compressed(graph, ptq, *eval, eo).accuracy;
    }
  }

  evaluators::FinetuneOptions fo;
  fo.seed = r.seed;
  fo.threads = r.threads;
  fo.calibration_samples = r.calibration_samples;
  fo.progress = progress;
  fo.progress_every = r.progress_every;
  fo.stop = stop;
  evaluators::FinetuneResult result = evaluators::finetune(graph, recipe, train, spec, fo);

  const json run = result.to_json();
  summary["history"] = run["epochs"];
  summary["epochs"] = static_cast<int64_t>(result.epochs.size());
  summary["steps"] = result.steps;
  summary["images"] = result.images;
  summary["seconds"] = result.seconds;
  double train_seconds = 0.0;
  for (const auto& e : result.epochs) train_seconds += e.seconds;
  summary["images_per_second"] =
      train_seconds > 0 ? static_cast<double>(result.images) / train_seconds : 0.0;
  summary["interrupted"] = result.interrupted;
  summary["written"] = false;
  if (result.interrupted) return {summary};

  if (eval)
    summary["accuracy"] =
        evaluators::evaluate_compressed(graph, result.compressed, *eval, eo).accuracy;
  write_model_atomically(result.compressed, r.format, r.out);
  summary["written"] = true;
  return {summary};
}

}  // namespace

void write_model_atomically(const compressors::CompressedModel& cm, const std::string& format,
                            const std::filesystem::path& out) {
  const compressors::ExportFormat f = compressors::export_format_from_string(format);
  replace_file_atomically(
      out, [&](const std::filesystem::path& tmp) { compressors::export_model(cm, f, tmp); });
}

std::string progress_line(const evaluators::FinetuneProgress& p) {
  char buf[200];
  std::snprintf(buf, sizeof buf,
                "epoch %d/%d step %lld/%lld loss %.4f train acc %.4f %.0f img/s ETA %s", p.epoch,
                p.epochs, static_cast<long long>(p.step), static_cast<long long>(p.steps_per_epoch),
                p.loss, p.train_accuracy, p.images_per_second, clock_text(p.eta_seconds).c_str());
  return buf;
}

TrainReport run_train(const TrainRequest& request,
                      const std::function<void(const evaluators::FinetuneProgress&)>& progress,
                      const std::atomic<bool>* stop) {
  return run(request, false, progress, stop);
}

TrainReport run_finetune(const TrainRequest& request,
                         const std::function<void(const evaluators::FinetuneProgress&)>& progress,
                         const std::atomic<bool>* stop) {
  return run(request, true, progress, stop);
}

std::string TrainReport::to_text() const {
  const json& s = summary;
  std::ostringstream out;
  out << s["command"].get<std::string>() << ": " << s["epochs"] << " epoch(s), " << s["steps"]
      << " steps, " << s["images"] << " images in " << clock_text(s["seconds"].get<double>())
      << " (" << std::llround(s["images_per_second"].get<double>()) << " img/s)\n";
  if (s["interrupted"].get<bool>()) {
    out << "interrupted: nothing written\n";
    return out.str();
  }
  if (s.contains("accuracy")) {
    out << "accuracy on " << s["eval_data"].get<std::string>() << ": "
        << s["accuracy"].get<double>() << " (model as given "
        << s["reference_accuracy"].get<double>();
    if (s.contains("ptq_accuracy"))
      out << ", recipe without fine-tuning " << s["ptq_accuracy"].get<double>();
    out << ")\n";
  }
  out << "wrote " << s["out"].get<std::string>() << " (" << s["format"].get<std::string>() << ")\n";
  return out.str();
}

}  // namespace compsearch::experiments
