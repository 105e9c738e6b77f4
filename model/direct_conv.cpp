// Direct convolution for tiny reductions (see direct_conv.h).
#include "model/direct_conv.h"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "model/op_util.h"

namespace compsearch::model::detail {

namespace {

constexpr int64_t kLanes = 16;  // output channels per vector
// 16 floats; AVX-512 keeps one in a register, AVX2 two, SSE four (GCC and Clang split it).
using Vec = float __attribute__((vector_size(kLanes * sizeof(float))));

// Every function taking or returning a Vec is inlined into one of the ISA-specific kernels below,
// so GCC's note that the vector ABI depends on the ISA does not apply.
#if defined(__clang__)
#if __has_warning("-Wpsabi")
#pragma clang diagnostic ignored "-Wpsabi"
#endif
#elif defined(__GNUC__)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

// A fused MaxPool's window and strides (no padding, no dilation); kh = 0: none.
struct PoolWindow {
  int64_t kh = 0, kw = 0, sh = 1, sw = 1;
};

struct Params {
  const float* x = nullptr;
  float* y = nullptr;
  const float* w = nullptr;     // packed: [group][block][tap][16], zero past the group's channels
  const float* bias = nullptr;  // packed: [group][block][16]
  WindowGeometry g;             // the convolution's
  int64_t o = 0, groups = 1, cg = 1, og = 1, blocks = 1;
  int64_t xs_n = 0, xs_c = 0, xs_h = 0, xs_w = 0;  // element strides of x (NCHW or NHWC)
  int64_t ph = 0, pw = 0;                          // padded input plane (pad_sample)
  bool clamp = false;
  float lo = 0.0f, hi = 0.0f;
  PoolWindow pool;         // the fused MaxPool (kh = 0: none)
  int64_t yh = 0, yw = 0;  // output sizes (pooled or not)
  bool y_nhwc = false;
};

[[gnu::always_inline]] inline Vec load(const float* p) {
  Vec v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

[[gnu::always_inline]] inline Vec broadcast(float v) { return Vec{} + v; }

// Writes output row `y` of sample `n`, channels [c0, c0 + lanes), from one vector per pixel.
[[gnu::always_inline]] inline void store_row(const Params& p, const Vec* row, int64_t n, int64_t y,
                                             int64_t c0, int64_t lanes) {
  if (p.y_nhwc) {
    float* dst = p.y + (n * p.yh + y) * p.yw * p.o + c0;
    if (lanes == kLanes) {
      for (int64_t x = 0; x < p.yw; ++x) std::memcpy(dst + x * p.o, &row[x], sizeof(Vec));
    } else {
      for (int64_t x = 0; x < p.yw; ++x)
        for (int64_t l = 0; l < lanes; ++l) dst[x * p.o + l] = row[x][l];
    }
  } else {  // one contiguous row per channel plane
    const float* src = reinterpret_cast<const float*>(row);
    for (int64_t l = 0; l < lanes; ++l) {
      float* dst = p.y + ((n * p.o + c0 + l) * p.yh + y) * p.yw;
      for (int64_t x = 0; x < p.yw; ++x) dst[x] = src[x * kLanes + l];
    }
  }
}

// The output row's P pixels from padded input rows (see conv_row).
template <int P>
[[gnu::always_inline]] inline void pixels(const Params& p, const float* const* rows,
                                          const int64_t* taps, int nr, const float* wb, Vec bias,
                                          int64_t ox, Vec* out) {
  Vec acc[P];
#pragma GCC unroll 16
  for (int q = 0; q < P; ++q) acc[q] = bias;
  for (int j = 0; j < nr; ++j) {
    const float* s = rows[j] + ox * p.g.sw;
    const float* wt = wb + taps[j] * kLanes;
    for (int64_t kj = 0; kj < p.g.kw; ++kj) {
      const Vec wv = load(wt + kj * kLanes);
      const float* sk = s + kj * p.g.dw;
#pragma GCC unroll 16
      for (int q = 0; q < P; ++q) acc[q] += sk[q * p.g.sw] * wv;
    }
  }
  if (p.clamp) {
    const Vec lo = broadcast(p.lo), hi = broadcast(p.hi);
#pragma GCC unroll 16
    for (int q = 0; q < P; ++q) {
      acc[q] = acc[q] < lo ? lo : acc[q];
      acc[q] = acc[q] > hi ? hi : acc[q];
    }
  }
#pragma GCC unroll 16
  for (int q = 0; q < P; ++q) out[ox + q] = acc[q];
}

// The padded input of sample `n`: every channel as a [ph, pw] plane (ph, pw in Params) holding
// exactly the rows and columns the convolution's windows reach, the padding as zeros. The kernel
// then reads every window without bounds checks, whatever the input layout.
inline void pad_sample(const Params& p, int64_t n, float* padded) {
  const int64_t c_all = p.cg * p.groups;
  for (int64_t c = 0; c < c_all; ++c) {
    for (int64_t i = 0; i < p.ph; ++i) {
      float* dst = padded + (c * p.ph + i) * p.pw;
      const int64_t ih = i - p.g.pad_top;
      if (ih < 0 || ih >= p.g.in_h) {
        std::memset(dst, 0, sizeof(float) * p.pw);
        continue;
      }
      const float* src = p.x + n * p.xs_n + c * p.xs_c + ih * p.xs_h;
      const int64_t lo = std::min(p.pw, p.g.pad_left);
      const int64_t hi = std::clamp(p.g.pad_left + p.g.in_w, lo, p.pw);
      for (int64_t j = 0; j < lo; ++j) dst[j] = 0.0f;
      if (p.xs_w == 1) {
        std::memcpy(dst + lo, src + (lo - p.g.pad_left), sizeof(float) * (hi - lo));
      } else {
        for (int64_t j = lo; j < hi; ++j) dst[j] = src[(j - p.g.pad_left) * p.xs_w];
      }
      for (int64_t j = hi; j < p.pw; ++j) dst[j] = 0.0f;
    }
  }
}

// Convolution output row `oy`, channel block `b` of group `g`, clamped, into out[0, ow), from the
// sample's padded input (pad_sample), P pixels at a time.
template <int P>
[[gnu::always_inline]] inline void conv_row(const Params& p, int64_t oy, int64_t g, int64_t b,
                                            Vec* out, const float* padded) {
  const int64_t k = p.cg * p.g.kh * p.g.kw;
  const float* rows[kDirectConvMaxReduction];
  int64_t taps[kDirectConvMaxReduction];
  int nr = 0;
  for (int64_t c = 0; c < p.cg; ++c) {
    for (int64_t ki = 0; ki < p.g.kh; ++ki) {
      rows[nr] = padded + ((g * p.cg + c) * p.ph + oy * p.g.sh + ki * p.g.dh) * p.pw;
      taps[nr] = (c * p.g.kh + ki) * p.g.kw;
      ++nr;
    }
  }
  const float* wb = p.w + (g * p.blocks + b) * k * kLanes;
  const Vec bias = load(p.bias + (g * p.blocks + b) * kLanes);
  int64_t ox = 0;
  for (; ox + P <= p.g.out_w; ox += P) pixels<P>(p, rows, taps, nr, wb, bias, ox, out);
  if constexpr (P >= 8) {
    if (ox + P / 2 <= p.g.out_w) {
      pixels<P / 2>(p, rows, taps, nr, wb, bias, ox, out);
      ox += P / 2;
    }
  }
  for (; ox < p.g.out_w; ++ox) pixels<1>(p, rows, taps, nr, wb, bias, ox, out);
}

// Output rows [r0, r1) of the flattened (sample, output row) range; `tmp` holds pool_kh (or 1)
// convolution rows of one channel block, `padded` a sample's padded input (pad_sample).
template <int P>
[[gnu::always_inline]] inline void conv_rows(const Params& p, int64_t r0, int64_t r1, Vec* tmp,
                                             float* padded) {
  int64_t padded_sample = -1;
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t n = r / p.yh, y = r % p.yh;
    if (n != padded_sample) {
      pad_sample(p, n, padded);
      padded_sample = n;
    }
    for (int64_t g = 0; g < p.groups; ++g) {
      for (int64_t b = 0; b < p.blocks; ++b) {
        const int64_t c0 = g * p.og + b * kLanes;
        const int64_t lanes = std::min(kLanes, p.og - b * kLanes);
        if (p.pool.kh == 0) {
          conv_row<P>(p, y, g, b, tmp, padded);
          store_row(p, tmp, n, y, c0, lanes);
          continue;
        }
        for (int64_t i = 0; i < p.pool.kh; ++i)
          conv_row<P>(p, y * p.pool.sh + i, g, b, tmp + i * p.g.out_w, padded);
        // The pooled row overwrites the first convolution row (x * pool_sw >= x).
        for (int64_t x = 0; x < p.yw; ++x) {
          const Vec* win = tmp + x * p.pool.sw;
          Vec m = win[0];
          for (int64_t i = 0; i < p.pool.kh; ++i) {
            for (int64_t j = 0; j < p.pool.kw; ++j) {
              const Vec v = win[i * p.g.out_w + j];
              m = m < v ? v : m;
            }
          }
          tmp[x] = m;
        }
        store_row(p, tmp, n, y, c0, lanes);
      }
    }
  }
}

using RowsFn = void (*)(const Params&, int64_t, int64_t, Vec*, float*);

#if defined(__x86_64__) || defined(__i386__)
__attribute__((target("avx512f,avx2,fma"))) void rows_avx512(const Params& p, int64_t r0,
                                                             int64_t r1, Vec* tmp, float* pad) {
  conv_rows<8>(p, r0, r1, tmp, pad);
}
__attribute__((target("avx2,fma"))) void rows_avx2(const Params& p, int64_t r0, int64_t r1,
                                                   Vec* tmp, float* pad) {
  conv_rows<4>(p, r0, r1, tmp, pad);
}
#endif
void rows_baseline(const Params& p, int64_t r0, int64_t r1, Vec* tmp, float* pad) {
  conv_rows<2>(p, r0, r1, tmp, pad);
}

// The kernels this CPU runs, best first.
struct Kernel {
  const char* isa;
  RowsFn fn;
};
std::vector<Kernel> runnable_kernels() {
  std::vector<Kernel> k;
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) k.push_back({"avx512f", rows_avx512});
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
    k.push_back({"avx2", rows_avx2});
#endif
  k.push_back({"baseline", rows_baseline});
  return k;
}

std::atomic<const Kernel*>& chosen_kernel() {
  static const std::vector<Kernel> kernels = runnable_kernels();
  static std::atomic<const Kernel*> chosen{&kernels.front()};
  return chosen;
}

class DirectConv final : public DnnlOp {
 public:
  DirectConv(const Node& node, const Tensor& weight, const Tensor* bias, DnnlPostOp post)
      : node_(node), post_(post) {
    const Shape& ws = weight.shape;
    o_ = ws[0];
    cg_ = ws[1];
    kh_ = ws[2];
    kw_ = ws[3];
    groups_ = node.attr_int("group", 1);
    og_ = o_ / groups_;
    blocks_ = (og_ + kLanes - 1) / kLanes;
    const int64_t k = cg_ * kh_ * kw_;
    packed_w_.assign(static_cast<size_t>(groups_ * blocks_ * k * kLanes), 0.0f);
    packed_b_.assign(static_cast<size_t>(groups_ * blocks_ * kLanes), 0.0f);
    for (int64_t g = 0; g < groups_; ++g) {
      for (int64_t oc = 0; oc < og_; ++oc) {
        const int64_t b = oc / kLanes, lane = oc % kLanes;
        const float* src = weight.f32.data() + (g * og_ + oc) * k;
        float* dst = packed_w_.data() + (g * blocks_ + b) * k * kLanes + lane;
        for (int64_t t = 0; t < k; ++t) dst[t * kLanes] = src[t];
        if (bias) packed_b_[(g * blocks_ + b) * kLanes + lane] = bias->f32[g * og_ + oc];
      }
    }
    channels_last_capable_ = true;  // NCHW or NHWC, not blocked
  }

