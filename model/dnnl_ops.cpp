// oneDNN kernels of the executor (see dnnl_ops.h).
#include "model/dnnl_ops.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <mutex>
#include <oneapi/dnnl/dnnl.hpp>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "model/op_util.h"

namespace compsearch::model::detail {

void* DnnlScratch::get(size_t bytes) {
  if (bytes > size_) {
    std::free(data_);
    size_ = (bytes + 4095) / 4096 * 4096;
    data_ = std::aligned_alloc(64, size_);
    if (!data_) throw std::bad_alloc();
  }
  return data_;
}

DnnlScratch::~DnnlScratch() { std::free(data_); }

namespace {

using dnnl::memory;
using Tag = memory::format_tag;
using DT = memory::data_type;

const dnnl::engine& cpu_engine() {
  static const dnnl::engine e(dnnl::engine::kind::cpu, 0);
  return e;
}

dnnl::stream& thread_stream() {
  thread_local dnnl::stream s(cpu_engine());
  return s;
}

size_t round64(size_t n) { return (n + 63) / 64 * 64; }

bool isa_at_least(dnnl::cpu_isa want) {
  const auto isa = static_cast<unsigned>(dnnl::get_effective_cpu_isa());
  const auto w = static_cast<unsigned>(want);
  return (isa & w) == w;
}

Tag tag_of(ActLayout layout) {
  switch (layout) {
    case ActLayout::kNhwc:
      return Tag::nhwc;
    case ActLayout::kBlocked:
      return blocked_channels() == 16 ? Tag::nChw16c : Tag::nChw8c;
    default:
      return Tag::nchw;
  }
}

// COMPSEARCH_EXECUTOR_WINOGRAD=0 turns Winograd convolutions off (for comparisons); read when a
// primitive is made.
bool winograd_allowed() {
  const char* v = std::getenv("COMPSEARCH_EXECUTOR_WINOGRAD");
  return !(v && std::string(v) == "0");
}

bool is_reference(const dnnl::primitive_desc& pd);

// Whether oneDNN has a Winograd kernel for float convolutions on this CPU (2.6: AVX-512 only),
// probed once on a small blocked 3x3 convolution.
bool winograd_available() {
  static const bool available = [] {
    try {
      const int64_t b = blocked_channels();
      const memory::desc x({1, b, 8, 8}, DT::f32, tag_of(ActLayout::kBlocked)),
          w({b, b, 3, 3}, DT::f32, Tag::any);
      dnnl::convolution_forward::desc d(dnnl::prop_kind::forward_inference,
                                        dnnl::algorithm::convolution_winograd, x, w, x, {1, 1},
                                        {1, 1}, {1, 1});
      return !is_reference(dnnl::convolution_forward::primitive_desc(d, cpu_engine()));
    } catch (const dnnl::error&) {
      return false;
    }
  }();
  return available;
}

// A reference (unoptimised) implementation: oneDNN's fallback when no JIT kernel takes the layouts.
bool is_reference(const dnnl::primitive_desc& pd) {
  // "ref_fused_convolution:any:jit_1x1:...:jit_dw:...": JIT kernels chained by a wrapper (through
  // a scratchpad buffer), unless one of them is itself a reference kernel.
  const std::string impl = pd.impl_info_str();
  if (impl.rfind("ref_fused", 0) == 0) return impl.find(":ref") != std::string::npos;
  return impl.rfind("ref", 0) == 0;
}

void append_clamp(dnnl::post_ops& ops, const DnnlPostOp& post) {
  if (!post.clamp) return;
  if (post.lo == 0.0f && std::isinf(post.hi) && post.hi > 0)
    ops.append_eltwise(1.0f, dnnl::algorithm::eltwise_relu, 0.0f, 0.0f);
  else
    ops.append_eltwise(1.0f, dnnl::algorithm::eltwise_clip, post.lo, post.hi);
}

// The fused clamp; with `dw_stride` > 0, then a depthwise 3x3 convolution (padding 1) and its own
// clamp `dw_post`.
dnnl::primitive_attr make_attr(const DnnlPostOp& post, int64_t dw_stride = 0,
                               const DnnlPostOp& dw_post = {}) {
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  dnnl::post_ops ops;
  append_clamp(ops, post);
  if (dw_stride > 0) {
    ops.append_dw(DT::f32, DT::f32, DT::f32, 3, dw_stride, 1, 0, {});
    append_clamp(ops, dw_post);
  }
  if (ops.len() > 0) attr.set_post_ops(ops);
  return attr;
}

dnnl::primitive_attr scratch_attr() {
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  return attr;
}

// One primitive for one (input shape, threads): the compute primitive plus, where it wants a
// blocked activation layout, the reorders from and to the executor's plain layout.
struct Plan {
  Shape x_shape;
  int threads = 0;
  Shape y_shape;
  dnnl::primitive prim;
  memory::desc user_src, src, user_dst, dst;
  std::optional<dnnl::reorder> src_reorder, dst_reorder;
  const memory* weights = nullptr;
  const memory* dw_weights = nullptr;  // a fused depthwise convolution's (DnnlConv)
  const memory* dw_bias = nullptr;
  size_t scratchpad_bytes = 0;  // the largest of the primitives' scratchpads
  std::string impl;             // oneDNN's implementation name
};

const char* layout_name(ActLayout layout) {
  switch (layout) {
    case ActLayout::kNhwc:
      return "nhwc";
    case ActLayout::kBlocked:
      return "blocked";
    default:
      return "nchw";
  }
}

class DnnlOpBase : public DnnlOp {
 public:
  DnnlOpBase(const Tensor* weight, DnnlPostOp post, const DnnlInt8* int8 = nullptr)
      : weight_(weight), post_(post) {
    if (int8) int8_ = *int8;
  }

