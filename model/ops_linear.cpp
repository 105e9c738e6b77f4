// Conv, Gemm and MatMul with Eigen: convolutions are im2col + Eigen GEMM per sample (direct loops
// for depthwise); Gemm and MatMul are single Eigen GEMMs split by rows. OpenMP parallelises over
// the batch where the batch has at least as many samples as threads, and inside the GEMM
// otherwise; Eigen's own threading is off so that the executor's thread count is the only knob.
// (With constant weights the executor runs these through oneDNN instead, model/dnnl_ops.h.)
#define EIGEN_DONT_PARALLELIZE
#include <omp.h>

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstring>

#include "model/op_kernels.h"

namespace compsearch::model::detail {

namespace {

using RowMajorMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using MatMap = Eigen::Map<RowMajorMatrix>;
using ConstMatMap = Eigen::Map<const RowMajorMatrix>;

}  // namespace

thread_local std::vector<float> tls_columns;

// Writes the im2col matrix [cg*kh*kw, oh*ow] of channels [c0, c0+cg) of one sample.
void im2col(const float* x, int64_t c0, int64_t cg, const WindowGeometry& g, float* col) {
  const int64_t ohw = g.out_h * g.out_w;
  for (int64_t c = 0; c < cg; ++c) {
    const float* plane = x + (c0 + c) * g.in_h * g.in_w;
    for (int64_t ki = 0; ki < g.kh; ++ki) {
      for (int64_t kj = 0; kj < g.kw; ++kj) {
        float* row = col + ((c * g.kh + ki) * g.kw + kj) * ohw;
        const int64_t col_off = kj * g.dw - g.pad_left;
        // Output columns whose input column lies inside the image: [ow_lo, ow_hi).
        int64_t ow_lo = col_off >= 0 ? 0 : (-col_off + g.sw - 1) / g.sw;
        int64_t ow_hi = g.in_w - col_off <= 0 ? 0 : (g.in_w - col_off + g.sw - 1) / g.sw;
        ow_lo = std::min(ow_lo, g.out_w);
        ow_hi = std::clamp(ow_hi, ow_lo, g.out_w);
        for (int64_t oh = 0; oh < g.out_h; ++oh) {
          float* dst = row + oh * g.out_w;
          const int64_t ih = oh * g.sh - g.pad_top + ki * g.dh;
          if (ih < 0 || ih >= g.in_h) {
            std::fill(dst, dst + g.out_w, 0.0f);
            continue;
          }
          const float* src = plane + ih * g.in_w + col_off;
          std::fill(dst, dst + ow_lo, 0.0f);
          if (g.sw == 1) {
            std::memcpy(dst + ow_lo, src + ow_lo, sizeof(float) * (ow_hi - ow_lo));
          } else {
            for (int64_t ow = ow_lo; ow < ow_hi; ++ow) dst[ow] = src[ow * g.sw];
          }
          std::fill(dst + ow_hi, dst + g.out_w, 0.0f);
        }
      }
    }
  }
}

// Depthwise (one input channel per group): direct loops, vectorised along the output row.
void depthwise_plane(const float* in, const float* w, float bias, const WindowGeometry& g,
                     float* out) {
  const int64_t ohw = g.out_h * g.out_w;
  std::fill(out, out + ohw, bias);
  for (int64_t ki = 0; ki < g.kh; ++ki) {
    for (int64_t kj = 0; kj < g.kw; ++kj) {
      const float wv = w[ki * g.kw + kj];
      const int64_t col_off = kj * g.dw - g.pad_left;
      int64_t ow_lo = col_off >= 0 ? 0 : (-col_off + g.sw - 1) / g.sw;
      int64_t ow_hi = g.in_w - col_off <= 0 ? 0 : (g.in_w - col_off + g.sw - 1) / g.sw;
      ow_lo = std::min(ow_lo, g.out_w);
      ow_hi = std::clamp(ow_hi, ow_lo, g.out_w);
      for (int64_t oh = 0; oh < g.out_h; ++oh) {
        const int64_t ih = oh * g.sh - g.pad_top + ki * g.dh;
        if (ih < 0 || ih >= g.in_h) continue;
        const float* src = in + ih * g.in_w + col_off;
        float* dst = out + oh * g.out_w;
        if (g.sw == 1) {
          for (int64_t ow = ow_lo; ow < ow_hi; ++ow) dst[ow] += wv * src[ow];
        } else {
          for (int64_t ow = ow_lo; ow < ow_hi; ++ow) dst[ow] += wv * src[ow * g.sw];
        }
      }
    }
  }
}

void conv(const Node& node, const std::vector<const Tensor*>& in, Tensor& out,
          const OpContext& ctx) {
  const Tensor& x = need(node, in, 0);
  const Tensor& w = need(node, in, 1);
  const Tensor* b = optional_input(in, 2);
  require_float(node, x, "input");
  require_float(node, w, "weight");
  if (x.shape.size() < 3 || x.shape.size() > 4 || w.shape.size() != x.shape.size()) {
    fail(node, "input " + shape_to_string(x.shape) + " and weight " + shape_to_string(w.shape) +
                   " must be [N, C, (H,) W] and [O, C/group, (kh,) kw]");
  }
  const int64_t groups = node.attr_int("group", 1);
  const int64_t n = x.shape[0], c = x.shape[1], o = w.shape[0], cg = w.shape[1];
  if (groups < 1 || c != cg * groups || o % groups != 0) {
    fail(node, "input has " + std::to_string(c) + " channels but weight " +
                   shape_to_string(w.shape) + " with group " + std::to_string(groups) +
                   " expects " + std::to_string(cg * groups));
  }
  if (b && b->numel() != o)
    fail(node, "bias has " + std::to_string(b->numel()) + " values, expected " + std::to_string(o));
  std::vector<int64_t> spatial(x.shape.begin() + 2, x.shape.end());
  std::vector<int64_t> kernel(w.shape.begin() + 2, w.shape.end());
  const auto g = window_geometry(node, spatial, kernel);
  Shape out_shape = {n, o};
  if (spatial.size() == 2) out_shape.push_back(g.out_h);
  out_shape.push_back(g.out_w);
  float* y = prepare_float(out, out_shape);
  const int64_t hw = g.in_h * g.in_w, ohw = g.out_h * g.out_w;
  const int64_t og = o / groups, k = cg * g.kh * g.kw;
  const float* xd = x.f32.data();
  const float* wd = w.f32.data();
  const float* bd = b ? b->f32.data() : nullptr;
  if (ohw == 0 || n == 0) return;

  if (cg == 1 && og == 1 && groups > 1) {  // depthwise
    const int64_t planes = n * o;
#pragma omp parallel for num_threads(ctx.threads) \
    schedule(static) if (planes > 1 && ctx.threads > 1)
    for (int64_t p = 0; p < planes; ++p) {
      const int64_t s = p / o, ch = p % o;
      depthwise_plane(xd + (s * c + ch) * hw, wd + ch * g.kh * g.kw, bd ? bd[ch] : 0.0f, g,
                      y + p * ohw);
      clamp_range(y + p * ohw, ohw, ctx);
    }
    return;
  }
  const bool pointwise = g.kh == 1 && g.kw == 1 && g.sh == 1 && g.sw == 1 && g.pad_top == 0 &&
                         g.pad_left == 0 && g.pad_bottom == 0 && g.pad_right == 0;
  auto gemm_sample = [&](int64_t s, int64_t col_begin, int64_t col_end, const float* cols_all) {
    for (int64_t gi = 0; gi < groups; ++gi) {
      const float* cols = pointwise ? xd + (s * c + gi * cg) * hw : cols_all + gi * k * ohw;
      if (k <= 16) {
        // Tiny reduction (a first layer on 1-3 channels): Eigen's packing would cost more than
        // the arithmetic, so accumulate weight-times-row directly (vectorised over columns).
        for (int64_t oc = 0; oc < og; ++oc) {
          float* __restrict dst = y + (s * o + gi * og + oc) * ohw;
          const float* wrow = wd + (gi * og + oc) * k;
          const float b0 = bd ? bd[gi * og + oc] : 0.0f;
          // Column blocks of 256 keep the output row in L1 across the k passes.
          for (int64_t jb = col_begin; jb < col_end; jb += 256) {
            const int64_t je = std::min(col_end, jb + 256);
            for (int64_t j = jb; j < je; ++j) dst[j] = b0;
            for (int64_t kk = 0; kk < k; ++kk) {
              const float wv = wrow[kk];
              const float* __restrict src = cols + kk * ohw;
              for (int64_t j = jb; j < je; ++j) dst[j] += wv * src[j];
            }
          }
          if (ctx.clamp) {
            for (int64_t j = col_begin; j < col_end; ++j)
              dst[j] = std::min(std::max(dst[j], ctx.lo), ctx.hi);
          }
        }
        continue;
      }
      ConstMatMap wm(wd + gi * og * k, og, k);
      Eigen::Map<const RowMajorMatrix, 0, Eigen::OuterStride<>> cm(
          cols + col_begin, k, col_end - col_begin, Eigen::OuterStride<>(ohw));
      Eigen::Map<RowMajorMatrix, 0, Eigen::OuterStride<>> ym(
          y + (s * o + gi * og) * ohw + col_begin, og, col_end - col_begin,
          Eigen::OuterStride<>(ohw));
      ym.noalias() = wm * cm;
      if (bd) ym.colwise() += Eigen::Map<const Eigen::VectorXf>(bd + gi * og, og);
      apply_clamp(ym, ctx);
    }
  };
  if (n >= ctx.threads || ctx.threads == 1) {
#pragma omp parallel for num_threads(ctx.threads) schedule(static) if (n > 1 && ctx.threads > 1)
    for (int64_t s = 0; s < n; ++s) {
      const float* cols = nullptr;
      if (!pointwise) {
        tls_columns.resize(static_cast<size_t>(groups * k * ohw));
        for (int64_t gi = 0; gi < groups; ++gi) {
          im2col(xd + s * c * hw, gi * cg, cg, g, tls_columns.data() + gi * k * ohw);
        }
        cols = tls_columns.data();
      }
      gemm_sample(s, 0, ohw, cols);
    }
    return;
  }
  // Fewer samples than threads (e.g. one 224x224 image): parallel im2col, then the GEMM split
  // by output columns.
  std::vector<float>& cols = tls_columns;
  for (int64_t s = 0; s < n; ++s) {
    if (!pointwise) {
      cols.resize(static_cast<size_t>(groups * k * ohw));
      float* cd = cols.data();
#pragma omp parallel for num_threads(ctx.threads) schedule(static)
      for (int64_t ch = 0; ch < groups * cg; ++ch) {
        im2col(xd + s * c * hw, ch, 1, g, cd + ch * g.kh * g.kw * ohw);
      }
    }
    const float* cd = pointwise ? nullptr : cols.data();
#pragma omp parallel num_threads(ctx.threads)
    {
      const int t = omp_get_thread_num(), nt = omp_get_num_threads();
      const int64_t chunk = ((ohw + nt - 1) / nt + 15) / 16 * 16;
      const int64_t c0 = std::min<int64_t>(ohw, t * chunk), c1 = std::min<int64_t>(ohw, c0 + chunk);
      if (c1 > c0) gemm_sample(s, c0, c1, cd);
    }
  }
}

// Y[m, n] = A[m, k] * B[k, n], rows split over threads. A and B may be transposed views.
template <typename AExpr, typename BExpr>
void parallel_rows_gemm(const AExpr& a, const BExpr& b, float* y, int64_t m, int64_t n,
                        const OpContext& ctx) {
  const int64_t work = m * n * a.cols();
  const int threads = work < kParallelGrain * 4 ? 1 : ctx.threads;
#pragma omp parallel num_threads(threads) if (threads > 1)
  {
    const int t = omp_get_thread_num(), nt = omp_get_num_threads();
    const int64_t chunk = (m + nt - 1) / nt;
    const int64_t r0 = std::min<int64_t>(m, t * chunk), r1 = std::min<int64_t>(m, r0 + chunk);
    if (r1 > r0) {
      MatMap ym(y + r0 * n, r1 - r0, n);
      ym.noalias() = a.middleRows(r0, r1 - r0) * b;
    }
  }
}

void gemm(const Node& node, const std::vector<const Tensor*>& in, Tensor& out,
          const OpContext& ctx) {
  const Tensor& a = need(node, in, 0);
  const Tensor& b = need(node, in, 1);
  const Tensor* c = optional_input(in, 2);
  require_float(node, a, "A");
  require_float(node, b, "B");
  if (a.shape.size() != 2 || b.shape.size() != 2) {
    fail(node,
         "A " + shape_to_string(a.shape) + " and B " + shape_to_string(b.shape) + " must be 2-D");
  }
  const bool ta = node.attr_int("transA", 0) != 0, tb = node.attr_int("transB", 0) != 0;
  const float alpha = node.attr_float("alpha", 1.0f), beta = node.attr_float("beta", 1.0f);
  const int64_t m = ta ? a.shape[1] : a.shape[0], k = ta ? a.shape[0] : a.shape[1];
  const int64_t kb = tb ? b.shape[1] : b.shape[0], n = tb ? b.shape[0] : b.shape[1];
  if (k != kb) {
    fail(node, "A " + shape_to_string(a.shape) + (ta ? " (transA)" : "") + " and B " +
                   shape_to_string(b.shape) + (tb ? " (transB)" : "") + " have inner sizes " +
                   std::to_string(k) + " and " + std::to_string(kb));
  }
  float* y = prepare_float(out, {m, n});
  ConstMatMap am(a.f32.data(), a.shape[0], a.shape[1]);
  ConstMatMap bm(b.f32.data(), b.shape[0], b.shape[1]);
  if (!ta && !tb)
    parallel_rows_gemm(am, bm, y, m, n, ctx);
  else if (!ta && tb)
    parallel_rows_gemm(am, bm.transpose(), y, m, n, ctx);
  else if (ta && !tb)
    parallel_rows_gemm(am.transpose(), bm, y, m, n, ctx);
  else
    parallel_rows_gemm(am.transpose(), bm.transpose(), y, m, n, ctx);
  MatMap ym(y, m, n);
  if (alpha != 1.0f) ym *= alpha;
  if (c && beta != 0.0f) {
    require_float(node, *c, "C");
    const int64_t cn = c->numel();
    const float* cd = c->f32.data();
    if (cn == 1) {
      ym.array() += beta * cd[0];
    } else if (cn == n && (c->shape.size() == 1 || c->shape[0] == 1)) {
      ym.rowwise() += beta * Eigen::Map<const Eigen::RowVectorXf>(cd, n);
    } else if (cn == m && c->shape.size() == 2 && c->shape[1] == 1) {
      ym.colwise() += beta * Eigen::Map<const Eigen::VectorXf>(cd, m);
    } else if (cn == m * n) {
      ym += beta * ConstMatMap(cd, m, n);
    } else {
      fail(node, "C " + shape_to_string(c->shape) + " does not broadcast to [" + std::to_string(m) +
                     ", " + std::to_string(n) + "]");
    }
  }
  apply_clamp(ym, ctx);
}

void matmul(const Node& node, const std::vector<const Tensor*>& in, Tensor& out,
            const OpContext& ctx) {
  const Tensor& a = need(node, in, 0);
  const Tensor& b = need(node, in, 1);
  require_float(node, a, "A");
  require_float(node, b, "B");
  if (a.shape.size() < 2 || b.shape.size() < 2) {
    fail(node, "operands " + shape_to_string(a.shape) + " and " + shape_to_string(b.shape) +
                   " must have rank >= 2 (1-D MatMul is not supported)");
  }
  const int64_t m = a.shape[a.shape.size() - 2], k = a.shape.back();
  const int64_t kb = b.shape[b.shape.size() - 2], n = b.shape.back();
  if (k != kb) {
    fail(node, "operands " + shape_to_string(a.shape) + " and " + shape_to_string(b.shape) +
                   " have inner sizes " + std::to_string(k) + " and " + std::to_string(kb));
  }
  Shape abatch(a.shape.begin(), a.shape.end() - 2), bbatch(b.shape.begin(), b.shape.end() - 2);
  Shape batch = broadcast_shapes(abatch, bbatch, node);
  Shape out_shape = batch;
  out_shape.push_back(m);
  out_shape.push_back(n);
  float* y = prepare_float(out, out_shape);
  if (b.shape.size() == 2) {  // the common case: one GEMM over all rows of A
    const int64_t rows = a.numel() / k;
    parallel_rows_gemm(ConstMatMap(a.f32.data(), rows, k), ConstMatMap(b.f32.data(), k, n), y, rows,
                       n, ctx);
    return;
  }
  const int64_t nb = shape_numel(batch);
  const size_t r = batch.size();
  auto offset = [&](const Shape& s, int64_t idx) {  // broadcast batch index -> operand matrix
    int64_t off = 0, stride = 1;
    for (size_t i = 0; i < r; ++i) {
      const size_t d = r - 1 - i;
      const int64_t coord = idx % batch[d];
      idx /= batch[d];
      if (i < s.size()) {
        const int64_t sd = s[s.size() - 1 - i];
        if (sd != 1) off += coord * stride;
        stride *= sd;
      }
    }
    return off;
  };
#pragma omp parallel for num_threads(ctx.threads) schedule(static) if (nb > 1 && ctx.threads > 1)
  for (int64_t i = 0; i < nb; ++i) {
    ConstMatMap am(a.f32.data() + offset(abatch, i) * m * k, m, k);
    ConstMatMap bm(b.f32.data() + offset(bbatch, i) * k * n, k, n);
    MatMap(y + i * m * n, m, n).noalias() = am * bm;
  }
}

// ---------------------------------------------------------------------------------------------
// Shape inference

void infer_conv(ShapeInference& a, const Node& node, int64_t) {
  const Shape& xs = a.value(node, 0).shape;
  const ValueInfo& w = a.value(node, 1);
  if (xs.size() < 3 || w.shape.size() != xs.size()) {
    throw std::runtime_error(node_label(node) + ": input " + shape_to_string(xs) + " and weight " +
                             shape_to_string(w.shape) + " must both be [N, C, spatial...]");
  }
  const int64_t groups = node.attr_int("group", 1);
  if (xs[1] >= 0 && xs[1] != w.shape[1] * groups) {
    throw std::runtime_error(node_label(node) + ": input has " + std::to_string(xs[1]) +
                             " channels, weight " + shape_to_string(w.shape) + " with group " +
                             std::to_string(groups) + " expects " +
                             std::to_string(w.shape[1] * groups));
  }
  std::vector<int64_t> spatial(xs.begin() + 2, xs.end());
  std::vector<int64_t> kernel(w.shape.begin() + 2, w.shape.end());
  Shape out = {xs[0], w.shape[0]};
  if (std::all_of(spatial.begin(), spatial.end(), [](int64_t d) { return d >= 0; })) {
    auto g = window_geometry(node, spatial, kernel);
    if (spatial.size() == 2) out.push_back(g.out_h);
    out.push_back(g.out_w);
  } else {
    out.insert(out.end(), spatial.size(), -1);
  }
  a.set(node, 0, out, DType::kFloat32);
}

void infer_gemm(ShapeInference& a, const Node& node, int64_t) {
  const Shape& xs = a.value(node, 0).shape;
  const Shape& bs = a.value(node, 1).shape;
  if (xs.size() != 2 || bs.size() != 2) {
    throw std::runtime_error(node_label(node) + ": A " + shape_to_string(xs) + " and B " +
                             shape_to_string(bs) + " must be 2-D");
  }
  const bool ta = node.attr_int("transA", 0) != 0, tb = node.attr_int("transB", 0) != 0;
  const int64_t k1 = ta ? xs[0] : xs[1], k2 = tb ? bs[1] : bs[0];
  if (k1 >= 0 && k2 >= 0 && k1 != k2) {
    throw std::runtime_error(node_label(node) + ": A " + shape_to_string(xs) + " and B " +
                             shape_to_string(bs) + " have different inner sizes");
  }
  a.set(node, 0, {ta ? xs[1] : xs[0], tb ? bs[0] : bs[1]}, DType::kFloat32);
}

void infer_matmul(ShapeInference& a, const Node& node, int64_t) {
  const Shape& xs = a.value(node, 0).shape;
  const Shape& bs = a.value(node, 1).shape;
  if (xs.size() < 2 || bs.size() < 2) {
    throw std::runtime_error(node_label(node) + ": operands " + shape_to_string(xs) + " and " +
                             shape_to_string(bs) + " must have rank >= 2");
  }
  const int64_t k1 = xs.back(), k2 = bs[bs.size() - 2];
  if (k1 >= 0 && k2 >= 0 && k1 != k2) {
    throw std::runtime_error(node_label(node) + ": operands " + shape_to_string(xs) + " and " +
                             shape_to_string(bs) + " have different inner sizes");
  }
  Shape ab(xs.begin(), xs.end() - 2), bb(bs.begin(), bs.end() - 2);
  Shape out = broadcast_shapes(ab, bb, node);
  out.push_back(xs[xs.size() - 2]);
  out.push_back(bs.back());
  a.set(node, 0, out, DType::kFloat32);
}

}  // namespace compsearch::model::detail
