// Trainer: forward with saved state, backward passes, and parameter I/O (model/training.h).
//
// Engine: our own kernels on Eigen GEMMs, like the executor (im2col + GEMM per sample for
// convolutions, direct loops for depthwise ones, single GEMMs split by rows or columns for
// Gemm/MatMul). Chosen over oneDNN/libtorch because it keeps the QAT seam in our hands (the
// effective weight is whatever the compressors' kernels write), adds no dependency, and was
// measured at or above PyTorch's epoch speed on the bundled models (see the issue note).
//
// Gradient plumbing: every value that depends on a trainable parameter gets a gradient buffer.
// Backward walks the plan in reverse; an op writes the gradient of an input directly into that
// input's buffer when it is the first writer in this backward, else into a scratch buffer that
// is then added (a value read by two nodes). Nothing is zero-filled that is not scattered into.
//
// Threads: OpenMP with a fixed team size. Convolution weight gradients are summed per thread
// over a static contiguous slice of the batch and the partial sums added in thread order; all
// other reductions run over one channel or one column per iteration in a fixed order. So a
// fixed thread count gives bit-identical results.
#define EIGEN_DONT_PARALLELIZE
#include "model/training.h"

#include <omp.h>

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstring>
#include <exception>
#include <limits>
#include <map>
#include <optional>
#include <stdexcept>
#include <unordered_map>

#include "common/check.h"
#include "model/executor.h"
#include "model/layer_table.h"
#include "model/node_eval.h"
#include "model/op_kernels.h"
#include "model/op_util.h"