  bool run(const Tensor& x, Tensor& y, int threads, DnnlScratch& scratch) const override {
    if (!x.is_float() || static_cast<int64_t>(x.f32.size()) != x.numel()) return false;
    const Plan* plan = find_plan(x.shape, threads);
    if (!plan) return false;
    float* yd = prepare_float(y, plan->y_shape);
    if (y.f32.empty()) return true;
    const size_t sp = round64(plan->scratchpad_bytes);
    const size_t sb = plan->src_reorder ? round64(plan->src.get_size()) : 0;
    const size_t db = plan->dst_reorder ? round64(plan->dst.get_size()) : 0;
    const size_t qb = int8_ ? round64(static_cast<size_t>(x.numel())) : 0;
    char* base = static_cast<char*>(scratch.get(sp + sb + db + qb + 64));
    const auto& eng = cpu_engine();
    auto& strm = thread_stream();
    memory scratchpad(scratchpad_desc(plan->scratchpad_bytes), eng, base);
    void* x_data = const_cast<float*>(x.f32.data());
    if (int8_) {  // QuantizeLinear's arithmetic (ops_quantization.cpp), into u8
      uint8_t* q = reinterpret_cast<uint8_t*>(base + sp + sb + db);
      const float s = int8_->x_scale, z = static_cast<float>(int8_->x_zero_point);
      const float* xd = x.f32.data();
      const int64_t n = x.numel();
      const int t = n < (1 << 15) ? 1 : threads;
      const int64_t chunk = (n + t - 1) / t;
#pragma omp parallel for num_threads(t) schedule(static) if (t > 1)
      for (int c = 0; c < t; ++c) {
        const int64_t b = c * chunk, e = std::min(n, b + chunk);
        if (b < e) quantize_levels_u8(xd + b, e - b, s, z, q + b);
      }
      x_data = q;
    }
    memory user_src(plan->user_src, eng, x_data);
    memory user_dst(plan->user_dst, eng, yd);
    memory src = user_src, dst = user_dst;
    if (plan->src_reorder) {
      src = memory(plan->src, eng, base + sp);
      plan->src_reorder->execute(
          strm, {{DNNL_ARG_FROM, user_src}, {DNNL_ARG_TO, src}, {DNNL_ARG_SCRATCHPAD, scratchpad}});
    }
    if (plan->dst_reorder) dst = memory(plan->dst, eng, base + sp + sb);
    std::unordered_map<int, memory> args = {
        {DNNL_ARG_SRC, src}, {DNNL_ARG_DST, dst}, {DNNL_ARG_SCRATCHPAD, scratchpad}};
    if (plan->weights) args.emplace(DNNL_ARG_WEIGHTS, *plan->weights);
    if (bias_) args.emplace(DNNL_ARG_BIAS, *bias_);
    if (plan->dw_weights) {
      args.emplace(DNNL_ARG_ATTR_POST_OP_DW | DNNL_ARG_WEIGHTS, *plan->dw_weights);
      args.emplace(DNNL_ARG_ATTR_POST_OP_DW | DNNL_ARG_BIAS, *plan->dw_bias);
    }
    plan->prim.execute(strm, args);
    if (plan->dst_reorder) {
      plan->dst_reorder->execute(
          strm, {{DNNL_ARG_FROM, dst}, {DNNL_ARG_TO, user_dst}, {DNNL_ARG_SCRATCHPAD, scratchpad}});
    }
    strm.wait();
    return true;
  }

  bool accepts(const Shape& xs) const override {
    try {
      Plan plan;
      return describe(xs, plan).has_value();
    } catch (const std::exception&) {
      return false;
    }
  }

  std::string kernel(const Shape& xs, int threads) const override {
    std::lock_guard<std::mutex> lock(mutex_);
    for (const auto& p : plans_) {
      if (p->threads != threads || p->x_shape != xs) continue;
      std::string k = p->impl + " " + layout_name(src_layout_) + ">" + layout_name(dst_layout_);
      if (p->dw_weights) k += "+dw";
      if (p->src_reorder || p->dst_reorder) k += "+reorder";
      return k;
    }
    return "";
  }

