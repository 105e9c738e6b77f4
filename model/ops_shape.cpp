// Data movement and shape ops, for float and integer tensors alike: Constant, Shape, Identity,
// Flatten, Reshape, Transpose, Concat, Squeeze/Unsqueeze, Gather, Slice and Cast.
//
// Their shape inference tracks, next to each value's shape, the integer contents of small 1-D
// int64 values where known (the Shape -> Gather -> Unsqueeze -> Concat -> Reshape chains of
// PyTorch exports). The batch dimension (dim 0 of a Shape op's input) is kept symbolic there
// (kUnknown), so folding never freezes the batch size into a Reshape.
#include <algorithm>
#include <cstring>

#include "model/node_eval.h"
#include "model/op_kernels.h"

namespace compsearch::model::detail {

void copy_with_shape(const Tensor& x, Tensor& out, const Shape& shape) {
  prepare_like(out, shape, x.dtype);
  if (x.is_float())
    std::copy(x.f32.begin(), x.f32.end(), out.f32.begin());
  else
    std::copy(x.i64.begin(), x.i64.end(), out.i64.begin());
}

std::vector<int64_t> axes_of(const Node& node, const std::vector<const Tensor*>& in,
                             const OpContext& ctx) {
  if (ctx.opset >= 13) {
    const Tensor* t = optional_input(in, 1);
    return t ? int_values(node, *t, "axes") : std::vector<int64_t>{};
  }
  return node.attr_ints("axes", {});
}

// Rescue for exports with a fixed batch D baked into a Reshape target: a target whose first
// entry is D, run on a batch B != D, keeps B (see DESIGN: the first input dim is the batch).
void reshape(const Node& node, const std::vector<const Tensor*>& in, Tensor& out,
             const OpContext& ctx) {
  const int64_t declared_batch = ctx.declared_batch;
  const Tensor& x = need(node, in, 0);
  std::vector<int64_t> target = int_values(node, need(node, in, 1), "shape");
  const bool allowzero = node.attr_int("allowzero", 0) != 0;
  const int64_t n = x.numel();
  auto resolve = [&](std::vector<int64_t> t) -> std::optional<Shape> {
    int64_t known = 1;
    int infer = -1;
    for (size_t i = 0; i < t.size(); ++i) {
      if (t[i] == 0 && !allowzero) {
        if (i >= x.shape.size()) return std::nullopt;
        t[i] = x.shape[i];
      }
      if (t[i] == -1) {
        if (infer >= 0) return std::nullopt;
        infer = static_cast<int>(i);
      } else if (t[i] < 0) {
        return std::nullopt;
      } else {
        known *= t[i];
      }
    }
    if (infer >= 0) {
      if (known == 0 || n % known) return std::nullopt;
      t[infer] = n / known;
    } else if (known != n) {
      return std::nullopt;
    }
    return t;
  };
  auto shape = resolve(target);
  if (!shape && declared_batch > 0 && !target.empty() && target[0] == declared_batch &&
      !x.shape.empty() && x.shape[0] != declared_batch) {
    auto t = target;
    t[0] = x.shape[0];
    shape = resolve(t);
  }
  if (!shape) {
    fail(node, "cannot reshape " + shape_to_string(x.shape) + " to " + shape_to_string(target));
  }
  copy_with_shape(x, out, *shape);
}

template <typename T>
void transpose_data(const T* src, T* dst, const Shape& xs, const std::vector<int64_t>& perm) {
  const size_t r = xs.size();
  std::vector<int64_t> in_strides(r, 1), os(r), ostride(r);
  for (size_t i = r; i-- > 1;) in_strides[i - 1] = in_strides[i] * xs[i];
  for (size_t i = 0; i < r; ++i) {
    os[i] = xs[perm[i]];
    ostride[i] = in_strides[perm[i]];
  }
  const int64_t total = shape_numel(xs);
  std::vector<int64_t> idx(r, 0);
  int64_t off = 0;
  for (int64_t i = 0; i < total; ++i) {
    dst[i] = src[off];
    for (size_t d = r; d-- > 0;) {
      if (++idx[d] < os[d]) {
        off += ostride[d];
        break;
      }
      off -= ostride[d] * (os[d] - 1);
      idx[d] = 0;
    }
  }
}

void transpose(const Node& node, const std::vector<const Tensor*>& in, Tensor& out,
               const OpContext&) {
  const Tensor& x = need(node, in, 0);
  const int64_t r = static_cast<int64_t>(x.shape.size());
  auto perm = node.attr_ints("perm", {});
  if (perm.empty())
    for (int64_t i = r - 1; i >= 0; --i) perm.push_back(i);
  if (static_cast<int64_t>(perm.size()) != r)
    fail(node, "perm does not match rank " + std::to_string(r));
  Shape os(r);
  for (int64_t i = 0; i < r; ++i) {
    perm[i] = normalize_axis(perm[i], r, node);
    os[i] = x.shape[perm[i]];
  }
  prepare_like(out, os, x.dtype);
  if (r == 0) {
    copy_with_shape(x, out, os);
  } else if (x.is_float()) {
    transpose_data(x.f32.data(), out.f32.data(), x.shape, perm);
  } else {
    transpose_data(x.i64.data(), out.i64.data(), x.shape, perm);
  }
}

void concat(const Node& node, const std::vector<const Tensor*>& in, Tensor& out, const OpContext&) {
  const Tensor& x0 = need(node, in, 0);
  const int64_t r = static_cast<int64_t>(x0.shape.size());
  const int64_t axis = normalize_axis(node.attr_int("axis", 0), r, node);
  Shape os = x0.shape;
  os[axis] = 0;
  for (size_t i = 0; i < in.size(); ++i) {
    const Tensor& t = need(node, in, i);
    if (t.shape.size() != x0.shape.size() || t.is_float() != x0.is_float()) {
      fail(node, "inputs " + shape_to_string(x0.shape) + " and " + shape_to_string(t.shape) +
                     " cannot be concatenated");
    }
    for (int64_t d = 0; d < r; ++d) {
      if (d != axis && t.shape[d] != x0.shape[d]) {
        fail(node, "inputs " + shape_to_string(x0.shape) + " and " + shape_to_string(t.shape) +
                       " differ outside axis " + std::to_string(axis));
      }
    }
    os[axis] += t.shape[axis];
  }
  prepare_like(out, os, x0.dtype);
  int64_t outer = 1, inner = 1;
  for (int64_t d = 0; d < axis; ++d) outer *= os[d];
  for (int64_t d = axis + 1; d < r; ++d) inner *= os[d];
  int64_t offset = 0;
  for (const Tensor* t : in) {
    const int64_t chunk = t->shape[axis] * inner;
    for (int64_t o = 0; o < outer; ++o) {
      if (x0.is_float())
        std::copy_n(t->f32.data() + o * chunk, chunk,
                    out.f32.data() + o * os[axis] * inner + offset);
      else
        std::copy_n(t->i64.data() + o * chunk, chunk,
                    out.i64.data() + o * os[axis] * inner + offset);
    }
    offset += chunk;
  }
}

void gather(const Node& node, const std::vector<const Tensor*>& in, Tensor& out, const OpContext&) {
  const Tensor& x = need(node, in, 0);
  const Tensor& idx = need(node, in, 1);
  const auto indices = int_values(node, idx, "indices");
  const int64_t r = static_cast<int64_t>(x.shape.size());
  const int64_t axis = normalize_axis(node.attr_int("axis", 0), r, node);
  Shape os(x.shape.begin(), x.shape.begin() + axis);
  os.insert(os.end(), idx.shape.begin(), idx.shape.end());
  os.insert(os.end(), x.shape.begin() + axis + 1, x.shape.end());
  prepare_like(out, os, x.dtype);
  int64_t outer = 1, inner = 1;
  for (int64_t d = 0; d < axis; ++d) outer *= x.shape[d];
  for (int64_t d = axis + 1; d < r; ++d) inner *= x.shape[d];
  const int64_t dim = x.shape[axis], ni = static_cast<int64_t>(indices.size());
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t j = 0; j < ni; ++j) {
      int64_t k = indices[j] < 0 ? indices[j] + dim : indices[j];
      if (k < 0 || k >= dim)
        fail(node, "index " + std::to_string(indices[j]) + " out of range for dimension " +
                       std::to_string(dim));
      const int64_t src = (o * dim + k) * inner, dst = (o * ni + j) * inner;
      if (x.is_float())
        std::copy_n(x.f32.data() + src, inner, out.f32.data() + dst);
      else
        std::copy_n(x.i64.data() + src, inner, out.i64.data() + dst);
    }
  }
}

