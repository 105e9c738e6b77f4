// Executor: batched CPU inference of the supported op set.
//
// Conv, Gemm and MatMul with constant weights run through oneDNN (model/dnnl_ops.h) with the fused
// Relu/Clip as a post-op, and the values between oneDNN convolutions and poolings stay NHWC
// (plan_channels_last); ExecutorOptions::kernels picks Eigen instead, and kAuto keeps it where it
// measured faster (prefer_onednn). The Eigen kernels: convolutions are im2col + Eigen GEMM per
// sample (direct loops for depthwise); Gemm and MatMul are single Eigen GEMMs split by rows. OpenMP
// parallelises over the batch where the batch has at least as many samples as threads, and inside
// the GEMM otherwise. Eigen's own threading is off so that ExecutorOptions::threads is the only
// knob. Activation buffers come from a pool kept in a per-run workspace: the op sequence is the
// same every run, so after the first batch no activation or im2col buffer is allocated again.
#define EIGEN_DONT_PARALLELIZE
#include "model/executor.h"

#include <omp.h>

#include <Eigen/Core>
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <unordered_map>

#include "model/dnnl_ops.h"
#include "model/node_eval.h"
#include "model/op_util.h"

namespace compsearch::model {

namespace {

using detail::node_label;
using RowMajorMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using MatMap = Eigen::Map<RowMajorMatrix>;
using ConstMatMap = Eigen::Map<const RowMajorMatrix>;

// Elementwise loops smaller than this stay on one thread (the fork costs more than the work).
constexpr int64_t kParallelGrain = 1 << 15;
// A batch with fewer Conv/Gemm/MatMul flops than this runs on one thread: about 0.1-0.2 ms of
// work on one core, the cost of a few fork/joins on a busy 2-core machine (bench_executor: the
// reference CNN at batch 1 ran 10x slower on 2 threads than on 1 under a load average of 7).
constexpr double kSerialFlops = 8e6;

struct OpContext {
  int threads = 1;
  int64_t opset = 13;
  // A Relu/Clip fused into the Conv/Gemm/MatMul that feeds it: y = clamp(y, lo, hi).
  bool clamp = false;
  float lo = -INFINITY, hi = INFINITY;
  // A QuantizeLinear whose only reader is a matching DequantizeLinear: write the dequantized
  // floats instead of the integers (the pair as one pass, no integer tensor in between).
  bool fake_quantize = false;
};

template <typename Block>
void apply_clamp(Block&& y, const OpContext& ctx) {
  if (ctx.clamp) y = y.cwiseMax(ctx.lo).cwiseMin(ctx.hi);
}

void clamp_range(float* y, int64_t n, const OpContext& ctx) {
  if (!ctx.clamp) return;
  for (int64_t i = 0; i < n; ++i) y[i] = std::min(std::max(y[i], ctx.lo), ctx.hi);
}

[[noreturn]] void fail(const Node& node, const std::string& what) {
  throw std::runtime_error(node_label(node) + ": " + what);
}

const Tensor& need(const Node& node, const std::vector<const Tensor*>& in, size_t i) {
  if (i >= in.size() || !in[i]) fail(node, "missing required input #" + std::to_string(i));
  return *in[i];
}

const Tensor* optional_input(const std::vector<const Tensor*>& in, size_t i) {
  return i < in.size() ? in[i] : nullptr;
}

void require_float(const Node& node, const Tensor& t, const char* what) {
  if (!t.is_float())
    fail(node, std::string(what) + " must be a float tensor, got " + dtype_name(t.dtype));
}

void prepare_like(Tensor& out, const Shape& shape, DType dtype) {
  out.dtype = dtype;
  out.shape = shape;
  const size_t n = static_cast<size_t>(shape_numel(shape));
  if (out.is_float()) {
    out.i64.clear();
    out.f32.resize(n);
  } else {
    out.f32.clear();
    out.i64.resize(n);
  }
}

std::vector<int64_t> int_values(const Node& node, const Tensor& t, const char* what) {
  if (t.is_float()) fail(node, std::string(what) + " must be an integer tensor");
  return t.i64;
}

// ---------------------------------------------------------------------------------------------
// Convolution

thread_local std::vector<float> tls_columns;

// Writes the im2col matrix [cg*kh*kw, oh*ow] of channels [c0, c0+cg) of one sample.
void im2col(const float* x, int64_t c0, int64_t cg, const detail::WindowGeometry& g, float* col) {
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
void depthwise_plane(const float* in, const float* w, float bias, const detail::WindowGeometry& g,
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
  const auto g = detail::window_geometry(node, spatial, kernel);
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

// ---------------------------------------------------------------------------------------------
// Gemm / MatMul

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
  Shape batch = detail::broadcast_shapes(abatch, bbatch, node);
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
// Elementwise

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
  const Shape os = detail::broadcast_shapes(a.shape, b.shape, node);
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

float scalar_input(const Node& node, const std::vector<const Tensor*>& in, size_t i,
                   float fallback) {
  const Tensor* t = optional_input(in, i);
  if (!t) return fallback;
  if (t->numel() != 1) fail(node, "input #" + std::to_string(i) + " must be a scalar");
  return t->is_float() ? t->f32[0] : static_cast<float>(t->i64[0]);
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

// ---------------------------------------------------------------------------------------------
// Pooling

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
  const auto g = detail::window_geometry(node, spatial, kernel);
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

void softmax(const Node& node, const std::vector<const Tensor*>& in, Tensor& out,
             const OpContext& ctx) {
  const Tensor& x = need(node, in, 0);
  require_float(node, x, "input");
  const int64_t rank = static_cast<int64_t>(x.shape.size());
  const int64_t axis =
      detail::normalize_axis(node.attr_int("axis", ctx.opset >= 13 ? -1 : 1), rank, node);
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
// Data movement (float and integer tensors alike)

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
             int64_t declared_batch) {
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

void transpose(const Node& node, const std::vector<const Tensor*>& in, Tensor& out) {
  const Tensor& x = need(node, in, 0);
  const int64_t r = static_cast<int64_t>(x.shape.size());
  auto perm = node.attr_ints("perm", {});
  if (perm.empty())
    for (int64_t i = r - 1; i >= 0; --i) perm.push_back(i);
  if (static_cast<int64_t>(perm.size()) != r)
    fail(node, "perm does not match rank " + std::to_string(r));
  Shape os(r);
  for (int64_t i = 0; i < r; ++i) {
    perm[i] = detail::normalize_axis(perm[i], r, node);
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

void concat(const Node& node, const std::vector<const Tensor*>& in, Tensor& out) {
  const Tensor& x0 = need(node, in, 0);
  const int64_t r = static_cast<int64_t>(x0.shape.size());
  const int64_t axis = detail::normalize_axis(node.attr_int("axis", 0), r, node);
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

void gather(const Node& node, const std::vector<const Tensor*>& in, Tensor& out) {
  const Tensor& x = need(node, in, 0);
  const Tensor& idx = need(node, in, 1);
  const auto indices = int_values(node, idx, "indices");
  const int64_t r = static_cast<int64_t>(x.shape.size());
  const int64_t axis = detail::normalize_axis(node.attr_int("axis", 0), r, node);
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

void slice(const Node& node, const std::vector<const Tensor*>& in, Tensor& out) {
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
    const int64_t ax = detail::normalize_axis(axes[i], r, node);
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

void cast(const Node& node, const std::vector<const Tensor*>& in, Tensor& out) {
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
    for (int64_t i = 0; i < n; ++i)
      tmp.f32[i] = detail::half_to_float(detail::float_to_half(tmp.f32[i]));
  } else if (dt == DType::kInt8) {
    for (int64_t i = 0; i < n; ++i) tmp.i64[i] = static_cast<int8_t>(tmp.i64[i]);
  } else if (dt == DType::kUInt8) {
    for (int64_t i = 0; i < n; ++i) tmp.i64[i] = static_cast<uint8_t>(tmp.i64[i]);
  }
  out = std::move(tmp);
}

// ---------------------------------------------------------------------------------------------
// QuantizeLinear / DequantizeLinear (opset 10 per-tensor, opset 13 per-axis), as the ONNX
// specification and ONNX Runtime compute them, all in float32:
//   QuantizeLinear   q = saturate(round_half_to_even(x / scale) + zero_point)
//   DequantizeLinear y = (q - zero_point) * scale

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
    const int64_t axis = detail::normalize_axis(node.attr_int("axis", 1), rank, node);
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
    // round-half-even(x / s) + z, saturated; NaN saturates to the lower bound as in ONNX Runtime.
    auto level = [=](float v) {
      const float r = std::nearbyint(v / s) + z;
      return std::min(r >= lo ? r : lo, hi);
    };
    if (yf) {
      float* yp = yf + p * q.inner;
      for (int64_t i = 0; i < q.inner; ++i) yp[i] = (level(xp[i]) - z) * s;
    } else {
      int64_t* yp = yq + p * q.inner;
      for (int64_t i = 0; i < q.inner; ++i) yp[i] = static_cast<int64_t>(level(xp[i]));
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

void flatten(const Node& node, const std::vector<const Tensor*>& in, Tensor& out) {
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
    for (int64_t a : axes) ins[detail::normalize_axis(a, r, node)] = true;
    size_t j = 0;
    for (int64_t i = 0; i < r; ++i) os.push_back(ins[i] ? 1 : x.shape[j++]);
  } else {
    const int64_t r = static_cast<int64_t>(x.shape.size());
    std::vector<bool> rm(r, false);
    if (axes.empty())
      for (int64_t i = 0; i < r; ++i) rm[i] = x.shape[i] == 1;
    for (int64_t a : axes) {
      const int64_t ax = detail::normalize_axis(a, r, node);
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

// Dispatches one node. `out` tensors are reused between runs.
void run_op(const Node& node, const std::vector<const Tensor*>& in, std::vector<Tensor*>& out,
            const OpContext& ctx, int64_t declared_batch) {
  const std::string& op = node.op_type;
  Tensor& y = *out[0];
  if (op == "Conv")
    conv(node, in, y, ctx);
  else if (op == "Gemm")
    gemm(node, in, y, ctx);
  else if (op == "MatMul")
    matmul(node, in, y, ctx);
  else if (op == "Add" || op == "Sub" || op == "Mul" || op == "Div")
    binary(node, in, y, ctx);
  else if (op == "Relu" || op == "Abs" || op == "Clip" || op == "Sigmoid" || op == "HardSigmoid" ||
           op == "HardSwish" || op == "Tanh")
    unary(node, in, y, ctx);
  else if (op == "Pad")
    pad(node, in, y, ctx);
  else if (op == "BatchNormalization")
    batch_norm(node, in, y, ctx);
  else if (op == "MaxPool" || op == "AveragePool")
    pool(node, in, y, ctx);
  else if (op == "GlobalAveragePool")
    global_average_pool(node, in, y, ctx);
  else if (op == "Softmax")
    softmax(node, in, y, ctx);
  else if (op == "Flatten")
    flatten(node, in, y);
  else if (op == "Reshape")
    reshape(node, in, y, declared_batch);
  else if (op == "Transpose")
    transpose(node, in, y);
  else if (op == "Concat")
    concat(node, in, y);
  else if (op == "Identity" || op == "Dropout")
    copy_with_shape(need(node, in, 0), y, in[0]->shape);
  else if (op == "Squeeze" || op == "Unsqueeze")
    squeeze_unsqueeze(node, in, y, ctx);
  else if (op == "Gather")
    gather(node, in, y);
  else if (op == "Slice")
    slice(node, in, y);
  else if (op == "Cast")
    cast(node, in, y);
  else if (op == "QuantizeLinear")
    quantize_linear(node, in, y, ctx);
  else if (op == "DequantizeLinear")
    dequantize_linear(node, in, y, ctx);
  else if (op == "Shape") {
    const Tensor& x = need(node, in, 0);
    const int64_t r = static_cast<int64_t>(x.shape.size());
    int64_t s = node.attr_int("start", 0), e = node.attr_int("end", r);
    if (s < 0) s += r;
    if (e < 0) e += r;
    s = std::clamp<int64_t>(s, 0, r);
    e = std::clamp<int64_t>(e, s, r);
    y = Tensor::ints({e - s}, std::vector<int64_t>(x.shape.begin() + s, x.shape.begin() + e));
  } else if (op == "Constant") {
    auto it = node.attributes.find("value");
    if (it == node.attributes.end() || !it->second.t)
      fail(node, "needs a 'value' tensor attribute");
    y = *it->second.t;
  } else {
    fail(node, "not supported by the executor");
  }
}

}  // namespace

namespace detail {

std::vector<Tensor> evaluate_node(const Node& node, const std::vector<const Tensor*>& inputs,
                                  int64_t opset) {
  std::vector<Tensor> outs(std::max<size_t>(1, node.outputs.size()));
  std::vector<Tensor*> ptrs;
  for (auto& t : outs) ptrs.push_back(&t);
  run_op(node, inputs, ptrs, OpContext{1, opset}, -1);
  return outs;
}

}  // namespace detail

// ---------------------------------------------------------------------------------------------
// Executor

namespace {

ExecutorOptions::Kernels kernels_from_environment(ExecutorOptions::Kernels requested) {
  if (requested != ExecutorOptions::Kernels::kAuto) return requested;
  const char* env = std::getenv("COMPSEARCH_EXECUTOR_KERNELS");
  if (!env || !*env || std::string(env) == "auto") return requested;
  if (std::string(env) == "eigen") return ExecutorOptions::Kernels::kEigen;
  if (std::string(env) == "onednn") return ExecutorOptions::Kernels::kOneDnn;
  throw std::invalid_argument("environment variable COMPSEARCH_EXECUTOR_KERNELS='" +
                              std::string(env) + "': expected auto, eigen or onednn");
}

// Sets the calling thread's OpenMP thread count (what oneDNN's kernels fork) for one run and
// restores it after.
class OmpThreads {
 public:
  explicit OmpThreads(int threads) : saved_(omp_get_max_threads()) {
    if (threads != saved_) omp_set_num_threads(threads);
  }
  ~OmpThreads() {
    if (omp_get_max_threads() != saved_) omp_set_num_threads(saved_);
  }
  OmpThreads(const OmpThreads&) = delete;
  OmpThreads& operator=(const OmpThreads&) = delete;

 private:
  int saved_;
};

struct Step {
  size_t node_index;
  std::vector<int> inputs;   // slot per input, -1 for an omitted one
  std::vector<int> outputs;  // slot per output, -1 for an unused one
  std::vector<int> release;  // value slots whose last reader is this step
  bool hooked = false;       // Conv/Gemm/MatMul with a non-constant activation input
  bool skip = false;         // a Relu/Clip fused into the step before it
  bool clamp = false;        // this step applies a fused Relu/Clip
  float lo = -INFINITY, hi = INFINITY;
  bool fake_quantize = false;  // a QuantizeLinear that also does its DequantizeLinear (fused pair)
  // Conv/Gemm/MatMul with constant weights that oneDNN can run (with the fused Relu/Clip).
  std::shared_ptr<detail::DnnlOp> dnnl;
  // Channels-last (see DnnlOp::set_layouts): input 0 / output 0 are stored NHWC. Such a step always
  // runs its oneDNN op (converting around the Eigen kernel only if oneDNN declines a shape).
  bool nhwc_in = false, nhwc_out = false;
};

struct Workspace {
  std::vector<Tensor> values;
  std::vector<std::vector<float>> free_buffers;
  Tensor hooked_input;
  Tensor scratch_output;
  std::vector<size_t> last_size;  // by slot: the float count of each value in the last run
  detail::DnnlScratch dnnl_scratch;
  Tensor layout_copy;
};

}  // namespace

struct Executor::Impl {
  const Graph* graph = nullptr;
  ExecutorOptions options;
  int threads = 1;
  ExecutorOptions::Kernels kernels = ExecutorOptions::Kernels::kAuto;
  int64_t declared_batch = -1;
  // Slots: [0, n_inputs) graph inputs, then initializers, then computed values.
  std::vector<const Tensor*> constant_slots;  // by slot; nullptr for non-constants
  // Values of nodes whose inputs are all constant (DequantizeLinear of int8 weights in a QDQ
  // graph built in memory), computed once here; a deque keeps the pointers above stable.
  std::deque<Tensor> folded;
  size_t n_inputs = 0;
  size_t n_slots = 0;
  std::vector<Step> steps;
  std::vector<int> output_slots;
  std::vector<char> is_output;  // by slot
  // Some step mixes samples (a QuantizeLinear / DequantizeLinear with per-axis scales along the
  // batch axis): the batch cannot be split into slices that run independently.
  bool batch_coupled = false;
  // Floating-point operations of the Conv/Gemm/MatMul steps per sample, from the inferred shapes;
  // 0 when a shape is unknown (the run then uses every thread it was given).
  double flops_per_sample = 0;
  LayerInputHook hook;
  mutable std::atomic<int64_t> onednn_calls{0};
  mutable std::mutex pool_mutex;
  mutable std::vector<std::unique_ptr<Workspace>> pool;

  std::unique_ptr<Workspace> acquire() const {
    std::lock_guard<std::mutex> lock(pool_mutex);
    if (pool.empty()) {
      auto ws = std::make_unique<Workspace>();
      ws->values.resize(n_slots);
      ws->last_size.assign(n_slots, 0);
      return ws;
    }
    auto ws = std::move(pool.back());
    pool.pop_back();
    return ws;
  }
  void give_back(std::unique_ptr<Workspace> ws) const {
    std::lock_guard<std::mutex> lock(pool_mutex);
    pool.push_back(std::move(ws));
  }
};

int resolve_threads(int threads, const std::string& what) {
  if (threads < 0 || threads > kMaxThreads) {
    throw std::invalid_argument(what + ": value " + std::to_string(threads) +
                                " out of range; expected 0 (all cores) to " +
                                std::to_string(kMaxThreads));
  }
  return threads > 0 ? threads : omp_get_max_threads();
}

namespace {

double flops_per_sample(const Executor::Impl& im, const Graph& graph) {
  double total = 0;
  for (const Step& st : im.steps) {
    const Node& node = graph.nodes[st.node_index];
    if (node.op_type != "Conv" && node.op_type != "Gemm" && node.op_type != "MatMul") continue;
    if (st.inputs.size() < 2 || st.inputs[1] < 0 || node.outputs.empty()) return 0;
    auto in = graph.value_info.find(node.inputs[0]);
    auto out = graph.value_info.find(node.outputs[0]);
    const Tensor* w = im.constant_slots[st.inputs[1]];
    if (!w || out == graph.value_info.end() || out->second.shape.empty()) return 0;
    double per_sample = 1;
    for (size_t d = 1; d < out->second.shape.size(); ++d) {
      if (out->second.shape[d] < 0) return 0;
      per_sample *= static_cast<double>(out->second.shape[d]);
    }
    if (node.op_type == "Gemm" && node.attr_int("transA", 0) != 0) return 0;  // batch is K
    if (node.op_type == "Conv") {
      if (w->shape.empty() || w->shape[0] == 0) return 0;
      total += 2 * per_sample * static_cast<double>(w->numel() / w->shape[0]);
    } else {
      if (w->shape.size() != 2 || in == graph.value_info.end()) return 0;
      const int64_t k = node.attr_int("transB", 0) != 0 ? w->shape[1] : w->shape[0];
      total += 2 * per_sample * static_cast<double>(k);
    }
  }
  return total;
}

bool elementwise_unary(const std::string& op) {
  return op == "Relu" || op == "Clip" || op == "Abs" || op == "Sigmoid" || op == "HardSigmoid" ||
         op == "HardSwish" || op == "Tanh";
}

// Picks the values kept channels-last (NHWC) between oneDNN steps: a rank-4 computed value that is
// not a graph output, whose producer and readers are all either oneDNN 2-D Conv / pooling steps
// (which read and write either layout) or elementwise steps (unary ops, and Add/Sub/Mul/Div of
// two values of one shape), the elementwise ones with all their computed inputs and their output
// in one layout. Everything else (Flatten, Reshape, Concat, a broadcast, BatchNormalization...)
// sees NCHW as before.
void plan_channels_last(Executor::Impl& im, const Graph& graph,
                        const std::unordered_map<std::string, int>& slot) {
  std::vector<const std::string*> names(im.n_slots, nullptr);
  for (const auto& [name, s] : slot) names[s] = &name;
  auto shape_of = [&](int s) -> const Shape* {
    if (s < 0 || !names[s]) return nullptr;
    auto it = graph.value_info.find(*names[s]);
    return it == graph.value_info.end() ? nullptr : &it->second.shape;
  };
  std::vector<char> nhwc(im.n_slots, 0);
  for (size_t s = im.n_inputs; s < im.n_slots; ++s) {
    const Shape* sh = shape_of(static_cast<int>(s));
    nhwc[s] = !im.constant_slots[s] && sh && sh->size() == 4;
  }
  for (int o : im.output_slots) nhwc[o] = 0;
  enum Kind { kNchw, kOneDnn, kElementwise };
  std::vector<Kind> kinds;
  bool any_onednn = false;
  for (Step& st : im.steps) {
    const Node& node = graph.nodes[st.node_index];
    Kind k = kNchw;
    if (node.op_type == "MaxPool" || node.op_type == "AveragePool" ||
        node.op_type == "GlobalAveragePool")
      st.dnnl = detail::DnnlOp::create_pool(node);
    if (st.dnnl && st.dnnl->takes_channels_last() && !st.inputs.empty() && st.inputs[0] >= 0) {
      k = kOneDnn;
      any_onednn = true;
    } else if (elementwise_unary(node.op_type) && !st.fake_quantize) {
      k = kElementwise;
    } else if (node.op_type == "Add" || node.op_type == "Sub" || node.op_type == "Mul" ||
               node.op_type == "Div") {
      const Shape* a = st.inputs.size() == 2 ? shape_of(st.inputs[0]) : nullptr;
      const Shape* b = st.inputs.size() == 2 ? shape_of(st.inputs[1]) : nullptr;
      if (a && b && *a == *b && !im.constant_slots[st.inputs[0]] &&
          !im.constant_slots[st.inputs[1]])
        k = kElementwise;
    }
    kinds.push_back(k);
  }
  if (!any_onednn) {
    for (Step& st : im.steps) {
      const std::string& op = graph.nodes[st.node_index].op_type;
      if (op == "MaxPool" || op == "AveragePool" || op == "GlobalAveragePool") st.dnnl.reset();
    }
    return;
  }
  for (bool changed = true; changed;) {
    changed = false;
    auto clear = [&](int s) {
      if (s >= 0 && nhwc[s]) {
        nhwc[s] = 0;
        changed = true;
      }
    };
    for (size_t i = 0; i < im.steps.size(); ++i) {
      const Step& st = im.steps[i];
      if (kinds[i] == kNchw) {
        for (int s : st.inputs) clear(s);
        for (int s : st.outputs) clear(s);
      } else if (kinds[i] == kOneDnn) {
        for (size_t k = 1; k < st.outputs.size(); ++k) clear(st.outputs[k]);
      } else {  // elementwise: one layout for every computed input and the output
        bool all = true;
        for (int s : st.inputs)
          if (s >= 0 && !im.constant_slots[s] && !nhwc[s]) all = false;
        for (int s : st.outputs)
          if (s >= 0 && !nhwc[s]) all = false;
        if (!all) {
          for (int s : st.inputs)
            if (s >= 0 && !im.constant_slots[s]) clear(s);
          for (int s : st.outputs) clear(s);
        }
      }
    }
  }
  for (size_t i = 0; i < im.steps.size(); ++i) {
    Step& st = im.steps[i];
    if (kinds[i] != kOneDnn) continue;
    st.nhwc_in = nhwc[st.inputs[0]];
    st.nhwc_out = !st.outputs.empty() && st.outputs[0] >= 0 && nhwc[st.outputs[0]];
    const std::string& op = graph.nodes[st.node_index].op_type;
    const bool pool = op != "Conv";
    if (pool && !st.nhwc_in && !st.nhwc_out) {
      st.dnnl.reset();  // NCHW in and out: the executor's own pooling
      continue;
    }
    st.dnnl->set_layouts(st.nhwc_in, st.nhwc_out);
  }
}

}  // namespace

Executor::Executor(const Graph& graph, ExecutorOptions options) : impl_(std::make_shared<Impl>()) {
  Impl& im = *impl_;
  im.graph = &graph;
  im.options = options;
  im.threads = resolve_threads(options.threads, "ExecutorOptions::threads");
  im.kernels = kernels_from_environment(options.kernels);
  if (!graph.inputs.empty() && !graph.inputs[0].shape.empty())
    im.declared_batch = graph.inputs[0].shape[0];
  std::unordered_map<std::string, int> slot;
  for (const auto& in : graph.inputs) {
    slot[in.name] = static_cast<int>(im.constant_slots.size());
    im.constant_slots.push_back(nullptr);
  }
  im.n_inputs = graph.inputs.size();
  for (const auto& [name, t] : graph.initializers) {
    if (slot.count(name)) continue;
    slot[name] = static_cast<int>(im.constant_slots.size());
    im.constant_slots.push_back(&t);
  }
  const auto& supported = supported_ops();
  std::vector<int> last_reader;
  for (size_t i = 0; i < graph.nodes.size(); ++i) {
    const Node& node = graph.nodes[i];
    if (std::find(supported.begin(), supported.end(), node.op_type) == supported.end()) {
      throw std::runtime_error(node_label(node) + ": op type not supported by the executor");
    }
    // Constant folding at plan time: a node that reads only initializers (and earlier folded
    // values) runs once now, so e.g. DequantizeLinear on int8 weights costs nothing per batch
    // and the Conv/Gemm behind it sees a float weight like any other.
    bool all_constant = !node.inputs.empty();
    std::vector<const Tensor*> constant_inputs;
    for (const auto& name : node.inputs) {
      if (name.empty()) {
        constant_inputs.push_back(nullptr);
        continue;
      }
      auto it = slot.find(name);
      if (it == slot.end() || !im.constant_slots[it->second]) {
        all_constant = false;
        break;
      }
      constant_inputs.push_back(im.constant_slots[it->second]);
    }
    if (all_constant) {
      auto values = detail::evaluate_node(node, constant_inputs, graph.opset_version);
      for (size_t k = 0; k < node.outputs.size(); ++k) {
        if (node.outputs[k].empty() || k >= values.size()) continue;
        im.folded.push_back(std::move(values[k]));
        slot[node.outputs[k]] = static_cast<int>(im.constant_slots.size());
        im.constant_slots.push_back(&im.folded.back());
      }
      continue;
    }
    Step step;
    step.node_index = i;
    for (const auto& name : node.inputs) {
      if (name.empty()) {
        step.inputs.push_back(-1);
        continue;
      }
      auto it = slot.find(name);
      if (it == slot.end())
        throw std::runtime_error(node_label(node) + ": input '" + name +
                                 "' is not defined before it is read");
      step.inputs.push_back(it->second);
    }
    for (const auto& name : node.outputs) {
      if (name.empty()) {
        step.outputs.push_back(-1);
        continue;
      }
      slot[name] = static_cast<int>(im.constant_slots.size());
      step.outputs.push_back(slot[name]);
      im.constant_slots.push_back(nullptr);
    }
    if ((node.op_type == "QuantizeLinear" || node.op_type == "DequantizeLinear") &&
        step.inputs.size() > 1 && step.inputs[1] >= 0) {
      const Tensor* scale = im.constant_slots[step.inputs[1]];
      if (!scale || scale->numel() > 1) {
        int64_t axis = node.attr_int("axis", 1);
        if (axis < 0) {
          auto it = graph.value_info.find(node.inputs[0]);
          auto in = std::find_if(graph.inputs.begin(), graph.inputs.end(),
                                 [&](const ValueInfo& v) { return v.name == node.inputs[0]; });
          const int64_t rank = it != graph.value_info.end()
                                   ? static_cast<int64_t>(it->second.shape.size())
                               : in != graph.inputs.end() ? static_cast<int64_t>(in->shape.size())
                                                          : -1;
          axis = rank < 0 ? 0 : axis + rank;  // unknown rank: assume the worst
        }
        if (axis == 0) im.batch_coupled = true;
      }
    }
    step.hooked = (node.op_type == "Conv" || node.op_type == "Gemm" || node.op_type == "MatMul") &&
                  step.inputs[0] >= 0 && !im.constant_slots[step.inputs[0]];
    im.steps.push_back(std::move(step));
  }
  im.n_slots = im.constant_slots.size();
  for (const auto& out : graph.outputs) {
    auto it = slot.find(out.name);
    if (it == slot.end())
      throw std::runtime_error("graph output '" + out.name + "' is not produced by any node");
    im.output_slots.push_back(it->second);
  }
  im.is_output.assign(im.n_slots, 0);
  for (int o : im.output_slots) im.is_output[o] = 1;
  // Fuse Conv/Gemm + Relu/Clip (constant bounds) when the Relu/Clip is the only reader of a
  // value that is not a graph output: one pass over the activation instead of two.
  std::vector<int> readers(im.n_slots, 0);
  for (const auto& st : im.steps) {
    for (int in : st.inputs)
      if (in >= 0) ++readers[in];
  }
  for (int o : im.output_slots) readers[o] += 2;
  for (size_t i = 0; i + 1 < im.steps.size(); ++i) {
    Step& producer = im.steps[i];
    Step& next = im.steps[i + 1];
    const Node& pn = graph.nodes[producer.node_index];
    const Node& nn = graph.nodes[next.node_index];
    if ((pn.op_type != "Conv" && pn.op_type != "Gemm") || producer.outputs.size() != 1) continue;
    if (nn.op_type != "Relu" && nn.op_type != "Clip") continue;
    if (next.inputs.empty() || next.inputs[0] != producer.outputs[0] ||
        readers[producer.outputs[0]] != 1)
      continue;
    float lo = 0.0f, hi = INFINITY;
    if (nn.op_type == "Clip") {
      lo = -INFINITY;
      if (graph.opset_version < 11) {
        lo = nn.attr_float("min", -INFINITY);
        hi = nn.attr_float("max", INFINITY);
      } else {
        bool constant = true;
        for (size_t k = 1; k < next.inputs.size() && k < 3; ++k) {
          if (next.inputs[k] < 0) continue;
          const Tensor* t = im.constant_slots[next.inputs[k]];
          if (!t || t->numel() != 1 || !t->is_float()) {
            constant = false;
            break;
          }
          (k == 1 ? lo : hi) = t->f32[0];
        }
        if (!constant) continue;
      }
    }
    producer.clamp = true;
    producer.lo = lo;
    producer.hi = hi;
    producer.outputs[0] = next.outputs[0];
    next.skip = true;
  }
  // Fuse QuantizeLinear -> DequantizeLinear pairs (the activation fake-quantization of a QDQ
  // export): when the integer value has no other reader and both nodes use the same constant
  // scale, zero point and axis, the QuantizeLinear step writes the dequantized floats itself.
  auto same_constant = [&](int a, int b) {
    if (a == b) return true;
    if (a < 0 || b < 0) return false;
    const Tensor* ta = im.constant_slots[a];
    const Tensor* tb = im.constant_slots[b];
    return ta && tb && ta->dtype == tb->dtype && ta->shape == tb->shape && ta->f32 == tb->f32 &&
           ta->i64 == tb->i64;
  };
  for (size_t i = 0; i < im.steps.size(); ++i) {
    Step& q = im.steps[i];
    const Node& qn = graph.nodes[q.node_index];
    if (q.skip || qn.op_type != "QuantizeLinear" || q.outputs.size() != 1 || q.outputs[0] < 0)
      continue;
    if (readers[q.outputs[0]] != 1 || q.inputs.size() < 2 || q.inputs[1] < 0 ||
        !im.constant_slots[q.inputs[1]])
      continue;
    for (size_t j = i + 1; j < im.steps.size(); ++j) {
      Step& d = im.steps[j];
      if (d.inputs.empty() || d.inputs[0] != q.outputs[0]) continue;
      const Node& dn = graph.nodes[d.node_index];
      const int qz = q.inputs.size() > 2 ? q.inputs[2] : -1,
                dz = d.inputs.size() > 2 ? d.inputs[2] : -1;
      const bool match = dn.op_type == "DequantizeLinear" && !d.skip && d.outputs.size() == 1 &&
                         d.inputs.size() >= 2 && same_constant(q.inputs[1], d.inputs[1]) &&
                         same_constant(qz, dz) &&
                         (im.constant_slots[q.inputs[1]]->numel() == 1 ||
                          qn.attr_int("axis", 1) == dn.attr_int("axis", 1));
      if (match) {
        q.fake_quantize = true;
        q.outputs[0] = d.outputs[0];
        d.skip = true;
      }
      break;
    }
  }
  std::vector<Step> kept_steps;
  for (auto& st : im.steps) {
    if (!st.skip) kept_steps.push_back(std::move(st));
  }
  im.steps = std::move(kept_steps);
  // oneDNN for Conv/Gemm/MatMul whose weight (and bias) are constants.
  if (im.kernels != ExecutorOptions::Kernels::kEigen) {
    for (Step& st : im.steps) {
      const Node& node = graph.nodes[st.node_index];
      if (node.op_type != "Conv" && node.op_type != "Gemm" && node.op_type != "MatMul") continue;
      if (st.inputs.size() < 2 || st.inputs[1] < 0 || !im.constant_slots[st.inputs[1]]) continue;
      const Tensor* bias = nullptr;
      if (node.op_type != "MatMul" && st.inputs.size() > 2 && st.inputs[2] >= 0) {
        bias = im.constant_slots[st.inputs[2]];
        if (!bias) continue;  // a computed bias: Eigen
      }
      st.dnnl = detail::DnnlOp::create(node, im.constant_slots[st.inputs[1]], bias,
                                       detail::DnnlPostOp{st.clamp, st.lo, st.hi});
    }
  }
  if (im.kernels != ExecutorOptions::Kernels::kEigen) plan_channels_last(im, graph, slot);
  im.flops_per_sample = flops_per_sample(im, graph);
  // Liveness: a computed value is released after its last reader unless it is a graph output.
  last_reader.assign(im.n_slots, -1);
  for (size_t s = 0; s < im.steps.size(); ++s) {
    for (int in : im.steps[s].inputs)
      if (in >= 0) last_reader[in] = static_cast<int>(s);
  }
  for (int o : im.output_slots) last_reader[o] = -2;
  for (size_t v = 0; v < im.n_slots; ++v) {
    if (v < im.n_inputs || im.constant_slots[v]) continue;
    if (last_reader[v] >= 0) im.steps[last_reader[v]].release.push_back(static_cast<int>(v));
  }
}

void Executor::set_layer_input_hook(LayerInputHook hook) { impl_->hook = std::move(hook); }

int64_t Executor::onednn_calls() const { return impl_->onednn_calls.load(); }

namespace {

// [N, C, H, W] stored NHWC -> stored NCHW (same shape), and back.
void channels_last_to_first(const Tensor& x, Tensor& out) {
  float* y = prepare_float(out, x.shape);
  const int64_t n = x.shape[0], c = x.shape[1], hw = x.shape[2] * x.shape[3];
  const float* xd = x.f32.data();
  for (int64_t s = 0; s < n; ++s)
    for (int64_t p = 0; p < hw; ++p)
      for (int64_t ch = 0; ch < c; ++ch) y[(s * c + ch) * hw + p] = xd[(s * hw + p) * c + ch];
}
void channels_first_to_last(const Tensor& x, Tensor& out) {
  float* y = prepare_float(out, x.shape);
  const int64_t n = x.shape[0], c = x.shape[1], hw = x.shape[2] * x.shape[3];
  const float* xd = x.f32.data();
  for (int64_t s = 0; s < n; ++s)
    for (int64_t ch = 0; ch < c; ++ch)
      for (int64_t p = 0; p < hw; ++p) y[(s * hw + p) * c + ch] = xd[(s * c + ch) * hw + p];
}

// kAuto's choice between oneDNN and Eigen for a Conv/Gemm/MatMul step that oneDNN takes and whose
// layouts are NCHW (a channels-last step always runs oneDNN), from `bench_executor --ops` (each
// node of the reference models alone, batch 1 and 256, 1 thread; Zen 4, AVX-512): oneDNN was
// faster everywhere but in the two cases below.
bool prefer_onednn(ExecutorOptions::Kernels kernels, const Node& node, const Tensor& x,
                   const Tensor* w) {
  if (kernels == ExecutorOptions::Kernels::kOneDnn) return true;
  if (!w || w->shape.size() < 2 || x.shape.empty()) return true;
  if (node.op_type == "Conv") {
    // A tiny reduction (1-channel first layer, NCHW in and out): Eigen's direct loops beat
    // oneDNN's NHWC kernel plus its two reorders once the batch is large (256: 8.4 ms vs 10.5).
    const int64_t reduction = w->numel() / std::max<int64_t>(1, w->shape[0]);
    return !(reduction <= 16 && x.shape[0] >= 16);
  }
  // Gemm/MatMul: under ~32 K multiply-adds oneDNN's fixed cost per call (2-3 us) is more than
  // the work (batch 1: 64x10 Eigen 6.8 us vs 9.3, 128x64 8.1 vs 8.9; 784x128 even).
  const double macs = static_cast<double>(x.numel()) * static_cast<double>(w->numel()) /
                      static_cast<double>(std::max<int64_t>(1, x.shape.back()));
  return macs >= 32768;
}

// Runs every step once on `inputs` with `threads` threads inside the kernels.
std::vector<Tensor> run_steps(const Executor::Impl& im, const std::vector<Tensor>& inputs,
                              int threads, bool use_hook) {
  const Graph& graph = *im.graph;
  auto ws = im.acquire();
  struct Return {  // hands the workspace back even when a node throws
    const Executor::Impl& im;
    std::unique_ptr<Workspace>& ws;
    ~Return() { im.give_back(std::move(ws)); }
  } giver{im, ws};
  OpContext ctx{threads, graph.opset_version};
  const OmpThreads omp_threads(threads);
  auto value = [&](int s) -> const Tensor* {
    if (s < 0) return nullptr;
    if (static_cast<size_t>(s) < im.n_inputs) return &inputs[s];
    if (im.constant_slots[s]) return im.constant_slots[s];
    return &ws->values[s];
  };
  std::vector<const Tensor*> in;
  std::vector<Tensor*> out;
  for (const Step& step : im.steps) {
    const Node& node = graph.nodes[step.node_index];
    in.clear();
    for (int s : step.inputs) in.push_back(value(s));
    if (use_hook && step.hooked && im.hook) {
      if (step.nhwc_in) {  // the hook sees NCHW, whatever the plan keeps
        channels_last_to_first(*in[0], ws->hooked_input);
        im.hook(step.node_index, ws->hooked_input);
        ws->layout_copy = ws->hooked_input;
        channels_first_to_last(ws->layout_copy, ws->hooked_input);
      } else {
        ws->hooked_input = *in[0];
        im.hook(step.node_index, ws->hooked_input);
      }
      in[0] = &ws->hooked_input;
    }
    out.clear();
    for (int s : step.outputs) {
      if (s < 0) {
        out.push_back(&ws->scratch_output);
        continue;
      }
      Tensor& t = ws->values[s];
      // A graph output keeps its own buffer across runs: handed a pooled one, it would keep it
      // (outputs are never released), and the next run would allocate (and page-fault and
      // zero) that buffer again for whichever value had it before.
      if (t.f32.capacity() == 0 && !ws->free_buffers.empty() && !im.is_output[s]) {
        // The pooled buffer that had this value's size last run (the op sequence repeats, so
        // each value finds its buffer again and resizing it neither reallocates nor zero-fills),
        // else the smallest one that is large enough, else the largest.
        const size_t want = ws->last_size[s];
        auto& pool = ws->free_buffers;
        size_t best = 0;
        for (size_t i = 1; i < pool.size(); ++i) {
          const size_t c = pool[i].capacity(), bc = pool[best].capacity();
          const bool exact = pool[i].size() == want, best_exact = pool[best].size() == want;
          if (exact != best_exact) {
            if (exact) best = i;
          } else if ((c >= want) != (bc >= want)) {
            if (c >= want) best = i;
          } else if (c >= want ? c < bc : c > bc) {
            best = i;
          }
        }
        t.f32 = std::move(pool[best]);
        pool.erase(pool.begin() + static_cast<std::ptrdiff_t>(best));
      }
      out.push_back(&t);
    }
    ctx.clamp = step.clamp;
    ctx.lo = step.lo;
    ctx.hi = step.hi;
    ctx.fake_quantize = step.fake_quantize;
    const bool bound = step.nhwc_in || step.nhwc_out;
    const bool onednn =
        step.dnnl &&
        (bound || prefer_onednn(im.kernels, node, *in[0], in.size() > 1 ? in[1] : nullptr)) &&
        step.dnnl->run(*in[0], *out[0], threads, ws->dnnl_scratch);
    if (onednn) {
      im.onednn_calls.fetch_add(1, std::memory_order_relaxed);
    } else if (bound) {  // oneDNN declined the shape: the Eigen kernel in NCHW, converted around
      if (step.nhwc_in) {
        channels_last_to_first(*in[0], ws->layout_copy);
        in[0] = &ws->layout_copy;
      }
      run_op(node, in, out, ctx, im.declared_batch);
      if (step.nhwc_out) {
        ws->layout_copy = *out[0];
        channels_first_to_last(ws->layout_copy, *out[0]);
      }
    } else {
      run_op(node, in, out, ctx, im.declared_batch);
    }
    for (int s : step.outputs)
      if (s >= 0) ws->last_size[s] = ws->values[s].f32.size();
    for (int s : step.release) {
      Tensor& t = ws->values[s];
      if (t.f32.capacity()) ws->free_buffers.push_back(std::move(t.f32));
      t.f32 = {};
    }
  }
  std::vector<Tensor> results;
  for (int s : im.output_slots) results.push_back(*value(s));
  return results;
}

}  // namespace

std::vector<Tensor> Executor::run(const std::vector<Tensor>& inputs) const {
  const Impl& im = *impl_;
  const Graph& graph = *im.graph;
  if (inputs.size() != graph.inputs.size()) {
    throw std::invalid_argument("the model has " + std::to_string(graph.inputs.size()) +
                                " inputs, " + std::to_string(inputs.size()) + " given");
  }
  for (size_t i = 0; i < inputs.size(); ++i) {
    const ValueInfo& vi = graph.inputs[i];
    const Shape& s = inputs[i].shape;
    bool ok = s.size() == vi.shape.size() &&
              inputs[i].is_float() == (vi.dtype == DType::kFloat32 || vi.dtype == DType::kFloat16);
    for (size_t d = 1; ok && d < s.size(); ++d) ok = vi.shape[d] < 0 || vi.shape[d] == s[d];
    if (ok && inputs[i].is_float() &&
        static_cast<int64_t>(inputs[i].f32.size()) != inputs[i].numel())
      ok = false;
    if (!ok) {
      throw std::invalid_argument("model input '" + vi.name + "' expects shape " +
                                  shape_to_string(vi.shape) + " (first dim = batch, -1 = any) of " +
                                  dtype_name(vi.dtype) + ", got " + shape_to_string(s) + " of " +
                                  dtype_name(inputs[i].dtype));
    }
  }
  const int64_t batch = inputs.empty() || inputs[0].shape.empty() ? 0 : inputs[0].shape[0];
  bool split = (!im.hook || im.options.hook_per_slice) && im.threads > 1 && batch >= im.threads &&
               !im.batch_coupled;
  for (const auto& t : inputs) split = split && !t.shape.empty() && t.shape[0] == batch;
  // Too little work to share: one thread (a fork/join costs tens of microseconds, far more on a
  // loaded machine, where a second thread may wait a whole time slice for a core).
  if (im.flops_per_sample > 0 && static_cast<double>(batch) * im.flops_per_sample < kSerialFlops)
    return run_steps(im, inputs, 1, true);
  if (!split) return run_steps(im, inputs, im.threads, true);
  // Coarse-grained batch parallelism: each thread runs the whole graph on a contiguous slice of
  // the batch with single-threaded kernels, so a batch costs one fork/join instead of one per op
  // (which matters on a loaded machine, where every barrier waits for a descheduled thread).
  // With a hook set we keep whole-batch calls (the hook sees the full batch, from one thread).
  const int nt = im.threads;
  std::vector<std::vector<Tensor>> parts(nt);
  std::vector<std::exception_ptr> errors(nt);
  // Plain threads rather than an OpenMP team: on a loaded machine OpenMP's spin-waiting workers
  // (libgomp's default wait policy) cost up to 8x here; a thread per slice waits passively and
  // its start-up (tens of microseconds) is small against a batch.
  auto work = [&](int t) {
    const int64_t b0 = batch * t / nt, b1 = batch * (t + 1) / nt;
    try {
      std::vector<Tensor> slice(inputs.size());
      for (size_t i = 0; i < inputs.size(); ++i) {
        const Tensor& x = inputs[i];
        const int64_t per = batch ? x.numel() / batch : 0;
        slice[i].dtype = x.dtype;
        slice[i].shape = x.shape;
        slice[i].shape[0] = b1 - b0;
        if (x.is_float())
          slice[i].f32.assign(x.f32.begin() + b0 * per, x.f32.begin() + b1 * per);
        else
          slice[i].i64.assign(x.i64.begin() + b0 * per, x.i64.begin() + b1 * per);
      }
      parts[t] = run_steps(im, slice, 1, true);
    } catch (...) {
      errors[t] = std::current_exception();
    }
  };
  std::vector<std::thread> workers;
  for (int t = 1; t < nt; ++t) workers.emplace_back(work, t);
  work(0);
  for (auto& w : workers) w.join();
  for (auto& e : errors) {
    if (e) std::rethrow_exception(e);
  }
  std::vector<Tensor> results(parts[0].size());
  for (size_t o = 0; o < results.size(); ++o) {
    Tensor& r = results[o];
    r.dtype = parts[0][o].dtype;
    r.shape = parts[0][o].shape;
    if (r.shape.empty()) return run_steps(im, inputs, im.threads, true);
    r.shape[0] = 0;
    for (int t = 0; t < nt; ++t) {
      const Tensor& p = parts[t][o];
      // An output without the batch as dim 0 cannot be stitched: run the batch whole instead.
      if (p.shape.empty() || p.shape[0] != batch * (t + 1) / nt - batch * t / nt) {
        return run_steps(im, inputs, im.threads, true);
      }
      r.shape[0] += p.shape[0];
      r.f32.insert(r.f32.end(), p.f32.begin(), p.f32.end());
      r.i64.insert(r.i64.end(), p.i64.begin(), p.i64.end());
    }
  }
  return results;
}

}  // namespace compsearch::model
