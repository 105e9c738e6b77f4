// Export of compressed models: QDQ ONNX, fake-quantized ONNX and safetensors. See export.h.
#include "compressors/export.h"

#include <cstring>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "common/json_nesting.h"

namespace compsearch::compressors {

namespace {

using model::Attribute;
using model::DType;
using model::Node;
using model::Tensor;

Attribute int_attr(int64_t v) {
  Attribute a;
  a.kind = Attribute::Kind::kInt;
  a.i = v;
  return a;
}

// Per-element float32 scales of a group-quantized weight, in storage order.
std::vector<float> element_scales(const WeightLayout& l, const QuantizedWeights& q) {
  std::vector<float> s(static_cast<size_t>(l.numel()));
  const int64_t R = l.row_length();
  const int64_t G = q.granularity.group_size;
  const int64_t per_row = (R + G - 1) / G;
  for (int64_t o = 0; o < l.out_channels; ++o)
    for (int64_t r = 0; r < R; ++r)
      s[l.index(o, r)] = static_cast<float>(q.scales[o * per_row + r / G]);
  return s;
}

std::string unique_name(const model::Graph& g, const std::string& base) {
  std::string name = base;
  for (int i = 1; g.initializers.count(name) || g.value_info.count(name); ++i)
    name = base + "_" + std::to_string(i);
  return name;
}

// Per-axis DequantizeLinear needs opset 13. Raising an opset 11/12 graph to 13 changes two ops
// that our importer accepts: Squeeze/Unsqueeze take `axes` as an input instead of an attribute,
// and Softmax switches from "flatten from axis" to "one axis" (the same for 2-D inputs, which
// we require here).
void upgrade_to_opset13(model::Graph& g) {
  if (g.opset_version >= 13) return;
  for (auto& n : g.nodes) {
    if ((n.op_type == "Squeeze" || n.op_type == "Unsqueeze") && n.has_attr("axes")) {
      const std::string name =
          unique_name(g, n.name.empty() ? n.outputs.at(0) + "_axes" : n.name + "_axes");
      const auto axes = n.attr_ints("axes", {});
      g.initializers[name] = Tensor::ints({static_cast<int64_t>(axes.size())}, axes);
      n.attributes.erase("axes");
      n.inputs.resize(1);
      n.inputs.push_back(name);
    } else if (n.op_type == "Softmax") {
      auto it = g.value_info.find(n.inputs.at(0));
      const int64_t axis = n.attr_int("axis", 1);
      if (it != g.value_info.end() && it->second.shape.size() != 2 &&
          axis != static_cast<int64_t>(it->second.shape.size()) - 1)
        throw std::runtime_error("onnx-qdq export: node " + n.name +
                                 ": Softmax over more than one axis cannot be raised to opset 13");
      n.attributes["axis"] = int_attr(axis);
    }
  }
  g.opset_version = 13;
}

}  // namespace

ExportFormat export_format_from_string(const std::string& s) {
  if (s == "onnx-qdq") return ExportFormat::kOnnxQdq;
  if (s == "onnx") return ExportFormat::kOnnx;
  if (s == "safetensors") return ExportFormat::kSafetensors;
  throw std::invalid_argument("export format: got \"" + s +
                              "\", expected onnx-qdq, onnx or safetensors");
}

std::string export_format_to_string(ExportFormat f) {
  switch (f) {
    case ExportFormat::kOnnxQdq:
      return "onnx-qdq";
    case ExportFormat::kOnnx:
      return "onnx";
    case ExportFormat::kSafetensors:
      return "safetensors";
  }
  return "?";
}

model::Graph make_qdq_graph(const CompressedModel& cm) {
  if (cm.needs_calibration())
    throw std::logic_error("make_qdq_graph: activation quantization is not calibrated yet");
  model::Graph g = cm.graph;
  upgrade_to_opset13(g);
  std::vector<Node> front;                     // weight dequantization, runs first
  std::map<size_t, std::vector<Node>> before;  // activation Q/DQ, just before their layer
  for (const auto& l : cm.table.layers) {
    const LayerSetting& s = cm.recipe.setting_for(l.name);
    auto qit = cm.quantized.find(l.name);
    if (s.w_bits <= 8) {
      if (qit == cm.quantized.end())
        throw std::logic_error("make_qdq_graph: layer " + l.name +
                               " has no integer weights (apply with keep_quantized)");
      const QuantizedWeights& q = qit->second;
      const WeightLayout layout = WeightLayout::from_layer(l);
      const std::string qname = unique_name(g, l.weight_name + "_quantized");
      Tensor qt =
          Tensor::ints(l.weight_shape, std::vector<int64_t>(q.q.begin(), q.q.end()), DType::kInt8);
      g.initializers[qname] = std::move(qt);
      const std::string sname = unique_name(g, l.weight_name + "_scale");
      const std::string zname = unique_name(g, l.weight_name + "_zero_point");
      Node dq;
      dq.op_type = "DequantizeLinear";
      dq.name = l.weight_name + "_DequantizeLinear";
      if (q.granularity.kind == GranularityKind::kGroup) {
        // Blocked dequantization is opset 21: scale 1, then multiply by per-element scales.
        g.initializers[sname] = Tensor::floats({}, {1.0f});
        g.initializers[zname] = Tensor::ints({}, {0}, DType::kInt8);
        const std::string mid = unique_name(g, l.weight_name + "_dequantized");
        const std::string ename = unique_name(g, l.weight_name + "_group_scales");
        g.initializers[ename] = Tensor::floats(l.weight_shape, element_scales(layout, q));
        dq.inputs = {qname, sname, zname};
        dq.outputs = {mid};
        Node mul;
        mul.op_type = "Mul";
        mul.name = l.weight_name + "_GroupScale";
        mul.inputs = {mid, ename};
        mul.outputs = {l.weight_name};
        front.push_back(dq);
        front.push_back(mul);
        g.value_info[mid] = model::ValueInfo{mid, DType::kFloat32, l.weight_shape};
      } else {
        std::vector<float> scales(q.scales.begin(), q.scales.end());
        if (q.granularity.kind == GranularityKind::kPerTensor) {
          g.initializers[sname] = Tensor::floats({}, {scales.at(0)});
          g.initializers[zname] = Tensor::ints({}, {0}, DType::kInt8);
        } else {
          const int64_t O = static_cast<int64_t>(scales.size());
          g.initializers[sname] = Tensor::floats({O}, scales);
          g.initializers[zname] = Tensor::ints({O}, std::vector<int64_t>(O, 0), DType::kInt8);
          dq.attributes["axis"] = int_attr(layout.transposed ? 1 : 0);
        }
        dq.inputs = {qname, sname, zname};
        dq.outputs = {l.weight_name};
        front.push_back(dq);
      }
      g.initializers.erase(l.weight_name);
      g.value_info[l.weight_name] =
          model::ValueInfo{l.weight_name, DType::kFloat32, l.weight_shape};
    }
    auto ait = cm.activations.find(l.node_index);
    if (ait == cm.activations.end() || ait->second.bits == 32) continue;
    const ActivationQuantParams& p = ait->second;
    const Node& layer_node = g.nodes.at(l.node_index);
    const std::string x = layer_node.inputs.at(0);
    const std::string base = x + "_" + l.name;
    std::vector<Node>& seq = before[l.node_index];
    std::string cur = x;
    if (p.bits == 16) {
      Node c1, c2;
      c1.op_type = c2.op_type = "Cast";
      c1.name = base + "_CastHalf";
      c2.name = base + "_CastFloat";
      c1.attributes["to"] = int_attr(10);  // FLOAT16
      c2.attributes["to"] = int_attr(1);   // FLOAT
      c1.inputs = {cur};
      c1.outputs = {unique_name(g, base + "_half")};
      c2.inputs = c1.outputs;
      c2.outputs = {unique_name(g, base + "_a16")};
      cur = c2.outputs[0];
      seq.push_back(c1);
      seq.push_back(c2);
    } else {
      const double levels = static_cast<double>((1 << p.bits) - 1);
      const std::string scale = unique_name(g, base + "_act_scale");
      const std::string zp = unique_name(g, base + "_act_zero_point");
      g.initializers[scale] = Tensor::floats({}, {static_cast<float>(p.scale)});
      g.initializers[zp] = Tensor::ints({}, {p.zero_point}, DType::kUInt8);
      if (p.bits < 8) {
        // uint8 saturates at 255; the 4-bit grid ends at 15, so clip to its real range first.
        const std::string lo = unique_name(g, base + "_act_min"),
                          hi = unique_name(g, base + "_act_max");
        g.initializers[lo] =
            Tensor::floats({}, {static_cast<float>(-static_cast<double>(p.zero_point) * p.scale)});
        g.initializers[hi] = Tensor::floats(
            {}, {static_cast<float>((levels - static_cast<double>(p.zero_point)) * p.scale)});
        Node clip;
        clip.op_type = "Clip";
        clip.name = base + "_ActClip";
        clip.inputs = {cur, lo, hi};
        clip.outputs = {unique_name(g, base + "_clipped")};
        cur = clip.outputs[0];
        seq.push_back(clip);
      }
      Node ql, dl;
      ql.op_type = "QuantizeLinear";
      dl.op_type = "DequantizeLinear";
      ql.name = base + "_QuantizeLinear";
      dl.name = base + "_DequantizeLinear";
      ql.inputs = {cur, scale, zp};
      ql.outputs = {unique_name(g, base + "_quantized")};
      dl.inputs = {ql.outputs[0], scale, zp};
      dl.outputs = {unique_name(g, base + "_dequantized")};
      cur = dl.outputs[0];
      seq.push_back(ql);
      seq.push_back(dl);
    }
    g.nodes.at(l.node_index).inputs[0] = cur;
  }
  std::vector<Node> nodes = front;
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    auto it = before.find(i);
    if (it != before.end()) nodes.insert(nodes.end(), it->second.begin(), it->second.end());
    nodes.push_back(g.nodes[i]);
  }
  g.nodes = std::move(nodes);
  return g;
}