void slice(const Node& node, const std::vector<const Tensor*>& in, Tensor& out, const OpContext&) {
  const Tensor& x = need(node, in, 0);
  const auto starts = int_values(node, need(node, in, 1), "starts");
  const auto ends = int_values(node, need(node, in, 2), "ends");
  const int64_t r = static_cast<int64_t>(x.shape.size());
  std::vector<int64_t> axes, steps(starts.size(), 1);
  if (const Tensor* t = optional_input(in, 3))
    axes = int_values(node, *t, "axes");
  else
    for (int64_t i = 0; i < static_cast<int64_t>(starts.size()); ++i) axes.push_back(i);
  if (const Tensor* t = optional_input(in, 4)) steps = int_values(node, *t, "steps");
  if (ends.size() != starts.size() || axes.size() != starts.size() ||
      steps.size() != starts.size()) {
    fail(node, "starts, ends, axes and steps must have the same length");
  }
  std::vector<int64_t> lo(r, 0), st(r, 1);
  Shape os = x.shape;
  for (size_t i = 0; i < axes.size(); ++i) {
    const int64_t ax = normalize_axis(axes[i], r, node);
    const int64_t dim = x.shape[ax], step = steps[i];
    if (step == 0) fail(node, "step 0");
    int64_t s = starts[i] < 0 ? starts[i] + dim : starts[i];
    int64_t e = ends[i] < 0 ? ends[i] + dim : ends[i];
    if (step > 0) {
      s = std::clamp<int64_t>(s, 0, dim);
      e = std::clamp<int64_t>(e, 0, dim);
      os[ax] = e > s ? (e - s + step - 1) / step : 0;
    } else {
      s = std::clamp<int64_t>(s, -1, dim - 1);
      e = std::clamp<int64_t>(e, -1, dim - 1);
      os[ax] = s > e ? (s - e - step - 1) / (-step) : 0;
    }
    lo[ax] = s;
    st[ax] = step;
  }
  prepare_like(out, os, x.dtype);
  std::vector<int64_t> in_strides(r, 1);
  for (int64_t i = r - 1; i > 0; --i) in_strides[i - 1] = in_strides[i] * x.shape[i];
  const int64_t total = shape_numel(os);
  for (int64_t i = 0; i < total; ++i) {
    int64_t rem = i, off = 0;
    for (int64_t d = r - 1; d >= 0; --d) {
      const int64_t coord = rem % os[d];
      rem /= os[d];
      off += (lo[d] + coord * st[d]) * in_strides[d];
    }
    if (x.is_float())
      out.f32[i] = x.f32[off];
    else
      out.i64[i] = x.i64[off];
  }
}

