// Quantization-aware fine-tuning: the recipe's compression as model::Trainer hooks built from the
// compressors' kernels, Hinton distillation against the uncompressed model, and the result as a
// graph of effective weights (see finetune.h for the rules).
#include "evaluators/finetune.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <memory>
#include <stdexcept>

#include "compressors/weight_kernels.h"
#include "evaluators/accuracy.h"
#include "model/executor.h"
#include "model/layer_table.h"
#include "model/loss.h"
#include "model/optimizer.h"
#include "model/training.h"

namespace compsearch::evaluators {

namespace {

using compressors::LayerSetting;
using compressors::PruneKind;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// One compressed layer's weight transform state.
struct WeightQat {
  std::string name;
  LayerSetting setting;
  compressors::WeightLayout layout;
  compressors::PruneMask mask;           // empty: nothing pruned
  std::vector<int64_t> pruned_channels;  // channel pruning: their bias stays 0 too
  int bias_param = -1;
  compressors::QuantizedWeights last;  // scales of the last forward (mse clipping only)

  bool clips() const {
    return setting.w_bits >= 2 && setting.w_bits <= 8 &&
           setting.w_calibration == compressors::WeightCalibration::kMse;
  }

  // effective = compress(master) with the fixed mask: rules 1 and 5-7 through the kernels.
  void forward(std::span<const float> master, std::span<float> effective) {
    std::copy(master.begin(), master.end(), effective.begin());
    if (!mask.empty())
      for (size_t i = 0; i < mask.size(); ++i)
        if (mask[i]) effective[i] = 0.0f;
    const int bits = setting.w_bits;
    if (bits >= 2 && bits <= 8) {
      compressors::quantize_weights(effective, layout, bits, setting.granularity,
                                    setting.w_calibration, clips() ? &last : nullptr);
    } else if (bits == 1) {
      compressors::binarize_weights(effective, layout, setting.granularity,
                                    mask.empty() ? nullptr : &mask);
    } else if (bits == 16) {
      compressors::round_weights_to_half(effective);
    }
  }

  // dL/d(effective) -> dL/d(master): zero where pruned; STE clipped to the quantization range.
  void backward(std::span<const float> master, std::span<float> grad) const {
    if (!mask.empty())
      for (size_t i = 0; i < mask.size(); ++i)
        if (mask[i]) grad[i] = 0.0f;
    if (setting.w_bits == 1) {
      for (size_t i = 0; i < grad.size(); ++i)
        if (std::abs(master[i]) > 1.0f) grad[i] = 0.0f;
    } else if (clips()) {
      // minmax scales always cover every weight (amax = max |w|); only mse clips.
      const int64_t qmax = (int64_t{1} << (setting.w_bits - 1)) - 1;
      const int64_t O = layout.out_channels, R = layout.row_length();
      const auto& g = setting.granularity;
      const int64_t per_row = g.kind == compressors::GranularityKind::kGroup
                                  ? (R + g.group_size - 1) / g.group_size
                                  : 1;
      for (int64_t o = 0; o < O; ++o) {
        for (int64_t r = 0; r < R; ++r) {
          int64_t group = 0;
          if (g.kind == compressors::GranularityKind::kPerChannel) group = o;
          if (g.kind == compressors::GranularityKind::kGroup)
            group = o * per_row + r / g.group_size;
          const int64_t i = layout.index(o, r);
          if (std::abs(static_cast<double>(master[i])) >
              last.scales[group] * static_cast<double>(qmax))
            grad[i] = 0.0f;
        }
      }
    }
  }
};

// One layer input's activation fake quantization with a moving-average range.
struct ActivationQat {
  int bits = 32;
  double ema = 0.01;
  float lo = 0.0f, hi = 0.0f;
  compressors::ActivationQuantParams params;  // of the last forward

  void forward(model::Tensor& x, bool training) {
    if (bits == 16) {
      params = compressors::activation_quant_params(0, 0, 16);
      compressors::fake_quantize_activations(x.f32, params);
      return;
    }
    if (training && !x.f32.empty()) {
      const auto [mn, mx] = std::minmax_element(x.f32.begin(), x.f32.end());
      lo = static_cast<float>((1.0 - ema) * lo + ema * *mn);
      hi = static_cast<float>((1.0 - ema) * hi + ema * *mx);
    }
    params = compressors::activation_quant_params(lo, hi, bits);
    compressors::fake_quantize_activations(x.f32, params);
  }

