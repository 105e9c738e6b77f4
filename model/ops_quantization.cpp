// QuantizeLinear / DequantizeLinear (opset 10 per-tensor, opset 13 per-axis), as the ONNX
// specification and ONNX Runtime compute them, all in float32:
//   QuantizeLinear   q = saturate(round_half_to_even(x / scale) + zero_point)
//   DequantizeLinear y = (q - zero_point) * scale
#include <omp.h>

#include <algorithm>
#include <cmath>

#include "model/op_kernels.h"

namespace compsearch::model::detail {

// Scale and zero point of a Q/DQ node laid out over x as [outer, channels, inner].
struct LinearQuantization {
  std::vector<float> scale;
  std::vector<float> zero_point;  // small integers, exact in float
  int64_t outer = 1, channels = 1, inner = 1;
  DType qtype = DType::kUInt8;  // the integer type (zero point's; uint8 when omitted)
  float qmin = 0.0f, qmax = 255.0f;
};

LinearQuantization linear_quantization(const Node& node, const std::vector<const Tensor*>& in,
                                       const Tensor& x, int64_t opset, bool dequantize) {
  const Tensor& scale = need(node, in, 1);
  const Tensor* zp = optional_input(in, 2);
  if (!scale.is_float())
    fail(node, std::string("scale must be a float tensor, got ") + dtype_name(scale.dtype));
  LinearQuantization q;
  q.scale = scale.f32;
  const bool per_tensor = scale.numel() == 1 && scale.shape.size() <= 1;
  if (!per_tensor) {
    if (scale.shape.size() != 1) {
      fail(node, "scale " + shape_to_string(scale.shape) +
                     " must be a scalar (per-tensor) or 1-D (per-axis)");
    }
    if (opset < 13) {
      fail(node, "a 1-D scale " + shape_to_string(scale.shape) +
                     " (per-axis quantization) needs opset 13, the model is opset " +
                     std::to_string(opset));
    }
    const int64_t rank = static_cast<int64_t>(x.shape.size());
    const int64_t axis = normalize_axis(node.attr_int("axis", 1), rank, node);
    if (x.shape[axis] != scale.numel()) {
      fail(node, "scale has " + std::to_string(scale.numel()) + " values but axis " +
                     std::to_string(axis) + " of input " + shape_to_string(x.shape) + " has " +
                     std::to_string(x.shape[axis]));
    }
    for (int64_t i = 0; i < axis; ++i) q.outer *= x.shape[i];
    q.channels = x.shape[axis];
    for (int64_t i = axis + 1; i < rank; ++i) q.inner *= x.shape[i];
  } else {
    q.inner = x.numel();
  }
  if (zp) {
    if (zp->numel() != scale.numel()) {
      fail(node, "zero point " + shape_to_string(zp->shape) + " and scale " +
                     shape_to_string(scale.shape) + " must have the same number of values");
    }
    const bool allowed = zp->dtype == DType::kInt8 || zp->dtype == DType::kUInt8 ||
                         (dequantize && zp->dtype == DType::kInt32);
    if (!allowed) {
      fail(node, std::string("zero point must be int8 or uint8") +
                     (dequantize ? " (or int32)" : "") + ", got " + dtype_name(zp->dtype));
    }
    q.qtype = zp->dtype;
    q.zero_point.assign(zp->i64.begin(), zp->i64.end());
  } else {
    q.zero_point.assign(q.scale.size(), 0.0f);
    if (dequantize) q.qtype = x.dtype;
  }
  if (dequantize) {
    if (x.dtype != DType::kInt8 && x.dtype != DType::kUInt8 && x.dtype != DType::kInt32) {
      fail(node, std::string("input must be int8, uint8 or int32, got ") + dtype_name(x.dtype));
    }
    if (zp && zp->dtype != x.dtype) {
      fail(node, std::string("zero point is ") + dtype_name(zp->dtype) + " but the input is " +
                     dtype_name(x.dtype));
    }
  } else if (!x.is_float()) {
    fail(node, std::string("input must be a float tensor, got ") + dtype_name(x.dtype));
  }
  if (q.qtype == DType::kInt8) {
    q.qmin = -128.0f;
    q.qmax = 127.0f;
  }
  return q;
}

// QuantizeLinear; with ctx.fake_quantize (a Q -> DQ pair fused by the executor's plan) writes the
// dequantized float values directly, bit for bit what the two nodes compute one after the other.
void quantize_linear(const Node& node, const std::vector<const Tensor*>& in, Tensor& out,
                     const OpContext& ctx) {
  const Tensor& x = need(node, in, 0);
  const LinearQuantization q = linear_quantization(node, in, x, ctx.opset, false);
  const float* xd = x.f32.data();
  float* yf = nullptr;
  int64_t* yq = nullptr;
  if (ctx.fake_quantize) {
    yf = prepare_float(out, x.shape);
  } else {
    prepare_like(out, x.shape, q.qtype);
    yq = out.i64.data();
  }
  const int64_t planes = q.outer * q.channels;
  const int threads = x.numel() < kParallelGrain ? 1 : ctx.threads;
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1)
  for (int64_t p = 0; p < planes; ++p) {
    const int64_t c = p % q.channels;
    const float s = q.scale[c], z = q.zero_point[c], lo = q.qmin, hi = q.qmax;
    const float* xp = xd + p * q.inner;
    if (yf) {
      float* yp = yf + p * q.inner;
      quantize_levels(xp, q.inner, s, z, lo, hi, yp);
      for (int64_t i = 0; i < q.inner; ++i) yp[i] = (yp[i] - z) * s;
    } else {
      int64_t* yp = yq + p * q.inner;
      for (int64_t i = 0; i < q.inner; ++i)
        yp[i] = static_cast<int64_t>(quantize_level(xp[i], s, z, lo, hi));
    }
  }
}

