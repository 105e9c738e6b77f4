// The compression search space (see search_space.h).
#include "experiments/search_space.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <regex>
#include <set>
#include <stdexcept>

#include "search/study.h"

namespace compsearch::experiments {

namespace {

using nlohmann::json;

// Union-find over layer indices.
struct Groups {
  std::vector<size_t> parent;
  explicit Groups(size_t n) : parent(n) { std::iota(parent.begin(), parent.end(), 0); }
  size_t find(size_t i) { return parent[i] == i ? i : parent[i] = find(parent[i]); }
  void unite(size_t a, size_t b) {
    a = find(a);
    b = find(b);
    if (a != b) parent[std::max(a, b)] = std::min(a, b);  // the first layer names the group
  }
};

bool is_nm(const std::string& kind) { return kind.find(':') != std::string::npos; }

std::pair<int, int> nm_of(const std::string& kind) {
  const auto colon = kind.find(':');
  return {std::stoi(kind.substr(0, colon)), std::stoi(kind.substr(colon + 1))};
}

// Choices of `base` replaced by the non-empty ones of `over`.
LayerChoices overlay(const LayerChoices& base, const LayerChoices& over) {
  LayerChoices c = base;
  if (!over.w_bits.empty()) c.w_bits = over.w_bits;
  if (!over.granularity.empty()) c.granularity = over.granularity;
  if (!over.prune_kind.empty()) c.prune_kind = over.prune_kind;
  if (!over.a_bits.empty()) c.a_bits = over.a_bits;
  return c;
}

std::vector<int> intersect(const std::vector<int>& a, const std::vector<int>& b) {
  std::vector<int> out;
  for (int x : a)
    if (std::find(b.begin(), b.end(), x) != b.end()) out.push_back(x);
  return out;
}

std::vector<std::string> intersect(const std::vector<std::string>& a,
                                   const std::vector<std::string>& b) {
  std::vector<std::string> out;
  for (const auto& x : a)
    if (std::find(b.begin(), b.end(), x) != b.end()) out.push_back(x);
  return out;
}

template <typename T>
json choice_json(const T& v) {
  return json(v);
}

// Suggests `name` among `choices` (fixed when there is only one).
template <typename T>
T suggest_choice(search::Trial& trial, const std::string& name, const std::vector<T>& choices,
                 Params& out) {
  if (choices.size() == 1) return choices[0];
  std::vector<json> js;
  for (const auto& c : choices) js.push_back(choice_json(c));
  const json v = trial.suggest_categorical(name, js);
  out[name] = v;
  return v.get<T>();
}

template <typename T>
T param_or_first(const Params& params, const std::string& name, const std::vector<T>& choices) {
  const auto it = params.find(name);
  if (it == params.end() || choices.size() == 1) return choices.at(0);
  return it->second.get<T>();
}

}  // namespace

std::vector<std::vector<size_t>> add_tied_layers(const model::Graph& graph,
                                                 const model::LayerTable& table) {
  std::map<size_t, size_t> layer_of_node;  // node index -> layer index
  for (size_t i = 0; i < table.layers.size(); ++i) layer_of_node[table.layers[i].node_index] = i;
  Groups groups(table.layers.size());
  // Layers feeding each value through layout-keeping ops (memoised per node).
  std::map<size_t, std::vector<size_t>> feeding;
  std::function<std::vector<size_t>(const std::string&)> sources = [&](const std::string& value) {
    const auto prod = graph.producer(value);
    if (!prod) return std::vector<size_t>{};
    if (auto it = feeding.find(*prod); it != feeding.end()) return it->second;
    const model::Node& n = graph.nodes[*prod];
    std::vector<size_t> out;
    if (auto l = layer_of_node.find(*prod); l != layer_of_node.end()) {
      out.push_back(l->second);
    } else if (n.op_type == "Relu" || n.op_type == "Clip" || n.op_type == "BatchNormalization" ||
               n.op_type == "Identity" || n.op_type == "Dropout") {
      if (!n.inputs.empty()) out = sources(n.inputs[0]);
    } else if (n.op_type == "Add") {
      for (const auto& in : n.inputs) {
        if (graph.find_initializer(in)) continue;
        auto s = sources(in);
        out.insert(out.end(), s.begin(), s.end());
      }
      for (size_t k = 1; k < out.size(); ++k) groups.unite(out[0], out[k]);
    }
    feeding[*prod] = out;
    return out;
  };
  for (const auto& n : graph.nodes) {
    if (n.op_type == "Add" && !n.outputs.empty()) sources(n.outputs[0]);
  }
  std::map<size_t, std::vector<size_t>> by_root;
  for (size_t i = 0; i < table.layers.size(); ++i) by_root[groups.find(i)].push_back(i);
  std::vector<std::vector<size_t>> out;
  for (auto& [root, members] : by_root)
    if (members.size() > 1) out.push_back(members);
  return out;
}

CompressionSpace::CompressionSpace(const model::Graph& graph, const model::LayerTable& table,
                                   const SpaceConfig& config)
    : ratio_(config.prune_ratio), kd_(config.distillation) {
  const size_t n = table.layers.size();
  std::map<std::string, size_t> index;
  for (size_t i = 0; i < n; ++i) {
    index[table.layers[i].name] = i;
    layer_names_.push_back(table.layers[i].name);
  }
  auto known = [&](const std::string& name, const std::string& key) {
    if (!index.count(name)) {
      std::string list;
      for (size_t i = 0; i < n && i < 12; ++i) list += (i ? ", " : "") + table.layers[i].name;
      if (n > 12) list += ", ...";
      throw std::invalid_argument(key + ": the model has no layer \"" + name +
                                  "\" (layers: " + list + ")");
    }
    return index[name];
  };

  std::vector<bool> frozen(n, false);
  for (const auto& f : config.freeze) frozen[known(f, ".space.freeze")] = true;
  for (size_t i = 0; i < n; ++i)
    if (frozen[i]) frozen_.push_back(table.layers[i].name);

  // Per-layer choices: global, overlaid by .space.layers, then first/last >= 8 bits.
  std::vector<LayerChoices> choice(n, config.choices);
  for (auto& c : choice) {
    if (c.w_bits.empty()) c.w_bits = {32};
    if (c.granularity.empty()) c.granularity = {"per_channel"};
    if (c.prune_kind.empty()) c.prune_kind = {"none"};
    if (c.a_bits.empty()) c.a_bits = {32};
  }
  for (const auto& [name, over] : config.layer_overrides) {
    const size_t i = known(name, ".space.layers");
    choice[i] = overlay(choice[i], over);
  }
  if (config.keep_first_last_8bit && n > 0) {
    for (size_t i : {size_t{0}, n - 1}) {
      std::vector<int> w, a;
      for (int b : choice[i].w_bits)
        if (b >= 8) w.push_back(b);
      for (int b : choice[i].a_bits)
        if (b >= 8) a.push_back(b);
      choice[i].w_bits = w.empty() ? std::vector<int>{8} : w;
      choice[i].a_bits = a.empty() ? std::vector<int>{32} : a;
    }
  }
  // Eligibility: N:M only where the layer allows it; channel pruning never on the last layer
  // (it would remove model outputs).
  for (size_t i = 0; i < n; ++i) {
    std::vector<std::string> kinds;
    for (const auto& k : choice[i].prune_kind) {
      if (is_nm(k) && !compressors::nm_eligible(table.layers[i], nm_of(k).second)) continue;
      if (k == "channel" && i + 1 == n) continue;
      kinds.push_back(k);
    }
    if (kinds.empty()) kinds = {"none"};
    choice[i].prune_kind = kinds;
  }

  // Quant slots: explicit tie groups.
  Groups quant(n);
  for (size_t g = 0; g < config.tie.size(); ++g) {
    const auto& tg = config.tie[g];
    const std::string key = ".space.tie[" + std::to_string(g) + "]";
    std::vector<size_t> members;
    if (!tg.regex.empty()) {
      const std::regex re(tg.regex);
      for (size_t i = 0; i < n; ++i)
        if (std::regex_match(table.layers[i].name, re)) members.push_back(i);
      if (members.empty())
        throw std::invalid_argument(key + ".regex: \"" + tg.regex + "\" matches no layer");
    } else {
      for (const auto& name : tg.layers) members.push_back(known(name, key));
    }
    for (size_t k = 1; k < members.size(); ++k) quant.unite(members[0], members[k]);
  }
  Groups prune = quant;
  for (const auto& group : add_tied_layers(graph, table))
    for (size_t k = 1; k < group.size(); ++k) prune.unite(group[0], group[k]);

  std::map<size_t, size_t> quant_slot_of_root, prune_slot_of_root;
  for (size_t i = 0; i < n; ++i) {
    if (frozen[i]) continue;
    const size_t qr = quant.find(i), pr = prune.find(i);
    auto [qit, qnew] = quant_slot_of_root.emplace(qr, quant_.size());
    if (qnew) {
      quant_.push_back(
          {table.layers[i].name, {}, choice[i].w_bits, choice[i].granularity, choice[i].a_bits});
    }
    QuantSlot& qs = quant_[qit->second];
    if (!qs.layers.empty()) {
      qs.w_bits = intersect(qs.w_bits, choice[i].w_bits);
      qs.granularity = intersect(qs.granularity, choice[i].granularity);
      qs.a_bits = intersect(qs.a_bits, choice[i].a_bits);
      if (qs.w_bits.empty() || qs.granularity.empty() || qs.a_bits.empty()) {
        throw std::invalid_argument(
            ".space.tie: layers " + qs.name + " and " + table.layers[i].name +
            " are tied but have no w_bits/granularity/a_bits choice in common");
      }
    }
    qs.layers.push_back(i);
    auto [pit, pnew] = prune_slot_of_root.emplace(pr, prune_.size());
    if (pnew) prune_.push_back({table.layers[i].name, {}, choice[i].prune_kind});
    PruneSlot& ps = prune_[pit->second];
    if (!ps.layers.empty()) {
      ps.kinds = intersect(ps.kinds, choice[i].prune_kind);
      if (ps.kinds.empty()) ps.kinds = {"none"};
    }
    ps.layers.push_back(i);
  }
}

Params CompressionSpace::suggest(search::Trial& trial) const {
  Params p;
  for (const auto& s : quant_) {
    suggest_choice(trial, s.name + ".w_bits", s.w_bits, p);
    suggest_choice(trial, s.name + ".granularity", s.granularity, p);
    suggest_choice(trial, s.name + ".a_bits", s.a_bits, p);
  }
  for (const auto& s : prune_) {
    const std::string kind = suggest_choice(trial, s.name + ".prune_kind", s.kinds, p);
    if ((kind == "unstructured" || kind == "channel") && ratio_.high > ratio_.low) {
      const double v =
          trial.suggest_float(s.name + ".prune_ratio", ratio_.low, ratio_.high, ratio_.step);
      p[s.name + ".prune_ratio"] = v;
    }
  }
  if (!kd_.epochs.empty()) {
    const int epochs = suggest_choice(trial, "kd.epochs", kd_.epochs, p);
    if (epochs > 0) {
      if (!kd_.temperature.empty()) suggest_choice(trial, "kd.temperature", kd_.temperature, p);
      if (!kd_.alpha.empty()) suggest_choice(trial, "kd.alpha", kd_.alpha, p);
      if (!kd_.lr.empty()) suggest_choice(trial, "kd.lr", kd_.lr, p);
    }
  }
  return p;
}

compressors::Recipe CompressionSpace::recipe(const Params& params) const {
  compressors::Recipe r;
  r.default_setting =
      compressors::LayerSetting{};  // fp32: frozen and unlisted layers stay as they are
  std::vector<compressors::LayerSetting> settings(layer_names_.size());
  for (const auto& s : quant_) {
    compressors::LayerSetting ls;
    ls.w_bits = param_or_first(params, s.name + ".w_bits", s.w_bits);
    ls.granularity = compressors::granularity_from_string(
        param_or_first(params, s.name + ".granularity", s.granularity));
    ls.a_bits = param_or_first(params, s.name + ".a_bits", s.a_bits);
    for (size_t i : s.layers) settings[i] = ls;
  }
  for (const auto& s : prune_) {
    const std::string kind = param_or_first(params, s.name + ".prune_kind", s.kinds);
    compressors::PruneSpec spec;
    if (kind == "unstructured" || kind == "channel") {
      spec.kind = kind == "channel" ? compressors::PruneKind::kChannel
                                    : compressors::PruneKind::kUnstructured;
      const auto it = params.find(s.name + ".prune_ratio");
      spec.ratio = it != params.end() ? it->second.get<double>()
                                      : (ratio_.high > ratio_.low ? ratio_.low : ratio_.low);
    } else if (is_nm(kind)) {
      spec.kind = compressors::PruneKind::kNM;
      std::tie(spec.n, spec.m) = nm_of(kind);
      spec.ratio = 1.0 - static_cast<double>(spec.n) / spec.m;
    }
    for (size_t i : s.layers) settings[i].prune = spec;
  }
  for (size_t i = 0; i < layer_names_.size(); ++i) r.layers[layer_names_[i]] = settings[i];
  if (!kd_.epochs.empty()) {
    const int epochs = param_or_first(params, "kd.epochs", kd_.epochs);
    if (epochs > 0) {
      compressors::DistillationSpec d;
      d.epochs = epochs;
      d.samples = kd_.samples;
      if (!kd_.temperature.empty())
        d.temperature = param_or_first(params, "kd.temperature", kd_.temperature);
      if (!kd_.alpha.empty()) d.alpha = param_or_first(params, "kd.alpha", kd_.alpha);
      if (!kd_.lr.empty()) d.lr = param_or_first(params, "kd.lr", kd_.lr);
      r.distillation = d;
    }
  }
  return r;
}

std::vector<std::pair<std::string, search::Distribution>> CompressionSpace::distributions() const {
  std::vector<std::pair<std::string, search::Distribution>> out;
  auto add = [&](const std::string& name, const auto& choices) {
    if (choices.size() < 2) return;
    std::vector<json> js(choices.begin(), choices.end());
    out.emplace_back(name, search::make_categorical(js));
  };
  for (const auto& s : quant_) {
    add(s.name + ".w_bits", s.w_bits);
    add(s.name + ".granularity", s.granularity);
    add(s.name + ".a_bits", s.a_bits);
  }
  for (const auto& s : prune_) {
    add(s.name + ".prune_kind", s.kinds);
    const bool has_ratio = std::any_of(s.kinds.begin(), s.kinds.end(), [](const std::string& k) {
      return k == "unstructured" || k == "channel";
    });
    if (has_ratio && ratio_.high > ratio_.low) {
      out.emplace_back(s.name + ".prune_ratio",
                       search::make_float(ratio_.low, ratio_.high, false, ratio_.step));
    }
  }
  add("kd.epochs", kd_.epochs);
  add("kd.temperature", kd_.temperature);
  add("kd.alpha", kd_.alpha);
  add("kd.lr", kd_.lr);
  return out;
}

double CompressionSpace::size() const {
  double total = 1.0;
  const double ratios = ratio_.high > ratio_.low
                            ? std::floor((ratio_.high - ratio_.low) / ratio_.step + 1e-9) + 1
                            : 1;
  for (const auto& s : quant_)
    total *= double(s.w_bits.size()) * s.granularity.size() * s.a_bits.size();
  for (const auto& s : prune_) {
    double k = 0;
    for (const auto& kind : s.kinds)
      k += (kind == "unstructured" || kind == "channel") ? ratios : 1;
    total *= k;
  }
  if (!kd_.epochs.empty()) total *= kd_.epochs.size();
  return std::min(total, 1e18);
}

}  // namespace compsearch::experiments