 protected:
  // Fills plan.y_shape, user_src/user_dst and returns the compute primitive's descriptor, or
  // nullopt when x's shape does not fit.
  virtual std::optional<dnnl::primitive_desc> describe(const Shape& xs, Plan& plan) const = 0;
  // The weights as stored (a plain layout over weight_data()).
  virtual memory::desc user_weights() const { return {}; }
  // Sets plan.dw_weights / dw_bias when the primitive has a fused depthwise post-op.
  virtual void attach_fused(const dnnl::primitive_desc& /*pd*/, Plan& /*plan*/) const {}
  virtual const float* weight_data() const { return weight_->f32.data(); }
  // The weights as stored: the int8 integers for an integer op, else weight_data().
  const void* stored_weights() const {
    return int8_ ? static_cast<const void*>(int8_->weight.data()) : weight_data();
  }
  // Data types of the compute primitive's src and weights.
  DT src_type() const { return int8_ ? DT::u8 : DT::f32; }
  DT weight_type() const { return int8_ ? DT::s8 : DT::f32; }
  // The fused clamp, and for an integer op the output scales (mask over dst dims: bit 1 = the
  // output channel) and the src zero point.
  dnnl::primitive_attr attr() const {
    dnnl::primitive_attr a = make_attr(post_);
    if (int8_) {
      std::vector<float> scales;
      for (float ws : int8_->weight_scale) scales.push_back(int8_->x_scale * ws);
      a.set_output_scales(scales.size() > 1 ? 1 << 1 : 0, scales);
      if (int8_->x_zero_point != 0) a.set_zero_points(DNNL_ARG_SRC, 0, {int8_->x_zero_point});
    }
    return a;
  }

  void set_bias(const float* data, const memory::desc& md) {
    bias_storage_.assign(data, data + md.get_size() / sizeof(float));
    // oneDNN 2.x adds the bias to the accumulator before the output scale: give it in
    // accumulator units.
    if (int8_) {
      const auto& ws = int8_->weight_scale;
      for (size_t c = 0; c < bias_storage_.size(); ++c)
        bias_storage_[c] /= int8_->x_scale * ws[ws.size() > 1 ? c : 0];
    }
    bias_.emplace(md, cpu_engine(), bias_storage_.data());
  }

  bool has_bias() const { return bias_.has_value(); }
  bool integer() const { return int8_.has_value(); }

  const Tensor* weight_;
  DnnlPostOp post_;

 private:
  static memory::desc scratchpad_desc(size_t bytes) {
    return memory::desc({static_cast<memory::dim>(bytes)}, DT::u8, Tag::a);
  }

  const Plan* find_plan(const Shape& xs, int threads) const {
    std::lock_guard<std::mutex> lock(mutex_);
    for (const auto& p : plans_) {
      if (p->threads == threads && p->x_shape == xs) return p.get();
    }
    auto plan = std::make_unique<Plan>();
    plan->x_shape = xs;
    plan->threads = threads;
    try {
      if (!make_plan(*plan)) return nullptr;
    } catch (const std::exception&) {  // dnnl::error (no implementation) or a bad geometry
      return nullptr;
    }
    plans_.push_back(std::move(plan));
    return plans_.back().get();
  }

  // Fills `plan` for plan.x_shape and plan.threads; false when oneDNN does not take the shape.
  bool make_plan(Plan& plan) const {
    std::optional<dnnl::primitive_desc> pd = describe(plan.x_shape, plan);
    if (!pd) return false;
    const auto& eng = cpu_engine();
    plan.prim = dnnl::primitive(*pd);
    plan.src = pd->query_md(dnnl::query::src_md);
    plan.dst = pd->query_md(dnnl::query::dst_md);
    plan.scratchpad_bytes = pd->scratchpad_desc().get_size();
    plan.impl = pd->impl_info_str();
    if (plan.src != plan.user_src) {
      dnnl::reorder::primitive_desc rpd(eng, plan.user_src, eng, plan.src, scratch_attr());
      plan.src_reorder.emplace(rpd);
      plan.scratchpad_bytes = std::max(plan.scratchpad_bytes, rpd.scratchpad_desc().get_size());
    }
    if (plan.dst != plan.user_dst) {
      dnnl::reorder::primitive_desc rpd(eng, plan.dst, eng, plan.user_dst, scratch_attr());
      plan.dst_reorder.emplace(rpd);
      plan.scratchpad_bytes = std::max(plan.scratchpad_bytes, rpd.scratchpad_desc().get_size());
    }
    if (weight_) plan.weights = &weights_for(pd->query_md(dnnl::query::weights_md));
    attach_fused(*pd, plan);
    return true;
  }

  // The weights in layout `md`, reordered on first request (once per executor and layout).
  const memory& weights_for(const memory::desc& md) const {
    for (const auto& [d, m] : weights_) {
      if (d == md) return m;
    }
    const auto& eng = cpu_engine();
    const memory::desc user = user_weights();
    memory from(user, eng, const_cast<void*>(stored_weights()));
    memory to(md, eng);
    if (md == user) {
      std::memcpy(to.get_data_handle(), stored_weights(), user.get_size());
    } else {
      dnnl::stream strm(eng);
      dnnl::reorder(from, to).execute(strm, from, to);
      strm.wait();
    }
    weights_.emplace_back(md, to);
    return weights_.back().second;
  }