void cast(const Node& node, const std::vector<const Tensor*>& in, Tensor& out, const OpContext&) {
  const Tensor& x = need(node, in, 0);
  const int64_t to = node.attr_int("to", 1);
  // TensorProto.DataType: 1 float, 10 float16, 11 double, 9 bool, 7 int64, 6 int32, 3 int8, 2 uint8
  const bool to_float = to == 1 || to == 10 || to == 11;
  DType dt = to_float ? DType::kFloat32 : DType::kInt64;
  if (to == 10) dt = DType::kFloat16;
  if (to == 6) dt = DType::kInt32;
  if (to == 9) dt = DType::kBool;
  if (to == 3) dt = DType::kInt8;
  if (to == 2) dt = DType::kUInt8;
  Tensor tmp;
  prepare_like(tmp, x.shape, dt);
  const int64_t n = x.numel();
  for (int64_t i = 0; i < n; ++i) {
    if (to_float)
      tmp.f32[i] = x.is_float() ? x.f32[i] : static_cast<float>(x.i64[i]);
    else if (dt == DType::kBool)
      tmp.i64[i] = x.is_float() ? (x.f32[i] != 0.0f) : (x.i64[i] != 0);
    else
      tmp.i64[i] = x.is_float() ? static_cast<int64_t>(x.f32[i]) : x.i64[i];
  }
  // A float16 tensor keeps its values in f32, so the cast itself must round them to half
  // precision (nearest even, overflow to inf): a Cast pair is how an export expresses a16.
  if (dt == DType::kFloat16) {
    for (int64_t i = 0; i < n; ++i) tmp.f32[i] = half_to_float(float_to_half(tmp.f32[i]));
  } else if (dt == DType::kInt8) {
    for (int64_t i = 0; i < n; ++i) tmp.i64[i] = static_cast<int8_t>(tmp.i64[i]);
  } else if (dt == DType::kUInt8) {
    for (int64_t i = 0; i < n; ++i) tmp.i64[i] = static_cast<uint8_t>(tmp.i64[i]);
  }
  out = std::move(tmp);
}