namespace compsearch::model {

namespace {

using detail::node_label;
using RowMajorMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using MatMap = Eigen::Map<RowMajorMatrix>;
using ConstMatMap = Eigen::Map<const RowMajorMatrix>;

// Kernels with less work than this (multiply-adds or elements) stay on one thread: a fork and
// join costs more, and far more on a loaded machine where a waiting thread is descheduled.
constexpr int64_t kParallelWork = int64_t(1) << 16;

[[noreturn]] void fail(const Node& node, const std::string& what) {
  throw std::runtime_error(node_label(node) + ": " + what);
}

enum class OpKind {
  kConv,
  kGemm,
  kMatMul,
  kAdd,
  kSub,
  kMul,
  kRelu,
  kClip,
  kMaxPool,
  kAveragePool,
  kGlobalAveragePool,
  kBatchNorm,
  kReshape,
  kConcat,
  kPad,
  kStatic
};

std::optional<OpKind> differentiable_kind(const std::string& op) {
  static const std::map<std::string, OpKind> kinds = {
      {"Conv", OpKind::kConv},
      {"Gemm", OpKind::kGemm},
      {"MatMul", OpKind::kMatMul},
      {"Add", OpKind::kAdd},
      {"Sub", OpKind::kSub},
      {"Mul", OpKind::kMul},
      {"Relu", OpKind::kRelu},
      {"Clip", OpKind::kClip},
      {"MaxPool", OpKind::kMaxPool},
      {"AveragePool", OpKind::kAveragePool},
      {"GlobalAveragePool", OpKind::kGlobalAveragePool},
      {"BatchNormalization", OpKind::kBatchNorm},
      {"Flatten", OpKind::kReshape},
      {"Reshape", OpKind::kReshape},
      {"Identity", OpKind::kReshape},
      {"Dropout", OpKind::kReshape},
      {"Concat", OpKind::kConcat},
      {"Pad", OpKind::kPad}};
  auto it = kinds.find(op);
  if (it == kinds.end()) return std::nullopt;
  return it->second;
}

// Adjoint of im2col: adds the columns back into the (zeroed) input gradient of one sample.
void col2im(const float* col, int64_t c, const detail::WindowGeometry& g, float* dx) {
  const int64_t ohw = g.out_h * g.out_w;
  std::fill(dx, dx + c * g.in_h * g.in_w, 0.0f);
  for (int64_t ch = 0; ch < c; ++ch) {
    float* plane = dx + ch * g.in_h * g.in_w;
    for (int64_t ki = 0; ki < g.kh; ++ki) {
      for (int64_t kj = 0; kj < g.kw; ++kj) {
        const float* row = col + ((ch * g.kh + ki) * g.kw + kj) * ohw;
        const int64_t col_off = kj * g.dw - g.pad_left;
        int64_t ow_lo = col_off >= 0 ? 0 : (-col_off + g.sw - 1) / g.sw;
        int64_t ow_hi = g.in_w - col_off <= 0 ? 0 : (g.in_w - col_off + g.sw - 1) / g.sw;
        ow_lo = std::min(ow_lo, g.out_w);
        ow_hi = std::clamp(ow_hi, ow_lo, g.out_w);
        for (int64_t oh = 0; oh < g.out_h; ++oh) {
          const int64_t ih = oh * g.sh - g.pad_top + ki * g.dh;
          if (ih < 0 || ih >= g.in_h) continue;
          const float* src = row + oh * g.out_w;
          float* dst = plane + ih * g.in_w + col_off;
          if (g.sw == 1) {
            for (int64_t ow = ow_lo; ow < ow_hi; ++ow) dst[ow] += src[ow];
          } else {
            for (int64_t ow = ow_lo; ow < ow_hi; ++ow) dst[ow * g.sw] += src[ow];
          }
        }
      }
    }
  }
}

// Output columns [lo, hi) of kernel column kj whose input column lies inside the image.
inline void valid_cols(const detail::WindowGeometry& g, int64_t kj, int64_t& lo, int64_t& hi,
                       int64_t& col_off) {
  col_off = kj * g.dw - g.pad_left;
  lo = col_off >= 0 ? 0 : (-col_off + g.sw - 1) / g.sw;
  hi = g.in_w - col_off <= 0 ? 0 : (g.in_w - col_off + g.sw - 1) / g.sw;
  lo = std::min(lo, g.out_w);
  hi = std::clamp(hi, lo, g.out_w);
}

// Strides of `shape` aligned right to rank `rank`, 0 along broadcast (size-1) dims.
std::vector<int64_t> broadcast_strides(const Shape& shape, const Shape& out) {
  const size_t r = out.size();
  std::vector<int64_t> st(r, 0);
  int64_t s = 1;
  for (size_t i = 0; i < shape.size(); ++i) {
    const size_t d = shape.size() - 1 - i;
    const size_t o = r - 1 - i;
    st[o] = shape[d] == 1 && out[o] != 1 ? 0 : s;
    s *= shape[d];
  }
  return st;
}

// Calls f(out_index, a_offset, b_offset) over every element of `out` in storage order.
template <typename F>
void for_each_broadcast(const Shape& out, const std::vector<int64_t>& sa,
                        const std::vector<int64_t>& sb, F&& f) {
  const size_t r = out.size();
  const int64_t total = shape_numel(out);
  if (total == 0) return;
  std::vector<int64_t> idx(r, 0);
  int64_t oa = 0, ob = 0;
  for (int64_t i = 0; i < total; ++i) {
    f(i, oa, ob);
    for (size_t d = r; d-- > 0;) {
      ++idx[d];
      oa += sa[d];
      ob += sb[d];
      if (idx[d] < out[d]) break;
      oa -= sa[d] * out[d];
      ob -= sb[d] * out[d];
      idx[d] = 0;
    }
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------

struct Trainer::Impl {
  struct Value {
    std::string name;
    Tensor t;        // activation (or constant) value
    Tensor g;        // gradient (values that require grad)
    int param = -1;  // index into params when the value is a trainable initializer
    bool constant = false;
    bool requires_grad = false;
    bool written = false;  // gradient written in the current backward
  };
  struct Layer {
    std::string name;
    size_t node_index = 0;
    int weight_value = -1;
    int input_slot = 0;  // which node input is the activation
    WeightTransform weight_transform;
    InputTransform input_transform;
    Tensor effective;  // effective weight (with a weight transform)
    Tensor effective_grad;
    Tensor transformed_input;
    Tensor input_grad;
    // Replicas: the master applies this layer's input transform to the whole batch and writes
    // this slice's part into transformed_input; the input gradient waits in input_grad for the
    // master to map it (pending_input_grad) before complete_pending_input_grad() adds it.
    bool external_transform = false;
    Tensor whole_original;  // master, sliced runs: the whole batch's untransformed input
    Tensor whole_grad;      // master, sliced runs: the whole batch's input gradient
  };
  struct Op {
    const Node* node = nullptr;
    size_t node_index = 0;
    OpKind kind = OpKind::kStatic;
    std::vector<int> in, out;
    int layer = -1;
    // Saved forward state and per-op scratch, reused across steps.
    detail::WindowGeometry geo;
    std::vector<float> cols;          // conv: im2col of every sample
    std::vector<float> scratch;       // conv: per-thread dcol; BN: per-channel stats
    std::vector<float> partial;       // conv: per-thread weight-gradient partial sums
    std::vector<int32_t> argmax;      // max pool
    std::vector<float> mean, invstd;  // batch norm statistics of the last training forward
    bool bn_batch_stats = false;
    float lo = -INFINITY, hi = INFINITY;     // clip
    int64_t c_stride_m = 0, c_stride_n = 0;  // Gemm: C's broadcast strides over [M, N]
  };

  Graph graph;
  TrainerOptions options;
  int threads = 1;
  int64_t declared_batch = -1;
  std::vector<Value> values;
  std::unordered_map<std::string, int> value_index;
  std::vector<TrainableParameter> params;
  std::vector<Layer> layers;
  std::vector<std::string> layer_names;
  std::vector<Op> ops;
  int input_value = -1;
  std::vector<int> output_values;
  std::vector<Tensor> outputs;
  bool have_train_forward = false;
  Tensor scratch_grad;  // second writers of a value's gradient

  // Batch slicing: with several threads, a batch is split into `threads` contiguous slices, each
  // run forward and backward through the whole graph by a single-threaded replica (one fork per
  // pass instead of one per op); the replicas' parameter gradients are then added in slice
  // order. Replicas read parameters, effective weights and constants from the master. Used only
  // where slices cannot change the result: no batch statistics (BatchNormalization training) and
  // no input transforms (their observers must see the whole batch), outputs batch-major.
  const Impl* master = nullptr;
  std::vector<std::unique_ptr<Impl>> replicas;
  std::vector<Tensor> replica_inputs, replica_grads;
  bool slicing_capable = false;
  bool has_batch_norm = false;
  bool last_forward_sliced = false;

  Impl(const Graph& g, TrainerOptions o);

  const Tensor& val(int id) const {
    const Value& v = values[id];
    if (master && (v.param >= 0 || v.constant)) return master->val(id);
    return v.param >= 0 ? params[v.param].value : v.t;
  }
  // The weight a layer computes with: the effective weight when transformed.
  const Tensor& weight_of(const Op& op, int slot) const {
    const Impl& root = master ? *master : *this;
    if (op.layer >= 0 && root.layers[op.layer].weight_value == op.in[slot] &&
        root.layers[op.layer].weight_transform.forward) {
      return root.layers[op.layer].effective;
    }
    return val(op.in[slot]);
  }
  int pending_input_grad = -1;  // replicas: op index whose input gradient awaits the master
  void begin_forward(const Tensor& input);
  void run_forward_ops(size_t begin, size_t end, bool train);
  void end_forward(bool train);
  void begin_backward(const Tensor& grad_output);
  void run_backward_ops(size_t end, size_t begin);  // ops [begin, end) in reverse
  void end_backward();
  void complete_pending_input_grad();
  bool use_slices(const Tensor& input, Mode mode) const;
  void forward_sliced(const Tensor& input, Mode mode);
  void backward_sliced(const Tensor& grad_output);
  const Tensor& activation_input(const Op& op, int slot) const {
    if (op.layer >= 0 && layers[op.layer].input_slot == slot &&
        (layers[op.layer].input_transform.forward || layers[op.layer].external_transform)) {
      return layers[op.layer].transformed_input;
    }
    return val(op.in[slot]);
  }
  bool needs(int id) const { return id >= 0 && values[id].requires_grad; }
  Tensor& grad_tensor(int id) {
    Value& v = values[id];
    return v.param >= 0 ? params[v.param].grad : v.g;
  }

  // Gradient destination for input `id` of an op: the value's own buffer for the first writer,
  // else scratch_grad (added by finish_grad).
  float* begin_grad(int id, const Shape& shape) {
    Value& v = values[id];
    if (!v.written) return prepare_float(grad_tensor(id), shape);
    return prepare_float(scratch_grad, shape);
  }
  void finish_grad(int id) {
    Value& v = values[id];
    if (!v.written) {
      v.written = true;
      return;
    }
    Tensor& g = grad_tensor(id);
    const int64_t n = static_cast<int64_t>(g.f32.size());
    float* d = g.f32.data();
    const float* s = scratch_grad.f32.data();
    for (int64_t i = 0; i < n; ++i) d[i] += s[i];
  }

  void forward(const Tensor& input, Mode mode);
  void backward(const Tensor& grad_output);

  void run_static(Op& op);
  void conv_forward(Op& op, bool train);
  void conv_backward(Op& op);
  void gemm_forward(Op& op);
  void gemm_backward(Op& op);
  void binary_forward(Op& op);
  void binary_backward(Op& op);
  void pool_forward(Op& op, bool train);
  void pool_backward(Op& op);
  void gap_forward(Op& op);
  void gap_backward(Op& op);
  void bn_forward(Op& op, bool train);
  void bn_backward(Op& op);
  void reshape_forward(Op& op);
  void concat_forward(Op& op);
  void concat_backward(Op& op);
  void pad_backward(Op& op);
  void unary_forward(Op& op);
  void unary_backward(Op& op);
  // Gradient w.r.t. the activation input of a layer op: where the kernel writes it, and the
  // hand-off through the input transform afterwards.
  float* layer_input_grad_begin(Op& op, int slot, const Shape& shape);
  void layer_input_grad_finish(Op& op, int slot);
  float* layer_weight_grad_begin(Op& op, int slot, const Shape& shape);
  void layer_weight_grad_finish(Op& op, int slot);
};

Trainer::Impl::Impl(const Graph& g, TrainerOptions o) : graph(g), options(std::move(o)) {
  threads = resolve_threads(options.threads, "TrainerOptions::threads");
  if (graph.inputs.empty() || graph.outputs.empty()) {
    throw std::invalid_argument("Trainer: graph '" + graph.name + "' needs an input and an output");
  }
  if (!graph.inputs[0].shape.empty()) declared_batch = graph.inputs[0].shape[0];
  for (const auto& name : options.frozen) {
    if (!graph.find_initializer(name)) {
      throw std::invalid_argument("TrainerOptions::frozen names '" + name +
                                  "', which is not an initializer of the graph");
    }
  }
  auto id_of = [&](const std::string& name) -> int {
    auto it = value_index.find(name);
    if (it != value_index.end()) return it->second;
    Value v;
    v.name = name;
    values.push_back(std::move(v));
    value_index[name] = static_cast<int>(values.size() - 1);
    return static_cast<int>(values.size() - 1);
  };
  input_value = id_of(graph.inputs[0].name);
  for (size_t i = 1; i < graph.inputs.size(); ++i) id_of(graph.inputs[i].name);

  // Layers as the layer table names them.
  const LayerTable table = build_layer_table(graph);
  std::map<size_t, size_t> layer_of_node;
  for (const auto& info : table.layers) {
    Layer l;
    l.name = info.name;
    l.node_index = info.node_index;
    layers.push_back(std::move(l));
    layer_names.push_back(info.name);
    layer_of_node[info.node_index] = layers.size() - 1;
  }

  // Which initializers are trainable: weights/biases of Conv/Gemm/MatMul, BN scale and bias.
  auto trainable_slot = [](const Node& node, size_t slot) {
    const std::string& op = node.op_type;
    if (op == "Conv") return slot == 1 || slot == 2;
    if (op == "Gemm") return slot <= 2;
    if (op == "MatMul") return slot <= 1;
    if (op == "BatchNormalization") return slot == 1 || slot == 2;
    return false;
  };
  for (size_t ni = 0; ni < graph.nodes.size(); ++ni) {
    const Node& node = graph.nodes[ni];
    Op op;
    op.node = &node;
    op.node_index = ni;
    auto kind = differentiable_kind(node.op_type);
    op.kind = kind ? *kind : OpKind::kStatic;
    for (size_t s = 0; s < node.inputs.size(); ++s) {
      const std::string& name = node.inputs[s];
      if (name.empty()) {
        op.in.push_back(-1);
        continue;
      }
      const bool existed = value_index.count(name) != 0;
      const int id = id_of(name);
      op.in.push_back(id);
      if (existed) continue;
      const Tensor* init = graph.find_initializer(name);
      if (!init)
        fail(node,
             "input '" + name + "' is neither a graph input, an initializer nor an earlier output");
      Value& v = values[id];
      if (init->dtype == DType::kFloat32 && trainable_slot(node, s) &&
          !options.frozen.count(name) && op.kind != OpKind::kStatic) {
        TrainableParameter p;
        p.name = name;
        p.value = *init;
        p.grad = Tensor::zeros(init->shape);
        if (node.op_type == "BatchNormalization") {
          p.role = s == 1 ? TrainableParameter::Role::kBatchNormScale
                          : TrainableParameter::Role::kBatchNormBias;
        } else {
          const bool is_weight =
              node.op_type == "Conv" ? s == 1 : (node.op_type == "Gemm" ? s == 1 : true);
          p.role = is_weight ? TrainableParameter::Role::kWeight : TrainableParameter::Role::kBias;
          auto lit = layer_of_node.find(ni);
          if (lit != layer_of_node.end()) p.layer = layers[lit->second].name;
          if (node.op_type == "Gemm" && s == 0) p.role = TrainableParameter::Role::kOther;
        }
        params.push_back(std::move(p));
        v.param = static_cast<int>(params.size() - 1);
        v.requires_grad = true;
      } else {
        v.t = *init;
        v.constant = true;
      }
    }
    for (const auto& name : node.outputs) op.out.push_back(name.empty() ? -1 : id_of(name));
    auto lit = layer_of_node.find(ni);
    if (lit != layer_of_node.end()) {
      Layer& l = layers[lit->second];
      const auto& info = table.layers[lit->second];
      op.layer = static_cast<int>(lit->second);
      l.weight_value = value_index.at(info.weight_name);
      l.input_slot = 0;
      for (size_t s = 0; s < node.inputs.size() && s < 2; ++s) {
        if (node.inputs[s] != info.weight_name) {
          l.input_slot = static_cast<int>(s);
          break;
        }
      }
    }
    // Gradient flow.
    bool any = false;
    for (int id : op.in) any = any || needs(id);
    // Shape/Size read only the shape of a value: no gradient flows through them.
    const bool shape_only = node.op_type == "Shape" || node.op_type == "Size";
    if (op.kind == OpKind::kStatic) {
      if (any && !shape_only) {
        fail(node,
             "has no backward pass in the trainer, and a trainable parameter feeds it "
             "(differentiable ops: Conv, Gemm, MatMul, Add, Sub, Mul, Relu, Clip, MaxPool, "
             "AveragePool, GlobalAveragePool, BatchNormalization, Flatten, Reshape, Concat, "
             "Pad, Identity, Dropout)");
      }
    } else {
      if (op.kind == OpKind::kPad && node.attr_string("mode", "constant") != "constant") {
        fail(node, "only constant-mode Pad has a backward pass");
      }
      if (op.kind == OpKind::kMaxPool && node.outputs.size() > 1 && !node.outputs[1].empty()) {
        fail(node, "the Indices output is not supported");
      }
      if (op.kind == OpKind::kGemm && node.attr_int("transA", 0) != 0) {
        fail(node, "transA = 1 is not supported by the trainer");
      }
      if (op.kind == OpKind::kClip) {
        if (node.has_attr("min")) op.lo = node.attr_float("min", -INFINITY);
        if (node.has_attr("max")) op.hi = node.attr_float("max", INFINITY);
        for (size_t s = 1; s < 3 && s < op.in.size(); ++s) {
          if (op.in[s] < 0) continue;
          const Value& v = values[op.in[s]];
          if (!v.constant || v.t.f32.empty())
            fail(node, "min/max must be constant float initializers");
          (s == 1 ? op.lo : op.hi) = v.t.f32[0];
        }
      }
    }
    for (int id : op.out) {
      if (id >= 0) values[id].requires_grad = any && op.kind != OpKind::kStatic;
    }
    ops.push_back(std::move(op));
  }
  for (const auto& out : graph.outputs) {
    auto it = value_index.find(out.name);
    if (it == value_index.end()) {
      throw std::invalid_argument("Trainer: graph output '" + out.name +
                                  "' is not produced by any node");
    }
    output_values.push_back(it->second);
  }
  outputs.resize(output_values.size());
  // Slicing needs batch-major outputs and no op that mixes samples.
  slicing_capable = !graph.inputs[0].shape.empty();
  const int64_t in_batch = slicing_capable ? graph.inputs[0].shape[0] : 0;
  for (const auto& out : graph.outputs) {
    auto vi = graph.value_info.find(out.name);
    const Shape& s = vi != graph.value_info.end() ? vi->second.shape : out.shape;
    if (s.empty() || s[0] != in_batch) slicing_capable = false;
  }
  for (const Op& op : ops) {
    if (op.kind == OpKind::kBatchNorm) has_batch_norm = true;
    if (op.kind == OpKind::kConcat && !op.out.empty() && op.out[0] >= 0) {
      auto vi = graph.value_info.find(values[op.out[0]].name);
      if (vi == graph.value_info.end() || vi->second.dtype != DType::kFloat32) continue;
      const int64_t rank = static_cast<int64_t>(vi->second.shape.size());
      int64_t axis = op.node->attr_int("axis", 0);
      if (axis < 0) axis += rank;
      if (axis == 0) slicing_capable = false;
    }
    if (op.kind == OpKind::kGemm && op.in.size() > 2 && op.in[2] >= 0) {
      const Tensor& c = val(op.in[2]);
      if (c.shape.size() == 2 && c.shape[0] != 1) slicing_capable = false;
    }
    if (op.kind == OpKind::kPad) slicing_capable = false;  // it could pad the batch axis
  }
}

// ---------------------------------------------------------------------------------------------
// Forward

void Trainer::Impl::run_static(Op& op) {
  std::vector<const Tensor*> in;
  for (int id : op.in) in.push_back(id >= 0 ? &val(id) : nullptr);
  auto outs = detail::evaluate_node(*op.node, in, graph.opset_version);
  for (size_t i = 0; i < op.out.size() && i < outs.size(); ++i) {
    if (op.out[i] >= 0) values[op.out[i]].t = std::move(outs[i]);
  }
}

void Trainer::Impl::forward(const Tensor& input, Mode mode) {
  const bool train = mode == Mode::kTrain;
  have_train_forward = false;
  const Shape& want = graph.inputs[0].shape;
  if (input.dtype != DType::kFloat32 || input.shape.size() != want.size() || input.shape.empty() ||
      input.f32.size() != static_cast<size_t>(shape_numel(input.shape))) {
    throw std::invalid_argument("Trainer: input '" + graph.inputs[0].name +
                                "' must be a float32 tensor " + shape_to_string(want) + ", got " +
                                shape_to_string(input.shape));
  }
  for (size_t d = 1; d < want.size(); ++d) {
    if (want[d] > 0 && input.shape[d] != want[d]) {
      throw std::invalid_argument("Trainer: input '" + graph.inputs[0].name + "' expects samples " +
                                  shape_to_string(want) + ", got " + shape_to_string(input.shape));
    }
  }
  // Effective weights once per forward.
  for (Layer& l : layers) {
    if (!l.weight_transform.forward) continue;
    const Tensor& master_weight = val(l.weight_value);
    l.effective.dtype = DType::kFloat32;
    l.effective.shape = master_weight.shape;
    l.effective.f32.resize(master_weight.f32.size());
    l.weight_transform.forward(master_weight, l.effective);
    if (l.effective.f32.size() != master_weight.f32.size()) {
      throw std::runtime_error("weight transform of layer '" + l.name +
                               "' changed the weight size");
    }
  }
  last_forward_sliced = false;
  if (use_slices(input, mode)) {
    forward_sliced(input, mode);
    last_forward_sliced = true;
    have_train_forward = train;
    return;
  }
  begin_forward(input);
  run_forward_ops(0, ops.size(), train);
  end_forward(train);
}

void Trainer::Impl::begin_forward(const Tensor& input) {
  have_train_forward = false;
  Value& in = values[input_value];
  prepare_float(in.t, input.shape);
  std::memcpy(in.t.f32.data(), input.f32.data(), sizeof(float) * input.f32.size());
}

void Trainer::Impl::run_forward_ops(size_t begin, size_t end, bool train) {
  for (size_t oi = begin; oi < end; ++oi) {
    Op& op = ops[oi];
    if (op.layer >= 0) {
      Layer& l = layers[op.layer];
      if (l.input_transform.forward) {
        const Tensor& x = val(op.in[l.input_slot]);
        l.transformed_input.dtype = DType::kFloat32;
        l.transformed_input.shape = x.shape;
        l.transformed_input.f32.assign(x.f32.begin(), x.f32.end());
        l.input_transform.forward(l.transformed_input, train);
      }
    }
    switch (op.kind) {
      case OpKind::kConv:
        conv_forward(op, train);
        break;
      case OpKind::kGemm:
      case OpKind::kMatMul:
        gemm_forward(op);
        break;
      case OpKind::kAdd:
      case OpKind::kSub:
      case OpKind::kMul:
        binary_forward(op);
        break;
      case OpKind::kRelu:
      case OpKind::kClip:
        unary_forward(op);
        break;
      case OpKind::kMaxPool:
      case OpKind::kAveragePool:
        pool_forward(op, train);
        break;
      case OpKind::kGlobalAveragePool:
        gap_forward(op);
        break;
      case OpKind::kBatchNorm:
        bn_forward(op, train);
        break;
      case OpKind::kReshape:
        reshape_forward(op);
        break;
      case OpKind::kConcat:
        concat_forward(op);
        break;
      case OpKind::kPad:
      case OpKind::kStatic:
        run_static(op);
        break;
    }
  }
}

void Trainer::Impl::end_forward(bool train) {
  for (size_t i = 0; i < output_values.size(); ++i) {
    const Tensor& v = val(output_values[i]);
    outputs[i].dtype = v.dtype;
    outputs[i].shape = v.shape;
    outputs[i].f32.assign(v.f32.begin(), v.f32.end());
    outputs[i].i64.assign(v.i64.begin(), v.i64.end());
  }
  have_train_forward = train;
}

void Trainer::Impl::conv_forward(Op& op, bool /*train*/) {
  const Node& node = *op.node;
  const Tensor& x = activation_input(op, 0);
  const Tensor& w = weight_of(op, 1);
  const Tensor* b = op.in.size() > 2 && op.in[2] >= 0 ? &val(op.in[2]) : nullptr;
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
  op.geo = g;
  Shape os = {n, o};
  if (spatial.size() == 2) os.push_back(g.out_h);
  os.push_back(g.out_w);
  float* y = prepare_float(values[op.out[0]].t, os);
  const int64_t hw = g.in_h * g.in_w, ohw = g.out_h * g.out_w;
  const int64_t og = o / groups, k = cg * g.kh * g.kw, ck = c * g.kh * g.kw;
  const float* xd = x.f32.data();
  const float* wd = w.f32.data();
  const float* bd = b ? b->f32.data() : nullptr;
  const bool depthwise = cg == 1 && og == 1;
  const bool direct = g.kh == 1 && g.kw == 1 && g.sh == 1 && g.sw == 1 && g.pad_top == 0 &&
                      g.pad_left == 0 && g.pad_bottom == 0 && g.pad_right == 0;
  if (depthwise) {
#pragma omp parallel for num_threads(threads) \
    schedule(static) if (n * c * ohw * g.kh * g.kw > kParallelWork)
    for (int64_t p = 0; p < n * c; ++p) {
      const int64_t ch = p % c;
      const float* in = xd + p * hw;
      const float* wk = wd + ch * g.kh * g.kw;
      float* out = y + p * ohw;
      std::fill(out, out + ohw, bd ? bd[ch] : 0.0f);
      for (int64_t ki = 0; ki < g.kh; ++ki) {
        for (int64_t kj = 0; kj < g.kw; ++kj) {
          const float wv = wk[ki * g.kw + kj];
          int64_t lo, hi, col_off;
          valid_cols(g, kj, lo, hi, col_off);
          for (int64_t oh = 0; oh < g.out_h; ++oh) {
            const int64_t ih = oh * g.sh - g.pad_top + ki * g.dh;
            if (ih < 0 || ih >= g.in_h) continue;
            const float* src = in + ih * g.in_w + col_off;
            float* dst = out + oh * g.out_w;
            for (int64_t ow = lo; ow < hi; ++ow) dst[ow] += wv * src[ow * g.sw];
          }
        }
      }
    }
    return;
  }
  if (!direct) op.cols.resize(static_cast<size_t>(n * ck * ohw));
#pragma omp parallel for num_threads(threads) schedule(static) if (n * o * ohw * k > kParallelWork)
  for (int64_t s = 0; s < n; ++s) {
    const float* col;
    if (direct) {
      col = xd + s * c * hw;
    } else {
      float* cs = op.cols.data() + s * ck * ohw;
      detail::im2col(xd + s * c * hw, 0, c, g, cs);
      col = cs;
    }
    float* ys = y + s * o * ohw;
    for (int64_t gi = 0; gi < groups; ++gi) {
      MatMap yg(ys + gi * og * ohw, og, ohw);
      yg.noalias() = ConstMatMap(wd + gi * og * k, og, k) * ConstMatMap(col + gi * k * ohw, k, ohw);
      if (bd) yg.colwise() += Eigen::Map<const Eigen::VectorXf>(bd + gi * og, og);
    }
  }
}

void Trainer::Impl::gemm_forward(Op& op) {
  const Node& node = *op.node;
  const bool is_gemm = op.kind == OpKind::kGemm;
  if (op.layer >= 0 && layers[op.layer].input_slot != 0) {
    fail(node, "a constant left operand (weight as A) is not supported by the trainer");
  }
  const Tensor& a = activation_input(op, 0);
  const Tensor& bt = weight_of(op, 1);
  const bool trans_b = is_gemm && node.attr_int("transB", 0) != 0;
  const float alpha = is_gemm ? node.attr_float("alpha", 1.0f) : 1.0f;
  const float beta = is_gemm ? node.attr_float("beta", 1.0f) : 1.0f;
  if (a.shape.size() < 2 || bt.shape.size() != 2 || (is_gemm && a.shape.size() != 2)) {
    fail(node, "operands " + shape_to_string(a.shape) + " and " + shape_to_string(bt.shape) +
                   " are not supported (A [.., M, K], B 2-D)");
  }
  const int64_t kdim = a.shape.back();
  const int64_t m = a.numel() / std::max<int64_t>(1, kdim);
  const int64_t kb = trans_b ? bt.shape[1] : bt.shape[0];
  const int64_t nout = trans_b ? bt.shape[0] : bt.shape[1];
  if (kb != kdim)
    fail(node, "inner dimensions of " + shape_to_string(a.shape) + " and " +
                   shape_to_string(bt.shape) + " differ");
  Shape os(a.shape.begin(), a.shape.end() - 1);
  os.push_back(nout);
  float* y = prepare_float(values[op.out[0]].t, os);
  const Tensor* c = is_gemm && op.in.size() > 2 && op.in[2] >= 0 ? &val(op.in[2]) : nullptr;
  int64_t csm = 0, csn = 0;
  if (c) {
    Shape cs = c->shape;
    while (cs.size() < 2) cs.insert(cs.begin(), 1);
    if (cs.size() != 2 || (cs[0] != 1 && cs[0] != m) || (cs[1] != 1 && cs[1] != nout)) {
      fail(node, "C " + shape_to_string(c->shape) + " does not broadcast to [" + std::to_string(m) +
                     ", " + std::to_string(nout) + "]");
    }
    csm = cs[0] == 1 ? 0 : cs[1];
    csn = cs[1] == 1 ? 0 : 1;
  }
  const float* ad = a.f32.data();
  const float* bd = bt.f32.data();
  const float* cd = c ? c->f32.data() : nullptr;
  const int t = m * kdim * nout > kParallelWork
                    ? static_cast<int>(std::min<int64_t>(threads, std::max<int64_t>(1, m)))
                    : 1;
#pragma omp parallel num_threads(t)
  {
    const int tid = omp_get_thread_num(), nt = omp_get_num_threads();
    const int64_t m0 = m * tid / nt, m1 = m * (tid + 1) / nt;
    if (m1 > m0) {
      MatMap yb(y + m0 * nout, m1 - m0, nout);
      ConstMatMap ab(ad + m0 * kdim, m1 - m0, kdim);
      if (trans_b) {
        yb.noalias() = ab * ConstMatMap(bd, nout, kdim).transpose();
      } else {
        yb.noalias() = ab * ConstMatMap(bd, kdim, nout);
      }
      if (alpha != 1.0f) yb *= alpha;
      if (cd) {
        for (int64_t i = m0; i < m1; ++i) {
          float* yr = y + i * nout;
          const float* cr = cd + i * csm;
          if (csn) {
            for (int64_t j = 0; j < nout; ++j) yr[j] += beta * cr[j];
          } else {
            for (int64_t j = 0; j < nout; ++j) yr[j] += beta * cr[0];
          }
        }
      }
    }
  }
  op.c_stride_m = csm;
  op.c_stride_n = csn;
}

void Trainer::Impl::binary_forward(Op& op) {
  const Node& node = *op.node;
  const Tensor& a = val(op.in[0]);
  const Tensor& b = val(op.in[1]);
  if (!a.is_float() || !b.is_float()) {  // shape arithmetic: no gradient flows through it
    if (needs(op.in[0]) || needs(op.in[1])) fail(node, "mixes float and integer operands");
    run_static(op);
    return;
  }
  const Shape os = detail::broadcast_shapes(a.shape, b.shape, node);
  float* y = prepare_float(values[op.out[0]].t, os);
  const float* ad = a.f32.data();
  const float* bd = b.f32.data();
  const int64_t total = shape_numel(os);
  const OpKind kind = op.kind;
  auto f = [kind](float u, float v) {
    return kind == OpKind::kAdd ? u + v : kind == OpKind::kSub ? u - v : u * v;
  };
  if (a.shape == os && b.shape == os) {
#pragma omp parallel for num_threads(threads) schedule(static) if (total > (1 << 15))
    for (int64_t i = 0; i < total; ++i) y[i] = f(ad[i], bd[i]);
    return;
  }
  const auto sa = broadcast_strides(a.shape, os), sb = broadcast_strides(b.shape, os);
  for_each_broadcast(os, sa, sb,
                     [&](int64_t i, int64_t oa, int64_t ob) { y[i] = f(ad[oa], bd[ob]); });
}

void Trainer::Impl::unary_forward(Op& op) {
  const Tensor& x = val(op.in[0]);
  if (!x.is_float()) fail(*op.node, "input must be a float tensor");
  float* y = prepare_float(values[op.out[0]].t, x.shape);
  const float* xd = x.f32.data();
  const int64_t total = x.numel();
  const float lo = op.kind == OpKind::kRelu ? 0.0f : op.lo;
  const float hi = op.kind == OpKind::kRelu ? INFINITY : op.hi;
#pragma omp parallel for num_threads(threads) schedule(static) if (total > (1 << 15))
  for (int64_t i = 0; i < total; ++i) y[i] = std::min(std::max(xd[i], lo), hi);
}

void Trainer::Impl::pool_forward(Op& op, bool train) {
  const Node& node = *op.node;
  const Tensor& x = val(op.in[0]);
  if (x.shape.size() < 3 || x.shape.size() > 4)
    fail(node, "input " + shape_to_string(x.shape) + " must be [N, C, (H,) W]");
  const bool is_max = op.kind == OpKind::kMaxPool;
  std::vector<int64_t> spatial(x.shape.begin() + 2, x.shape.end());
  const auto g = detail::window_geometry(node, spatial, node.attr_ints("kernel_shape", {}));
  op.geo = g;
  const bool include_pad = node.attr_int("count_include_pad", 0) != 0;
  Shape os = {x.shape[0], x.shape[1]};
  if (spatial.size() == 2) os.push_back(g.out_h);
  os.push_back(g.out_w);
  float* y = prepare_float(values[op.out[0]].t, os);
  const int64_t planes = x.shape[0] * x.shape[1];
  const int64_t hw = g.in_h * g.in_w, ohw = g.out_h * g.out_w;
  const float* xd = x.f32.data();
  const bool save = is_max && train;
  if (save) op.argmax.resize(static_cast<size_t>(planes * ohw));
  int32_t* am = save ? op.argmax.data() : nullptr;
#pragma omp parallel for num_threads(threads) \
    schedule(static) if (planes * ohw * g.kh * g.kw > kParallelWork)
  for (int64_t p = 0; p < planes; ++p) {
    const float* src = xd + p * hw;
    float* dst = y + p * ohw;
    int32_t* ap = am ? am + p * ohw : nullptr;
    if (is_max && g.kh == 2 && g.kw == 2 && g.sh == 2 && g.sw == 2 && g.dh == 1 && g.dw == 1 &&
        g.pad_top == 0 && g.pad_left == 0 && 2 * g.out_h <= g.in_h && 2 * g.out_w <= g.in_w) {
      for (int64_t oh = 0; oh < g.out_h; ++oh) {
        const float* r0 = src + 2 * oh * g.in_w;
        const float* r1 = r0 + g.in_w;
        float* d = dst + oh * g.out_w;
        if (!ap) {
          for (int64_t ow = 0; ow < g.out_w; ++ow) {
            d[ow] = std::max(std::max(r0[2 * ow], r0[2 * ow + 1]),
                             std::max(r1[2 * ow], r1[2 * ow + 1]));
          }
          continue;
        }
        int32_t* a = ap + oh * g.out_w;
        const int32_t base = static_cast<int32_t>(2 * oh * g.in_w);
        for (int64_t ow = 0; ow < g.out_w; ++ow) {
          // First maximum in window scan order (PyTorch's tie rule).
          float best = r0[2 * ow];
          int32_t bi = base + static_cast<int32_t>(2 * ow);
          if (r0[2 * ow + 1] > best) {
            best = r0[2 * ow + 1];
            bi = base + static_cast<int32_t>(2 * ow + 1);
          }
          if (r1[2 * ow] > best) {
            best = r1[2 * ow];
            bi = base + static_cast<int32_t>(g.in_w + 2 * ow);
          }
          if (r1[2 * ow + 1] > best) {
            best = r1[2 * ow + 1];
            bi = base + static_cast<int32_t>(g.in_w + 2 * ow + 1);
          }
          d[ow] = best;
          a[ow] = bi;
        }
      }
      continue;
    }
    for (int64_t oh = 0; oh < g.out_h; ++oh) {
      const int64_t h0 = oh * g.sh - g.pad_top;
      for (int64_t ow = 0; ow < g.out_w; ++ow) {
        const int64_t w0 = ow * g.sw - g.pad_left;
        float acc = is_max ? -INFINITY : 0.0f;
        int64_t best = -1, count = 0;
        for (int64_t ki = 0; ki < g.kh; ++ki) {
          const int64_t ih = h0 + ki * g.dh;
          if (ih < 0 || ih >= g.in_h) continue;
          for (int64_t kj = 0; kj < g.kw; ++kj) {
            const int64_t iw = w0 + kj * g.dw;
            if (iw < 0 || iw >= g.in_w) continue;
            const float v = src[ih * g.in_w + iw];
            if (is_max) {
              if (best < 0 || v > acc) {
                acc = v;
                best = ih * g.in_w + iw;
              }
            } else {
              acc += v;
            }
            ++count;
          }
        }
        if (!is_max) {
          if (include_pad) {
            const int64_t h1 = std::min(h0 + (g.kh - 1) * g.dh + 1, g.in_h + g.pad_bottom);
            const int64_t w1 = std::min(w0 + (g.kw - 1) * g.dw + 1, g.in_w + g.pad_right);
            count = ((h1 - h0 + g.dh - 1) / g.dh) * ((w1 - w0 + g.dw - 1) / g.dw);
          }
          acc = count ? acc / static_cast<float>(count) : 0.0f;
        }
        dst[oh * g.out_w + ow] = acc;
        if (ap) ap[oh * g.out_w + ow] = static_cast<int32_t>(best);
      }
    }
  }
}

void Trainer::Impl::gap_forward(Op& op) {
  const Tensor& x = val(op.in[0]);
  if (x.shape.size() < 3)
    fail(*op.node, "input " + shape_to_string(x.shape) + " must be [N, C, ...]");
  Shape os = x.shape;
  for (size_t i = 2; i < os.size(); ++i) os[i] = 1;
  const int64_t planes = x.shape[0] * x.shape[1];
  const int64_t inner = planes ? x.numel() / planes : 0;
  float* y = prepare_float(values[op.out[0]].t, os);
  const float* xd = x.f32.data();
#pragma omp parallel for num_threads(threads) schedule(static) if (planes * inner > (1 << 15))
  for (int64_t p = 0; p < planes; ++p) {
    double acc = 0.0;
    for (int64_t j = 0; j < inner; ++j) acc += xd[p * inner + j];
    y[p] = static_cast<float>(acc / double(inner));
  }
}

void Trainer::Impl::bn_forward(Op& op, bool train) {
  const Node& node = *op.node;
  const Tensor& x = val(op.in[0]);
  if (x.shape.size() < 2) fail(node, "input " + shape_to_string(x.shape) + " must be [N, C, ...]");
  const int64_t n = x.shape[0], c = x.shape[1], inner = x.numel() / std::max<int64_t>(1, n * c);
  for (size_t i = 1; i <= 4; ++i) {
    if (i >= op.in.size() || op.in[i] < 0) fail(node, "missing input #" + std::to_string(i));
    if (val(op.in[i]).numel() != c)
      fail(node, "parameter #" + std::to_string(i) + " has " +
                     std::to_string(val(op.in[i]).numel()) + " values for " + std::to_string(c) +
                     " channels");
  }
  const float eps = node.attr_float("epsilon", 1e-5f);
  const double momentum = node.attr_float("momentum", 0.9f);
  const float* gamma = val(op.in[1]).f32.data();
  const float* beta = val(op.in[2]).f32.data();
  const Tensor& rmean_in = val(op.in[3]);
  const Tensor& rvar_in = val(op.in[4]);
  const bool batch_stats = train && !options.freeze_batch_norm_statistics;
  op.bn_batch_stats = batch_stats;
  op.mean.resize(static_cast<size_t>(c));
  op.invstd.resize(static_cast<size_t>(c));
  float* y = prepare_float(values[op.out[0]].t, x.shape);
  const float* xd = x.f32.data();
  const int64_t m = n * inner;
#pragma omp parallel for num_threads(threads) schedule(static) if (n * c * inner > kParallelWork)
  for (int64_t ch = 0; ch < c; ++ch) {
    double mean, var;
    if (batch_stats) {
      double s = 0.0;
      for (int64_t i = 0; i < n; ++i) {
        const float* p = xd + (i * c + ch) * inner;
        for (int64_t j = 0; j < inner; ++j) s += p[j];
      }
      mean = s / double(m);
      double ss = 0.0;
      for (int64_t i = 0; i < n; ++i) {
        const float* p = xd + (i * c + ch) * inner;
        for (int64_t j = 0; j < inner; ++j) {
          const double d = p[j] - mean;
          ss += d * d;
        }
      }
      var = ss / double(m);
      // Running statistics as PyTorch updates them (ONNX momentum = 1 - PyTorch momentum),
      // with the unbiased variance.
      const double unbiased = m > 1 ? ss / double(m - 1) : var;
      // Only the master trains with batch statistics, so these are its own constants.
      Tensor& rmean = values[op.in[3]].t;
      Tensor& rvar = values[op.in[4]].t;
      rmean.f32[ch] = static_cast<float>(momentum * rmean.f32[ch] + (1.0 - momentum) * mean);
      rvar.f32[ch] = static_cast<float>(momentum * rvar.f32[ch] + (1.0 - momentum) * unbiased);
    } else {
      mean = rmean_in.f32[ch];
      var = rvar_in.f32[ch];
    }
    const float is = static_cast<float>(1.0 / std::sqrt(var + double(eps)));
    const float mf = static_cast<float>(mean);
    op.mean[ch] = mf;
    op.invstd[ch] = is;
    const float sc = gamma[ch] * is, sh = beta[ch];
    for (int64_t i = 0; i < n; ++i) {
      const float* p = xd + (i * c + ch) * inner;
      float* q = y + (i * c + ch) * inner;
      for (int64_t j = 0; j < inner; ++j) q[j] = (p[j] - mf) * sc + sh;
    }
  }
}

void Trainer::Impl::reshape_forward(Op& op) {
  const Node& node = *op.node;
  const Tensor& x = val(op.in[0]);
  Shape os;
  if (node.op_type == "Flatten") {
    const int64_t r = static_cast<int64_t>(x.shape.size());
    int64_t axis = node.attr_int("axis", 1);
    if (axis < 0) axis += r;
    if (axis < 0 || axis > r) fail(node, "axis out of range for " + shape_to_string(x.shape));
    int64_t outer = 1;
    for (int64_t i = 0; i < axis; ++i) outer *= x.shape[i];
    os = {outer, outer ? x.numel() / outer : 0};
  } else if (node.op_type == "Reshape") {
    if (op.in.size() < 2 || op.in[1] < 0) fail(node, "missing the shape input");
    const Tensor& st = val(op.in[1]);
    if (st.is_float()) fail(node, "shape must be an integer tensor");
    const bool allowzero = node.attr_int("allowzero", 0) != 0;
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
        if (known == 0 || x.numel() % known) return std::nullopt;
        t[infer] = x.numel() / known;
      } else if (known != x.numel()) {
        return std::nullopt;
      }
      return t;
    };
    auto shape = resolve(st.i64);
    // A shape that froze the declared batch size: keep the real batch (as the executor does).
    if (!shape && declared_batch > 0 && !st.i64.empty() && st.i64[0] == declared_batch &&
        !x.shape.empty() && x.shape[0] != declared_batch) {
      auto t = st.i64;
      t[0] = x.shape[0];
      shape = resolve(t);
    }
    if (!shape)
      fail(node, "cannot reshape " + shape_to_string(x.shape) + " to " + shape_to_string(st.i64));
    os = *shape;
  } else {
    os = x.shape;
  }
  Tensor& y = values[op.out[0]].t;
  y.dtype = x.dtype;
  y.shape = os;
  y.f32.assign(x.f32.begin(), x.f32.end());
  y.i64.assign(x.i64.begin(), x.i64.end());
  for (size_t i = 1; i < op.out.size(); ++i) {  // Dropout's optional mask output
    if (op.out[i] >= 0) {
      Tensor& mask = values[op.out[i]].t;
      mask =
          Tensor::ints(os, std::vector<int64_t>(static_cast<size_t>(x.numel()), 1), DType::kBool);
    }
  }
}

void Trainer::Impl::concat_forward(Op& op) {
  const Node& node = *op.node;
  const Tensor& first = val(op.in[0]);
  if (!first.is_float()) {  // shape arithmetic
    run_static(op);
    return;
  }
  const int64_t r = static_cast<int64_t>(first.shape.size());
  const int64_t axis = detail::normalize_axis(node.attr_int("axis", 0), r, node);
  Shape os = first.shape;
  os[axis] = 0;
  for (int id : op.in) {
    const Tensor& t = val(id);
    if (t.shape.size() != first.shape.size()) fail(node, "inputs differ in rank");
    for (int64_t d = 0; d < r; ++d) {
      if (d != axis && t.shape[d] != first.shape[d])
        fail(node, "inputs differ outside the concat axis");
    }
    os[axis] += t.shape[axis];
  }
  float* y = prepare_float(values[op.out[0]].t, os);
  int64_t outer = 1, inner = 1;
  for (int64_t d = 0; d < axis; ++d) outer *= os[d];
  for (int64_t d = axis + 1; d < r; ++d) inner *= os[d];
  const int64_t row = os[axis] * inner;
  int64_t offset = 0;
  for (int id : op.in) {
    const Tensor& t = val(id);
    const int64_t chunk = t.shape[axis] * inner;
    for (int64_t i = 0; i < outer; ++i) {
      std::memcpy(y + i * row + offset, t.f32.data() + i * chunk, sizeof(float) * chunk);
    }
    offset += chunk;
  }
}

// ---------------------------------------------------------------------------------------------
// Backward

float* Trainer::Impl::layer_input_grad_begin(Op& op, int slot, const Shape& shape) {
  if (op.layer >= 0 && layers[op.layer].input_slot == slot &&
      (layers[op.layer].input_transform.forward || layers[op.layer].external_transform)) {
    return prepare_float(layers[op.layer].input_grad, shape);
  }
  return begin_grad(op.in[slot], shape);
}

void Trainer::Impl::layer_input_grad_finish(Op& op, int slot) {
  if (op.layer >= 0 && layers[op.layer].input_slot == slot && layers[op.layer].external_transform) {
    pending_input_grad = static_cast<int>(&op - ops.data());
    return;
  }
  if (op.layer >= 0 && layers[op.layer].input_slot == slot &&
      layers[op.layer].input_transform.forward) {
    Layer& l = layers[op.layer];
    const Tensor& original = val(op.in[slot]);
    if (l.input_transform.backward) l.input_transform.backward(original, l.input_grad);
    float* d = begin_grad(op.in[slot], original.shape);
    std::memcpy(d, l.input_grad.f32.data(), sizeof(float) * l.input_grad.f32.size());
  }
  finish_grad(op.in[slot]);
}

float* Trainer::Impl::layer_weight_grad_begin(Op& op, int slot, const Shape& shape) {
  if (op.layer >= 0 && layers[op.layer].weight_value == op.in[slot] &&
      layers[op.layer].weight_transform.forward) {
    return prepare_float(layers[op.layer].effective_grad, shape);
  }
  return begin_grad(op.in[slot], shape);
}

void Trainer::Impl::layer_weight_grad_finish(Op& op, int slot) {
  if (op.layer >= 0 && layers[op.layer].weight_value == op.in[slot] &&
      layers[op.layer].weight_transform.forward) {
    Layer& l = layers[op.layer];
    const Tensor& master_weight = val(op.in[slot]);
    if (l.weight_transform.backward)
      l.weight_transform.backward(master_weight, l.effective, l.effective_grad);
    float* d = begin_grad(op.in[slot], master_weight.shape);
    std::memcpy(d, l.effective_grad.f32.data(), sizeof(float) * l.effective_grad.f32.size());
  }
  finish_grad(op.in[slot]);
}

void Trainer::Impl::backward(const Tensor& grad_output) {
  if (!have_train_forward) {
    throw std::logic_error("Trainer::backward needs a preceding forward in Mode::kTrain");
  }
  if (last_forward_sliced) {
    backward_sliced(grad_output);
    return;
  }
  const int out_id = output_values[0];
  const Tensor& y = val(out_id);
  if (grad_output.shape != y.shape || grad_output.f32.size() != y.f32.size()) {
    throw std::invalid_argument("Trainer::backward: gradient " +
                                shape_to_string(grad_output.shape) + " does not match the output " +
                                shape_to_string(y.shape));
  }
  begin_backward(grad_output);
  run_backward_ops(ops.size(), 0);
  end_backward();
}

void Trainer::Impl::begin_backward(const Tensor& grad_output) {
  const int out_id = output_values[0];
  for (Value& v : values) v.written = false;
  pending_input_grad = -1;
  if (!values[out_id].requires_grad) return;  // end_backward() zeroes every gradient
  float* d = begin_grad(out_id, grad_output.shape);
  std::memcpy(d, grad_output.f32.data(), sizeof(float) * grad_output.f32.size());
  finish_grad(out_id);
}

void Trainer::Impl::run_backward_ops(size_t end, size_t begin) {
  for (size_t i = end; i-- > begin;) {
    Op& op = ops[i];
    if (op.kind == OpKind::kStatic) continue;
    const int out = op.out[0];
    if (!needs(out) || !values[out].written) continue;  // no gradient reaches this op
    switch (op.kind) {
      case OpKind::kConv:
        conv_backward(op);
        break;
      case OpKind::kGemm:
      case OpKind::kMatMul:
        gemm_backward(op);
        break;
      case OpKind::kAdd:
      case OpKind::kSub:
      case OpKind::kMul:
        binary_backward(op);
        break;
      case OpKind::kRelu:
      case OpKind::kClip:
        unary_backward(op);
        break;
      case OpKind::kMaxPool:
      case OpKind::kAveragePool:
        pool_backward(op);
        break;
      case OpKind::kGlobalAveragePool:
        gap_backward(op);
        break;
      case OpKind::kBatchNorm:
        bn_backward(op);
        break;
      case OpKind::kReshape: {
        if (!needs(op.in[0])) break;
        const Tensor& x = val(op.in[0]);
        const Tensor& gy = grad_tensor(out);
        float* d = begin_grad(op.in[0], x.shape);
        std::memcpy(d, gy.f32.data(), sizeof(float) * gy.f32.size());
        finish_grad(op.in[0]);
        break;
      }
      case OpKind::kConcat:
        concat_backward(op);
        break;
      case OpKind::kPad:
        pad_backward(op);
        break;
      case OpKind::kStatic:
        break;
    }
  }
}

void Trainer::Impl::end_backward() {
  // Parameters no gradient reached (their op's output was unused) get zeros.
  for (Value& v : values) {
    if (v.param >= 0 && !v.written) {
      std::fill(params[v.param].grad.f32.begin(), params[v.param].grad.f32.end(), 0.0f);
    }
  }
}

void Trainer::Impl::conv_backward(Op& op) {
  const Node& node = *op.node;
  const Tensor& x = activation_input(op, 0);
  const Tensor& w = weight_of(op, 1);
  const bool has_bias = op.in.size() > 2 && op.in[2] >= 0;
  const auto& g = op.geo;
  const int64_t groups = node.attr_int("group", 1);
  const int64_t n = x.shape[0], c = x.shape[1], o = w.shape[0], cg = w.shape[1];
  const int64_t hw = g.in_h * g.in_w, ohw = g.out_h * g.out_w;
  const int64_t og = o / groups, k = cg * g.kh * g.kw, ck = c * g.kh * g.kw;
  const float* gy = grad_tensor(op.out[0]).f32.data();
  const float* xd = x.f32.data();
  const float* wd = w.f32.data();
  const bool depthwise = cg == 1 && og == 1;
  const bool direct = g.kh == 1 && g.kw == 1 && g.sh == 1 && g.sw == 1 && g.pad_top == 0 &&
                      g.pad_left == 0 && g.pad_bottom == 0 && g.pad_right == 0;
  const int64_t khw = g.kh * g.kw;

  if (has_bias && needs(op.in[2])) {
    float* db = begin_grad(op.in[2], val(op.in[2]).shape);
#pragma omp parallel for num_threads(threads) schedule(static) if (n * o * ohw > kParallelWork)
    for (int64_t ch = 0; ch < o; ++ch) {
      double acc = 0.0;
      for (int64_t s = 0; s < n; ++s) {
        const float* p = gy + (s * o + ch) * ohw;
        float part = 0.0f;
        for (int64_t j = 0; j < ohw; ++j) part += p[j];
        acc += part;
      }
      db[ch] = static_cast<float>(acc);
    }
    finish_grad(op.in[2]);
  }
  const bool need_w = needs(op.in[1]);
  const bool need_x = needs(op.in[0]);
  if (depthwise) {
    if (need_w) {
      float* dw = layer_weight_grad_begin(op, 1, w.shape);
#pragma omp parallel for num_threads(threads) \
    schedule(static) if (n * c * ohw * khw > kParallelWork)
      for (int64_t ch = 0; ch < c; ++ch) {
        for (int64_t ki = 0; ki < g.kh; ++ki) {
          for (int64_t kj = 0; kj < g.kw; ++kj) {
            int64_t lo, hi, col_off;
            valid_cols(g, kj, lo, hi, col_off);
            double acc = 0.0;
            for (int64_t s = 0; s < n; ++s) {
              const float* in = xd + (s * c + ch) * hw;
              const float* dy = gy + (s * c + ch) * ohw;
              float part = 0.0f;
              for (int64_t oh = 0; oh < g.out_h; ++oh) {
                const int64_t ih = oh * g.sh - g.pad_top + ki * g.dh;
                if (ih < 0 || ih >= g.in_h) continue;
                const float* src = in + ih * g.in_w + col_off;
                const float* d = dy + oh * g.out_w;
                for (int64_t ow = lo; ow < hi; ++ow) part += d[ow] * src[ow * g.sw];
              }
              acc += part;
            }
            dw[ch * khw + ki * g.kw + kj] = static_cast<float>(acc);
          }
        }
      }
      layer_weight_grad_finish(op, 1);
    }
    if (need_x) {
      float* dx = layer_input_grad_begin(op, 0, x.shape);
#pragma omp parallel for num_threads(threads) \
    schedule(static) if (n * c * ohw * khw > kParallelWork)
      for (int64_t p = 0; p < n * c; ++p) {
        const int64_t ch = p % c;
        float* out = dx + p * hw;
        const float* dy = gy + p * ohw;
        std::fill(out, out + hw, 0.0f);
        for (int64_t ki = 0; ki < g.kh; ++ki) {
          for (int64_t kj = 0; kj < g.kw; ++kj) {
            const float wv = wd[ch * khw + ki * g.kw + kj];
            int64_t lo, hi, col_off;
            valid_cols(g, kj, lo, hi, col_off);
            for (int64_t oh = 0; oh < g.out_h; ++oh) {
              const int64_t ih = oh * g.sh - g.pad_top + ki * g.dh;
              if (ih < 0 || ih >= g.in_h) continue;
              float* dst = out + ih * g.in_w + col_off;
              const float* d = dy + oh * g.out_w;
              for (int64_t ow = lo; ow < hi; ++ow) dst[ow * g.sw] += wv * d[ow];
            }
          }
        }
      }
      layer_input_grad_finish(op, 0);
    }
    return;
  }

  if (need_w) {
    float* dw = layer_weight_grad_begin(op, 1, w.shape);
    const int64_t wn = o * k;
    int nt_used = 1;
    op.partial.resize(static_cast<size_t>(threads * wn));
#pragma omp parallel num_threads(threads) if (n * o * ohw * k > kParallelWork)
    {
      const int tid = omp_get_thread_num(), nt = omp_get_num_threads();
#pragma omp single
      nt_used = nt;
      const int64_t s0 = n * tid / nt, s1 = n * (tid + 1) / nt;
      float* part = op.partial.data() + tid * wn;
      std::fill(part, part + wn, 0.0f);
      for (int64_t s = s0; s < s1; ++s) {
        const float* col = direct ? xd + s * c * hw : op.cols.data() + s * ck * ohw;
        for (int64_t gi = 0; gi < groups; ++gi) {
          MatMap(part + gi * og * k, og, k).noalias() +=
              ConstMatMap(gy + (s * o + gi * og) * ohw, og, ohw) *
              ConstMatMap(col + gi * k * ohw, k, ohw).transpose();
        }
      }
    }
    const float* parts = op.partial.data();
#pragma omp parallel for num_threads(threads) schedule(static) if (wn > (1 << 14))
    for (int64_t i = 0; i < wn; ++i) {
      float acc = parts[i];
      for (int t = 1; t < nt_used; ++t) acc += parts[t * wn + i];
      dw[i] = acc;
    }
    layer_weight_grad_finish(op, 1);
  }
  if (need_x) {
    float* dx = layer_input_grad_begin(op, 0, x.shape);
    if (!direct) op.scratch.resize(static_cast<size_t>(threads * ck * ohw));
#pragma omp parallel num_threads(threads) if (n * o * ohw * k > kParallelWork)
    {
      const int tid = omp_get_thread_num();
      float* dcol = direct ? nullptr : op.scratch.data() + tid * ck * ohw;
#pragma omp for schedule(static)
      for (int64_t s = 0; s < n; ++s) {
        float* target = direct ? dx + s * c * hw : dcol;
        for (int64_t gi = 0; gi < groups; ++gi) {
          MatMap(target + gi * k * ohw, k, ohw).noalias() =
              ConstMatMap(wd + gi * og * k, og, k).transpose() *
              ConstMatMap(gy + (s * o + gi * og) * ohw, og, ohw);
        }
        if (!direct) col2im(dcol, c, g, dx + s * c * hw);
      }
    }
    layer_input_grad_finish(op, 0);
  }
}

void Trainer::Impl::gemm_backward(Op& op) {
  const Node& node = *op.node;
  const bool is_gemm = op.kind == OpKind::kGemm;
  const Tensor& a = activation_input(op, 0);
  const Tensor& bt = weight_of(op, 1);
  const bool trans_b = is_gemm && node.attr_int("transB", 0) != 0;
  const float alpha = is_gemm ? node.attr_float("alpha", 1.0f) : 1.0f;
  const float beta = is_gemm ? node.attr_float("beta", 1.0f) : 1.0f;
  const int64_t kdim = a.shape.back();
  const int64_t m = a.numel() / std::max<int64_t>(1, kdim);
  const int64_t nout = trans_b ? bt.shape[0] : bt.shape[1];
  const float* gy = grad_tensor(op.out[0]).f32.data();
  const float* ad = a.f32.data();
  const float* bd = bt.f32.data();
  ConstMatMap dy(gy, m, nout);
  if (is_gemm && op.in.size() > 2 && op.in[2] >= 0 && needs(op.in[2])) {
    const Tensor& c = val(op.in[2]);
    float* dc = begin_grad(op.in[2], c.shape);
    std::fill(dc, dc + c.numel(), 0.0f);
    const int64_t csm = op.c_stride_m, csn = op.c_stride_n;
    for (int64_t i = 0; i < m; ++i) {
      const float* r = gy + i * nout;
      float* d = dc + i * csm;
      if (csn) {
        for (int64_t j = 0; j < nout; ++j) d[j] += r[j];
      } else {
        for (int64_t j = 0; j < nout; ++j) d[0] += r[j];
      }
    }
    if (beta != 1.0f) {
      for (int64_t i = 0; i < c.numel(); ++i) dc[i] *= beta;
    }
    finish_grad(op.in[2]);
  }
  if (needs(op.in[1])) {
    float* db = layer_weight_grad_begin(op, 1, bt.shape);
    const int t =
        m * kdim * nout > kParallelWork
            ? static_cast<int>(std::min<int64_t>(threads, std::max<int64_t>(1, kdim / 16)))
            : 1;
#pragma omp parallel num_threads(t)
    {
      const int tid = omp_get_thread_num(), nt = omp_get_num_threads();
      const int64_t k0 = kdim * tid / nt, k1 = kdim * (tid + 1) / nt;
      if (k1 > k0) {
        ConstMatMap am(ad, m, kdim);
        if (trans_b) {  // dB [N, K] = alpha * dY^T A
          MatMap dbm(db, nout, kdim);
          dbm.middleCols(k0, k1 - k0).noalias() = dy.transpose() * am.middleCols(k0, k1 - k0);
          if (alpha != 1.0f) dbm.middleCols(k0, k1 - k0) *= alpha;
        } else {  // dB [K, N] = alpha * A^T dY
          MatMap dbm(db, kdim, nout);
          dbm.middleRows(k0, k1 - k0).noalias() = am.middleCols(k0, k1 - k0).transpose() * dy;
          if (alpha != 1.0f) dbm.middleRows(k0, k1 - k0) *= alpha;
        }
      }
    }
    layer_weight_grad_finish(op, 1);
  }
  if (needs(op.in[0])) {
    float* da = layer_input_grad_begin(op, 0, a.shape);
    const int t = m * kdim * nout > kParallelWork
                      ? static_cast<int>(std::min<int64_t>(threads, std::max<int64_t>(1, m)))
                      : 1;
#pragma omp parallel num_threads(t)
    {
      const int tid = omp_get_thread_num(), nt = omp_get_num_threads();
      const int64_t m0 = m * tid / nt, m1 = m * (tid + 1) / nt;
      if (m1 > m0) {
        MatMap dam(da + m0 * kdim, m1 - m0, kdim);
        if (trans_b) {
          dam.noalias() = dy.middleRows(m0, m1 - m0) * ConstMatMap(bd, nout, kdim);
        } else {
          dam.noalias() = dy.middleRows(m0, m1 - m0) * ConstMatMap(bd, kdim, nout).transpose();
        }
        if (alpha != 1.0f) dam *= alpha;
      }
    }
    layer_input_grad_finish(op, 0);
  }
}

void Trainer::Impl::binary_backward(Op& op) {
  const Tensor& a = val(op.in[0]);
  const Tensor& b = val(op.in[1]);
  const Tensor& y = val(op.out[0]);
  const float* gy = grad_tensor(op.out[0]).f32.data();
  const Shape& os = y.shape;
  const int64_t total = shape_numel(os);
  const OpKind kind = op.kind;
  for (int side = 0; side < 2; ++side) {
    const int id = op.in[side];
    if (!needs(id)) continue;
    const Tensor& self = side == 0 ? a : b;
    const Tensor& other = side == 0 ? b : a;
    const float sign = kind == OpKind::kSub && side == 1 ? -1.0f : 1.0f;
    float* d = begin_grad(id, self.shape);
    const float* od = other.f32.data();
    if (self.shape == os && (kind != OpKind::kMul || other.shape == os)) {
#pragma omp parallel for num_threads(threads) schedule(static) if (total > (1 << 15))
      for (int64_t i = 0; i < total; ++i)
        d[i] = kind == OpKind::kMul ? gy[i] * od[i] : sign * gy[i];
    } else {
      std::fill(d, d + self.numel(), 0.0f);
      const auto ss = broadcast_strides(self.shape, os), so = broadcast_strides(other.shape, os);
      for_each_broadcast(os, ss, so, [&](int64_t i, int64_t os_self, int64_t os_other) {
        d[os_self] += kind == OpKind::kMul ? gy[i] * od[os_other] : sign * gy[i];
      });
    }
    finish_grad(id);
  }
}

void Trainer::Impl::unary_backward(Op& op) {
  if (!needs(op.in[0])) return;
  const Tensor& x = val(op.in[0]);
  const float* gy = grad_tensor(op.out[0]).f32.data();
  const float* xd = x.f32.data();
  float* d = begin_grad(op.in[0], x.shape);
  const int64_t total = x.numel();
  if (op.kind == OpKind::kRelu) {
#pragma omp parallel for num_threads(threads) schedule(static) if (total > (1 << 15))
    for (int64_t i = 0; i < total; ++i) d[i] = xd[i] > 0.0f ? gy[i] : 0.0f;
  } else {
    // torch.clamp's rule: the gradient passes where lo <= x <= hi.
    const float lo = op.lo, hi = op.hi;
#pragma omp parallel for num_threads(threads) schedule(static) if (total > (1 << 15))
    for (int64_t i = 0; i < total; ++i) d[i] = xd[i] >= lo && xd[i] <= hi ? gy[i] : 0.0f;
  }
  finish_grad(op.in[0]);
}

void Trainer::Impl::pool_backward(Op& op) {
  if (!needs(op.in[0])) return;
  const Node& node = *op.node;
  const Tensor& x = val(op.in[0]);
  const auto& g = op.geo;
  const bool is_max = op.kind == OpKind::kMaxPool;
  const bool include_pad = node.attr_int("count_include_pad", 0) != 0;
  const int64_t planes = x.shape[0] * x.shape[1];
  const int64_t hw = g.in_h * g.in_w, ohw = g.out_h * g.out_w;
  const float* gy = grad_tensor(op.out[0]).f32.data();
  float* d = begin_grad(op.in[0], x.shape);
  const int32_t* am = op.argmax.data();
#pragma omp parallel for num_threads(threads) schedule(static) if (planes * ohw > kParallelWork)
  for (int64_t p = 0; p < planes; ++p) {
    float* dst = d + p * hw;
    const float* dy = gy + p * ohw;
    std::fill(dst, dst + hw, 0.0f);
    if (is_max) {
      const int32_t* ap = am + p * ohw;
      for (int64_t j = 0; j < ohw; ++j) {
        if (ap[j] >= 0) dst[ap[j]] += dy[j];
      }
      continue;
    }
    for (int64_t oh = 0; oh < g.out_h; ++oh) {
      const int64_t h0 = oh * g.sh - g.pad_top;
      for (int64_t ow = 0; ow < g.out_w; ++ow) {
        const int64_t w0 = ow * g.sw - g.pad_left;
        int64_t count = 0;
        for (int64_t ki = 0; ki < g.kh; ++ki) {
          const int64_t ih = h0 + ki * g.dh;
          if (ih < 0 || ih >= g.in_h) continue;
          for (int64_t kj = 0; kj < g.kw; ++kj) {
            const int64_t iw = w0 + kj * g.dw;
            if (iw >= 0 && iw < g.in_w) ++count;
          }
        }
        if (include_pad) {
          const int64_t h1 = std::min(h0 + (g.kh - 1) * g.dh + 1, g.in_h + g.pad_bottom);
          const int64_t w1 = std::min(w0 + (g.kw - 1) * g.dw + 1, g.in_w + g.pad_right);
          count = ((h1 - h0 + g.dh - 1) / g.dh) * ((w1 - w0 + g.dw - 1) / g.dw);
        }
        if (!count) continue;
        const float v = dy[oh * g.out_w + ow] / static_cast<float>(count);
        for (int64_t ki = 0; ki < g.kh; ++ki) {
          const int64_t ih = h0 + ki * g.dh;
          if (ih < 0 || ih >= g.in_h) continue;
          for (int64_t kj = 0; kj < g.kw; ++kj) {
            const int64_t iw = w0 + kj * g.dw;
            if (iw >= 0 && iw < g.in_w) dst[ih * g.in_w + iw] += v;
          }
        }
      }
    }
  }
  finish_grad(op.in[0]);
}

void Trainer::Impl::gap_backward(Op& op) {
  if (!needs(op.in[0])) return;
  const Tensor& x = val(op.in[0]);
  const int64_t planes = x.shape[0] * x.shape[1];
  const int64_t inner = planes ? x.numel() / planes : 0;
  const float* gy = grad_tensor(op.out[0]).f32.data();
  float* d = begin_grad(op.in[0], x.shape);
  const float inv = inner ? 1.0f / static_cast<float>(inner) : 0.0f;
#pragma omp parallel for num_threads(threads) schedule(static) if (planes * inner > (1 << 15))
  for (int64_t p = 0; p < planes; ++p) {
    const float v = gy[p] * inv;
    for (int64_t j = 0; j < inner; ++j) d[p * inner + j] = v;
  }
  finish_grad(op.in[0]);
}

void Trainer::Impl::bn_backward(Op& op) {
  const Tensor& x = val(op.in[0]);
  const int64_t n = x.shape[0], c = x.shape[1], inner = x.numel() / std::max<int64_t>(1, n * c);
  const int64_t m = n * inner;
  const float* gy = grad_tensor(op.out[0]).f32.data();
  const float* xd = x.f32.data();
  const float* gamma = val(op.in[1]).f32.data();
  const bool need_x = needs(op.in[0]), need_g = needs(op.in[1]), need_b = needs(op.in[2]);
  op.scratch.resize(static_cast<size_t>(2 * c));
  float* sum_dy = op.scratch.data();
  float* sum_dy_xhat = op.scratch.data() + c;
#pragma omp parallel for num_threads(threads) schedule(static) if (n * c * inner > kParallelWork)
  for (int64_t ch = 0; ch < c; ++ch) {
    const float mu = op.mean[ch], is = op.invstd[ch];
    double s1 = 0.0, s2 = 0.0;
    for (int64_t i = 0; i < n; ++i) {
      const float* p = xd + (i * c + ch) * inner;
      const float* q = gy + (i * c + ch) * inner;
      for (int64_t j = 0; j < inner; ++j) {
        s1 += q[j];
        s2 += double(q[j]) * double((p[j] - mu) * is);
      }
    }
    sum_dy[ch] = static_cast<float>(s1);
    sum_dy_xhat[ch] = static_cast<float>(s2);
  }
  if (need_g) {
    float* dg = begin_grad(op.in[1], val(op.in[1]).shape);
    std::memcpy(dg, sum_dy_xhat, sizeof(float) * c);
    finish_grad(op.in[1]);
  }
  if (need_b) {
    float* db = begin_grad(op.in[2], val(op.in[2]).shape);
    std::memcpy(db, sum_dy, sizeof(float) * c);
    finish_grad(op.in[2]);
  }
  if (need_x) {
    float* d = begin_grad(op.in[0], x.shape);
    const bool batch = op.bn_batch_stats;
#pragma omp parallel for num_threads(threads) schedule(static) if (n * c * inner > kParallelWork)
    for (int64_t ch = 0; ch < c; ++ch) {
      const float mu = op.mean[ch], is = op.invstd[ch];
      const float k = gamma[ch] * is;
      const float mean_dy = batch ? sum_dy[ch] / static_cast<float>(m) : 0.0f;
      const float mean_dy_xhat = batch ? sum_dy_xhat[ch] / static_cast<float>(m) : 0.0f;
      for (int64_t i = 0; i < n; ++i) {
        const float* p = xd + (i * c + ch) * inner;
        const float* q = gy + (i * c + ch) * inner;
        float* r = d + (i * c + ch) * inner;
        for (int64_t j = 0; j < inner; ++j) {
          const float xhat = (p[j] - mu) * is;
          r[j] = k * (q[j] - mean_dy - xhat * mean_dy_xhat);
        }
      }
    }
    finish_grad(op.in[0]);
  }
}

void Trainer::Impl::concat_backward(Op& op) {
  const Node& node = *op.node;
  const Tensor& y = val(op.out[0]);
  const int64_t r = static_cast<int64_t>(y.shape.size());
  const int64_t axis = detail::normalize_axis(node.attr_int("axis", 0), r, node);
  int64_t outer = 1, inner = 1;
  for (int64_t d = 0; d < axis; ++d) outer *= y.shape[d];
  for (int64_t d = axis + 1; d < r; ++d) inner *= y.shape[d];
  const int64_t row = y.shape[axis] * inner;
  const float* gy = grad_tensor(op.out[0]).f32.data();
  int64_t offset = 0;
  for (int id : op.in) {
    const Tensor& t = val(id);
    const int64_t chunk = t.shape[axis] * inner;
    if (needs(id)) {
      float* d = begin_grad(id, t.shape);
      for (int64_t i = 0; i < outer; ++i) {
        std::memcpy(d + i * chunk, gy + i * row + offset, sizeof(float) * chunk);
      }
      finish_grad(id);
    }
    offset += chunk;
  }
}

void Trainer::Impl::pad_backward(Op& op) {
  if (!needs(op.in[0])) return;
  const Node& node = *op.node;
  const Tensor& x = val(op.in[0]);
  const Tensor& y = val(op.out[0]);
  std::vector<int64_t> pads;
  if (graph.opset_version >= 11) {
    if (op.in.size() < 2 || op.in[1] < 0) fail(node, "missing the pads input");
    pads = val(op.in[1]).i64;
  } else {
    pads = node.attr_ints("pads", {});
  }
  const size_t r = x.shape.size();
  if (pads.size() != 2 * r)
    fail(node, std::to_string(pads.size()) + " pads for rank " + std::to_string(r));
  std::vector<int64_t> in_strides(r, 1), out_strides(r, 1);
  for (size_t i = r; i-- > 1;) {
    in_strides[i - 1] = in_strides[i] * x.shape[i];
    out_strides[i - 1] = out_strides[i] * y.shape[i];
  }
  const float* gy = grad_tensor(op.out[0]).f32.data();
  float* d = begin_grad(op.in[0], x.shape);
  const int64_t total = x.numel();
  for (int64_t i = 0; i < total; ++i) {
    int64_t off = 0;
    bool inside = true;
    for (size_t dd = 0; dd < r; ++dd) {
      const int64_t o = (i / in_strides[dd]) % x.shape[dd] + pads[dd];
      if (o < 0 || o >= y.shape[dd]) {
        inside = false;
        break;
      }
      off += o * out_strides[dd];
    }
    d[i] = inside ? gy[off] : 0.0f;
  }
  finish_grad(op.in[0]);
}

void Trainer::Impl::complete_pending_input_grad() {
  if (pending_input_grad < 0) return;
  Op& op = ops[static_cast<size_t>(pending_input_grad)];
  pending_input_grad = -1;
  Layer& l = layers[op.layer];
  const int id = op.in[l.input_slot];
  float* d = begin_grad(id, l.input_grad.shape);
  std::memcpy(d, l.input_grad.f32.data(), sizeof(float) * l.input_grad.f32.size());
  finish_grad(id);
}

// ---------------------------------------------------------------------------------------------
// Batch slicing

bool Trainer::Impl::use_slices(const Tensor& input, Mode mode) const {
  if (master || !slicing_capable || threads < 2 || input.shape[0] < 2 * threads) return false;
  if (has_batch_norm && mode == Mode::kTrain && !options.freeze_batch_norm_statistics) return false;
  return true;
}

namespace {
// Runs f(t) for t in [0, n) on a team of n threads (each t exactly once even if the runtime
// gives fewer threads) and rethrows the first exception on the calling thread.
template <typename F>
void for_each_slice(int n, F&& f) {
  std::vector<std::exception_ptr> errors(static_cast<size_t>(n));
#pragma omp parallel for num_threads(n) schedule(static)
  for (int t = 0; t < n; ++t) {
    try {
      f(t);
    } catch (...) {
      errors[static_cast<size_t>(t)] = std::current_exception();
    }
  }
  for (auto& e : errors) {
    if (e) std::rethrow_exception(e);
  }
}
}  // namespace

void Trainer::Impl::forward_sliced(const Tensor& input, Mode mode) {
  const bool train = mode == Mode::kTrain;
  const int n_slices = threads;
  if (replicas.size() != static_cast<size_t>(n_slices)) {
    replicas.clear();
    TrainerOptions ro = options;
    ro.threads = 1;
    for (int t = 0; t < n_slices; ++t) {
      auto r = std::make_unique<Impl>(graph, ro);
      r->master = this;
      // Replicas read parameter values from the master: keep only their gradient buffers.
      for (auto& p : r->params) {
        p.value.f32.clear();
        p.value.f32.shrink_to_fit();
      }
      replicas.push_back(std::move(r));
    }
    replica_inputs.resize(n_slices);
    replica_grads.resize(n_slices);
  }
  // Ops whose input transform the master applies to the whole batch split the run in segments.
  std::vector<size_t> stops;
  for (size_t oi = 0; oi < ops.size(); ++oi) {
    if (ops[oi].layer >= 0 && layers[ops[oi].layer].input_transform.forward) stops.push_back(oi);
  }
  for (auto& r : replicas) {
    for (size_t l = 0; l < layers.size(); ++l) {
      r->layers[l].external_transform = static_cast<bool>(layers[l].input_transform.forward);
    }
  }
  const int64_t n = input.shape[0];
  const int64_t sample = n ? input.numel() / n : 0;
  auto slice = [&](int t, int64_t& s0, int64_t& s1) {
    s0 = n * t / n_slices;
    s1 = n * (t + 1) / n_slices;
  };
  size_t pos = 0;
  for (size_t k = 0; k <= stops.size(); ++k) {
    const size_t end = k < stops.size() ? stops[k] : ops.size();
    for_each_slice(n_slices, [&](int t) {
      Impl& r = *replicas[t];
      if (k == 0) {
        int64_t s0, s1;
        slice(t, s0, s1);
        Shape shape = input.shape;
        shape[0] = s1 - s0;
        float* d = prepare_float(replica_inputs[t], shape);
        std::memcpy(d, input.f32.data() + s0 * sample, sizeof(float) * (s1 - s0) * sample);
        r.begin_forward(replica_inputs[t]);
      }
      r.run_forward_ops(pos, end, train);
      if (k == stops.size()) r.end_forward(train);
    });
    if (k == stops.size()) break;
    // The transformed layer's input: gather the slices, transform the whole batch on this
    // thread (observers see every sample), hand each replica its part.
    const Op& op = ops[end];
    Layer& l = layers[op.layer];
    const int id = op.in[l.input_slot];
    const Tensor& first = replicas[0]->val(id);
    if (first.shape.empty())
      throw std::logic_error("Trainer: a sliced layer input has no batch axis");
    Shape whole = first.shape;
    whole[0] = n;
    const int64_t row = first.shape[0] ? first.numel() / first.shape[0] : 0;
    float* orig = prepare_float(l.whole_original, whole);
    for (int t = 0; t < n_slices; ++t) {
      int64_t s0, s1;
      slice(t, s0, s1);
      const Tensor& part = replicas[t]->val(id);
      if (part.shape.empty() || part.shape[0] != s1 - s0 || part.numel() != (s1 - s0) * row) {
        throw std::logic_error("Trainer: input " + shape_to_string(part.shape) + " of layer '" +
                               l.name + "' in batch slice " + std::to_string(t) +
                               " is not batch-major");
      }
      std::memcpy(orig + s0 * row, part.f32.data(), sizeof(float) * part.f32.size());
    }
    l.transformed_input.dtype = DType::kFloat32;
    l.transformed_input.shape = whole;
    l.transformed_input.f32.assign(l.whole_original.f32.begin(), l.whole_original.f32.end());
    l.input_transform.forward(l.transformed_input, train);
    for (int t = 0; t < n_slices; ++t) {
      int64_t s0, s1;
      slice(t, s0, s1);
      Shape part_shape = whole;
      part_shape[0] = s1 - s0;
      float* d = prepare_float(replicas[t]->layers[op.layer].transformed_input, part_shape);
      std::memcpy(d, l.transformed_input.f32.data() + s0 * row, sizeof(float) * (s1 - s0) * row);
    }
    pos = end;
  }
  // Outputs: the slices' outputs stacked along the batch axis.
  for (size_t i = 0; i < outputs.size(); ++i) {
    const Tensor& first = replicas[0]->outputs[i];
    Shape shape = first.shape;
    if (shape.empty()) throw std::logic_error("Trainer: a sliced output has no batch axis");
    shape[0] = n;
    const int64_t row = first.shape[0] ? first.numel() / first.shape[0] : 0;
    float* y = prepare_float(outputs[i], shape);
    for (int t = 0; t < n_slices; ++t) {
      const Tensor& o = replicas[t]->outputs[i];
      int64_t s0, s1;
      slice(t, s0, s1);
      if (o.shape.empty() || o.shape[0] != s1 - s0 || o.numel() != (s1 - s0) * row) {
        throw std::logic_error("Trainer: output " + shape_to_string(o.shape) + " of batch slice " +
                               std::to_string(t) + " is not batch-major");
      }
      std::memcpy(y + s0 * row, o.f32.data(), sizeof(float) * o.f32.size());
    }
  }
}

void Trainer::Impl::backward_sliced(const Tensor& grad_output) {
  const Tensor& y = outputs[0];
  if (grad_output.shape != y.shape || grad_output.f32.size() != y.f32.size()) {
    throw std::invalid_argument("Trainer::backward: gradient " +
                                shape_to_string(grad_output.shape) + " does not match the output " +
                                shape_to_string(y.shape));
  }
  const int n_slices = static_cast<int>(replicas.size());
  const int64_t n = y.shape[0];
  const int64_t row = n ? y.numel() / n : 0;
  std::vector<size_t> stops;  // transformed layers, last first
  for (size_t oi = ops.size(); oi-- > 0;) {
    if (ops[oi].layer >= 0 && layers[ops[oi].layer].input_transform.forward) stops.push_back(oi);
  }
  size_t pos = ops.size();
  for (size_t k = 0; k <= stops.size(); ++k) {
    const size_t begin = k < stops.size() ? stops[k] : 0;
    for_each_slice(n_slices, [&](int t) {
      Impl& r = *replicas[t];
      if (k == 0) {
        const int64_t s0 = n * t / n_slices, s1 = n * (t + 1) / n_slices;
        Shape shape = y.shape;
        shape[0] = s1 - s0;
        float* d = prepare_float(replica_grads[t], shape);
        std::memcpy(d, grad_output.f32.data() + s0 * row, sizeof(float) * (s1 - s0) * row);
        r.begin_backward(replica_grads[t]);
      } else {
        r.complete_pending_input_grad();
      }
      r.run_backward_ops(pos, begin);
      if (k == stops.size()) r.end_backward();
    });
    if (k == stops.size()) break;
    // The transformed layer's input gradient: whole batch through the transform's backward.
    const Op& op = ops[begin];
    Layer& l = layers[op.layer];
    pos = begin;
    bool pending = true;
    for (auto& r : replicas) pending = pending && r->pending_input_grad == static_cast<int>(begin);
    if (!pending) {  // no gradient reached this layer's input (the same in every slice)
      for (auto& r : replicas) r->pending_input_grad = -1;
      continue;
    }
    float* g = prepare_float(l.whole_grad, l.whole_original.shape);
    const int64_t in_row = n ? l.whole_original.numel() / n : 0;
    for (int t = 0; t < n_slices; ++t) {
      const int64_t s0 = n * t / n_slices;
      const Tensor& part = replicas[t]->layers[op.layer].input_grad;
      std::memcpy(g + s0 * in_row, part.f32.data(), sizeof(float) * part.f32.size());
    }
    if (l.input_transform.backward) l.input_transform.backward(l.whole_original, l.whole_grad);
    for (int t = 0; t < n_slices; ++t) {
      const int64_t s0 = n * t / n_slices;
      Tensor& part = replicas[t]->layers[op.layer].input_grad;
      std::memcpy(part.f32.data(), g + s0 * in_row, sizeof(float) * part.f32.size());
    }
  }
  // Sum the slices' gradients in slice order (the same order for every run).
  for (size_t pi = 0; pi < params.size(); ++pi) {
    float* gp = params[pi].grad.f32.data();
    const int64_t m = static_cast<int64_t>(params[pi].grad.f32.size());
    const float* g0 = replicas[0]->params[pi].grad.f32.data();
    std::memcpy(gp, g0, sizeof(float) * m);
    for (int t = 1; t < n_slices; ++t) {
      const float* gt = replicas[t]->params[pi].grad.f32.data();
      for (int64_t k = 0; k < m; ++k) gp[k] += gt[k];
    }
  }
  // The weight transforms' backward maps the summed dL/d(effective) (it is linear in it).
  for (Layer& l : layers) {
    if (!l.weight_transform.forward || !l.weight_transform.backward) continue;
    const int pi = values[l.weight_value].param;
    if (pi < 0) continue;
    l.weight_transform.backward(params[pi].value, l.effective, params[pi].grad);
  }
}

// ---------------------------------------------------------------------------------------------
// Public face

Trainer::Trainer(const Graph& graph, TrainerOptions options)
    : impl_(std::make_unique<Impl>(graph, std::move(options))) {}
Trainer::~Trainer() = default;
Trainer::Trainer(Trainer&&) noexcept = default;
Trainer& Trainer::operator=(Trainer&&) noexcept = default;

std::vector<TrainableParameter>& Trainer::parameters() { return impl_->params; }
const std::vector<TrainableParameter>& Trainer::parameters() const { return impl_->params; }

int Trainer::find_parameter(const std::string& name) const {
  for (size_t i = 0; i < impl_->params.size(); ++i) {
    if (impl_->params[i].name == name) return static_cast<int>(i);
  }
  return -1;
}

const std::vector<std::string>& Trainer::layer_names() const { return impl_->layer_names; }

namespace {
size_t layer_index(const std::vector<std::string>& names, const std::string& layer) {
  auto it = std::find(names.begin(), names.end(), layer);
  if (it == names.end()) {
    std::string all;
    for (const auto& n : names) all += (all.empty() ? "" : ", ") + n;
    throw std::invalid_argument("unknown layer '" + layer + "' (layers: " + all + ")");
  }
  return static_cast<size_t>(it - names.begin());
}
}  // namespace

void Trainer::set_weight_transform(const std::string& layer, WeightTransform transform) {
  auto& l = impl_->layers[layer_index(impl_->layer_names, layer)];
  if (!transform.forward && transform.backward) {
    throw std::invalid_argument("weight transform of layer '" + layer +
                                "' has a backward but no forward");
  }
  l.weight_transform = std::move(transform);
  impl_->have_train_forward = false;
}

void Trainer::set_input_transform(const std::string& layer, InputTransform transform) {
  auto& l = impl_->layers[layer_index(impl_->layer_names, layer)];
  if (!transform.forward && transform.backward) {
    throw std::invalid_argument("input transform of layer '" + layer +
                                "' has a backward but no forward");
  }
  l.input_transform = std::move(transform);
  impl_->have_train_forward = false;
}

const Tensor& Trainer::effective_weight(const std::string& layer) const {
  const auto& l = impl_->layers[layer_index(impl_->layer_names, layer)];
  if (l.weight_transform.forward && !l.effective.f32.empty()) return l.effective;
  return impl_->val(l.weight_value);
}

const Tensor& Trainer::forward(const Tensor& input, Mode mode) {
  impl_->forward(input, mode);
  return impl_->outputs[0];
}

const std::vector<Tensor>& Trainer::outputs() const { return impl_->outputs; }

void Trainer::backward(const Tensor& grad_output) { impl_->backward(grad_output); }

void Trainer::write_parameters(Graph& graph) const {
  auto put = [&](const std::string& name, const Tensor& t) {
    Tensor* init = graph.find_initializer(name);
    if (!init || init->shape != t.shape) {
      throw std::invalid_argument("write_parameters: the graph has no initializer '" + name +
                                  "' of shape " + shape_to_string(t.shape));
    }
    init->dtype = DType::kFloat32;
    init->f32 = t.f32;
    init->i64.clear();
  };
  for (const auto& p : impl_->params) put(p.name, p.value);
  for (const auto& op : impl_->ops) {
    if (op.kind != OpKind::kBatchNorm) continue;
    for (size_t s = 3; s <= 4 && s < op.in.size(); ++s) {
      const auto& v = impl_->values[op.in[s]];
      if (v.constant && graph.find_initializer(v.name)) put(v.name, v.t);
    }
  }
}

void Trainer::read_parameters(const Graph& graph) {
  auto get = [&](const std::string& name, Tensor& t) {
    const Tensor* init = graph.find_initializer(name);
    if (!init || init->shape != t.shape || init->dtype != DType::kFloat32) {
      throw std::invalid_argument("read_parameters: the graph has no float initializer '" + name +
                                  "' of shape " + shape_to_string(t.shape));
    }
    t.f32 = init->f32;
  };
  for (auto& p : impl_->params) get(p.name, p.value);
  for (auto& op : impl_->ops) {
    if (op.kind != OpKind::kBatchNorm) continue;
    for (size_t s = 3; s <= 4 && s < op.in.size(); ++s) {
      auto& v = impl_->values[op.in[s]];
      if (v.constant) get(v.name, v.t);
    }
  }
  impl_->have_train_forward = false;
}

int Trainer::threads() const { return impl_->threads; }

// ---------------------------------------------------------------------------------------------

int fold_batch_norms(Graph& graph) {
  int folded = 0;
  for (size_t bi = 0; bi < graph.nodes.size();) {
    Node& bn = graph.nodes[bi];
    if (bn.op_type != "BatchNormalization" || bn.inputs.size() < 5) {
      ++bi;
      continue;
    }
    auto prod = graph.producer(bn.inputs[0]);
    bool ok = prod.has_value() && graph.consumers(bn.inputs[0]).size() == 1;
    bool is_output = false;
    for (const auto& o : graph.outputs) is_output = is_output || o.name == bn.inputs[0];
    ok = ok && !is_output;
    Node* layer = ok ? &graph.nodes[*prod] : nullptr;
    if (ok && layer->op_type != "Conv" &&
        !(layer->op_type == "Gemm" && layer->attr_int("transB", 0) != 0))
      ok = false;
    const Tensor* w = ok ? graph.find_initializer(layer->inputs[1]) : nullptr;
    const Tensor* gamma = graph.find_initializer(bn.inputs[1]);
    const Tensor* beta = graph.find_initializer(bn.inputs[2]);
    const Tensor* mean = graph.find_initializer(bn.inputs[3]);
    const Tensor* var = graph.find_initializer(bn.inputs[4]);
    ok =
        ok && w && gamma && beta && mean && var && w->dtype == DType::kFloat32 && !w->shape.empty();
    // The weight and bias must be read by this layer only.
    ok = ok && graph.consumers(layer->inputs[1]).size() == 1;
    const bool has_bias = ok && layer->inputs.size() > 2 && !layer->inputs[2].empty();
    if (has_bias)
      ok = ok && graph.find_initializer(layer->inputs[2]) &&
           graph.consumers(layer->inputs[2]).size() == 1;
    if (!ok) {
      ++bi;
      continue;
    }
    const int64_t o = w->shape[0];
    if (gamma->numel() != o || beta->numel() != o || mean->numel() != o || var->numel() != o) {
      ++bi;
      continue;
    }
    const double eps = bn.attr_float("epsilon", 1e-5f);
    std::vector<double> sc(o);
    for (int64_t i = 0; i < o; ++i)
      sc[i] = double(gamma->f32[i]) / std::sqrt(double(var->f32[i]) + eps);
    Tensor* wm = graph.find_initializer(layer->inputs[1]);
    const int64_t row = wm->numel() / o;
    for (int64_t i = 0; i < o; ++i) {
      for (int64_t j = 0; j < row; ++j)
        wm->f32[i * row + j] = static_cast<float>(wm->f32[i * row + j] * sc[i]);
    }
    std::string bias_name;
    if (has_bias) {
      bias_name = layer->inputs[2];
    } else {
      bias_name = layer->inputs[1];
      if (bias_name.size() > 7 && bias_name.ends_with(".weight"))
        bias_name.resize(bias_name.size() - 7);
      bias_name += ".bias";
      while (graph.initializers.count(bias_name)) bias_name += "_";
      graph.initializers[bias_name] = Tensor::zeros({o});
      if (layer->inputs.size() < 3) layer->inputs.resize(3);
      layer->inputs[2] = bias_name;
    }
    Tensor& b = graph.initializers[bias_name];
    for (int64_t i = 0; i < o; ++i) {
      b.f32[i] = static_cast<float>((double(b.f32[i]) - double(mean->f32[i])) * sc[i] +
                                    double(beta->f32[i]));
    }
    // The layer now writes the BN's output; drop the BN node and its now unused initializers.
    const std::string bn_out = bn.outputs[0];
    const std::vector<std::string> bn_params(bn.inputs.begin() + 1, bn.inputs.begin() + 5);
    layer->outputs[0] = bn_out;
    graph.nodes.erase(graph.nodes.begin() + static_cast<std::ptrdiff_t>(bi));
    for (const auto& name : bn_params) {
      if (graph.consumers(name).empty()) graph.initializers.erase(name);
    }
    ++folded;
  }
  if (folded) infer_shapes(graph);
  return folded;
}

}  // namespace compsearch::model
