// Pad (constant mode), MaxPool/AveragePool (1-D and 2-D windows) and GlobalAveragePool, NCHW.
#include <omp.h>

#include <algorithm>
#include <cmath>

#include "model/op_kernels.h"

namespace compsearch::model::detail {

// Constant-mode Pad (the only mode PyTorch emits for pooling and convolution padding).
void pad(const Node& node, const std::vector<const Tensor*>& in, Tensor& out,
         const OpContext& ctx) {
  const Tensor& x = need(node, in, 0);
  require_float(node, x, "input");
  const std::string mode = node.attr_string("mode", "constant");
  if (mode != "constant") fail(node, "mode '" + mode + "' is not supported (constant only)");
  std::vector<int64_t> pads =
      ctx.opset >= 11 ? int_values(node, need(node, in, 1), "pads") : node.attr_ints("pads", {});
  const float value =
      ctx.opset >= 11 ? scalar_input(node, in, 2, 0.0f) : node.attr_float("value", 0.0f);
  const size_t r = x.shape.size();
  if (pads.size() != 2 * r)
    fail(node, std::to_string(pads.size()) + " pads for rank " + std::to_string(r));
  Shape os = x.shape;
  for (size_t i = 0; i < r; ++i) {
    os[i] += pads[i] + pads[i + r];
    if (os[i] < 0) fail(node, "negative output size");
  }
  float* y = prepare_float(out, os);
  std::fill(y, y + shape_numel(os), value);
  std::vector<int64_t> in_strides(r, 1), out_strides(r, 1);
  for (size_t i = r; i-- > 1;) {
    in_strides[i - 1] = in_strides[i] * x.shape[i];
    out_strides[i - 1] = out_strides[i] * os[i];
  }
  const int64_t total = x.numel();
  for (int64_t i = 0; i < total; ++i) {
    int64_t off = 0;
    bool inside = true;
    for (size_t d = 0; d < r; ++d) {
      const int64_t o = (i / in_strides[d]) % x.shape[d] + pads[d];
      if (o < 0 || o >= os[d]) {
        inside = false;
        break;
      }
      off += o * out_strides[d];
    }
    if (inside) y[off] = x.f32[i];
  }
}

void pool(const Node& node, const std::vector<const Tensor*>& in, Tensor& out,
          const OpContext& ctx) {
  const Tensor& x = need(node, in, 0);
  require_float(node, x, "input");
  if (x.shape.size() < 3 || x.shape.size() > 4)
    fail(node, "input " + shape_to_string(x.shape) + " must be [N, C, (H,) W]");
  const bool is_max = node.op_type == "MaxPool";
  if (is_max && node.outputs.size() > 1 && !node.outputs[1].empty())
    fail(node, "the Indices output is not supported");
  std::vector<int64_t> spatial(x.shape.begin() + 2, x.shape.end());
  const auto kernel = node.attr_ints("kernel_shape", {});
  const auto g = window_geometry(node, spatial, kernel);
  const bool include_pad = node.attr_int("count_include_pad", 0) != 0;
  Shape os = {x.shape[0], x.shape[1]};
  if (spatial.size() == 2) os.push_back(g.out_h);
  os.push_back(g.out_w);
  float* y = prepare_float(out, os);
  const int64_t planes = x.shape[0] * x.shape[1];
  const int64_t hw = g.in_h * g.in_w, ohw = g.out_h * g.out_w;
  const float* xd = x.f32.data();
#pragma omp parallel for num_threads(ctx.threads) \
    schedule(static) if (planes * ohw > kParallelGrain / 4 && ctx.threads > 1)
  for (int64_t p = 0; p < planes; ++p) {
    const float* src = xd + p * hw;
    float* dst = y + p * ohw;
    if (is_max && g.kh == 2 && g.kw == 2 && g.sh == 2 && g.sw == 2 && g.dh == 1 && g.dw == 1 &&
        g.pad_top == 0 && g.pad_left == 0 && 2 * g.out_h <= g.in_h && 2 * g.out_w <= g.in_w) {
      // The common 2x2/2 max pool: every window lies inside the input.
      for (int64_t oh = 0; oh < g.out_h; ++oh) {
        const float* r0 = src + 2 * oh * g.in_w;
        const float* r1 = r0 + g.in_w;
        float* d = dst + oh * g.out_w;
        for (int64_t ow = 0; ow < g.out_w; ++ow) {
          d[ow] =
              std::max(std::max(r0[2 * ow], r0[2 * ow + 1]), std::max(r1[2 * ow], r1[2 * ow + 1]));
        }
      }
      continue;
    }
    for (int64_t oh = 0; oh < g.out_h; ++oh) {
      const int64_t h0 = oh * g.sh - g.pad_top;
      for (int64_t ow = 0; ow < g.out_w; ++ow) {
        const int64_t w0 = ow * g.sw - g.pad_left;
        float acc = is_max ? -INFINITY : 0.0f;
        int64_t count = 0;
        for (int64_t ki = 0; ki < g.kh; ++ki) {
          const int64_t ih = h0 + ki * g.dh;
          if (ih < 0 || ih >= g.in_h) continue;
          for (int64_t kj = 0; kj < g.kw; ++kj) {
            const int64_t iw = w0 + kj * g.dw;
            if (iw < 0 || iw >= g.in_w) continue;
            const float v = src[ih * g.in_w + iw];
            acc = is_max ? std::max(acc, v) : acc + v;
            ++count;
          }
        }
        if (!is_max) {
          if (include_pad) {  // window clipped to the padded input, as ONNX Runtime does
            const int64_t h1 = std::min(h0 + (g.kh - 1) * g.dh + 1, g.in_h + g.pad_bottom);
            const int64_t w1 = std::min(w0 + (g.kw - 1) * g.dw + 1, g.in_w + g.pad_right);
            count = ((h1 - h0 + g.dh - 1) / g.dh) * ((w1 - w0 + g.dw - 1) / g.dw);
          }
          acc = count ? acc / static_cast<float>(count) : 0.0f;
        }
        dst[oh * g.out_w + ow] = acc;
      }
    }
  }
}

void global_average_pool(const Node& node, const std::vector<const Tensor*>& in, Tensor& out,
                         const OpContext& ctx) {
  const Tensor& x = need(node, in, 0);
  require_float(node, x, "input");
  if (x.shape.size() < 3) fail(node, "input " + shape_to_string(x.shape) + " must be [N, C, ...]");
  Shape os = x.shape;
  for (size_t i = 2; i < os.size(); ++i) os[i] = 1;
  const int64_t planes = x.shape[0] * x.shape[1];
  const int64_t inner = planes ? x.numel() / planes : 0;
  float* y = prepare_float(out, os);
  const float* xd = x.f32.data();
#pragma omp parallel for num_threads(ctx.threads) \
    schedule(static) if (planes * inner > kParallelGrain && ctx.threads > 1)
  for (int64_t p = 0; p < planes; ++p) {
    double acc = 0.0;
    for (int64_t j = 0; j < inner; ++j) acc += xd[p * inner + j];
    y[p] = static_cast<float>(acc / static_cast<double>(inner));
  }
}

// ---------------------------------------------------------------------------------------------
// Shape inference

void infer_pool(ShapeInference& a, const Node& node, int64_t) {
  const Shape& xs = a.value(node, 0).shape;
  if (xs.size() < 3) throw std::runtime_error(node_label(node) + ": input must be [N, C, ...]");
  auto kernel = node.attr_ints("kernel_shape", {});
  std::vector<int64_t> spatial(xs.begin() + 2, xs.end());
  auto g = window_geometry(node, spatial, kernel);
  Shape out = {xs[0], xs[1]};
  if (spatial.size() == 2) out.push_back(g.out_h);
  out.push_back(g.out_w);
  a.set(node, 0, out, DType::kFloat32);
}

void infer_global_average_pool(ShapeInference& a, const Node& node, int64_t) {
  const Shape& xs = a.value(node, 0).shape;
  Shape out = xs;
  for (size_t i = 2; i < out.size(); ++i) out[i] = 1;
  a.set(node, 0, out, DType::kFloat32);
}

void infer_pad(ShapeInference& a, const Node& node, int64_t opset) {
  const ValueInfo& x = a.value(node, 0);
  const Shape& xs = x.shape;
  std::vector<int64_t> pads;
  if (opset >= 11) {
    auto v = a.ints_of(node, 1);
    if (!v) throw std::runtime_error(node_label(node) + ": pads must be a constant");
    pads = *v;
  } else {
    pads = node.attr_ints("pads", {});
  }
  if (pads.size() != 2 * xs.size()) {
    throw std::runtime_error(node_label(node) + ": " + std::to_string(pads.size()) +
                             " pads for rank " + std::to_string(xs.size()));
  }
  Shape out = xs;
  for (size_t i = 0; i < xs.size(); ++i) {
    if (xs[i] >= 0) out[i] = xs[i] + pads[i] + pads[i + xs.size()];
  }
  a.set(node, 0, out, x.dtype);
}

}  // namespace compsearch::model::detail