void flatten(const Node& node, const std::vector<const Tensor*>& in, Tensor& out,
             const OpContext&) {
  const Tensor& x = need(node, in, 0);
  const int64_t r = static_cast<int64_t>(x.shape.size());
  int64_t axis = node.attr_int("axis", 1);
  if (axis < 0) axis += r;
  if (axis < 0 || axis > r) fail(node, "axis out of range for " + shape_to_string(x.shape));
  int64_t outer = 1;
  for (int64_t i = 0; i < axis; ++i) outer *= x.shape[i];
  copy_with_shape(x, out, {outer, outer ? x.numel() / outer : 0});
}

void squeeze_unsqueeze(const Node& node, const std::vector<const Tensor*>& in, Tensor& out,
                       const OpContext& ctx) {
  const Tensor& x = need(node, in, 0);
  const auto axes = axes_of(node, in, ctx);
  Shape os;
  if (node.op_type == "Unsqueeze") {
    const int64_t r = static_cast<int64_t>(x.shape.size() + axes.size());
    std::vector<bool> ins(r, false);
    for (int64_t a : axes) ins[normalize_axis(a, r, node)] = true;
    size_t j = 0;
    for (int64_t i = 0; i < r; ++i) os.push_back(ins[i] ? 1 : x.shape[j++]);
  } else {
    const int64_t r = static_cast<int64_t>(x.shape.size());
    std::vector<bool> rm(r, false);
    if (axes.empty())
      for (int64_t i = 0; i < r; ++i) rm[i] = x.shape[i] == 1;
    for (int64_t a : axes) {
      const int64_t ax = normalize_axis(a, r, node);
      if (x.shape[ax] != 1)
        fail(node, "cannot squeeze axis " + std::to_string(a) + " of size " +
                       std::to_string(x.shape[ax]));
      rm[ax] = true;
    }
    for (int64_t i = 0; i < r; ++i)
      if (!rm[i]) os.push_back(x.shape[i]);
  }
  copy_with_shape(x, out, os);
}

void constant(const Node& node, KernelArgs, Tensor& out, const OpContext&) {
  auto it = node.attributes.find("value");
  if (it == node.attributes.end() || !it->second.t) fail(node, "needs a 'value' tensor attribute");
  out = *it->second.t;
}

