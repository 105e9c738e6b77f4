// inspect / evaluate logic and their JSON and table renderings.
#include "experiments/model_commands.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <sstream>
#include <stdexcept>

#include "experiments/text_table.h"

namespace compsearch::experiments {

namespace {

std::string with_commas(int64_t v) {
  std::string s = std::to_string(v < 0 ? -v : v);
  for (int i = static_cast<int>(s.size()) - 3; i > 0; i -= 3) s.insert(static_cast<size_t>(i), ",");
  return v < 0 ? "-" + s : s;
}

}  // namespace

InspectResult inspect_graph(const model::Graph& graph, const std::string& model_label) {
  return InspectResult{model_label, model::build_layer_table(graph)};
}

nlohmann::json InspectResult::to_json() const {
  nlohmann::json layers = nlohmann::json::array();
  for (const auto& l : table.layers) {
    layers.push_back({{"name", l.name},
                      {"op", l.op},
                      {"weight_shape", l.weight_shape},
                      {"params", l.params},
                      {"macs", l.macs},
                      {"input_elements", l.input_elements},
                      {"output_elements", l.output_elements}});
  }
  return {{"model", model},
          {"layers", layers},
          {"total_params", table.total_params},
          {"total_macs", table.total_macs}};
}

std::string InspectResult::to_text() const {
  const std::vector<std::string> head = {"layer", "op",       "weight shape", "params",
                                         "MACs",  "in elems", "out elems"};
  std::vector<std::vector<std::string>> rows;
  for (const auto& l : table.layers) {
    rows.push_back({l.name, l.op, model::shape_to_string(l.weight_shape), with_commas(l.params),
                    with_commas(l.macs), with_commas(l.input_elements),
                    with_commas(l.output_elements)});
  }
  std::ostringstream out;
  out << model << ": " << table.layers.size() << " layers\n";
  out << text_table(head, rows, 3);
  char buf[160];
  std::snprintf(buf, sizeof buf, "total: %s params (%.2f M), %s MACs per sample (%.3f GMACs)\n",
                with_commas(table.total_params).c_str(), table.total_params / 1e6,
                with_commas(table.total_macs).c_str(), table.total_macs / 1e9);
  out << buf;
  return out.str();
}

EvaluateResult evaluate_graph(const model::Graph& graph, const model::Dataset& data,
                              const evaluators::EvaluationOptions& options,
                              const std::string& model_label) {
  if (!data.labelled()) {
    throw std::invalid_argument("dataset " + data.name + " has no labels; accuracy needs labels");
  }
  if (graph.inputs.size() != 1) {
    throw std::invalid_argument(model_label +
                                ": evaluate needs a model with exactly one input, it has " +
                                std::to_string(graph.inputs.size()));
  }
  evaluators::check_evaluation_options(options);
  model::check_dataset_matches_model(data, graph);
  EvaluateResult r;
  r.model = model_label;
  r.data = data.name;
  const auto t0 = std::chrono::steady_clock::now();
  const evaluators::EvaluationResult e = evaluators::evaluate_model(graph, data, options);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.samples = e.samples;
  r.accuracy = e.accuracy;
  r.correct = static_cast<int64_t>(std::llround(e.accuracy * static_cast<double>(e.samples)));
  return r;
}

nlohmann::json EvaluateResult::to_json() const {
  return {{"model", model},
          {"data", data},
          {"accuracy", accuracy},
          {"correct", correct},
          {"samples", samples},
          {"seconds", seconds},
          {"images_per_second", seconds > 0 ? samples / seconds : 0.0}};
}

std::string EvaluateResult::to_text() const {
  char buf[256];
  std::snprintf(buf, sizeof buf,
                "model:    %s\ndata:     %s\naccuracy: %.2f%% (%lld / %lld correct, top-1)\n"
                "time:     %.2f s (%.0f images/s)\n",
                model.c_str(), data.c_str(), accuracy * 100.0, static_cast<long long>(correct),
                static_cast<long long>(samples), seconds, seconds > 0 ? samples / seconds : 0.0);
  return buf;
}

}  // namespace compsearch::experiments
