// accuracy / fidelity / weight_error evaluators (see standard_evaluators.h).
#include "evaluators/standard_evaluators.h"

#include <algorithm>
#include <optional>
#include <stdexcept>

#include "compressors/apply.h"
#include "compressors/export.h"
#include "evaluators/finetune.h"

namespace compsearch::evaluators {

namespace {

// Fidelity levels reported on the trial (DESIGN.md "Evaluators, fidelity levels and pruning").
constexpr int64_t kSubsetStep = 1;
constexpr int64_t kFullStep = 2;
constexpr int64_t kFinetuneStep = 3;

class DataEvaluator : public Evaluator {
 public:
  DataEvaluator(std::shared_ptr<const EvaluationContext> context, bool labelled)
      : ctx_(std::move(context)), labelled_(labelled) {}

  std::string name() const override { return labelled_ ? "accuracy" : "fidelity"; }
  std::vector<std::string> metric_names() const override {
    if (labelled_) return {"accuracy", "accuracy_drop", "agreement", "kl", "weight_error"};
    return {"agreement", "kl", "weight_error"};
  }

  Metrics evaluate(const Candidate& candidate, const ReportFn& report) const override {
    const EvaluationContext& c = *ctx_;
    // Integer kernels run the candidate's QDQ graph, which needs the integer weights.
    const bool int8 = runs_int8(*candidate.recipe, c.table, c.options);
    compressors::CompressedModel cm = compressors::apply_recipe(
        *c.graph, c.table, *candidate.recipe, compressors::ApplyOptions{.keep_quantized = int8});
    if (cm.needs_calibration()) {
      if (!c.reference_activations)
        throw std::invalid_argument("activation quantization needs calibration data");
      calibrate_from_reference(cm, *c.reference_activations);
    }
    Metrics m;
    m["weight_error"] = relative_weight_error(*c.graph, cm.graph, c.table);
    const int64_t n = c.options.limit > 0 ? std::min(c.validation->size(), c.options.limit)
                                          : c.validation->size();
    std::optional<model::Graph> qdq;  // built once per compressed model, on first use
    auto measure = [&](int64_t samples) {
      EvaluationOptions opts = c.options;
      opts.limit = samples;
      int64_t classes = 0;
      if (int8 && !qdq) qdq = compressors::make_qdq_graph(cm);
      const std::vector<float> out =
          int8 ? run_model(*qdq, *c.validation, nullptr, opts, classes)
               : run_model(cm.graph, *c.validation, &cm.activations, opts, classes);
      const std::vector<float> ref(c.reference_outputs.begin(),
                                   c.reference_outputs.begin() + samples * c.classes);
      std::vector<int64_t> labels;
      if (labelled_)
        labels.assign(c.validation->labels.begin(), c.validation->labels.begin() + samples);
      const EvaluationResult r = compare_outputs(ref, out, classes, labels);
      if (labelled_) {
        m["accuracy"] = r.accuracy;
        m["accuracy_drop"] = c.reference.accuracy - r.accuracy;
      }
      m["agreement"] = r.agreement;
      m["kl"] = r.kl;
      return labelled_ ? r.accuracy : r.agreement;
    };
    // The subset level exists to be reported: without a report function only the full level runs.
    if (report && c.subset_samples > 0 && c.subset_samples < n) {
      const double v = measure(c.subset_samples);
      if (report && report(v, kSubsetStep)) throw EvaluationPruned(m, kSubsetStep);
    }
    const double v = measure(n);
    const bool finetune_next =
        c.train && candidate.recipe->distillation && candidate.recipe->distillation->epochs > 0;
    if (report && report(v, kFullStep) && finetune_next) throw EvaluationPruned(m, kFullStep);
    if (!finetune_next) return m;
    // Level 3: distillation fine-tuning from the uncompressed model, then the whole split again.
    FinetuneOptions fo;
    fo.seed = static_cast<uint64_t>(std::max<int64_t>(0, candidate.number));
    fo.threads = c.options.threads;
    fo.calibration_samples = c.calibration_samples;
    const FinetuneResult ft =
        finetune(*c.graph, *candidate.recipe, *c.train, *candidate.recipe->distillation, fo);
    if (labelled_) m["accuracy_before_finetune"] = m["accuracy"];
    m["agreement_before_finetune"] = m["agreement"];
    m["finetune_seconds"] = ft.seconds;
    cm = ft.compressed;  // applied with keep_quantized (finetune.h)
    qdq.reset();
    m["weight_error"] = relative_weight_error(*c.graph, cm.graph, c.table);
    const double v3 = measure(n);
    if (report) report(v3, kFinetuneStep);
    return m;
  }