void shape(const Node& node, KernelArgs in, Tensor& out, const OpContext&) {
  const Tensor& x = need(node, in, 0);
  const int64_t r = static_cast<int64_t>(x.shape.size());
  int64_t s = node.attr_int("start", 0), e = node.attr_int("end", r);
  if (s < 0) s += r;
  if (e < 0) e += r;
  s = std::clamp<int64_t>(s, 0, r);
  e = std::clamp<int64_t>(e, s, r);
  out = Tensor::ints({e - s}, std::vector<int64_t>(x.shape.begin() + s, x.shape.begin() + e));
}

void identity(const Node& node, KernelArgs in, Tensor& out, const OpContext&) {
  const Tensor& x = need(node, in, 0);
  copy_with_shape(x, out, x.shape);
}

// ---------------------------------------------------------------------------------------------
// Shape inference

namespace {

Shape shape_after_reshape(const Node& node, const Shape& in, std::vector<int64_t> target) {
  const bool allowzero = node.attr_int("allowzero", 0) != 0;
  Shape out(target.size());
  int infer_at = -1;
  int64_t known_out = 1;
  bool out_unknown = false;
  for (size_t i = 0; i < target.size(); ++i) {
    int64_t d = target[i];
    if (d == kUnknown) {
      // A batch-derived entry: the matching input dimension (dim 0) when it lines up.
      d = (i == 0 && !in.empty()) ? in[0] : -2;
    } else if (d == 0 && !allowzero) {
      if (i >= in.size()) {
        throw std::runtime_error(node_label(node) + ": shape entry 0 at position " +
                                 std::to_string(i) + " has no input dimension to copy");
      }
      d = in[i];
    } else if (d == -1) {
      if (infer_at >= 0) throw std::runtime_error(node_label(node) + ": more than one -1 in shape");
      infer_at = static_cast<int>(i);
      continue;
    }
    out[i] = d;
    if (d < 0)
      out_unknown = true;
    else
      known_out *= d;
  }
  int64_t known_in = 1;
  int unknown_in = 0;
  for (int64_t d : in) {
    if (d < 0)
      ++unknown_in;
    else
      known_in *= d;
  }
  if (infer_at >= 0) {
    if (unknown_in == 0 && !out_unknown) {
      if (known_out == 0 || known_in % known_out != 0) {
        throw std::runtime_error(node_label(node) + ": cannot reshape " + shape_to_string(in) +
                                 " to " + shape_to_string(target));
      }
      out[infer_at] = known_in / known_out;
    } else if (unknown_in == 1 && out_unknown && known_out != 0 && known_in % known_out == 0) {
      out[infer_at] = known_in / known_out;  // the unknown (batch) dims cancel
    } else {
      out[infer_at] = -1;
    }
  } else if (unknown_in == 0 && !out_unknown && known_in != known_out) {
    throw std::runtime_error(node_label(node) + ": cannot reshape " + shape_to_string(in) + " (" +
                             std::to_string(known_in) + " elements) to " + shape_to_string(target));
  }
  for (auto& d : out) {
    if (d < 0) d = -1;
  }
  return out;
}

std::vector<int64_t> axes_input_or_attr(const ShapeInference& a, const Node& node, int64_t opset,
                                        size_t input_index) {
  if (opset >= 13 && node.inputs.size() > input_index && !node.inputs[input_index].empty()) {
    auto v = a.ints_of(node, input_index);
    if (!v) {
      throw std::runtime_error(node_label(node) + ": axes must be a constant");
    }
    return *v;
  }
  return node.attr_ints("axes", {});
}

}  // namespace

void infer_identity(ShapeInference& a, const Node& node, int64_t) {
  const ValueInfo& x = a.value(node, 0);
  a.set(node, 0, x.shape, x.dtype);
  if (auto v = a.ints_of(node, 0)) a.partial[node.outputs[0]] = *v;
}