  bool onednn() const override { return false; }
  std::string kernel(const Shape&, int) const override {
    return std::string(pool_ ? "direct+maxpool " : "direct ") +
           (src_layout_ == ActLayout::kNhwc ? "nhwc" : "nchw") + ">" +
           (dst_layout_ == ActLayout::kNhwc ? "nhwc" : "nchw");
  }

  bool fuse_max_pool(const Node& pool) {
    if (pool.op_type != "MaxPool" || pool_) return false;
    if (pool.outputs.size() > 1 && !pool.outputs[1].empty()) return false;  // Indices
    const auto kernel = pool.attr_ints("kernel_shape", {});
    const auto strides = pool.attr_ints("strides", {1, 1});
    const auto pads = pool.attr_ints("pads", {0, 0, 0, 0});
    const auto dilations = pool.attr_ints("dilations", {1, 1});
    const std::string auto_pad = pool.attr_string("auto_pad", "NOTSET");
    if (kernel.size() != 2 || strides.size() != 2 || dilations != std::vector<int64_t>{1, 1})
      return false;
    if (kernel[0] < 1 || kernel[1] < 1 || strides[0] < 1 || strides[1] < 1) return false;
    if (std::any_of(pads.begin(), pads.end(), [](int64_t v) { return v != 0; })) return false;
    if ((auto_pad != "NOTSET" && auto_pad != "VALID") || pool.attr_int("ceil_mode", 0) != 0 ||
        pool.attr_int("storage_order", 0) != 0)
      return false;
    pool_ = &pool;
    pool_window_ = {kernel[0], kernel[1], strides[0], strides[1]};
    return true;
  }

