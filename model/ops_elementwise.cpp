// Elementwise ops: Add/Sub/Mul/Div with NumPy broadcasting (float and int64), the unary
// activations, BatchNormalization (inference) and Softmax.
#include <omp.h>

#include <algorithm>
#include <cmath>

#include "model/op_kernels.h"

namespace compsearch::model::detail {

template <typename T, typename F>
void broadcast_binary(const Node& node, const Shape& as, const T* a, const Shape& bs, const T* b,
                      const Shape& os, T* y, F f, const OpContext& ctx) {
  const int64_t total = shape_numel(os);
  const int threads = total < kParallelGrain ? 1 : ctx.threads;
  if (as == bs) {
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1)
    for (int64_t i = 0; i < total; ++i) y[i] = f(a[i], b[i]);
    return;
  }
  if (shape_numel(bs) == 1 && as == os) {
    const T bv = b[0];
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1)
    for (int64_t i = 0; i < total; ++i) y[i] = f(a[i], bv);
    return;
  }
  if (shape_numel(as) == 1 && bs == os) {
    const T av = a[0];
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1)
    for (int64_t i = 0; i < total; ++i) y[i] = f(av, b[i]);
    return;
  }
  const size_t r = os.size();
  std::vector<int64_t> sa(r, 0), sb(r, 0);
  auto strides = [&](const Shape& s, std::vector<int64_t>& st) {
    int64_t stride = 1;
    for (size_t i = 0; i < s.size(); ++i) {
      const size_t d = s.size() - 1 - i;
      st[r - 1 - i] = s[d] == 1 ? 0 : stride;
      stride *= s[d];
    }
  };
  strides(as, sa);
  strides(bs, sb);
  const int64_t inner = r ? os[r - 1] : 1;
  const int64_t outer = inner ? total / inner : 0;
  const int64_t ia = r ? sa[r - 1] : 0, ib = r ? sb[r - 1] : 0;
  (void)node;
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1)
  for (int64_t o = 0; o < outer; ++o) {
    int64_t rem = o, oa = 0, ob = 0;
    for (size_t i = 1; i < r; ++i) {
      const size_t d = r - 1 - i;
      const int64_t coord = rem % os[d];
      rem /= os[d];
      oa += coord * sa[d];
      ob += coord * sb[d];
    }
    T* dst = y + o * inner;
    for (int64_t j = 0; j < inner; ++j) dst[j] = f(a[oa + j * ia], b[ob + j * ib]);
  }
}

void binary(const Node& node, const std::vector<const Tensor*>& in, Tensor& out,
            const OpContext& ctx) {
  const Tensor& a = need(node, in, 0);
  const Tensor& b = need(node, in, 1);
  if (a.is_float() != b.is_float()) {
    fail(node, std::string("operands have different element types ") + dtype_name(a.dtype) +
                   " and " + dtype_name(b.dtype));
  }
  const Shape os = broadcast_shapes(a.shape, b.shape, node);
  const std::string& op = node.op_type;
  if (a.is_float()) {
    float* y = prepare_float(out, os);
    const float* ad = a.f32.data();
    const float* bd = b.f32.data();
    if (op == "Add")
      broadcast_binary(
          node, a.shape, ad, b.shape, bd, os, y, [](float u, float v) { return u + v; }, ctx);
    else if (op == "Sub")
      broadcast_binary(
          node, a.shape, ad, b.shape, bd, os, y, [](float u, float v) { return u - v; }, ctx);
    else if (op == "Mul")
      broadcast_binary(
          node, a.shape, ad, b.shape, bd, os, y, [](float u, float v) { return u * v; }, ctx);
    else
      broadcast_binary(
          node, a.shape, ad, b.shape, bd, os, y, [](float u, float v) { return u / v; }, ctx);
  } else {
    prepare_like(out, os, a.dtype);
    int64_t* y = out.i64.data();
    const int64_t* ad = a.i64.data();
    const int64_t* bd = b.i64.data();
    if (op == "Add")
      broadcast_binary(
          node, a.shape, ad, b.shape, bd, os, y, [](int64_t u, int64_t v) { return u + v; }, ctx);
    else if (op == "Sub")
      broadcast_binary(
          node, a.shape, ad, b.shape, bd, os, y, [](int64_t u, int64_t v) { return u - v; }, ctx);
    else if (op == "Mul")
      broadcast_binary(
          node, a.shape, ad, b.shape, bd, os, y, [](int64_t u, int64_t v) { return u * v; }, ctx);
    else {
      for (int64_t i = 0; i < b.numel(); ++i) {
        if (bd[i] == 0) fail(node, "integer division by zero");
      }
      broadcast_binary(
          node, a.shape, ad, b.shape, bd, os, y, [](int64_t u, int64_t v) { return u / v; }, ctx);
    }
  }
}

template <typename F>
void unary_map(const Tensor& x, Tensor& out, F f, const OpContext& ctx) {
  const int64_t total = x.numel();
  float* y = prepare_float(out, x.shape);
  const float* xd = x.f32.data();
  const int threads = total < kParallelGrain ? 1 : ctx.threads;
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1)
  for (int64_t i = 0; i < total; ++i) y[i] = f(xd[i]);
}