  mutable std::mutex mutex_;
  mutable std::vector<std::unique_ptr<Plan>> plans_;
  mutable std::deque<std::pair<memory::desc, memory>> weights_;  // deque: stable references
  std::vector<float> bias_storage_;
  std::optional<memory> bias_;
  std::optional<DnnlInt8> int8_;
};

// ---------------------------------------------------------------------------------------------

class DnnlConv final : public DnnlOpBase {
 public:
  DnnlConv(const Node& node, const Tensor* weight, const Tensor* bias, DnnlPostOp post,
           const DnnlInt8* int8)
      : DnnlOpBase(weight, post, int8), node_(node), groups_(node.attr_int("group", 1)) {
    const Shape& ws = weight->shape;
    o_ = ws[0];
    channels_last_capable_ = blocked_capable_ = ws.size() == 4;
    if (bias) set_bias(bias->f32.data(), memory::desc({o_}, DT::f32, Tag::a));
  }

  bool runs_well_blocked() const override {
    const Shape& ws = weight_->shape;
    if (integer() || ws.size() != 4) return false;
    return (ws[2] == 1 && ws[3] == 1) || (groups_ == o_ && ws[1] == 1);
  }

  bool prefers_blocked(const Shape& x) const override {
    const Shape& ws = weight_->shape;
    if (x.size() != 4 || ws.size() != 4) return false;
    try {
      if (winograd_shape(window_geometry(node_, {x[2], x[3]}, {ws[2], ws[3]}))) return true;
    } catch (const std::exception&) {  // a bad geometry: run() reports it
      return false;
    }
    // Otherwise: whether oneDNN's own pick for this shape (batch 1) reads a blocked layout (on
    // AVX2, jit:avx2 on nChw8c; on AVX-512 brgconv on NHWC). Probed once per geometry.
    Shape probe = x;
    probe[0] = 1;
    std::string key = integer() ? "i8" : "f32";
    for (int64_t d : probe) key += "," + std::to_string(d);
    for (int64_t d : ws) key += "," + std::to_string(d);
    for (const char* a : {"strides", "pads", "dilations"}) {
      key += std::string(";") + a;
      for (int64_t v : node_.attr_ints(a, {})) key += "," + std::to_string(v);
    }
    key += ";" + std::to_string(groups_) + node_.attr_string("auto_pad", "");
    static std::mutex mutex;
    static std::unordered_map<std::string, bool> known;
    std::lock_guard<std::mutex> lock(mutex);
    if (auto it = known.find(key); it != known.end()) return it->second;
    bool blocked = false;
    try {
      Plan plan;
      if (auto pd = describe(probe, plan)) {
        const memory::desc want(pd->src_desc().dims(), src_type(), tag_of(ActLayout::kBlocked));
        blocked = pd->src_desc() == want;
      }
    } catch (const std::exception&) {
    }
    known.emplace(key, blocked);
    return blocked;
  }

  static bool covers(const Node& node, const Tensor* w, const Tensor* b) {
    if (!w || !w->is_float() || (w->shape.size() != 3 && w->shape.size() != 4)) return false;
    if (static_cast<int64_t>(w->f32.size()) != w->numel()) return false;
    const int64_t groups = node.attr_int("group", 1);
    if (groups < 1 || w->shape[0] % groups != 0) return false;
    if (b && (!b->is_float() || b->numel() != w->shape[0])) return false;
    return true;
  }