void infer_constant(ShapeInference& a, const Node& node, int64_t) {
  auto it = node.attributes.find("value");
  if (it == node.attributes.end() || !it->second.t) {
    if (node.has_attr("value_float")) {
      a.constants[node.outputs[0]] = Tensor::floats({}, {node.attr_float("value_float", 0)});
    } else if (node.has_attr("value_int")) {
      a.constants[node.outputs[0]] = Tensor::ints({}, {node.attr_int("value_int", 0)});
    } else if (node.has_attr("value_ints")) {
      auto v = node.attr_ints("value_ints", {});
      a.constants[node.outputs[0]] = Tensor::ints({static_cast<int64_t>(v.size())}, v);
    } else if (node.has_attr("value_floats")) {
      auto v = node.attributes.at("value_floats").floats;
      a.constants[node.outputs[0]] = Tensor::floats({static_cast<int64_t>(v.size())}, v);
    } else {
      throw std::runtime_error(node_label(node) + ": needs a 'value' tensor attribute");
    }
  } else {
    a.constants[node.outputs[0]] = *it->second.t;
  }
  const Tensor& t = a.constants[node.outputs[0]];
  a.set(node, 0, t.shape, t.dtype);
  return;
}

void infer_flatten(ShapeInference& a, const Node& node, int64_t) {
  const ValueInfo& x = a.value(node, 0);
  const Shape& xs = x.shape;
  const int64_t rank = static_cast<int64_t>(xs.size());
  int64_t axis = node.attr_int("axis", 1);
  if (axis < 0) axis += rank;
  if (axis < 0 || axis > rank) {
    throw std::runtime_error(node_label(node) + ": axis out of range for " + shape_to_string(xs));
  }
  int64_t outer = 1, inner = 1;
  for (int64_t i = 0; i < rank; ++i) {
    int64_t& p = i < axis ? outer : inner;
    p = (xs[i] < 0 || p < 0) ? -1 : p * xs[i];
  }
  a.set(node, 0, {outer, inner}, x.dtype);
}

void infer_reshape(ShapeInference& a, const Node& node, int64_t) {
  const ValueInfo& x = a.value(node, 0);
  const Shape& xs = x.shape;
  auto target = a.ints_of(node, 1);
  if (!target) {
    throw std::runtime_error(node_label(node) +
                             ": the target shape must be computable at load time (a constant "
                             "or a Shape/Gather/Unsqueeze/Concat chain)");
  }
  a.set(node, 0, shape_after_reshape(node, xs, *target), x.dtype);
}

void infer_transpose(ShapeInference& a, const Node& node, int64_t) {
  const ValueInfo& x = a.value(node, 0);
  const Shape& xs = x.shape;
  const int64_t rank = static_cast<int64_t>(xs.size());
  std::vector<int64_t> perm = node.attr_ints("perm", {});
  if (perm.empty()) {
    for (int64_t i = rank - 1; i >= 0; --i) perm.push_back(i);
  }
  if (static_cast<int64_t>(perm.size()) != rank) {
    throw std::runtime_error(node_label(node) + ": perm has " + std::to_string(perm.size()) +
                             " entries for rank " + std::to_string(rank));
  }
  Shape out(rank);
  for (int64_t i = 0; i < rank; ++i) out[i] = xs[normalize_axis(perm[i], rank, node)];
  a.set(node, 0, out, x.dtype);
}