namespace {

void write_safetensors(const CompressedModel& cm, const std::filesystem::path& out) {
  struct Entry {
    std::string dtype;
    model::Shape shape;
    std::string bytes;
  };
  std::map<std::string, Entry> entries;  // sorted names, as safetensors writers do
  auto put_f32 = [](const std::vector<float>& v) {
    return std::string(reinterpret_cast<const char*>(v.data()), v.size() * 4);
  };
  nlohmann::json layers = nlohmann::json::object();
  std::map<std::string, const model::LayerInfo*> by_weight;
  for (const auto& l : cm.table.layers) by_weight[l.weight_name] = &l;
  for (const auto& [name, t] : cm.graph.initializers) {
    if (t.dtype != DType::kFloat32) continue;  // shape constants etc. live in the ONNX file
    auto lw = by_weight.find(name);
    if (lw == by_weight.end()) {
      entries[name] = {"F32", t.shape, put_f32(t.f32)};
      continue;
    }
    const model::LayerInfo& l = *lw->second;
    const LayerSetting& s = cm.recipe.setting_for(l.name);
    nlohmann::json info = s;  // the recipe's setting, then where its tensors are
    info["weight"] = name;
    if (s.w_bits <= 8) {
      const QuantizedWeights& q = cm.quantized.at(l.name);
      std::string qb(q.q.size(), '\0');
      std::memcpy(qb.data(), q.q.data(), q.q.size());
      entries[name] = {"I8", t.shape, qb};
      model::Shape sshape = {static_cast<int64_t>(q.scales.size())};
      if (q.granularity.kind == GranularityKind::kGroup) {
        const int64_t per_row = static_cast<int64_t>(q.scales.size()) / l.out_channels;
        sshape = {l.out_channels, per_row};
      }
      entries[name + ".scale"] = {
          "F64", sshape,
          std::string(reinterpret_cast<const char*>(q.scales.data()), q.scales.size() * 8)};
      info["scale"] = name + ".scale";
      info["scale_groups"] =
          q.granularity.kind == GranularityKind::kGroup
              ? "[out_channel][group of the reduction row, ordered [kh][kw][in_channel]]"
              : (q.granularity.kind == GranularityKind::kPerTensor ? "tensor" : "out_channel");
    } else if (s.w_bits == 16) {
      std::string hb(t.f32.size() * 2, '\0');
      for (size_t i = 0; i < t.f32.size(); ++i) {
        const uint16_t h = float_to_half_bits(t.f32[i]);
        std::memcpy(hb.data() + 2 * i, &h, 2);
      }
      entries[name] = {"F16", t.shape, hb};
    } else {
      entries[name] = {"F32", t.shape, put_f32(t.f32)};
    }
    layers[l.name] = info;
  }
  nlohmann::json header = nlohmann::json::object();
  header["__metadata__"] = {{"format", "compsearch.safetensors/1"},
                            {"recipe", recipe_to_json(cm.recipe).dump()},
                            {"layers", layers.dump()}};
  uint64_t offset = 0;
  for (const auto& [name, e] : entries) {
    header[name] = {{"dtype", e.dtype},
                    {"shape", e.shape},
                    {"data_offsets", {offset, offset + e.bytes.size()}}};
    offset += e.bytes.size();
  }
  std::string h = header.dump();
  while (h.size() % 8 != 0) h += ' ';  // keeps the data 8-byte aligned (F64 scales)
  std::ofstream f(out, std::ios::binary);
  if (!f) throw std::runtime_error(out.string() + ": cannot write");
  const uint64_t n = h.size();
  f.write(reinterpret_cast<const char*>(&n), 8);  // little-endian on every supported host
  f.write(h.data(), static_cast<std::streamsize>(h.size()));
  for (const auto& [name, e] : entries)
    f.write(e.bytes.data(), static_cast<std::streamsize>(e.bytes.size()));
  if (!f) throw std::runtime_error(out.string() + ": write failed");
}

}  // namespace