 protected:
  std::optional<dnnl::primitive_desc> describe(const Shape& xs, Plan& plan) const override {
    const Shape& ws = weight_->shape;
    const bool plain = src_layout_ == ActLayout::kNchw && dst_layout_ == ActLayout::kNchw;
    if (xs.size() != ws.size() || (!plain && xs.size() != 4)) return std::nullopt;
    const int64_t n = xs[0], c = xs[1], cg = ws[1];
    if (c != cg * groups_ || n == 0) return std::nullopt;
    std::vector<int64_t> spatial(xs.begin() + 2, xs.end()), kernel(ws.begin() + 2, ws.end());
    const auto g = window_geometry(node_, spatial, kernel);
    if (g.out_h * g.out_w == 0) return std::nullopt;
    plan.y_shape = {n, o_};
    if (spatial.size() == 2) plan.y_shape.push_back(g.out_h);
    plan.y_shape.push_back(g.out_w);
    const memory::dims src_dims = {n, c, g.in_h, g.in_w}, dst_dims = {n, o_, g.out_h, g.out_w};
    plan.user_src = memory::desc(src_dims, src_type(), tag_of(src_layout_));
    plan.user_dst = memory::desc(dst_dims, DT::f32, tag_of(dst_layout_));
    if (dw_) {  // the primitive writes the depthwise convolution's output
      if (src_layout_ != ActLayout::kBlocked || dst_layout_ != ActLayout::kBlocked)
        return std::nullopt;
      const int64_t oh = (g.out_h - 1) / dw_->stride + 1, ow = (g.out_w - 1) / dw_->stride + 1;
      plan.y_shape = {n, o_, oh, ow};
      plan.user_dst = memory::desc({n, o_, oh, ow}, DT::f32, tag_of(dst_layout_));
    }
    const memory::desc wei_any(weight_dims(), weight_type(), Tag::any);
    const memory::desc bias_md = has_bias() ? memory::desc({o_}, DT::f32, Tag::a) : memory::desc();
    auto conv = [&](dnnl::algorithm alg, const memory::desc& src, const memory::desc& dst) {
      dnnl::convolution_forward::desc d(dnnl::prop_kind::forward_inference, alg, src, wei_any,
                                        bias_md, dst, {g.sh, g.sw}, {g.dh - 1, g.dw - 1},
                                        {g.pad_top, g.pad_left}, {g.pad_bottom, g.pad_right});
      return dnnl::convolution_forward::primitive_desc(
          d, dw_ ? make_attr(post_, dw_->stride, dw_->post) : attr(), cpu_engine());
    };
    // A blocked chain: the kernels for the plan's layouts themselves (no reorder), if oneDNN has
    // JIT kernels for them. For a 3x3, stride-1 float convolution, Winograd's F(2x2, 3x3) or
    // F(4x4, 3x3): 1.4-2.5x faster than the direct kernel on ResNet-18's layers alone, 1.2-1.5x in
    // the network; its results differ from the direct kernel's by a relative RMS of 3e-7 to 7e-7
    // (random inputs, He-initialised weights; docs/architecture.md).
    if (src_layout_ == ActLayout::kBlocked || dst_layout_ == ActLayout::kBlocked) {
      std::vector<dnnl::algorithm> algs;
      if (winograd_shape(g)) algs.push_back(dnnl::algorithm::convolution_winograd);
      // The direct kernels for blocked layouts: for 1x1 and depthwise convolutions (jit_1x1,
      // jit_dw); other shapes ran faster on NHWC's brgconv with reorders around it (ResNet-18's
      // stride-2 3x3 layers at batch 1: 0.62 / 0.62 / 0.75 ms vs 0.64 / 0.72 / 0.91).
      if ((g.kh == 1 && g.kw == 1) || (groups_ == c && o_ == c) ||
          src_layout_ == ActLayout::kNchw)  // a first layer on the NCHW graph input
        algs.push_back(dnnl::algorithm::convolution_direct);
      // With a fused depthwise post-op the primitive's dst descriptor is the 1x1's output; it
      // writes the depthwise one (plan.user_dst).
      const memory::desc dst =
          dw_ ? memory::desc(dst_dims, DT::f32, tag_of(dst_layout_)) : plan.user_dst;
      for (auto alg : algs) {
        try {
          auto pd = conv(alg, plan.user_src, dst);
          if (!is_reference(pd)) return pd;
        } catch (const dnnl::error&) {  // no kernel for these layouts
        }
      }
      if (dw_) return std::nullopt;  // oneDNN 2.6's NHWC fused kernels crash: never on others
    }
    // Layouts of oneDNN's choice (on AVX-512 and AVX2: NHWC, brgconv); the base reorders from and
    // to the executor's. Forcing NCHW src and dst instead picks kernels 7x (jit, NCHW src) to 300x
    // (reference) slower for a 1-channel first layer (bench_executor, 2.6.3 on Zen 4).
    const memory::desc src_any(src_dims, src_type(), Tag::any),
        dst_any(dst_dims, DT::f32, Tag::any);
    return conv(dnnl::algorithm::convolution_direct, src_any, dst_any);
  }

  memory::desc user_weights() const override {
    return memory::desc(weight_dims(), weight_type(), groups_ > 1 ? Tag::goihw : Tag::oihw);
  }

  // A float 3x3, stride-1, undilated dense convolution where oneDNN has (and may use) Winograd.
  bool winograd_shape(const WindowGeometry& g) const {
    return winograd_allowed() && winograd_available() && !integer() && groups_ == 1 && g.kh == 3 &&
           g.kw == 3 && g.sh == 1 && g.sw == 1 && g.dh == 1 && g.dw == 1;
  }

  void attach_fused(const dnnl::primitive_desc& pd, Plan& plan) const override {
    if (!dw_) return;
    const auto& eng = cpu_engine();
    const memory::desc want =
        pd.query_md(dnnl::query::exec_arg_md, DNNL_ARG_ATTR_POST_OP_DW | DNNL_ARG_WEIGHTS);
    plan.dw_bias = &dw_->bias;
    for (const memory& m : dw_->weights) {
      if (m.get_desc() == want) {
        plan.dw_weights = &m;
        return;
      }
    }
    const memory::desc user({o_, 1, 1, 3, 3}, DT::f32, Tag::goihw);
    memory from(user, eng, const_cast<float*>(dw_->weight->f32.data()));
    memory to(want, eng);
    dnnl::stream strm(eng);
    dnnl::reorder(from, to).execute(strm, from, to);
    strm.wait();
    plan.dw_weights = &dw_->weights.emplace_back(to);  // kept only once filled
  }

