// ONNX file import and export through Debian's libonnx protobuf classes (onnx-ml.pb.h). The only
// file of the project that includes the protobuf headers.
// clang-format off: onnx_pb.h goes first (it defines ONNX_API, then includes onnx-ml.pb.h).
#include <onnx/onnx_pb.h>
// clang-format on

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>
#include <stdexcept>

#include "model/graph.h"
#include "model/half.h"
#include "model/node_eval.h"

namespace compsearch::model {

namespace detail {
void fold_and_infer(Graph& graph);

// node_eval.h's names for the one conversion in model/half.h (the executor's Cast uses them).
float half_to_float(uint16_t h) { return half_bits_to_float(h); }
uint16_t float_to_half(float f) { return float_to_half_bits(f); }

}  // namespace detail

namespace {

std::string read_file_bytes(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(path.string() + ": cannot open file");
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

using detail::float_to_half;
using detail::half_to_float;

DType dtype_from_onnx(int32_t t, const std::string& what) {
  switch (t) {
    case onnx::TensorProto::FLOAT:
      return DType::kFloat32;
    case onnx::TensorProto::DOUBLE:
      return DType::kFloat32;  // widened/narrowed to float32
    case onnx::TensorProto::FLOAT16:
      return DType::kFloat16;
    case onnx::TensorProto::INT64:
      return DType::kInt64;
    case onnx::TensorProto::INT32:
      return DType::kInt32;
    case onnx::TensorProto::INT8:
      return DType::kInt8;
    case onnx::TensorProto::UINT8:
      return DType::kUInt8;
    case onnx::TensorProto::BOOL:
      return DType::kBool;
    default:
      throw std::runtime_error(what + ": element type " + std::to_string(t) +
                               " is not supported (float, float16, double, int64, int32, int8, "
                               "uint8, bool)");
  }
}

int32_t dtype_to_onnx(DType d) {
  switch (d) {
    case DType::kFloat32:
      return onnx::TensorProto::FLOAT;
    case DType::kFloat16:
      return onnx::TensorProto::FLOAT16;
    case DType::kInt64:
      return onnx::TensorProto::INT64;
    case DType::kInt32:
      return onnx::TensorProto::INT32;
    case DType::kInt8:
      return onnx::TensorProto::INT8;
    case DType::kUInt8:
      return onnx::TensorProto::UINT8;
    case DType::kBool:
      return onnx::TensorProto::BOOL;
  }
  return onnx::TensorProto::FLOAT;
}

size_t element_bytes(int32_t t) {
  switch (t) {
    case onnx::TensorProto::DOUBLE:
    case onnx::TensorProto::INT64:
      return 8;
    case onnx::TensorProto::FLOAT:
    case onnx::TensorProto::INT32:
      return 4;
    case onnx::TensorProto::FLOAT16:
      return 2;
    default:
      return 1;
  }
}

// Decodes little-endian bytes of `count` elements of ONNX type `t` into `out`.
void decode_raw(const char* data, int64_t count, int32_t t, Tensor& out) {
  auto load = [&](auto sample, int64_t i) {
    decltype(sample) v;
    std::memcpy(&v, data + i * sizeof v, sizeof v);
    return v;
  };
  if (out.is_float()) {
    out.f32.resize(count);
    for (int64_t i = 0; i < count; ++i) {
      switch (t) {
        case onnx::TensorProto::FLOAT:
          out.f32[i] = load(float{}, i);
          break;
        case onnx::TensorProto::DOUBLE:
          out.f32[i] = static_cast<float>(load(double{}, i));
          break;
        default:
          out.f32[i] = half_to_float(load(uint16_t{}, i));
          break;
      }
    }
  } else {
    out.i64.resize(count);
    for (int64_t i = 0; i < count; ++i) {
      switch (t) {
        case onnx::TensorProto::INT64:
          out.i64[i] = load(int64_t{}, i);
          break;
        case onnx::TensorProto::INT32:
          out.i64[i] = load(int32_t{}, i);
          break;
        case onnx::TensorProto::INT8:
          out.i64[i] = load(int8_t{}, i);
          break;
        default:
          out.i64[i] = load(uint8_t{}, i);
          break;  // uint8, bool
      }
    }
  }
}

Tensor tensor_from_proto(const onnx::TensorProto& p, const std::filesystem::path& model_dir,
                         const std::string& where) {
  const std::string what = where + ": tensor '" + p.name() + "'";
  Tensor t;
  t.dtype = dtype_from_onnx(p.data_type(), what);
  t.shape.assign(p.dims().begin(), p.dims().end());
  const int64_t n = checked_numel(t.shape, what);
  if (n > (int64_t{1} << 34))
    throw std::runtime_error(what + ": implausible size " + std::to_string(n));
  const size_t nbytes = static_cast<size_t>(n) * element_bytes(p.data_type());
  if (p.data_location() == onnx::TensorProto::EXTERNAL) {
    std::string location;
    int64_t offset = 0, length = -1;
    for (const auto& kv : p.external_data()) {
      if (kv.key() == "location")
        location = kv.value();
      else if (kv.key() == "offset")
        offset = std::stoll(kv.value());
      else if (kv.key() == "length")
        length = std::stoll(kv.value());
    }
    if (location.empty()) throw std::runtime_error(what + ": external data without a location");
    // As ONNX's checker: a relative path that stays inside the model's directory.
    const std::filesystem::path loc(location);
    if (loc.is_absolute() || loc.has_root_name() || loc.has_root_directory()) {
      throw std::runtime_error(what + ": external data location '" + location +
                               "' must be a relative path inside the model's directory");
    }
    const auto normal = loc.lexically_normal();
    if (normal.empty() || *normal.begin() == ".." || normal == ".") {
      throw std::runtime_error(what + ": external data location '" + location +
                               "' points outside the model's directory (" + model_dir.string() +
                               ")");
    }
    const auto file = model_dir / normal;
    std::ifstream in(file, std::ios::binary);
    if (!in) throw std::runtime_error(what + ": cannot open external data file " + file.string());
    if (length >= 0 && static_cast<size_t>(length) != nbytes) {
      throw std::runtime_error(what + ": external data length " + std::to_string(length) +
                               " but shape " + shape_to_string(t.shape) + " needs " +
                               std::to_string(nbytes) + " bytes");
    }
    std::string buf(nbytes, '\0');
    in.seekg(offset);
    in.read(buf.data(), static_cast<std::streamsize>(nbytes));
    if (static_cast<size_t>(in.gcount()) != nbytes) {
      throw std::runtime_error(what + ": external data file " + file.string() + " ends before " +
                               std::to_string(offset + nbytes) + " bytes (truncated?)");
    }
    decode_raw(buf.data(), n, p.data_type(), t);
    return t;
  }
  if (p.has_raw_data()) {
    if (p.raw_data().size() != nbytes) {
      throw std::runtime_error(what + ": raw_data has " + std::to_string(p.raw_data().size()) +
                               " bytes but shape " + shape_to_string(t.shape) + " needs " +
                               std::to_string(nbytes) + " (file truncated or corrupt?)");
    }
    decode_raw(p.raw_data().data(), n, p.data_type(), t);
    return t;
  }
  auto check = [&](int64_t have) {
    if (have != n) {
      throw std::runtime_error(what + ": has " + std::to_string(have) + " values but shape " +
                               shape_to_string(t.shape) + " needs " + std::to_string(n) +
                               " (file truncated or corrupt?)");
    }
  };
  switch (p.data_type()) {
    case onnx::TensorProto::FLOAT:
      check(p.float_data_size());
      t.f32.assign(p.float_data().begin(), p.float_data().end());
      break;
    case onnx::TensorProto::DOUBLE:
      check(p.double_data_size());
      for (double v : p.double_data()) t.f32.push_back(static_cast<float>(v));
      break;
    case onnx::TensorProto::FLOAT16:  // stored as uint16 bit patterns in int32_data
      check(p.int32_data_size());
      for (int32_t v : p.int32_data()) t.f32.push_back(half_to_float(static_cast<uint16_t>(v)));
      break;
    case onnx::TensorProto::INT64:
      check(p.int64_data_size());
      t.i64.assign(p.int64_data().begin(), p.int64_data().end());
      break;
    default:  // int32, int8, uint8, bool live in int32_data
      check(p.int32_data_size());
      t.i64.assign(p.int32_data().begin(), p.int32_data().end());
      break;
  }
  return t;
}

void tensor_to_proto(const Tensor& t, const std::string& name, onnx::TensorProto& p) {
  p.set_name(name);
  p.set_data_type(dtype_to_onnx(t.dtype));
  for (int64_t d : t.shape) p.add_dims(d);
  std::string raw;
  const int64_t n = t.numel();
  auto put = [&](auto v) { raw.append(reinterpret_cast<const char*>(&v), sizeof v); };
  for (int64_t i = 0; i < n; ++i) {
    switch (t.dtype) {
      case DType::kFloat32:
        put(t.f32[i]);
        break;
      case DType::kFloat16:
        put(float_to_half(t.f32[i]));
        break;
      case DType::kInt64:
        put(static_cast<int64_t>(t.i64[i]));
        break;
      case DType::kInt32:
        put(static_cast<int32_t>(t.i64[i]));
        break;
      case DType::kInt8:
        put(static_cast<int8_t>(t.i64[i]));
        break;
      case DType::kUInt8:
      case DType::kBool:
        put(static_cast<uint8_t>(t.i64[i]));
        break;
    }
  }
  p.set_raw_data(raw);
}

ValueInfo value_info_from_proto(const onnx::ValueInfoProto& v, const std::string& where,
                                const char* kind) {
  ValueInfo vi;
  vi.name = v.name();
  if (v.type().has_tensor_type()) {
    const auto& tt = v.type().tensor_type();
    try {
      vi.dtype = dtype_from_onnx(tt.elem_type(), "value '" + v.name() + "'");
    } catch (const std::runtime_error&) {
      vi.dtype = DType::kFloat32;
    }
    for (const auto& d : tt.shape().dim()) {
      if (d.has_dim_value() && d.dim_value() < 0) {
        throw std::runtime_error(where + ": " + kind + " '" + v.name() + "': dimension " +
                                 std::to_string(vi.shape.size()) + " is " +
                                 std::to_string(d.dim_value()) +
                                 "; expected >= 0 or a symbolic name");
      }
      vi.shape.push_back(d.has_dim_value() ? d.dim_value() : -1);
    }
  }
  return vi;
}

void value_info_to_proto(const ValueInfo& vi, onnx::ValueInfoProto& p) {
  p.set_name(vi.name);
  auto* tt = p.mutable_type()->mutable_tensor_type();
  tt->set_elem_type(dtype_to_onnx(vi.dtype));
  auto* shape = tt->mutable_shape();
  for (size_t i = 0; i < vi.shape.size(); ++i) {
    auto* d = shape->add_dim();
    if (vi.shape[i] >= 0)
      d->set_dim_value(vi.shape[i]);
    else
      d->set_dim_param(i == 0 ? "batch" : "d" + std::to_string(i));
  }
}

}  // namespace

Graph load_onnx(const std::filesystem::path& path) {
  if (!std::filesystem::exists(path)) {
    throw std::runtime_error(path.string() + ": no such file");
  }
  const std::string bytes = read_file_bytes(path);
  onnx::ModelProto model;
  {
    google::protobuf::io::ArrayInputStream raw(bytes.data(), static_cast<int>(bytes.size()));
    google::protobuf::io::CodedInputStream coded(&raw);
    coded.SetTotalBytesLimit(std::numeric_limits<int>::max());
    if (!model.ParseFromCodedStream(&coded) || !coded.ConsumedEntireMessage()) {
      throw std::runtime_error(path.string() +
                               ": not a valid ONNX model (protobuf parsing failed: the file is "
                               "truncated, corrupt or not ONNX)");
    }
  }
  if (!model.has_graph() || model.graph().node_size() == 0) {
    throw std::runtime_error(path.string() +
                             ": the ONNX model has no graph nodes (empty, "
                             "truncated or not an ONNX file)");
  }
  const std::string where = path.string();
  Graph g;
  g.ir_version = model.ir_version();
  g.producer_name = model.producer_name();
  g.opset_version = -1;
  for (const auto& op : model.opset_import()) {
    if (op.domain().empty() || op.domain() == "ai.onnx") g.opset_version = op.version();
  }
  if (g.opset_version < 11 || g.opset_version > 17) {
    throw std::runtime_error(where + ": default-domain opset " + std::to_string(g.opset_version) +
                             " is not supported (expected 11 to 17; re-export with "
                             "opset_version between 11 and 17)");
  }
  const auto& gp = model.graph();
  g.name = gp.name();
  const auto model_dir = path.parent_path();
  for (const auto& init : gp.initializer()) {
    g.initializers[init.name()] = tensor_from_proto(init, model_dir, where);
  }
  for (const auto& in : gp.input()) {
    if (g.initializers.count(in.name())) continue;  // IR < 4 lists initializers as inputs too
    g.inputs.push_back(value_info_from_proto(in, where, "input"));
  }
  for (const auto& out : gp.output())
    g.outputs.push_back(value_info_from_proto(out, where, "output"));

  const auto& supported = supported_ops();
  std::set<std::string> defined;
  for (const auto& in : g.inputs) defined.insert(in.name);
  for (const auto& [name, t] : g.initializers) defined.insert(name);
  for (int i = 0; i < gp.node_size(); ++i) {
    const auto& np = gp.node(i);
    Node n;
    n.name = np.name().empty() ? np.op_type() + "_" + std::to_string(i) : np.name();
    n.op_type = np.op_type();
    n.domain = np.domain() == "ai.onnx" ? "" : np.domain();
    n.inputs.assign(np.input().begin(), np.input().end());
    n.outputs.assign(np.output().begin(), np.output().end());
    if (!n.domain.empty() ||
        std::find(supported.begin(), supported.end(), n.op_type) == supported.end()) {
      std::string list;
      for (const auto& s : supported) list += (list.empty() ? "" : ", ") + s;
      throw std::runtime_error(where + ": node '" + n.name + "' has op type '" +
                               (n.domain.empty() ? "" : n.domain + ".") + n.op_type +
                               "', which is not supported; supported ops: " + list);
    }
    for (const auto& in : n.inputs) {
      if (!in.empty() && !defined.count(in)) {
        throw std::runtime_error(where + ": node '" + n.name + "' (" + n.op_type + ") reads '" +
                                 in +
                                 "', which no earlier node, initializer or "
                                 "input defines (corrupt or truncated file, or nodes out of "
                                 "topological order)");
      }
    }
    defined.insert(n.outputs.begin(), n.outputs.end());
    for (const auto& ap : np.attribute()) {
      Attribute a;
      switch (ap.type()) {
        case onnx::AttributeProto::INT:
          a.kind = Attribute::Kind::kInt;
          a.i = ap.i();
          break;
        case onnx::AttributeProto::FLOAT:
          a.kind = Attribute::Kind::kFloat;
          a.f = ap.f();
          break;
        case onnx::AttributeProto::STRING:
          a.kind = Attribute::Kind::kString;
          a.s = ap.s();
          break;
        case onnx::AttributeProto::INTS:
          a.kind = Attribute::Kind::kInts;
          a.ints.assign(ap.ints().begin(), ap.ints().end());
          break;
        case onnx::AttributeProto::FLOATS:
          a.kind = Attribute::Kind::kFloats;
          a.floats.assign(ap.floats().begin(), ap.floats().end());
          break;
        case onnx::AttributeProto::STRINGS:
          a.kind = Attribute::Kind::kStrings;
          a.strings.assign(ap.strings().begin(), ap.strings().end());
          break;
        case onnx::AttributeProto::TENSOR:
          a.kind = Attribute::Kind::kTensor;
          a.t = std::make_shared<Tensor>(
              tensor_from_proto(ap.t(), model_dir, where + ": node '" + n.name + "'"));
          break;
        default:
          throw std::runtime_error(where + ": node '" + n.name + "' attribute '" + ap.name() +
                                   "' has an unsupported attribute type " +
                                   std::to_string(ap.type()));
      }
      n.attributes[ap.name()] = std::move(a);
    }
    g.nodes.push_back(std::move(n));
  }
  for (const auto& out : g.outputs) {
    if (!defined.count(out.name)) {
      throw std::runtime_error(where + ": graph output '" + out.name +
                               "' is not produced by any node (corrupt or truncated file)");
    }
  }
  try {
    detail::fold_and_infer(g);
  } catch (const std::exception& e) {
    throw std::runtime_error(where + ": " + e.what());
  }
  return g;
}

void save_onnx(const Graph& graph, const std::filesystem::path& path) {
  onnx::ModelProto model;
  model.set_ir_version(graph.ir_version);
  model.set_producer_name(graph.producer_name.empty() ? "compsearch" : graph.producer_name);
  auto* opset = model.add_opset_import();
  opset->set_domain("");
  opset->set_version(graph.opset_version);
  std::set<std::string> domains;
  for (const auto& n : graph.nodes) {
    if (!n.domain.empty()) domains.insert(n.domain);
  }
  for (const auto& d : domains) {
    auto* o = model.add_opset_import();
    o->set_domain(d);
    o->set_version(1);
  }
  auto* gp = model.mutable_graph();
  gp->set_name(graph.name.empty() ? "compsearch" : graph.name);
  for (const auto& in : graph.inputs) value_info_to_proto(in, *gp->add_input());
  for (const auto& out : graph.outputs) value_info_to_proto(out, *gp->add_output());
  for (const auto& [name, t] : graph.initializers) tensor_to_proto(t, name, *gp->add_initializer());
  for (const auto& n : graph.nodes) {
    auto* np = gp->add_node();
    np->set_name(n.name);
    np->set_op_type(n.op_type);
    if (!n.domain.empty()) np->set_domain(n.domain);
    for (const auto& i : n.inputs) np->add_input(i);
    for (const auto& o : n.outputs) np->add_output(o);
    for (const auto& [key, a] : n.attributes) {
      auto* ap = np->add_attribute();
      ap->set_name(key);
      switch (a.kind) {
        case Attribute::Kind::kInt:
          ap->set_type(onnx::AttributeProto::INT);
          ap->set_i(a.i);
          break;
        case Attribute::Kind::kFloat:
          ap->set_type(onnx::AttributeProto::FLOAT);
          ap->set_f(a.f);
          break;
        case Attribute::Kind::kString:
          ap->set_type(onnx::AttributeProto::STRING);
          ap->set_s(a.s);
          break;
        case Attribute::Kind::kInts:
          ap->set_type(onnx::AttributeProto::INTS);
          for (auto v : a.ints) ap->add_ints(v);
          break;
        case Attribute::Kind::kFloats:
          ap->set_type(onnx::AttributeProto::FLOATS);
          for (auto v : a.floats) ap->add_floats(v);
          break;
        case Attribute::Kind::kStrings:
          ap->set_type(onnx::AttributeProto::STRINGS);
          for (const auto& v : a.strings) ap->add_strings(v);
          break;
        case Attribute::Kind::kTensor:
          ap->set_type(onnx::AttributeProto::TENSOR);
          if (a.t) tensor_to_proto(*a.t, "", *ap->mutable_t());
          break;
      }
    }
  }
  std::ofstream out(path, std::ios::binary);
  if (!out) throw std::runtime_error(path.string() + ": cannot open for writing");
  if (!model.SerializeToOstream(&out)) {
    throw std::runtime_error(path.string() + ": writing the ONNX model failed");
  }
}

}  // namespace compsearch::model