void export_model(const CompressedModel& cm, ExportFormat format,
                  const std::filesystem::path& out) {
  switch (format) {
    case ExportFormat::kOnnxQdq:
      model::save_onnx(make_qdq_graph(cm), out);
      return;
    case ExportFormat::kOnnx:
      model::save_onnx(cm.graph, out);
      return;
    case ExportFormat::kSafetensors:
      write_safetensors(cm, out);
      return;
  }
}

model::Graph load_safetensors_weights(const model::Graph& original,
                                      const std::filesystem::path& path) {
  const std::string where = path.string();
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error(where + ": cannot open");
  uint64_t n = 0;
  f.read(reinterpret_cast<char*>(&n), 8);
  if (!f || n > (uint64_t{1} << 30))
    throw std::runtime_error(where + ": not a safetensors file (bad header length)");
  // A header longer than the file is refused before anything is allocated (an 89-byte file
  // claiming a 1 GB header made the fuzzer time out zero-filling it).
  std::error_code ec;
  const uint64_t file_bytes = std::filesystem::file_size(path, ec);
  if (!ec && n > file_bytes - 8)
    throw std::runtime_error(where + ": header length " + std::to_string(n) +
                             " exceeds the file (" + std::to_string(file_bytes) + " bytes)");
  std::string h(n, '\0');
  f.read(h.data(), static_cast<std::streamsize>(n));
  if (!f) throw std::runtime_error(where + ": truncated header");
  // Error messages print header values: one nested 100,000 deep would overflow the stack.
  if (json_nesting_depth(h) > kMaxJsonNesting)
    throw std::runtime_error(where + ": header is JSON nested deeper than " +
                             std::to_string(kMaxJsonNesting) + " levels");
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(h);
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error(where + ": header is not JSON: " + e.what());
  }
  const std::string data((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  auto bytes_of = [&](const std::string& name, const std::string& dtype, int64_t elements,
                      size_t width) {
    if (!header.contains(name)) throw std::runtime_error(where + ": tensor '" + name + "' missing");
    const auto& e = header.at(name);
    if (e.at("dtype") != dtype)
      throw std::runtime_error(where + ": tensor '" + name + "' has dtype " + e.at("dtype").dump() +
                               ", expected " + dtype);
    const uint64_t b = e.at("data_offsets")[0], end = e.at("data_offsets")[1];
    if (end > data.size() || end < b || (end - b) != static_cast<uint64_t>(elements) * width)
      throw std::runtime_error(where + ": tensor '" + name + "' has bad data offsets");
    return data.data() + b;
  };
  model::Graph g = original;
  const auto meta = header.at("__metadata__");
  const std::string layers_text = meta.at("layers").get<std::string>();
  if (json_nesting_depth(layers_text) > kMaxJsonNesting)
    throw std::runtime_error(where + ": __metadata__.layers is JSON nested deeper than " +
                             std::to_string(kMaxJsonNesting) + " levels");
  const auto layers = nlohmann::json::parse(layers_text);
  const model::LayerTable table = model::build_layer_table(original);
  std::map<std::string, const model::LayerInfo*> by_weight;
  for (const auto& l : table.layers) by_weight[l.weight_name] = &l;
  for (auto& [name, t] : g.initializers) {
    if (t.dtype != DType::kFloat32 || !header.contains(name)) continue;
    const std::string dtype = header.at(name).at("dtype");
    const int64_t count = t.numel();
    if (dtype == "F32") {
      std::memcpy(t.f32.data(), bytes_of(name, "F32", count, 4), count * 4);
    } else if (dtype == "F16") {
      const char* p = bytes_of(name, "F16", count, 2);
      for (int64_t i = 0; i < count; ++i) {
        uint16_t hbits;
        std::memcpy(&hbits, p + 2 * i, 2);
        t.f32[i] = half_bits_to_float(hbits);
      }
    } else if (dtype == "I8") {
      auto lw = by_weight.find(name);
      if (lw == by_weight.end())
        throw std::runtime_error(where + ": integer tensor '" + name + "' is not a layer weight");
      const model::LayerInfo& l = *lw->second;
      const std::string gran = layers.at(l.name).at("granularity");
      const WeightLayout layout = WeightLayout::from_layer(l);
      QuantizedWeights q;
      q.granularity = granularity_from_string(gran);
      const int64_t groups = group_count(layout, q.granularity);
      q.scales.resize(groups);
      std::memcpy(q.scales.data(), bytes_of(name + ".scale", "F64", groups, 8), groups * 8);
      const char* qp = bytes_of(name, "I8", count, 1);
      const int64_t R = layout.row_length();
      for (int64_t o = 0; o < layout.out_channels; ++o) {
        for (int64_t r = 0; r < R; ++r) {
          int64_t gi = 0;
          if (q.granularity.kind == GranularityKind::kPerChannel) gi = o;
          if (q.granularity.kind == GranularityKind::kGroup) {
            const int64_t per_row = (R + q.granularity.group_size - 1) / q.granularity.group_size;
            gi = o * per_row + r / q.granularity.group_size;
          }
          const int64_t i = layout.index(o, r);
          const double s = q.scales[gi];
          const int8_t v = static_cast<int8_t>(qp[i]);
          // Binary weights are alpha * sign stored as float(alpha) * sign, others float(q * s).
          t.f32[i] = layers.at(l.name).at("w_bits") == 1
                         ? static_cast<float>(s) * v
                         : static_cast<float>(static_cast<double>(v) * s);
        }
      }
    } else {
      throw std::runtime_error(where + ": tensor '" + name + "' has unsupported dtype " + dtype);
    }
  }
  return g;
}

}  // namespace compsearch::compressors