 public:
  bool can_fuse_depthwise(const Node& dw, const Tensor* w, const Tensor* b) const override {
    const Shape& ws = weight_->shape;
    auto ints_are = [](const Node& node, const char* attr, std::vector<int64_t> want) {
      const auto v = node.attr_ints(attr, {});
      return v.empty() ? std::all_of(want.begin(), want.end(), [](int64_t x) { return x == 1; })
                       : v == want;
    };
    auto plain_padding = [](const Node& node) {
      const std::string p = node.attr_string("auto_pad", "NOTSET");
      return p == "NOTSET" || p.empty();
    };
    // This op: a float 1x1, stride 1, no padding, one group.
    if (integer() || dw_ || groups_ != 1 || ws.size() != 4 || ws[2] != 1 || ws[3] != 1 ||
        !plain_padding(node_) || !ints_are(node_, "strides", {1, 1}) ||
        !ints_are(node_, "dilations", {1, 1}))
      return false;
    for (int64_t p : node_.attr_ints("pads", {}))
      if (p != 0) return false;
    // dw: 3x3 on the o_ channels, one per group, padding 1, stride 1 or 2.
    if (!w || !w->is_float() || w->shape != Shape{o_, 1, 3, 3} ||
        static_cast<int64_t>(w->f32.size()) != w->numel())
      return false;
    if (b && (!b->is_float() || b->numel() != o_ || static_cast<int64_t>(b->f32.size()) != o_))
      return false;
    if (dw.op_type != "Conv" || dw.attr_int("group", 1) != o_ || !plain_padding(dw) ||
        dw.attr_ints("pads", {}) != std::vector<int64_t>{1, 1, 1, 1} ||
        !ints_are(dw, "dilations", {1, 1}))
      return false;
    const auto strides = dw.attr_ints("strides", {});
    return strides.empty() || strides == std::vector<int64_t>{1, 1} ||
           strides == std::vector<int64_t>{2, 2};
  }

  void fuse_depthwise(const Node& dw, const Tensor* w, const Tensor* b, DnnlPostOp post) override {
    auto f = std::make_unique<FusedDepthwise>();
    f->weight = w;
    const auto strides = dw.attr_ints("strides", {});
    f->stride = strides.empty() ? 1 : strides[0];
    f->post = post;
    f->bias_values.assign(static_cast<size_t>(o_), 0.0f);
    if (b) f->bias_values.assign(b->f32.begin(), b->f32.end());
    f->bias = memory(memory::desc({o_}, DT::f32, Tag::a), cpu_engine(), f->bias_values.data());
    dw_ = std::move(f);
  }

 private:
  struct FusedDepthwise {
    const Tensor* weight = nullptr;
    int64_t stride = 1;
    DnnlPostOp post;
    std::vector<float> bias_values;
    memory bias;
    // In the primitives' layouts, made on first use (under the plan mutex); a deque keeps the
    // plans' pointers stable.
    mutable std::deque<memory> weights;
  };
  std::unique_ptr<FusedDepthwise> dw_;

  memory::dims weight_dims() const {
    const Shape& ws = weight_->shape;
    const int64_t kh = ws.size() == 4 ? ws[2] : 1, kw = ws.back();
    if (groups_ > 1) return {groups_, o_ / groups_, ws[1], kh, kw};
    return {o_, ws[1], kh, kw};
  }

  const Node& node_;
  int64_t groups_ = 1, o_ = 0;
};

// Gemm with a constant B: A [M, K] (or [K, M] with transA) times B [K, N] (or [N, K] with transB),
// alpha folded into the weights, beta * C into a bias row. MatMul with a constant 2-D B: every row
// of A (any leading dims) times B.
class DnnlMatMul final : public DnnlOpBase {
 public:
  DnnlMatMul(const Node& node, const Tensor* weight, const Tensor* c, DnnlPostOp post,
             const DnnlInt8* int8)
      : DnnlOpBase(weight, post, int8), gemm_(node.op_type == "Gemm") {
    const Shape& bs = weight->shape;
    if (gemm_) {
      trans_a_ = node.attr_int("transA", 0) != 0;
      trans_b_ = node.attr_int("transB", 0) != 0;
      const float alpha = node.attr_float("alpha", 1.0f), beta = node.attr_float("beta", 1.0f);
      if (alpha != 1.0f) {
        scaled_.resize(weight->f32.size());
        for (size_t i = 0; i < scaled_.size(); ++i) scaled_[i] = alpha * weight->f32[i];
      }
      if (c && beta != 0.0f) {
        std::vector<float> row(c->f32.begin(), c->f32.end());
        for (float& v : row) v *= beta;
        set_bias(row.data(), memory::desc({1, static_cast<int64_t>(row.size())}, DT::f32, Tag::ab));
      }
    }
    k_ = trans_b_ ? bs[1] : bs[0];
    n_ = trans_b_ ? bs[0] : bs[1];
  }