  bool run(const Tensor& x, Tensor& y, int threads, DnnlScratch&) const override {
    if (!x.is_float() || x.shape.size() != 4 || x.shape[1] != cg_ * groups_ ||
        static_cast<int64_t>(x.f32.size()) != x.numel())
      return false;
    const int64_t n = x.shape[0], c = x.shape[1], h = x.shape[2], w = x.shape[3];
    const WindowGeometry g = window_geometry(node_, {h, w}, {kh_, kw_});
    if (g.out_h * g.out_w == 0) return false;
    int64_t yh = g.out_h, yw = g.out_w;
    if (pool_) {
      if (g.out_h < pool_window_.kh || g.out_w < pool_window_.kw) return false;
      yh = (g.out_h - pool_window_.kh) / pool_window_.sh + 1;
      yw = (g.out_w - pool_window_.kw) / pool_window_.sw + 1;
    }
    float* yd = prepare_float(y, {n, o_, yh, yw});
    if (n == 0) return true;
    Params p;
    p.x = x.f32.data();
    p.y = yd;
    p.w = packed_w_.data();
    p.bias = packed_b_.data();
    p.g = g;
    p.o = o_;
    p.groups = groups_;
    p.cg = cg_;
    p.og = og_;
    p.blocks = blocks_;
    p.xs_n = c * h * w;
    p.xs_c = src_layout_ == ActLayout::kNhwc ? 1 : h * w;
    p.xs_h = src_layout_ == ActLayout::kNhwc ? w * c : w;
    p.xs_w = src_layout_ == ActLayout::kNhwc ? c : 1;
    p.clamp = post_.clamp;
    p.lo = post_.lo;
    p.hi = post_.hi;
    p.pool = pool_window_;
    p.yh = yh;
    p.yw = yw;
    p.y_nhwc = dst_layout_ == ActLayout::kNhwc;
    const RowsFn fn = chosen_kernel().load()->fn;
    const int64_t rows = n * yh;
    const size_t tmp_bytes =
        static_cast<size_t>(std::max<int64_t>(1, pool_window_.kh) * g.out_w) * sizeof(Vec);
    p.ph = (g.out_h - 1) * g.sh + (kh_ - 1) * g.dh + 1;
    p.pw = (g.out_w - 1) * g.sw + (kw_ - 1) * g.dw + 1;
    const size_t pad_bytes = static_cast<size_t>(c * p.ph * p.pw) * sizeof(float);
    const int t = static_cast<int>(std::min<int64_t>(threads, rows));
    // The kernels' scratch, 64-byte aligned (the AVX-512 kernel's aligned stores; the baseline
    // compile aligns Vec less).
    auto with_tmp = [&](int64_t r0, int64_t r1) {
      const size_t bytes = (tmp_bytes + pad_bytes + 63) / 64 * 64;
      std::unique_ptr<void, decltype(&std::free)> tmp(std::aligned_alloc(64, bytes), &std::free);
      if (!tmp) throw std::bad_alloc();
      char* base = static_cast<char*>(tmp.get());
      fn(p, r0, r1, reinterpret_cast<Vec*>(base), reinterpret_cast<float*>(base + tmp_bytes));
    };
    if (t <= 1) {
      with_tmp(0, rows);
      return true;
    }
#pragma omp parallel num_threads(t)
    {
      const int64_t i = omp_get_thread_num(), nt = omp_get_num_threads();
      with_tmp(rows * i / nt, rows * (i + 1) / nt);
    }
    return true;
  }