void dequantize_linear(const Node& node, const std::vector<const Tensor*>& in, Tensor& out,
                       const OpContext& ctx) {
  const Tensor& x = need(node, in, 0);
  const LinearQuantization q = linear_quantization(node, in, x, ctx.opset, true);
  float* y = prepare_float(out, x.shape);
  const int64_t* xd = x.i64.data();
  const int64_t planes = q.outer * q.channels;
  const int threads = x.numel() < kParallelGrain ? 1 : ctx.threads;
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1)
  for (int64_t p = 0; p < planes; ++p) {
    const int64_t c = p % q.channels;
    const float s = q.scale[c];
    const int64_t z = static_cast<int64_t>(q.zero_point[c]);
    for (int64_t i = p * q.inner; i < (p + 1) * q.inner; ++i) {
      y[i] = static_cast<float>(static_cast<int32_t>(xd[i] - z)) * s;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Shape inference

void infer_quantize_dequantize(ShapeInference& a, const Node& node, int64_t) {
  const std::string& op = node.op_type;
  const Shape& xs = a.value(node, 0).shape;
  // The integer type is the zero point's (uint8 when it is omitted). Scale layout and axis are
  // checked where the node runs (folding or the executor), with the concrete shapes.
  DType dt = DType::kFloat32;
  if (op == "QuantizeLinear") {
    dt = DType::kUInt8;
    if (node.inputs.size() > 2 && !node.inputs[2].empty()) dt = a.value(node, 2).dtype;
    if (dt != DType::kUInt8 && dt != DType::kInt8) {
      throw std::runtime_error(node_label(node) + ": zero point must be int8 or uint8, got " +
                               dtype_name(dt));
    }
  }
  a.set(node, 0, xs, dt);
}

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC push_options
#pragma GCC optimize("O3", "no-trapping-math")
#define COMPSEARCH_ISA_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define COMPSEARCH_ISA_CLONES
#endif
COMPSEARCH_ISA_CLONES
void quantize_levels(const float* x, int64_t n, float s, float z, float lo, float hi, float* y) {
  for (int64_t i = 0; i < n; ++i) y[i] = quantize_level(x[i], s, z, lo, hi);
}
COMPSEARCH_ISA_CLONES
void quantize_levels_u8(const float* x, int64_t n, float s, float z, uint8_t* q) {
  for (int64_t i = 0; i < n; ++i)
    q[i] = static_cast<uint8_t>(static_cast<int32_t>(quantize_level(x[i], s, z, 0.0f, 255.0f)));
}
#undef COMPSEARCH_ISA_CLONES
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC pop_options
#endif

}  // namespace compsearch::model::detail