  // Gemm: B and C constant floats, C absent, a scalar or a row of N; MatMul: B constant 2-D.
  static bool covers(const Node& node, const Tensor* b, const Tensor* c) {
    if (!b || !b->is_float() || b->shape.size() != 2) return false;
    if (static_cast<int64_t>(b->f32.size()) != b->numel()) return false;
    if (node.op_type != "Gemm") return true;
    const int64_t n = node.attr_int("transB", 0) ? b->shape[0] : b->shape[1];
    if (c && node.attr_float("beta", 1.0f) != 0.0f) {
      if (!c->is_float() || static_cast<int64_t>(c->f32.size()) != c->numel()) return false;
      // A scalar C is broadcast by the Eigen kernel; a row of N is the bias oneDNN takes.
      if (!(c->numel() == n &&
            (c->shape.size() == 1 || (c->shape.size() == 2 && c->shape[0] == 1))))
        return false;
    }
    return true;
  }

 protected:
  std::optional<dnnl::primitive_desc> describe(const Shape& xs, Plan& plan) const override {
    int64_t m = 0;
    if (gemm_) {
      if (xs.size() != 2) return std::nullopt;
      m = trans_a_ ? xs[1] : xs[0];
      if ((trans_a_ ? xs[0] : xs[1]) != k_) return std::nullopt;
      plan.y_shape = {m, n_};
    } else {
      if (xs.size() < 2 || xs.back() != k_) return std::nullopt;
      m = shape_numel(xs) / k_;
      plan.y_shape = xs;
      plan.y_shape.back() = n_;
    }
    if (m == 0 || k_ == 0 || n_ == 0) return std::nullopt;
    plan.user_src = memory::desc({m, k_}, src_type(), trans_a_ ? Tag::ba : Tag::ab);
    plan.user_dst = memory::desc({m, n_}, DT::f32, Tag::ab);
    const memory::desc wei_any({k_, n_}, weight_type(), Tag::any);
    const memory::desc bias_md =
        has_bias() ? memory::desc({1, n_}, DT::f32, Tag::ab) : memory::desc();
    dnnl::matmul::desc d(plan.user_src, wei_any, bias_md, plan.user_dst);
    return dnnl::matmul::primitive_desc(d, attr(), cpu_engine());
  }

  memory::desc user_weights() const override {
    return memory::desc({k_, n_}, weight_type(), trans_b_ ? Tag::ba : Tag::ab);
  }
  const float* weight_data() const override {
    return scaled_.empty() ? weight_->f32.data() : scaled_.data();
  }

 private:
  bool gemm_ = false, trans_a_ = false, trans_b_ = false;
  int64_t k_ = 0, n_ = 0;
  std::vector<float> scaled_;  // alpha * B when alpha != 1
};

// MaxPool / AveragePool / GlobalAveragePool on [N, C, H, W]; dst in whatever layout oneDNN
// keeps for the src (the base reorders it when the plan wants the other one).
class DnnlPool final : public DnnlOpBase {
 public:
  explicit DnnlPool(const Node& node) : DnnlOpBase(nullptr, DnnlPostOp{}), node_(node) {
    channels_last_capable_ = blocked_capable_ = true;
  }

  static bool covers(const Node& node) {
    if (node.op_type == "GlobalAveragePool") return true;
    if (node.op_type != "MaxPool" && node.op_type != "AveragePool") return false;
    if (node.outputs.size() > 1 && !node.outputs[1].empty()) return false;  // Indices
    if (node.attr_int("storage_order", 0) != 0) return false;
    for (int64_t d : node.attr_ints("dilations", {}))
      if (d != 1) return false;
    if (node.op_type == "AveragePool" && node.attr_int("ceil_mode", 0) != 0) return false;
    return node.attr_ints("kernel_shape", {}).size() == 2;
  }

 protected:
  std::optional<dnnl::primitive_desc> describe(const Shape& xs, Plan& plan) const override {
    if (xs.size() != 4 || xs[0] == 0) return std::nullopt;
    const bool global = node_.op_type == "GlobalAveragePool";
    WindowGeometry g;
    if (global) {
      g.kh = g.in_h = xs[2];
      g.kw = g.in_w = xs[3];
    } else {
      g = window_geometry(node_, {xs[2], xs[3]}, node_.attr_ints("kernel_shape", {}));
    }
    if (g.out_h * g.out_w == 0) return std::nullopt;
    plan.y_shape = {xs[0], xs[1], g.out_h, g.out_w};
    const memory::dims src_dims = {xs[0], xs[1], g.in_h, g.in_w};
    const memory::dims dst_dims = {xs[0], xs[1], g.out_h, g.out_w};
    plan.user_src = memory::desc(src_dims, DT::f32, tag_of(src_layout_));
    plan.user_dst = memory::desc(dst_dims, DT::f32, tag_of(dst_layout_));
    // oneDNN wants dst = (src + pads - kernel) / stride + 1 exactly: ceil_mode's extra window
    // becomes extra right/bottom padding (max pooling never reads padding).
    const int64_t pb = (g.out_h - 1) * g.sh + g.kh - g.in_h - g.pad_top;
    const int64_t pr = (g.out_w - 1) * g.sw + g.kw - g.in_w - g.pad_left;
    const auto alg = node_.op_type == "MaxPool" ? dnnl::algorithm::pooling_max
                     : node_.attr_int("count_include_pad", 0) != 0
                         ? dnnl::algorithm::pooling_avg_include_padding
                         : dnnl::algorithm::pooling_avg_exclude_padding;
    if (alg != dnnl::algorithm::pooling_max && (pb != g.pad_bottom || pr != g.pad_right))
      return std::nullopt;
    dnnl::pooling_forward::desc d(dnnl::prop_kind::forward_inference, alg, plan.user_src,
                                  memory::desc(dst_dims, DT::f32, Tag::any), {g.sh, g.sw},
                                  {g.kh, g.kw}, {g.pad_top, g.pad_left}, {pb, pr});
    return dnnl::pooling_forward::primitive_desc(d, scratch_attr(), cpu_engine());
  }