  // PyTorch's FakeQuantize gradient: pass where round(x / scale) + zero_point lies in [0, 2^b - 1].
  void backward(const model::Tensor& original, model::Tensor& grad) const {
    if (bits == 16) return;
    const double qmax = static_cast<double>((int64_t{1} << bits) - 1);
    const double zp = static_cast<double>(params.zero_point);
    for (size_t i = 0; i < grad.f32.size(); ++i) {
      const double q =
          compressors::round_half_even(static_cast<double>(original.f32[i]) / params.scale) + zp;
      if (q < 0.0 || q > qmax) grad.f32[i] = 0.0f;
    }
  }
};

model::OptimizerOptions optimizer_options(const compressors::OptimizerSpec& o) {
  model::OptimizerOptions opt;
  switch (o.kind) {
    case compressors::OptimizerKind::kAdam:
      opt.kind = model::OptimizerOptions::Kind::kAdam;
      break;
    case compressors::OptimizerKind::kAdamW:
      opt.kind = model::OptimizerOptions::Kind::kAdamW;
      break;
    case compressors::OptimizerKind::kSgd:
      opt.kind = model::OptimizerOptions::Kind::kSgd;
      break;
  }
  opt.momentum = o.momentum;
  opt.nesterov = o.nesterov;
  opt.weight_decay = o.weight_decay;
  return opt;
}

model::LrSchedule lr_schedule(const compressors::DistillationSpec& spec, int64_t total_steps) {
  model::LrSchedule s;
  switch (spec.schedule.kind) {
    case compressors::ScheduleKind::kConstant:
      s.kind = model::LrSchedule::Kind::kConstant;
      break;
    case compressors::ScheduleKind::kStep:
      s.kind = model::LrSchedule::Kind::kStep;
      break;
    case compressors::ScheduleKind::kCosine:
      s.kind = model::LrSchedule::Kind::kCosine;
      break;
  }
  s.base_lr = spec.lr;
  s.warmup_steps = spec.schedule.warmup_steps;
  s.total_steps = std::max<int64_t>(total_steps, spec.schedule.warmup_steps + 1);
  s.step_size = spec.schedule.step_size;
  s.gamma = spec.schedule.gamma;
  return s;
}

// Gathers samples perm[begin, begin + count) into one batch tensor and label vector.
void gather_batch(const model::Dataset& data, const std::vector<int64_t>& perm, int64_t begin,
                  int64_t count, model::Tensor& x, std::vector<int64_t>& labels) {
  const int64_t per = model::shape_numel(data.sample_shape);
  x.dtype = model::DType::kFloat32;
  x.shape = data.sample_shape;
  x.shape.insert(x.shape.begin(), count);
  x.f32.resize(static_cast<size_t>(count * per));
  labels.resize(data.labelled() ? static_cast<size_t>(count) : 0);
  for (int64_t i = 0; i < count; ++i) {
    const int64_t s = perm[begin + i];
    std::copy_n(data.images.begin() + s * per, per, x.f32.begin() + i * per);
    if (data.labelled()) labels[i] = data.labels[s];
  }
}

double eval_accuracy(model::Trainer& trainer, const model::Dataset& data, int64_t batch) {
  if (!data.labelled()) return -1.0;
  int64_t correct = 0;
  const int64_t n = data.size();
  for (int64_t b = 0; b < n; b += batch) {
    const int64_t count = std::min(batch, n - b);
    const model::Tensor x = data.batch(b, count);
    const model::Tensor& logits = trainer.forward(x, model::Trainer::Mode::kEval);
    correct += model::count_correct(
        logits, std::span<const int64_t>(data.labels.data() + b, static_cast<size_t>(count)));
  }
  return n > 0 ? static_cast<double>(correct) / static_cast<double>(n) : 0.0;
}

}  // namespace

compressors::DistillationSpec distillation_or_default(const compressors::Recipe& recipe) {
  if (recipe.distillation) return *recipe.distillation;
  compressors::DistillationSpec d;
  d.epochs = 1;
  return d;
}

nlohmann::json FinetuneResult::to_json() const {
  nlohmann::json ep = nlohmann::json::array();
  for (const auto& e : epochs) {
    nlohmann::json j = {{"epoch", e.epoch},
                        {"loss", e.loss},
                        {"train_accuracy", e.train_accuracy},
                        {"seconds", e.seconds},
                        {"images_per_second", e.images_per_second}};
    if (e.eval_accuracy >= 0) j["eval_accuracy"] = e.eval_accuracy;
    ep.push_back(j);
  }
  return {{"epochs", ep},
          {"steps", steps},
          {"images", images},
          {"seconds", seconds},
          {"interrupted", interrupted}};
}

FinetuneResult finetune(const model::Graph& graph, const compressors::Recipe& recipe,
                        const model::Dataset& train, const compressors::DistillationSpec& spec,
                        const FinetuneOptions& options) {
  const auto t_start = Clock::now();
  const model::LayerTable table = model::build_layer_table(graph);
  compressors::validate_recipe(recipe, table);
  model::check_dataset_matches_model(train, graph);
  if (spec.alpha < 1.0 && !train.labelled())
    throw std::invalid_argument(
        "fine-tuning data '" + train.name +
        "' has no labels; use distillation alpha 1 (label-free) or a labelled set");
  if (spec.batch_size < 1) throw std::invalid_argument("distillation.batch_size must be >= 1");
  if (train.size() < 1)
    throw std::invalid_argument("fine-tuning data '" + train.name + "' is empty");

  model::TrainerOptions trainer_options;
  trainer_options.threads = options.threads;
  model::Trainer trainer(graph, trainer_options);
  auto& params = trainer.parameters();

  // Starting activation ranges: the same calibration pass as post-training quantization.
  bool any_activation = false;
  for (const auto& l : table.layers) {
    const int a = recipe.setting_for(l.name).a_bits;
    any_activation = any_activation || a == 4 || a == 8;
  }
  std::map<size_t, compressors::ActivationQuantParams> calibrated;
  if (any_activation) {
    compressors::CompressedModel ptq = compressors::apply_recipe(graph, table, recipe);
    EvaluationOptions eo;
    eo.threads = options.threads;
    calibrate_activations(ptq, train, options.calibration_samples, eo);
    calibrated = ptq.activations;
  }

  // Weight and activation hooks. Held by unique_ptr so the lambdas' pointers stay valid.
  std::vector<std::unique_ptr<WeightQat>> weight_qat;
  std::map<size_t, std::unique_ptr<ActivationQat>> act_qat;  // by node index
  for (const auto& l : table.layers) {
    const LayerSetting& s = recipe.setting_for(l.name);
    if (s.a_bits != 32) {
      auto a = std::make_unique<ActivationQat>();
      a->bits = s.a_bits;
      a->ema = options.activation_ema;
      if (s.a_bits != 16) {
        const auto& p = calibrated.at(l.node_index);
        a->lo = p.lo;
        a->hi = p.hi;
      }
      ActivationQat* ap = a.get();
      trainer.set_input_transform(
          l.name,
          model::InputTransform{
              .forward = [ap](model::Tensor& x, bool training) { ap->forward(x, training); },
              .backward = [ap](const model::Tensor& original,
                               model::Tensor& grad) { ap->backward(original, grad); }});
      act_qat[l.node_index] = std::move(a);
    }
    if (s.w_bits == 32 && s.prune.kind == PruneKind::kNone) continue;
    const int wi = trainer.find_parameter(l.weight_name);
    if (wi < 0)
      throw std::invalid_argument("layer " + l.name + ": weight '" + l.weight_name +
                                  "' is not a trainable parameter");
    auto q = std::make_unique<WeightQat>();
    q->name = l.name;
    q->setting = s;
    q->layout = compressors::WeightLayout::from_layer(l);
    q->bias_param = l.bias_name.empty() ? -1 : trainer.find_parameter(l.bias_name);
    // Fixed masks from the starting weights (rule 1: prune first); pruned masters become 0.
    std::vector<float>& w = params[wi].value.f32;
    switch (s.prune.kind) {
      case PruneKind::kNone:
        break;
      case PruneKind::kUnstructured:
        compressors::prune_unstructured(w, s.prune.ratio, &q->mask);
        break;
      case PruneKind::kChannel:
        q->pruned_channels = compressors::prune_channels(w, q->layout, s.prune.ratio, &q->mask);
        break;
      case PruneKind::kNM:
        compressors::prune_n_m(w, q->layout, s.prune.n, s.prune.m, &q->mask);
        break;
    }
    if (q->bias_param >= 0)
      for (int64_t o : q->pruned_channels) params[q->bias_param].value.f32.at(o) = 0.0f;
    WeightQat* qp = q.get();
    trainer.set_weight_transform(
        l.name,
        model::WeightTransform{
            .forward = [qp](const model::Tensor& master,
                            model::Tensor& effective) { qp->forward(master.f32, effective.f32); },
            .backward = [qp](const model::Tensor& master, const model::Tensor&,
                             model::Tensor& grad) { qp->backward(master.f32, grad.f32); }});
    weight_qat.push_back(std::move(q));
  }

  const int64_t n_epoch =
      spec.samples > 0 ? std::min<int64_t>(spec.samples, train.size()) : train.size();
  const int64_t steps_per_epoch = (n_epoch + spec.batch_size - 1) / spec.batch_size;
  const int64_t total_steps = steps_per_epoch * spec.epochs;
  model::Optimizer optimizer(optimizer_options(spec.optimizer));
  const model::LrSchedule schedule = lr_schedule(spec, total_steps);
  schedule.validate();

  const bool distill = spec.alpha > 0.0;
  std::unique_ptr<model::Executor> teacher;
  if (distill)
    teacher = std::make_unique<model::Executor>(graph,
                                                model::ExecutorOptions{.threads = options.threads});
  const model::DistillationOptions kd{.temperature = spec.temperature, .alpha = spec.alpha};

  FinetuneResult result;
  model::Tensor x, grad;
  std::vector<int64_t> labels;
  int64_t step = 0;
  double train_seconds = 0.0;
  for (int epoch = 0; epoch < spec.epochs && !result.interrupted; ++epoch) {
    const auto t_epoch = Clock::now();
    const std::vector<int64_t> perm = model::epoch_permutation(train.size(), options.seed, epoch);
    double loss_sum = 0.0;
    int64_t correct = 0, seen = 0;
    for (int64_t b = 0; b < steps_per_epoch; ++b) {
      const int64_t begin = b * spec.batch_size;
      const int64_t count = std::min(spec.batch_size, n_epoch - begin);
      gather_batch(train, perm, begin, count, x, labels);
      const model::Tensor& logits = trainer.forward(x, model::Trainer::Mode::kTrain);
      double loss;
      if (distill) {
        const model::Tensor teacher_logits = teacher->run({x}).at(0);
        loss = model::distillation_loss(logits, teacher_logits, labels, kd, &grad);
      } else {
        loss = model::cross_entropy(logits, labels, &grad);
      }
      if (!labels.empty()) correct += model::count_correct(logits, labels);
      trainer.backward(grad);
      for (const auto& q : weight_qat)
        if (q->bias_param >= 0)
          for (int64_t o : q->pruned_channels) params[q->bias_param].grad.f32.at(o) = 0.0f;
      optimizer.step(params, schedule.lr_at(step));
      ++step;
      seen += count;
      loss_sum += loss * static_cast<double>(count);
      const bool last = b + 1 == steps_per_epoch;
      const bool stop = options.stop && options.stop->load();
      if (options.progress &&
          (last || stop || (options.progress_every > 0 && (b + 1) % options.progress_every == 0))) {
        FinetuneProgress p;
        p.epoch = epoch + 1;
        p.epochs = spec.epochs;
        p.step = b + 1;
        p.steps_per_epoch = steps_per_epoch;
        p.loss = loss_sum / static_cast<double>(seen);
        p.train_accuracy =
            labels.empty() ? 0.0 : static_cast<double>(correct) / static_cast<double>(seen);
        const double elapsed = train_seconds + seconds_since(t_epoch);
        p.images_per_second = static_cast<double>(seen) / std::max(1e-9, seconds_since(t_epoch));
        p.eta_seconds =
            elapsed / static_cast<double>(step) * static_cast<double>(total_steps - step);
        p.epoch_end = last;
        options.progress(p);
      }
      if (stop) {
        result.interrupted = true;
        break;
      }
    }
    FinetuneEpoch e;
    e.epoch = epoch + 1;
    e.seconds = seconds_since(t_epoch);
    train_seconds += e.seconds;
    e.loss = seen ? loss_sum / static_cast<double>(seen) : 0.0;
    e.train_accuracy =
        seen && train.labelled() ? static_cast<double>(correct) / static_cast<double>(seen) : 0.0;
    e.images_per_second = static_cast<double>(seen) / std::max(1e-9, e.seconds);
    if (options.eval_data && !result.interrupted)
      e.eval_accuracy = eval_accuracy(trainer, *options.eval_data, options.eval_batch);
    result.epochs.push_back(e);
    result.images += seen;
  }
  result.steps = step;

  // The deliverable: trained parameters, with every compressed layer's effective weight.
  result.graph = graph;
  trainer.write_parameters(result.graph);
  for (const auto& q : weight_qat) {
    const model::LayerInfo& l = table.layers.at(model::find_layer(table, q->name));
    model::Tensor* w = result.graph.find_initializer(l.weight_name);
    const std::vector<float> master = w->f32;
    q->forward(master, w->f32);
    // The mse clipping amax (amax * (1 - 0.01 i)) is not a float, so quantizing the result once
    // more can move weights by an ulp; a second pass lands on float scales and is a fixed point.
    if (q->clips())
      compressors::quantize_weights(w->f32, q->layout, q->setting.w_bits, q->setting.granularity,
                                    q->setting.w_calibration);
  }
  result.compressed = compressors::apply_recipe(result.graph, table, recipe,
                                                compressors::ApplyOptions{.keep_quantized = true});
  for (const auto& [node, a] : act_qat)
    result.compressed.activations[node] =
        compressors::activation_quant_params(a->lo, a->hi, a->bits);
  result.seconds = seconds_since(t_start);
  return result;
}

}  // namespace compsearch::evaluators
