// `measure` command logic. See measure_commands.h.
#include "experiments/measure_commands.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <random>
#include <sstream>

#include "common/machine_info.h"
#include "compressors/apply.h"
#include "compressors/export.h"
#include "evaluators/accuracy.h"
#include "experiments/estimate_commands.h"
#include "experiments/usage_error.h"
#include "model/executor.h"
#include "model/layer_table.h"

namespace compsearch::experiments {

namespace {

double median(std::vector<double> v) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Standard-normal samples of the model's first input, `count` of them.
model::Dataset random_samples(const model::Graph& g, int64_t count, const std::string& label) {
  if (g.inputs.size() != 1)
    throw std::invalid_argument(label + ": measure runs models with one input; this one has " +
                                std::to_string(g.inputs.size()));
  if (g.inputs[0].shape.empty())
    throw std::invalid_argument(label + ": input '" + g.inputs[0].name +
                                "' is a scalar; measure needs a batch dimension");
  model::Dataset d;
  d.name = "random normal inputs";
  d.sample_shape.assign(g.inputs[0].shape.begin() + 1, g.inputs[0].shape.end());
  for (int64_t s : d.sample_shape) {
    if (s < 1)
      throw std::invalid_argument(label + ": input '" + g.inputs[0].name + "' has shape " +
                                  model::shape_to_string(g.inputs[0].shape) +
                                  "; measure needs every dimension but the batch known");
  }
  std::mt19937 rng(1);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  d.images.resize(static_cast<size_t>(count * model::shape_numel(d.sample_shape)));
  for (float& x : d.images) x = nd(rng);
  return d;
}

}  // namespace

MeasureResult run_measure(const MeasureRequest& req) {
  if (req.batch < 1)
    throw UsageError("--batch: value " + std::to_string(req.batch) +
                     " out of range; expected >= 1");
  if (req.repeats < 1)
    throw UsageError("--repeats: value " + std::to_string(req.repeats) +
                     " out of range; expected >= 1");
  if (req.warmup < 0)
    throw UsageError("--warmup: value " + std::to_string(req.warmup) +
                     " out of range; expected >= 0");
  MeasureResult r;
  r.request = req;
  r.machine = machine_line();
  const model::Graph original = model::load_onnx(req.model);
  const model::LayerTable table = model::build_layer_table(original);
  compressors::Recipe recipe;
  if (!req.recipe.empty()) recipe = compressors::load_recipe(req.recipe);
  compressors::ApplyOptions ao;
  ao.keep_quantized = req.int8;
  compressors::CompressedModel cm = compressors::apply_recipe(original, table, recipe, ao);
  const model::Dataset data = random_samples(original, std::max<int64_t>(req.batch, 64), req.model);
  // The graph that runs: with --int8 the QDQ graph (integer kernels where a layer is w8a8),
  // else the compressed float graph (activation quantization is not simulated: a deployed fp32
  // model would not do it either).
  model::Graph graph;
  if (req.int8) {
    if (cm.needs_calibration()) evaluators::calibrate_activations(cm, data, 64);
    graph = compressors::make_qdq_graph(cm);
  } else {
    graph = cm.graph;
  }
  model::ExecutorOptions eo;
  eo.threads = req.threads;
  eo.int8 = req.int8;
  r.threads = model::resolve_threads(req.threads, "--threads");
  r.int8_available = model::int8_kernels_available();
  // Totals from an executor as every other run uses it (a batch of at least `threads` samples is
  // split over threads); the per-layer times from one that times its steps, which runs the
  // batch whole.
  const model::Executor exec_total(graph, eo);
  eo.time_steps = true;
  const model::Executor exec(graph, eo);
  const model::Tensor x = data.batch(0, req.batch);
  for (int i = 0; i < req.warmup; ++i) {
    exec_total.run({x});
    exec.run({x});
  }
  std::vector<double> totals;
  std::map<std::string, std::vector<double>> layer_times;  // by output value (survives QDQ)
  std::vector<double> other;
  std::map<std::string, bool> layer_int8;
  std::map<std::string, std::string> layer_kernel;
  // A layer is found in the run graph by the name of its output value, which recipes and the QDQ
  // rewrite keep.
  std::map<std::string, const model::LayerInfo*> by_output;
  for (const auto& l : table.layers) by_output[original.nodes[l.node_index].outputs.at(0)] = &l;
  for (int i = 0; i < req.repeats; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    exec_total.run({x});
    totals.push_back(
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    exec.run({x});
    double rest = 0.0;
    std::map<std::string, double> this_run;
    for (const auto& st : exec.step_times()) {
      const model::Node& node = graph.nodes[st.node_index];
      const auto it = node.outputs.empty() ? by_output.end() : by_output.find(node.outputs[0]);
      if (it != by_output.end()) {
        this_run[node.outputs[0]] += st.ms;
        layer_int8[node.outputs[0]] = st.int8;
        layer_kernel[node.outputs[0]] = st.kernel;
      } else {
        rest += st.ms;
      }
    }
    for (const auto& [k, ms] : this_run) layer_times[k].push_back(ms);
    other.push_back(rest);
  }
  r.total_ms = median(totals);
  r.other_ms = median(other);
  for (const auto& l : table.layers) {
    MeasuredLayer m;
    m.name = l.name;
    m.op = l.op;
    m.macs = static_cast<double>(l.macs) * req.batch;
    const std::string& out = original.nodes[l.node_index].outputs.at(0);
    m.int8 = layer_int8[out];
    // A layer with no step of its own ran inside the one before it (a depthwise convolution in a
    // 1x1's kernel); its time is that layer's.
    m.kernel = layer_kernel.count(out) ? layer_kernel[out] : "(inside the layer before)";
    m.median_ms = median(layer_times[out]);
    r.layers.push_back(m);
  }
  if (!req.compare_target.empty()) {
    const auto workload = hardware_models::workload_from_graph(original, table);
    const auto e = run_estimate(req.model, workload, recipe, req.compare_target, req.batch);
    r.estimate_ms = e.estimate.latency_ms;
    for (const auto& le : e.estimate.layers) r.layers[le.layer].estimate_ms = le.latency_ms;
  }
  return r;
}

nlohmann::json MeasureResult::to_json() const {
  nlohmann::json j;
  j["model"] = request.model;
  j["recipe"] = request.recipe;
  j["batch"] = request.batch;
  j["threads"] = threads;
  j["repeats"] = request.repeats;
  j["int8"] = request.int8;
  j["int8_available"] = int8_available;
  j["machine"] = machine;
  j["total_ms"] = total_ms;
  double layers_ms = 0.0;
  j["layers"] = nlohmann::json::array();
  for (const auto& l : layers) {
    layers_ms += l.median_ms;
    nlohmann::json lj = {{"name", l.name}, {"op", l.op},         {"macs", l.macs},
                         {"int8", l.int8}, {"kernel", l.kernel}, {"median_ms", l.median_ms}};
    if (l.estimate_ms >= 0) lj["estimate_ms"] = l.estimate_ms;
    j["layers"].push_back(lj);
  }
  j["layers_ms"] = layers_ms;
  j["other_ms"] = other_ms;
  if (estimate_ms >= 0) {
    j["target"] = request.compare_target;
    j["estimate_ms"] = estimate_ms;
    j["error"] = total_ms > 0 ? estimate_ms / total_ms - 1.0 : 0.0;
  }
  return j;
}

std::string MeasureResult::to_text() const {
  std::ostringstream os;
  char buf[256];
  os << "model " << request.model << (request.recipe.empty() ? "" : " with " + request.recipe)
     << ", batch " << request.batch << ", " << threads << " thread(s), "
     << (!request.int8    ? "fp32"
         : int8_available ? "int8 kernels where w8a8"
                          : "fp32 (no int8 kernels: this CPU has no VNNI/AMX)")
     << ", median of " << request.repeats << " runs\n";
  const bool est = estimate_ms >= 0;
  std::snprintf(buf, sizeof buf, "%-32s %-7s %11s %11s%s  %s\n", "layer", "op", "MMACs",
                "measured_ms", est ? "  estimate_ms   error" : "", "kernel");
  os << buf;
  for (const auto& l : layers) {
    std::snprintf(buf, sizeof buf, "%-32s %-7s %11.3f %11.4f", l.name.c_str(),
                  (l.op + (l.int8 ? "/i8" : "")).c_str(), l.macs / 1e6, l.median_ms);
    os << buf;
    if (est && l.estimate_ms >= 0) {
      if (l.median_ms > 0)
        std::snprintf(buf, sizeof buf, " %12.4f %+6.0f%%", l.estimate_ms,
                      100.0 * (l.estimate_ms / l.median_ms - 1.0));
      else  // timed with the layer before (a fused depthwise convolution)
        std::snprintf(buf, sizeof buf, " %12.4f %7s", l.estimate_ms, "-");
      os << buf;
    }
    os << "  " << l.kernel << "\n";
  }
  std::snprintf(buf, sizeof buf, "other ops: %.4f ms; total: %.4f ms", other_ms, total_ms);
  os << buf;
  if (est) {
    std::snprintf(buf, sizeof buf, "; %s estimates %.4f ms (%+.0f%%)",
                  request.compare_target.c_str(), estimate_ms,
                  total_ms > 0 ? 100.0 * (estimate_ms / total_ms - 1.0) : 0.0);
    os << buf;
  }
  os << "\n" << machine << "\n";
  return os.str();
}

}  // namespace compsearch::experiments