void infer_concat(ShapeInference& a, const Node& node, int64_t) {
  const ValueInfo& x = a.value(node, 0);
  const Shape& xs = x.shape;
  const int64_t rank = static_cast<int64_t>(xs.size());
  const int64_t axis = normalize_axis(node.attr_int("axis", 0), rank, node);
  Shape out = xs;
  std::vector<int64_t> values;
  bool values_known = rank == 1;
  for (size_t i = 0; i < node.inputs.size(); ++i) {
    const Shape& s = a.value(node, i).shape;
    if (static_cast<int64_t>(s.size()) != rank) {
      throw std::runtime_error(node_label(node) + ": inputs of different ranks " +
                               shape_to_string(xs) + " and " + shape_to_string(s));
    }
    if (i > 0) out[axis] = (out[axis] < 0 || s[axis] < 0) ? -1 : out[axis] + s[axis];
    if (values_known) {
      auto v = a.ints_of(node, i);
      if (v)
        values.insert(values.end(), v->begin(), v->end());
      else
        values_known = false;
    }
  }
  a.set(node, 0, out, x.dtype);
  if (values_known && x.dtype != DType::kFloat32) a.partial[node.outputs[0]] = values;
}

void infer_shape(ShapeInference& a, const Node& node, int64_t) {
  const Shape& xs = a.value(node, 0).shape;
  const int64_t rank = static_cast<int64_t>(xs.size());
  int64_t start = node.attr_int("start", 0), end = node.attr_int("end", rank);
  if (start < 0) start += rank;
  if (end < 0) end += rank;
  start = std::clamp<int64_t>(start, 0, rank);
  end = std::clamp<int64_t>(end, start, rank);
  std::vector<int64_t> dims;
  for (int64_t i = start; i < end; ++i) {
    // dim 0 is the batch: never frozen into a constant (see the file comment).
    dims.push_back(i == 0 || xs[i] < 0 ? kUnknown : xs[i]);
  }
  a.set(node, 0, {static_cast<int64_t>(dims.size())}, DType::kInt64);
  a.partial[node.outputs[0]] = dims;
}

void infer_gather(ShapeInference& a, const Node& node, int64_t) {
  const ValueInfo& x = a.value(node, 0);
  const Shape& xs = x.shape;
  const ValueInfo& idx = a.value(node, 1);
  const int64_t rank = static_cast<int64_t>(xs.size());
  const int64_t axis = normalize_axis(node.attr_int("axis", 0), rank, node);
  Shape out(xs.begin(), xs.begin() + axis);
  out.insert(out.end(), idx.shape.begin(), idx.shape.end());
  out.insert(out.end(), xs.begin() + axis + 1, xs.end());
  a.set(node, 0, out, x.dtype);
  auto data = a.ints_of(node, 0);
  const Tensor* ind = a.constant(node.inputs[1]);
  if (data && ind && rank == 1) {
    std::vector<int64_t> v;
    for (int64_t i : ind->i64) {
      const int64_t j = i < 0 ? i + static_cast<int64_t>(data->size()) : i;
      if (j < 0 || j >= static_cast<int64_t>(data->size())) {
        throw std::runtime_error(node_label(node) + ": index " + std::to_string(i) +
                                 " out of range");
      }
      v.push_back((*data)[j]);
    }
    a.partial[node.outputs[0]] = v;
  }
}

void infer_unsqueeze(ShapeInference& a, const Node& node, int64_t opset) {
  const ValueInfo& x = a.value(node, 0);
  const Shape& xs = x.shape;
  auto axes = axes_input_or_attr(a, node, opset, 1);
  const int64_t rank = static_cast<int64_t>(xs.size() + axes.size());
  std::vector<bool> inserted(rank, false);
  for (int64_t ax : axes) inserted[normalize_axis(ax, rank, node)] = true;
  Shape out;
  size_t j = 0;
  for (int64_t i = 0; i < rank; ++i) out.push_back(inserted[i] ? 1 : xs[j++]);
  a.set(node, 0, out, x.dtype);
  if (auto v = a.ints_of(node, 0)) a.partial[node.outputs[0]] = *v;
}