 private:
  const Node& node_;
  DnnlPostOp post_;
  int64_t o_ = 0, cg_ = 0, kh_ = 0, kw_ = 0, groups_ = 1, og_ = 0, blocks_ = 0;
  const Node* pool_ = nullptr;  // the fused MaxPool
  PoolWindow pool_window_;
  std::vector<float> packed_w_, packed_b_;
};

}  // namespace

std::unique_ptr<DnnlOp> make_direct_conv(const Node& node, const Tensor* weight, const Tensor* bias,
                                         DnnlPostOp post) {
  if (node.op_type != "Conv" || !weight || !weight->is_float() || weight->shape.size() != 4)
    return nullptr;
  if (static_cast<int64_t>(weight->f32.size()) != weight->numel()) return nullptr;
  const Shape& ws = weight->shape;
  const int64_t groups = node.attr_int("group", 1);
  if (groups < 1 || ws[0] % groups != 0 || ws[0] / groups < 8) return nullptr;
  if (ws[1] > kDirectConvMaxChannels || ws[1] * ws[2] * ws[3] > kDirectConvMaxReduction ||
      ws[1] * ws[2] * ws[3] < 1)
    return nullptr;
  if (bias && (!bias->is_float() || bias->numel() != ws[0] ||
               static_cast<int64_t>(bias->f32.size()) != ws[0]))
    return nullptr;
  return std::make_unique<DirectConv>(node, *weight, bias, post);
}

bool fuse_direct_conv_max_pool(DnnlOp& op, const Node& pool) {
  auto* direct = dynamic_cast<DirectConv*>(&op);
  return direct && direct->fuse_max_pool(pool);
}

const char* direct_conv_isa() { return chosen_kernel().load()->isa; }

std::vector<std::string> direct_conv_isas() {
  std::vector<std::string> names;
  for (const Kernel& k : runnable_kernels()) names.emplace_back(k.isa);
  return names;
}

bool use_direct_conv_isa(const std::string& isa) {
  static const std::vector<Kernel> kernels = runnable_kernels();
  for (const Kernel& k : kernels) {
    if (isa == k.isa) {
      chosen_kernel().store(&k);
      return true;
    }
  }
  return false;
}

}  // namespace compsearch::model::detail