void unary(const Node& node, const std::vector<const Tensor*>& in, Tensor& out,
           const OpContext& ctx) {
  const Tensor& x = need(node, in, 0);
  require_float(node, x, "input");
  const std::string& op = node.op_type;
  if (op == "Abs") {
    unary_map(
        x, out, [](float v) { return std::fabs(v); }, ctx);
  } else if (op == "Relu") {
    unary_map(
        x, out, [](float v) { return v > 0.0f ? v : 0.0f; }, ctx);
  } else if (op == "Clip") {
    float lo, hi;
    if (ctx.opset < 11) {
      lo = node.attr_float("min", -INFINITY);
      hi = node.attr_float("max", INFINITY);
    } else {
      lo = scalar_input(node, in, 1, -INFINITY);
      hi = scalar_input(node, in, 2, INFINITY);
    }
    unary_map(
        x, out, [lo, hi](float v) { return std::min(std::max(v, lo), hi); }, ctx);
  } else if (op == "Sigmoid") {
    unary_map(
        x, out, [](float v) { return 1.0f / (1.0f + std::exp(-v)); }, ctx);
  } else if (op == "HardSigmoid") {
    const float alpha = node.attr_float("alpha", 0.2f), beta = node.attr_float("beta", 0.5f);
    unary_map(
        x, out, [alpha, beta](float v) { return std::clamp(alpha * v + beta, 0.0f, 1.0f); }, ctx);
  } else if (op == "HardSwish") {
    unary_map(
        x, out, [](float v) { return v * std::clamp(v / 6.0f + 0.5f, 0.0f, 1.0f); }, ctx);
  } else if (op == "Tanh") {
    unary_map(
        x, out, [](float v) { return std::tanh(v); }, ctx);
  }
}

void batch_norm(const Node& node, const std::vector<const Tensor*>& in, Tensor& out,
                const OpContext& ctx) {
  const Tensor& x = need(node, in, 0);
  require_float(node, x, "input");
  if (x.shape.size() < 2) fail(node, "input " + shape_to_string(x.shape) + " must be [N, C, ...]");
  const int64_t n = x.shape[0], c = x.shape[1], inner = x.numel() / std::max<int64_t>(1, n * c);
  const float eps = node.attr_float("epsilon", 1e-5f);
  std::vector<float> scale(c), shift(c);
  for (size_t i = 1; i <= 4; ++i) {
    const Tensor& p = need(node, in, i);
    if (p.numel() != c)
      fail(node, "parameter #" + std::to_string(i) + " has " + std::to_string(p.numel()) +
                     " values for " + std::to_string(c) + " channels");
  }
  for (int64_t i = 0; i < c; ++i) {
    scale[i] = in[1]->f32[i] / std::sqrt(in[4]->f32[i] + eps);
    shift[i] = in[2]->f32[i] - in[3]->f32[i] * scale[i];
  }
  float* y = prepare_float(out, x.shape);
  const float* xd = x.f32.data();
#pragma omp parallel for num_threads(ctx.threads) \
    schedule(static) if (n * c * inner > kParallelGrain && ctx.threads > 1)
  for (int64_t p = 0; p < n * c; ++p) {
    const float s = scale[p % c], t = shift[p % c];
    for (int64_t j = 0; j < inner; ++j) y[p * inner + j] = xd[p * inner + j] * s + t;
  }
}

void softmax(const Node& node, const std::vector<const Tensor*>& in, Tensor& out,
             const OpContext& ctx) {
  const Tensor& x = need(node, in, 0);
  require_float(node, x, "input");
  const int64_t rank = static_cast<int64_t>(x.shape.size());
  const int64_t axis = normalize_axis(node.attr_int("axis", ctx.opset >= 13 ? -1 : 1), rank, node);
  int64_t outer = 1, dim = 1, inner = 1;
  if (ctx.opset >= 13) {
    for (int64_t i = 0; i < axis; ++i) outer *= x.shape[i];
    dim = x.shape[axis];
    for (int64_t i = axis + 1; i < rank; ++i) inner *= x.shape[i];
  } else {  // before opset 13 the input is coerced to 2-D at `axis`
    for (int64_t i = 0; i < axis; ++i) outer *= x.shape[i];
    for (int64_t i = axis; i < rank; ++i) dim *= x.shape[i];
  }
  float* y = prepare_float(out, x.shape);
  const float* xd = x.f32.data();
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t j = 0; j < inner; ++j) {
      const float* src = xd + o * dim * inner + j;
      float* dst = y + o * dim * inner + j;
      float mx = -INFINITY;
      for (int64_t d = 0; d < dim; ++d) mx = std::max(mx, src[d * inner]);
      double sum = 0.0;
      for (int64_t d = 0; d < dim; ++d) {
        dst[d * inner] = std::exp(src[d * inner] - mx);
        sum += dst[d * inner];
      }
      const float inv = static_cast<float>(1.0 / sum);
      for (int64_t d = 0; d < dim; ++d) dst[d * inner] *= inv;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Shape inference

void infer_binary(ShapeInference& a, const Node& node, int64_t) {
  const ValueInfo& x = a.value(node, 0);
  const Shape& xs = x.shape;
  const ValueInfo& y = a.value(node, 1);
  a.set(node, 0, broadcast_shapes(xs, y.shape, node), x.dtype);
}

void infer_same_shape(ShapeInference& a, const Node& node, int64_t) {
  const ValueInfo& x = a.value(node, 0);
  a.set(node, 0, x.shape, x.dtype);
}

}  // namespace compsearch::model::detail
