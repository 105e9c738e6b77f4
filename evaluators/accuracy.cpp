// Accuracy, agreement, KL divergence and activation calibration on top of model::Executor.
#include "evaluators/accuracy.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <mutex>
#include <stdexcept>
#include <string>

#include "model/executor.h"

namespace compsearch::evaluators {

namespace {

int64_t sample_count(const model::Dataset& data, int64_t limit) {
  if (limit == 0 || limit < -1)
    throw std::invalid_argument("limit must be >= 1, or -1 for all samples, got " +
                                std::to_string(limit));
  const int64_t n = data.size();
  return limit >= 0 ? std::min(n, limit) : n;
}

int64_t argmax_row(const float* row, int64_t classes) {
  int64_t best = 0;
  for (int64_t c = 1; c < classes; ++c)
    if (row[c] > row[best]) best = c;
  return best;
}

// log-softmax of one row, in double.
void log_softmax(const float* row, int64_t classes, std::vector<double>& out) {
  out.resize(classes);
  double m = -std::numeric_limits<double>::infinity();
  for (int64_t c = 0; c < classes; ++c) m = std::max(m, static_cast<double>(row[c]));
  double s = 0.0;
  for (int64_t c = 0; c < classes; ++c) s += std::exp(static_cast<double>(row[c]) - m);
  const double lse = m + std::log(s);
  for (int64_t c = 0; c < classes; ++c) out[c] = static_cast<double>(row[c]) - lse;
}

}  // namespace

void check_evaluation_options(const EvaluationOptions& options) {
  if (options.batch < 1)
    throw std::invalid_argument("batch size must be >= 1, got " + std::to_string(options.batch));
  if (options.limit == 0 || options.limit < -1)
    throw std::invalid_argument("limit must be >= 1, or -1 for all samples, got " +
                                std::to_string(options.limit));
}

void check_evaluation_data(const model::Dataset& data, int64_t classes, int64_t samples) {
  const int64_t per = model::shape_numel(data.sample_shape);
  const int64_t m = std::min<int64_t>(samples, data.size());
  for (int64_t i = 0; i < m * per; ++i) {
    if (!std::isfinite(data.images[static_cast<size_t>(i)]))
      throw std::invalid_argument("dataset " + data.name + ": sample " + std::to_string(i / per) +
                                  " holds a NaN or infinite value (element " +
                                  std::to_string(i % per) + ")");
  }
  if (!data.labelled()) return;
  const int64_t n = std::min<int64_t>(samples, static_cast<int64_t>(data.labels.size()));
  for (int64_t i = 0; i < n; ++i) {
    const int64_t y = data.labels[i];
    if (y < 0 || y >= classes)
      throw std::invalid_argument(
          "dataset " + data.name + ": label " + std::to_string(y) + " of sample " +
          std::to_string(i) + " is outside the model's classes 0.." + std::to_string(classes - 1));
  }
}

std::vector<float> run_model(
    const model::Graph& graph, const model::Dataset& data,
    const std::map<size_t, compressors::ActivationQuantParams>* activations,
    const EvaluationOptions& options, int64_t& classes) {
  check_evaluation_options(options);
  model::ExecutorOptions eo{options.threads};
  eo.int8 = options.int8;
  model::Executor exec(graph, eo);
  if (activations && !activations->empty()) {
    exec.set_layer_input_hook([activations](size_t node, model::Tensor& x) {
      auto it = activations->find(node);
      if (it != activations->end()) compressors::fake_quantize_activations(x.f32, it->second);
    });
  }
  const int64_t n = sample_count(data, options.limit);
  std::vector<float> out;
  classes = 0;
  const int64_t batch = std::max<int64_t>(1, options.batch);
  for (int64_t b = 0; b < n; b += batch) {
    const int64_t count = std::min(batch, n - b);
    const auto outputs = exec.run({data.batch(b, count)});
    const model::Tensor& y = outputs.at(0);
    const int64_t per = y.numel() / std::max<int64_t>(1, count);
    if (classes == 0) {
      classes = per;
      out.reserve(static_cast<size_t>(n * classes));
    } else if (per != classes) {
      throw std::runtime_error("model output size changed between batches");
    }
    out.insert(out.end(), y.f32.begin(), y.f32.end());
  }
  return out;
}

bool runs_int8(const compressors::Recipe& recipe, const model::LayerTable& table,
               const EvaluationOptions& options) {
  if (!options.int8 || !model::int8_kernels_available()) return false;
  return std::any_of(table.layers.begin(), table.layers.end(), [&](const model::LayerInfo& l) {
    const auto& s = recipe.setting_for(l.name);
    return s.w_bits <= 8 && (s.a_bits == 4 || s.a_bits == 8);
  });
}

EvaluationResult compare_outputs(const std::vector<float>& reference,
                                 const std::vector<float>& candidate, int64_t classes,
                                 const std::vector<int64_t>& labels) {
  if (classes <= 0 || reference.size() != candidate.size() || reference.size() % classes != 0)
    throw std::invalid_argument("compare_outputs: reference has " +
                                std::to_string(reference.size()) + " values, candidate " +
                                std::to_string(candidate.size()) + ", classes " +
                                std::to_string(classes));
  const int64_t n = static_cast<int64_t>(reference.size()) / classes;
  EvaluationResult r;
  r.samples = n;
  if (n == 0) return r;
  int64_t correct = 0, agree = 0;
  double kl = 0.0;
  std::vector<double> lp, lq;
  for (int64_t i = 0; i < n; ++i) {
    const float* a = reference.data() + i * classes;
    const float* b = candidate.data() + i * classes;
    const int64_t pa = argmax_row(a, classes), pb = argmax_row(b, classes);
    agree += pa == pb;
    if (!labels.empty()) correct += pb == labels.at(i);
    log_softmax(a, classes, lp);
    log_softmax(b, classes, lq);
    double k = 0.0;
    for (int64_t c = 0; c < classes; ++c) k += std::exp(lp[c]) * (lp[c] - lq[c]);
    kl += std::max(0.0, k);  // rounding can make a zero divergence slightly negative
  }
  r.accuracy =
      labels.empty() ? std::numeric_limits<double>::quiet_NaN() : static_cast<double>(correct) / n;
  r.agreement = static_cast<double>(agree) / n;
  r.kl = kl / n;
  return r;
}

void calibrate_activations(compressors::CompressedModel& cm, const model::Dataset& calibration,
                           int64_t samples, const EvaluationOptions& options) {
  std::map<size_t, int> bits_at;
  for (const auto& l : cm.table.layers) {
    const int a = cm.recipe.setting_for(l.name).a_bits;
    if (a == 16) cm.activations[l.node_index] = compressors::activation_quant_params(0, 0, 16);
    if (a == 4 || a == 8) bits_at[l.node_index] = a;
  }
  if (bits_at.empty()) return;
  std::map<size_t, compressors::ActivationObserver> observers;
  for (const auto& [node, bits] : bits_at) {
    (void)bits;
    observers.emplace(node, compressors::ActivationObserver());
  }
  model::Executor exec(cm.graph, model::ExecutorOptions{options.threads});
  // The hook is called from the thread running the node; a mutex keeps observers consistent
  // whatever the executor does inside.
  std::mutex mu;
  exec.set_layer_input_hook([&](size_t node, model::Tensor& x) {
    auto it = observers.find(node);
    if (it == observers.end()) return;
    std::lock_guard<std::mutex> lock(mu);
    it->second.observe(x.f32);
  });
  const int64_t n = std::min(calibration.size(), samples);
  if (n <= 0)
    throw std::invalid_argument("calibration set '" + calibration.name + "' has no samples");
  const int64_t batch = std::max<int64_t>(1, options.batch);
  for (int64_t b = 0; b < n; b += batch) exec.run({calibration.batch(b, std::min(batch, n - b))});
  for (const auto& [node, bits] : bits_at) {
    cm.activations[node] = observers.at(node).params(bits, cm.recipe.activation_calibration,
                                                     cm.recipe.activation_percentile);
  }
}

compressors::ActivationQuantParams ReferenceActivations::params(
    const std::string& layer, int bits, compressors::ActivationCalibration method,
    double percentile) const {
  const auto key = std::make_tuple(layer, bits, static_cast<int>(method), percentile);
  {
    std::lock_guard<std::mutex> lock(cache_->mu);
    auto it = cache_->params.find(key);
    if (it != cache_->params.end()) return it->second;
  }
  const auto o = observers.find(layer);
  if (o == observers.end())
    throw std::invalid_argument("no reference activation statistics for layer " + layer);
  const auto p = o->second.params(bits, method, percentile);
  std::lock_guard<std::mutex> lock(cache_->mu);
  cache_->params.emplace(key, p);
  return p;
}

ReferenceActivations observe_reference_activations(const model::Graph& graph,
                                                   const model::LayerTable& table,
                                                   const model::Dataset& calibration,
                                                   int64_t samples,
                                                   const EvaluationOptions& options) {
  std::map<size_t, std::string> name_of;
  ReferenceActivations result;
  auto& observers = result.observers;
  for (const auto& l : table.layers) {
    name_of[l.node_index] = l.name;
    observers.emplace(l.name, compressors::ActivationObserver());
  }
  model::Executor exec(graph, model::ExecutorOptions{options.threads});
  std::mutex mu;
  exec.set_layer_input_hook([&](size_t node, model::Tensor& x) {
    auto it = name_of.find(node);
    if (it == name_of.end()) return;
    std::lock_guard<std::mutex> lock(mu);
    observers.at(it->second).observe(x.f32);
  });
  const int64_t n = std::min(calibration.size(), samples);
  if (n <= 0)
    throw std::invalid_argument("calibration set '" + calibration.name + "' has no samples");
  const int64_t batch = std::max<int64_t>(1, options.batch);
  for (int64_t b = 0; b < n; b += batch) exec.run({calibration.batch(b, std::min(batch, n - b))});
  return result;
}

void calibrate_from_reference(compressors::CompressedModel& cm,
                              const ReferenceActivations& reference) {
  for (const auto& l : cm.table.layers) {
    const int a = cm.recipe.setting_for(l.name).a_bits;
    if (a == 16) cm.activations[l.node_index] = compressors::activation_quant_params(0, 0, 16);
    if (a != 4 && a != 8) continue;
    cm.activations[l.node_index] = reference.params(l.name, a, cm.recipe.activation_calibration,
                                                    cm.recipe.activation_percentile);
  }
}

EvaluationResult evaluate_model(const model::Graph& graph, const model::Dataset& data,
                                const EvaluationOptions& options) {
  int64_t classes = 0;
  const auto out = run_model(graph, data, nullptr, options, classes);
  check_evaluation_data(data, classes, sample_count(data, options.limit));
  std::vector<int64_t> labels;
  if (data.labelled())
    labels.assign(data.labels.begin(), data.labels.begin() + sample_count(data, options.limit));
  return compare_outputs(out, out, classes, labels);
}

EvaluationResult evaluate_compressed(const model::Graph& reference,
                                     const compressors::CompressedModel& cm,
                                     const model::Dataset& data, const EvaluationOptions& options,
                                     const std::vector<float>* reference_outputs) {
  if (cm.needs_calibration())
    throw std::logic_error(
        "evaluate_compressed: activation quantization needs calibrate_activations first");
  int64_t classes = 0, ref_classes = 0;
  std::vector<float> own_ref;
  if (!reference_outputs) {
    own_ref = run_model(reference, data, nullptr, options, ref_classes);
    reference_outputs = &own_ref;
  }
  const auto out = run_model(cm.graph, data, &cm.activations, options, classes);
  check_evaluation_data(data, classes, sample_count(data, options.limit));
  std::vector<int64_t> labels;
  if (data.labelled())
    labels.assign(data.labels.begin(), data.labels.begin() + sample_count(data, options.limit));
  return compare_outputs(*reference_outputs, out, classes, labels);
}

}  // namespace compsearch::evaluators