 private:
  const Node& node_;
};

}  // namespace

std::unique_ptr<DnnlOp> DnnlOp::create_pool(const Node& node) {
  if (!DnnlPool::covers(node)) return nullptr;
  return std::make_unique<DnnlPool>(node);
}

std::unique_ptr<DnnlOp> DnnlOp::create(const Node& node, const Tensor* weight, const Tensor* bias,
                                       DnnlPostOp post, const DnnlInt8* int8) {
  if (int8 && (!weight || static_cast<int64_t>(int8->weight.size()) != weight->numel() ||
               int8->weight_scale.empty()))
    return nullptr;
  if (node.op_type == "Conv") {
    if (!DnnlConv::covers(node, weight, bias)) return nullptr;
    if (int8 && int8->weight_scale.size() != 1 &&
        static_cast<int64_t>(int8->weight_scale.size()) != weight->shape[0])
      return nullptr;
    return std::make_unique<DnnlConv>(node, weight, bias, post, int8);
  }
  if (node.op_type == "Gemm" || node.op_type == "MatMul") {
    if (!DnnlMatMul::covers(node, weight, bias)) return nullptr;
    // Integer Gemm: alpha 1 (alpha is folded into float weights only).
    if (int8 && node.op_type == "Gemm" && node.attr_float("alpha", 1.0f) != 1.0f) return nullptr;
    return std::make_unique<DnnlMatMul>(node, weight, bias, post, int8);
  }
  return nullptr;
}

int64_t blocked_channels() {
  static const int64_t b = isa_at_least(dnnl::cpu_isa::avx512_core) ? 16 : 8;
  return b;
}

void convert_layout(const Tensor& x, ActLayout from, ActLayout to, Tensor& out) {
  float* y = prepare_float(out, x.shape);
  const int64_t n = x.shape[0], c = x.shape[1], hw = x.shape[2] * x.shape[3];
  // Each layout is "blocked by b": element (s, ch, p) at s*C*HW + (ch/b)*HW*b + p*b + ch%b, with
  // b = 1 for NCHW, C for NHWC and blocked_channels() for kBlocked; the inner loop runs over the
  // pixels with the two layouts' strides.
  auto block = [&](ActLayout l) {
    return l == ActLayout::kNhwc ? c : l == ActLayout::kBlocked ? blocked_channels() : int64_t{1};
  };
  const int64_t bf = block(from), bt = block(to);
  const float* xd = x.f32.data();
  for (int64_t s = 0; s < n; ++s) {
    for (int64_t ch = 0; ch < c; ++ch) {
      const float* src = xd + s * c * hw + (ch / bf) * hw * bf + ch % bf;
      float* dst = y + s * c * hw + (ch / bt) * hw * bt + ch % bt;
      for (int64_t p = 0; p < hw; ++p) dst[p * bt] = src[p * bf];
    }
  }
}

bool dnnl_winograd_available() { return winograd_available(); }

bool dnnl_exact_int8() {
  return isa_at_least(dnnl::cpu_isa::avx512_core_vnni) || isa_at_least(dnnl::cpu_isa::avx2_vnni);
}

std::string dnnl_description() {
  const dnnl_version_t* v = dnnl_version();
  std::string isa;
  switch (dnnl::get_effective_cpu_isa()) {
    case dnnl::cpu_isa::sse41:
      isa = "sse41";
      break;
    case dnnl::cpu_isa::avx:
      isa = "avx";
      break;
    case dnnl::cpu_isa::avx2:
      isa = "avx2";
      break;
    case dnnl::cpu_isa::avx2_vnni:
      isa = "avx2_vnni";
      break;
    case dnnl::cpu_isa::avx512_core:
      isa = "avx512_core";
      break;
    case dnnl::cpu_isa::avx512_core_vnni:
      isa = "avx512_core_vnni";
      break;
    case dnnl::cpu_isa::avx512_core_bf16:
      isa = "avx512_core_bf16";
      break;
    case dnnl::cpu_isa::avx512_core_amx:
      isa = "avx512_core_amx";
      break;
    default:
      isa = "other";
      break;
  }
  return "oneDNN " + std::to_string(v->major) + "." + std::to_string(v->minor) + "." +
         std::to_string(v->patch) + " (" + isa + ")";
}

}  // namespace compsearch::model::detail