void infer_squeeze(ShapeInference& a, const Node& node, int64_t opset) {
  const ValueInfo& x = a.value(node, 0);
  const Shape& xs = x.shape;
  auto axes = axes_input_or_attr(a, node, opset, 1);
  const int64_t rank = static_cast<int64_t>(xs.size());
  std::vector<bool> removed(rank, false);
  if (axes.empty()) {
    for (int64_t i = 0; i < rank; ++i) removed[i] = xs[i] == 1;
  }
  for (int64_t ax : axes) removed[normalize_axis(ax, rank, node)] = true;
  Shape out;
  for (int64_t i = 0; i < rank; ++i) {
    if (!removed[i]) out.push_back(xs[i]);
  }
  a.set(node, 0, out, x.dtype);
  if (auto v = a.ints_of(node, 0)) a.partial[node.outputs[0]] = *v;
}

void infer_slice(ShapeInference& a, const Node& node, int64_t) {
  const ValueInfo& x = a.value(node, 0);
  const Shape& xs = x.shape;
  auto starts = a.ints_of(node, 1), ends = a.ints_of(node, 2);
  if (!starts || !ends) {
    throw std::runtime_error(node_label(node) + ": starts and ends must be constants");
  }
  const int64_t rank = static_cast<int64_t>(xs.size());
  std::vector<int64_t> axes, steps(starts->size(), 1);
  if (auto v = a.ints_of(node, 3))
    axes = *v;
  else
    for (int64_t i = 0; i < static_cast<int64_t>(starts->size()); ++i) axes.push_back(i);
  if (auto v = a.ints_of(node, 4)) steps = *v;
  Shape out = xs;
  std::vector<int64_t> lo(rank, 0), st(rank, 1);
  for (size_t i = 0; i < axes.size(); ++i) {
    const int64_t ax = normalize_axis(axes[i], rank, node);
    const int64_t dim = xs[ax];
    if (dim < 0) {
      out[ax] = -1;
      continue;
    }
    const int64_t step = steps[i];
    if (step == 0) throw std::runtime_error(node_label(node) + ": step 0");
    int64_t s = (*starts)[i], e = (*ends)[i];
    if (s < 0) s += dim;
    if (e < 0) e += dim;
    if (step > 0) {
      s = std::clamp<int64_t>(s, 0, dim);
      e = std::clamp<int64_t>(e, 0, dim);
      out[ax] = e > s ? (e - s + step - 1) / step : 0;
    } else {
      s = std::clamp<int64_t>(s, -1, dim - 1);
      e = std::clamp<int64_t>(e, -1, dim - 1);
      out[ax] = s > e ? (s - e - step - 1) / (-step) : 0;
    }
    lo[ax] = s;
    st[ax] = step;
  }
  a.set(node, 0, out, x.dtype);
  auto data = a.ints_of(node, 0);
  if (data && rank == 1 && out[0] >= 0) {
    std::vector<int64_t> v;
    for (int64_t i = 0; i < out[0]; ++i) v.push_back((*data)[lo[0] + i * st[0]]);
    a.partial[node.outputs[0]] = v;
  }
}

void infer_cast(ShapeInference& a, const Node& node, int64_t) {
  const Shape& xs = a.value(node, 0).shape;
  const int64_t to = node.attr_int("to", 1);
  // TensorProto.DataType: 1 float, 10 float16, 11 double, 6 int32, 7 int64, 3 int8, 2 uint8
  DType dt = DType::kInt64;
  if (to == 1 || to == 11)
    dt = DType::kFloat32;
  else if (to == 10)
    dt = DType::kFloat16;
  else if (to == 9)
    dt = DType::kBool;
  else if (to == 6)
    dt = DType::kInt32;
  else if (to == 3)
    dt = DType::kInt8;
  else if (to == 2)
    dt = DType::kUInt8;
  a.set(node, 0, xs, dt);
  if (dt != DType::kFloat32 && dt != DType::kFloat16) {
    if (auto v = a.ints_of(node, 0)) a.partial[node.outputs[0]] = *v;
  }
}

}  // namespace compsearch::model::detail