 private:
  std::shared_ptr<const EvaluationContext> ctx_;
  bool labelled_;
};

class WeightErrorEvaluator : public Evaluator {
 public:
  explicit WeightErrorEvaluator(std::shared_ptr<const EvaluationContext> context)
      : ctx_(std::move(context)) {}
  std::string name() const override { return "weight_error"; }
  std::vector<std::string> metric_names() const override { return {"weight_error"}; }
  Metrics evaluate(const Candidate& candidate, const ReportFn&) const override {
    const compressors::CompressedModel cm =
        compressors::apply_recipe(*ctx_->graph, ctx_->table, *candidate.recipe);
    return {{"weight_error", relative_weight_error(*ctx_->graph, cm.graph, ctx_->table)}};
  }

 private:
  std::shared_ptr<const EvaluationContext> ctx_;
};

}  // namespace

void prepare_context(EvaluationContext& context) {
  if (!context.graph) throw std::invalid_argument("evaluation context without a model");
  if (context.table.layers.empty()) context.table = model::build_layer_table(*context.graph);
  if (!context.validation) return;
  model::check_dataset_matches_model(*context.validation, *context.graph);
  EvaluationOptions opts = context.options;
  opts.limit = -1;
  context.reference_outputs =
      run_model(*context.graph, *context.validation, nullptr, opts, context.classes);
  check_evaluation_data(*context.validation, context.classes, context.validation->size());
  if (context.calibration && context.calibration->size() > 0) {
    EvaluationOptions copts = context.options;
    copts.limit = -1;
    context.reference_activations = std::make_shared<const ReferenceActivations>(
        observe_reference_activations(*context.graph, context.table, *context.calibration,
                                      context.calibration_samples, copts));
  }
  context.reference = compare_outputs(context.reference_outputs, context.reference_outputs,
                                      context.classes, context.validation->labels);
}

std::unique_ptr<Evaluator> make_standard_evaluator(
    const std::string& kind, std::shared_ptr<const EvaluationContext> context) {
  if (!context || !context->graph) throw std::invalid_argument("evaluator without a model");
  if (kind == "weight_error") return std::make_unique<WeightErrorEvaluator>(std::move(context));
  if (kind == "accuracy" || kind == "fidelity") {
    if (!context->validation) {
      throw std::invalid_argument("the " + kind +
                                  " evaluator needs data (the config's data.source)");
    }
    if (context->reference_outputs.empty()) {
      throw std::invalid_argument("the " + kind +
                                  " evaluator's context was not prepared (prepare_context)");
    }
    if (kind == "accuracy" && !context->validation->labelled()) {
      throw std::invalid_argument("the accuracy evaluator needs labels; dataset " +
                                  context->validation->name +
                                  " has none (use the fidelity evaluator)");
    }
    return std::make_unique<DataEvaluator>(std::move(context), kind == "accuracy");
  }
  throw std::invalid_argument("unknown evaluator \"" + kind +
                              "\" (allowed: accuracy, fidelity, weight_error)");
}

double relative_weight_error(const model::Graph& original, const model::Graph& compressed,
                             const model::LayerTable& table) {
  double err = 0.0, norm = 0.0;
  for (const auto& layer : table.layers) {
    const model::Tensor* a = original.find_initializer(layer.weight_name);
    const model::Tensor* b = compressed.find_initializer(layer.weight_name);
    if (!a || !b || a->f32.size() != b->f32.size()) continue;
    for (size_t i = 0; i < a->f32.size(); ++i) {
      const double d = static_cast<double>(a->f32[i]) - b->f32[i];
      err += d * d;
      norm += static_cast<double>(a->f32[i]) * a->f32[i];
    }
  }
  return norm > 0 ? err / norm : 0.0;
}

}  // namespace compsearch::evaluators
