// The executor's planner: turns a Graph into the steps Executor::run executes, by named passes
// over value slots, in this order:
//   assign_slots      graph inputs, initializers and computed values get slots; nodes whose
//                     inputs are all constant are folded (run once, now)
//   fuse_activations  Conv/Gemm + a Relu/Clip with constant bounds -> one step with a clamp
//   fuse_qdq_pairs    QuantizeLinear -> DequantizeLinear with the same parameters -> one float pass
//   plan_int8_layers  (ExecutorOptions::int8) a layer reading such a pair, with int8 weights ->
//                     integer kernels that quantize the input themselves
//   attach_onednn     oneDNN primitives for Conv/Gemm/MatMul with constant weights (kAuto: the
//                     direct kernel for a Conv with a tiny reduction, direct_conv.h)
//   fuse_direct_pools a MaxPool after a direct convolution runs inside it
//   plan_channels_last  values kept NHWC or blocked between oneDNN convolutions and poolings
//   fuse_depthwise_convs  a 1x1 -> depthwise 3x3 pair on blocked values -> one oneDNN kernel
//   plan_liveness     each computed value released after its last reader
// Every op-specific decision reads the op table's traits (op_registry.h), not op names.
#include <algorithm>
#include <cstdlib>
#include <optional>
#include <stdexcept>
#include <string>
#include <unordered_map>

#include "model/direct_conv.h"
#include "model/executor_plan.h"
#include "model/node_eval.h"
#include "model/op_util.h"

namespace compsearch::model {

using detail::ActLayout;
using detail::DnnlInt8;
using detail::node_label;
using detail::Step;

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

// Samples per batch chunk (Executor::Impl::chunk_samples): the largest computed value of one
// sample, from the inferred shapes, fits kChunkBytes / chunk times; 0 (no chunks) when a shape is
// unknown or the layers' weights pass kChunkWeightBytes: each chunk reads every weight again,
// which costs a large model more than the activations it keeps in cache (bench_executor, 1
// thread: MobileNetV2 (14 MB of weights, 4.8 MB for its largest value per image) at 32 ran 25%
// faster in chunks of 1 than whole, 2-4% faster than in chunks of 2 or 4; the bundled CNN at 256
// 7-20% faster in chunks of 39; ResNet-18 (47 MB of weights) 2-10% slower in chunks of 1-4).
constexpr double kChunkBytes = 2e6;
constexpr double kChunkWeightBytes = 32e6;

int64_t chunk_samples(const Executor::Impl& im, const Graph& graph) {
  double weight_bytes = 0;
  for (const Step& st : im.steps) {
    if (!st.spec->layer || st.inputs.size() < 2 || st.inputs[1] < 0) continue;
    if (const Tensor* w = im.constant_slots[st.inputs[1]]) weight_bytes += 4.0 * w->numel();
  }
  if (weight_bytes > kChunkWeightBytes) return 0;
  double largest = 0;
  for (const auto& [name, info] : graph.value_info) {
    if (info.shape.size() < 2) continue;
    double per_sample = 4;
    for (size_t d = 1; d < info.shape.size(); ++d) {
      if (info.shape[d] < 0) return 0;
      per_sample *= static_cast<double>(info.shape[d]);
    }
    largest = std::max(largest, per_sample);
  }
  if (largest <= 0) return 0;
  return std::max<int64_t>(1, static_cast<int64_t>(kChunkBytes / largest));
}

using SlotMap = std::unordered_map<std::string, int>;

// How a step constrains the layouts of its values (plan_channels_last).
enum LayoutKind { kNchw, kOneDnn, kElementwise };
void apply_layouts(Executor::Impl& im, const std::vector<LayoutKind>& kinds,
                   const std::vector<char>& nhwc, const std::vector<char>& blocked);

// Clears flag[s] (a value kept in some layout) until nothing changes: a kNchw step's values are
// NCHW; `onednn_rule(step, clear)` clears what a oneDNN step cannot take; an elementwise step's
// computed inputs and its output share one layout.
template <class OneDnnRule>
void settle_layout(const Executor::Impl& im, const std::vector<LayoutKind>& kinds,
                   std::vector<char>& flag, OneDnnRule onednn_rule) {
  for (bool changed = true; changed;) {
    changed = false;
    auto clear = [&](int s) {
      if (s >= 0 && flag[s]) {
        flag[s] = 0;
        changed = true;
      }
    };
    for (size_t i = 0; i < im.steps.size(); ++i) {
      const Step& st = im.steps[i];
      if (kinds[i] == kNchw) {
        for (int s : st.inputs) clear(s);
        for (int s : st.outputs) clear(s);
      } else if (kinds[i] == kOneDnn) {
        onednn_rule(st, clear);
      } else {
        bool all = true;
        for (int s : st.inputs)
          if (s >= 0 && !im.constant_slots[s] && !flag[s]) all = false;
        for (int s : st.outputs)
          if (s >= 0 && !flag[s]) all = false;
        if (!all) {
          for (int s : st.inputs)
            if (s >= 0 && !im.constant_slots[s]) clear(s);
          for (int s : st.outputs) clear(s);
        }
      }
    }
  }
}

std::vector<int> reader_counts(const Executor::Impl& im);
void drop_fused_steps(Executor::Impl& im);

// A step's constant weight (input 1) and bias (input 2; nullptr when absent); weight nullptr when
// input 1 is not a constant, bias_ok false when input 2 is present but not a constant.
struct ConstantWeights {
  const Tensor* weight = nullptr;
  const Tensor* bias = nullptr;
  bool bias_ok = true;
};
ConstantWeights constant_weights(const Executor::Impl& im, const Step& st) {
  ConstantWeights c;
  if (st.inputs.size() > 1 && st.inputs[1] >= 0) c.weight = im.constant_slots[st.inputs[1]];
  if (st.inputs.size() > 2 && st.inputs[2] >= 0) {
    c.bias = im.constant_slots[st.inputs[2]];
    c.bias_ok = c.bias != nullptr;
  }
  return c;
}

// The step after step i when it is a depthwise convolution that can run inside step i's oneDNN 1x1
// convolution (DnnlOp::can_fuse_depthwise) and is the only reader of its output; else nullptr.
const Step* depthwise_partner(const Executor::Impl& im, size_t i, const std::vector<int>& readers) {
  if (i + 1 >= im.steps.size()) return nullptr;
  const Step& st = im.steps[i];
  const Step& dw = im.steps[i + 1];
  if (!st.dnnl || !st.dnnl->onednn() || st.int8 || dw.int8 || !dw.dnnl || st.fused_node >= 0 ||
      st.outputs.size() != 1 || st.outputs[0] < 0 || readers[st.outputs[0]] != 1 ||
      dw.inputs.empty() || dw.inputs[0] != st.outputs[0] || dw.outputs.empty() ||
      im.is_output[st.outputs[0]])
    return nullptr;
  const ConstantWeights c = constant_weights(im, dw);
  if (!c.weight || !c.bias_ok) return nullptr;
  return st.dnnl->can_fuse_depthwise(im.graph->nodes[dw.node_index], c.weight, c.bias) ? &dw
                                                                                       : nullptr;
}

// A 1x1 -> depthwise 3x3 pair whose input, middle and output values the plan keeps blocked runs as
// one oneDNN kernel (a depthwise post-op): MobileNet's expanded activation is never written.
void fuse_depthwise_convs(Executor::Impl& im, const Graph& graph, const SlotMap& slot) {
  const std::vector<int> readers = reader_counts(im);
  std::vector<const Shape*> shapes(im.n_slots, nullptr);
  for (const auto& [name, s] : slot) {
    auto it = graph.value_info.find(name);
    if (it != graph.value_info.end()) shapes[s] = &it->second.shape;
  }
  bool fused = false;
  for (size_t i = 0; i + 1 < im.steps.size(); ++i) {
    Step& st = im.steps[i];
    const Step* partner = depthwise_partner(im, i, readers);
    if (!partner || st.in_layout != ActLayout::kBlocked || st.out_layout != ActLayout::kBlocked ||
        partner->out_layout != ActLayout::kBlocked)
      continue;
    Step& dw = im.steps[i + 1];
    const ConstantWeights one = constant_weights(im, st), depthwise = constant_weights(im, dw);
    std::shared_ptr<detail::DnnlOp> pair(
        detail::DnnlOp::create(im.graph->nodes[st.node_index], one.weight, one.bias,
                               detail::DnnlPostOp{st.clamp, st.lo, st.hi}));
    if (!pair || !shapes[st.inputs[0]]) continue;
    pair->set_layouts(ActLayout::kBlocked, ActLayout::kBlocked);
    pair->fuse_depthwise(im.graph->nodes[dw.node_index], depthwise.weight, depthwise.bias,
                         detail::DnnlPostOp{dw.clamp, dw.lo, dw.hi});
    // oneDNN must take the fused pair (probed at batch 1), else the two steps stay as they are.
    Shape probe = *shapes[st.inputs[0]];
    if (probe.empty()) continue;
    probe[0] = 1;
    if (!pair->accepts(probe)) continue;
    st.pair_first = st.dnnl;
    st.pair_second = dw.dnnl;
    st.dnnl = pair;
    st.fused_node = static_cast<int64_t>(dw.node_index);
    st.fused_inputs = dw.inputs;
    st.fused_clamp = dw.clamp;
    st.fused_lo = dw.lo;
    st.fused_hi = dw.hi;
    st.fused_hooked = dw.hooked;
    st.outputs = dw.outputs;
    st.out_layout = dw.out_layout;
    dw.skip = true;
    fused = true;
    ++i;
  }
  if (fused) drop_fused_steps(im);
}

// Picks the values kept channels-last (NHWC, or blocked: below) between oneDNN steps: a rank-4
// computed value that is not a graph output, whose producer and readers are all either oneDNN 2-D
// Conv / pooling steps (which read and write either layout) or elementwise steps (unary ops, and
// Add/Sub/Mul/Div of two values of one shape), the elementwise ones with all their computed inputs
// and their output in one layout. Everything else (Flatten, Reshape, Concat, a broadcast,
// BatchNormalization...) sees NCHW as before.
void plan_channels_last(Executor::Impl& im, const Graph& graph, const SlotMap& slot) {
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
  std::vector<LayoutKind> kinds;
  bool any_onednn = false;
  for (Step& st : im.steps) {
    const Node& node = graph.nodes[st.node_index];
    LayoutKind k = kNchw;
    if (st.spec->pooling) st.dnnl = detail::DnnlOp::create_pool(node);
    if (st.dnnl && st.dnnl->takes_channels_last() && !st.inputs.empty() && st.inputs[0] >= 0) {
      k = kOneDnn;
      any_onednn = true;
    } else if (st.spec->elementwise_unary && !st.fake_quantize) {
      k = kElementwise;
    } else if (st.spec->elementwise_binary) {
      const Shape* a = st.inputs.size() == 2 ? shape_of(st.inputs[0]) : nullptr;
      const Shape* b = st.inputs.size() == 2 ? shape_of(st.inputs[1]) : nullptr;
      if (a && b && *a == *b && !im.constant_slots[st.inputs[0]] &&
          !im.constant_slots[st.inputs[1]])
        k = kElementwise;
    }
    kinds.push_back(k);
  }
  if (!any_onednn) {
    for (Step& st : im.steps)
      if (st.spec->pooling) st.dnnl.reset();
    return;
  }
  settle_layout(im, kinds, nhwc, [](const Step& st, auto&& clear) {
    for (size_t k = 1; k < st.outputs.size(); ++k) clear(st.outputs[k]);
  });
  // Blocked layouts: a group of channels-last values joined by elementwise steps (a residual
  // block's sums and activations) is kept blocked when a convolution that prefers it
  // (DnnlOp::prefers_blocked: Winograd, or oneDNN's own pick on AVX2) reads one of them and
  // writes one that can be blocked, or a 1x1 -> depthwise pair that can run fused reads, passes
  // or writes one; the region then extends across 1x1 and depthwise convolutions, which run as
  // fast blocked, rather than reorder on one side. Elsewhere NHWC measured faster (on Zen 4,
  // MobileNetV2 at batch 1, 1 thread: all blocked without fusion 184 images/s, NHWC 189;
  // ResNet-18: 68 with Winograd vs 52 NHWC; with fusion MobileNetV2 reached 219).
  // COMPSEARCH_EXECUTOR_LAYOUTS=nhwc|blocked|auto: never / wherever possible / as above.
  std::vector<int> group(im.n_slots);
  for (size_t s = 0; s < im.n_slots; ++s) group[s] = static_cast<int>(s);
  auto find = [&](int s) {
    while (group[s] != s) s = group[s] = group[group[s]];
    return s;
  };
  for (size_t i = 0; i < im.steps.size(); ++i) {
    if (kinds[i] != kElementwise) continue;
    int root = -1;
    auto join = [&](int s) {
      if (s < 0 || im.constant_slots[s]) return;
      if (root < 0)
        root = find(s);
      else
        group[find(s)] = root;
    };
    for (int s : im.steps[i].inputs) join(s);
    for (int s : im.steps[i].outputs) join(s);
  }
  // Which values can be blocked at all: channel count a multiple of oneDNN's block, oneDNN
  // producer and readers that all take the layout, one layout per elementwise step.
  std::vector<char> blocked(im.n_slots, 0);
  const char* layouts = std::getenv("COMPSEARCH_EXECUTOR_LAYOUTS");
  const std::string mode = layouts ? layouts : "";  // nhwc | blocked | (auto)
  if (!mode.empty() && mode != "nhwc" && mode != "blocked" && mode != "auto")
    throw std::invalid_argument("COMPSEARCH_EXECUTOR_LAYOUTS: value '" + mode +
                                "' not understood; expected nhwc, blocked or auto");
  if (mode == "nhwc") return apply_layouts(im, kinds, nhwc, blocked);
  for (size_t s = 0; s < im.n_slots; ++s) {
    const Shape* sh = nhwc[s] ? shape_of(static_cast<int>(s)) : nullptr;
    blocked[s] = sh && (*sh)[1] > 0 && (*sh)[1] % detail::blocked_channels() == 0;
  }
  settle_layout(im, kinds, blocked, [](const Step& st, auto&& clear) {
    if (st.dnnl->takes_blocked()) return;
    clear(st.inputs[0]);
    if (!st.outputs.empty()) clear(st.outputs[0]);
  });
  // Of those, the groups around a convolution that prefers blocked and can have it on both sides,
  // and around a 1x1 -> depthwise pair that can run as one kernel on them (fuse_depthwise_convs).
  if (mode != "blocked") {
    std::vector<char> wanted(im.n_slots, 0);
    const std::vector<int> readers = reader_counts(im);
    for (size_t i = 0; i < im.steps.size(); ++i) {
      const Step& st = im.steps[i];
      if (kinds[i] != kOneDnn) continue;
      const int in = st.inputs[0], out = st.outputs.empty() ? -1 : st.outputs[0];
      if (out < 0 || !blocked[in] || !blocked[out]) continue;
      if (const Step* dw = depthwise_partner(im, i, readers);
          dw && dw->outputs[0] >= 0 && blocked[dw->outputs[0]]) {
        wanted[find(in)] = wanted[find(out)] = wanted[find(dw->outputs[0])] = 1;
        continue;
      }
      if (!st.dnnl->prefers_blocked(*shape_of(in))) continue;
      wanted[find(in)] = wanted[find(out)] = 1;
    }
    // A blocked region extends across the convolutions that run as well blocked (1x1, depthwise)
    // rather than reorder on one side of them.
    for (bool changed = true; changed;) {
      changed = false;
      for (size_t i = 0; i < im.steps.size(); ++i) {
        const Step& st = im.steps[i];
        if (kinds[i] != kOneDnn || !st.dnnl->runs_well_blocked()) continue;
        const int in = st.inputs[0], out = st.outputs.empty() ? -1 : st.outputs[0];
        if (out < 0 || !blocked[in] || !blocked[out]) continue;
        const int a = find(in), b = find(out);
        if (wanted[a] != wanted[b]) {
          wanted[a] = wanted[b] = 1;
          changed = true;
        }
      }
    }
    for (size_t s = 0; s < im.n_slots; ++s)
      blocked[s] = blocked[s] && wanted[find(static_cast<int>(s))];
  }
  apply_layouts(im, kinds, nhwc, blocked);
}

// Sets each oneDNN step's layouts from the values' (plan_channels_last).
void apply_layouts(Executor::Impl& im, const std::vector<LayoutKind>& kinds,
                   const std::vector<char>& nhwc, const std::vector<char>& blocked) {
  auto layout_of = [&](int s) {
    if (s < 0 || !nhwc[s]) return ActLayout::kNchw;
    return blocked[s] ? ActLayout::kBlocked : ActLayout::kNhwc;
  };
  for (size_t i = 0; i < im.steps.size(); ++i) {
    Step& st = im.steps[i];
    if (kinds[i] != kOneDnn) continue;
    st.in_layout = layout_of(st.inputs[0]);
    st.out_layout = layout_of(st.outputs.empty() ? -1 : st.outputs[0]);
    if (st.spec->pooling && st.in_layout == ActLayout::kNchw && st.out_layout == ActLayout::kNchw) {
      st.dnnl.reset();  // NCHW in and out: the executor's own pooling
      continue;
    }
    st.dnnl->set_layouts(st.in_layout, st.out_layout);
  }
}

// Slots for graph inputs, initializers and every computed value; one step per node that reads a
// computed value. A node that reads only initializers (and earlier folded values) runs once now,
// so e.g. DequantizeLinear on int8 weights costs nothing per batch and the Conv/Gemm behind it
// sees a float weight like any other.
// `folded_by`: each folded slot's node.
void assign_slots(Executor::Impl& im, const Graph& graph, SlotMap& slot,
                  std::unordered_map<int, size_t>& folded_by) {
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
  for (size_t i = 0; i < graph.nodes.size(); ++i) {
    const Node& node = graph.nodes[i];
    const detail::OpSpec& spec = detail::op_spec(node);
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
        folded_by[static_cast<int>(im.constant_slots.size())] = i;
        slot[node.outputs[k]] = static_cast<int>(im.constant_slots.size());
        im.constant_slots.push_back(&im.folded.back());
      }
      continue;
    }
    Step step;
    step.node_index = i;
    step.spec = &spec;
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
    step.hooked = spec.layer && step.inputs[0] >= 0 && !im.constant_slots[step.inputs[0]];
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
}

// A QuantizeLinear / DequantizeLinear with per-axis scales along the batch axis mixes samples:
// such a plan cannot split the batch into slices that run independently.
bool couples_batch(const Executor::Impl& im, const Graph& graph) {
  for (const Step& step : im.steps) {
    const Node& node = graph.nodes[step.node_index];
    if ((node.op_type != "QuantizeLinear" && node.op_type != "DequantizeLinear") ||
        step.inputs.size() < 2 || step.inputs[1] < 0)
      continue;
    const Tensor* scale = im.constant_slots[step.inputs[1]];
    if (scale && scale->numel() <= 1) continue;
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
    if (axis == 0) return true;
  }
  return false;
}

// How many steps read each slot (graph outputs count twice: they have a reader outside).
std::vector<int> reader_counts(const Executor::Impl& im) {
  std::vector<int> readers(im.n_slots, 0);
  for (const auto& st : im.steps) {
    for (int in : st.inputs)
      if (in >= 0) ++readers[in];
  }
  for (int o : im.output_slots) readers[o] += 2;
  return readers;
}

// Fuses a layer that takes an activation (Conv, Gemm) with the Relu/Clip (constant bounds) right
// after it when that is the only reader of a value that is not a graph output: one pass over the
// activation instead of two.
void fuse_activations(Executor::Impl& im, const Graph& graph) {
  const std::vector<int> readers = reader_counts(im);
  for (size_t i = 0; i + 1 < im.steps.size(); ++i) {
    Step& producer = im.steps[i];
    Step& next = im.steps[i + 1];
    const Node& nn = graph.nodes[next.node_index];
    if (!producer.spec->takes_activation || producer.outputs.size() != 1) continue;
    if (!next.spec->activation) continue;
    if (next.inputs.empty() || next.inputs[0] != producer.outputs[0] ||
        readers[producer.outputs[0]] != 1)
      continue;
    float lo = 0.0f, hi = INFINITY;  // Relu
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
}

// Fuses QuantizeLinear -> DequantizeLinear pairs (the activation fake-quantization of a QDQ
// export): when the integer value has no other reader and both nodes use the same constant
// scale, zero point and axis, the QuantizeLinear step writes the dequantized floats itself.
void fuse_qdq_pairs(Executor::Impl& im, const Graph& graph) {
  const std::vector<int> readers = reader_counts(im);
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
}

// The int8 integers behind a layer's weight slot, with zero point 0: a DequantizeLinear folded
// here (a graph built in memory), or one the importer folded (Graph::dequantized_origins), whose
// integers must still dequantize to the weight the plan holds (a compressor may have edited the
// float initializer since). nullopt when the weight has no such origin.
struct IntegerWeight {
  const Tensor* integers = nullptr;
  const Tensor* scale = nullptr;
  int64_t axis = 1;
};

std::optional<IntegerWeight> integer_weight(const Executor::Impl& im, const Graph& graph,
                                            const Node& layer, int weight_slot,
                                            const std::unordered_map<int, size_t>& folded_by) {
  IntegerWeight w;
  const Tensor* zero = nullptr;
  if (const auto f = folded_by.find(weight_slot); f != folded_by.end()) {
    const Node& dq = graph.nodes[f->second];
    if (dq.op_type != "DequantizeLinear" || dq.inputs.size() < 2) return std::nullopt;
    w.integers = graph.find_initializer(dq.inputs[0]);
    w.scale = graph.find_initializer(dq.inputs[1]);
    if (dq.inputs.size() > 2 && !dq.inputs[2].empty()) {
      zero = graph.find_initializer(dq.inputs[2]);
      if (!zero) return std::nullopt;
    }
    w.axis = dq.attr_int("axis", 1);
    if (w.integers && w.axis < 0) w.axis += static_cast<int64_t>(w.integers->shape.size());
  } else {
    const auto o = graph.dequantized_origins.find(layer.inputs[1]);
    if (o == graph.dequantized_origins.end()) return std::nullopt;
    w.integers = &o->second.integers;
    w.scale = &o->second.scale;
    if (o->second.zero_point.numel() > 0) zero = &o->second.zero_point;
    w.axis = o->second.axis;
  }
  if (!w.integers || w.integers->dtype != DType::kInt8 || w.integers->shape.size() < 2 ||
      !w.scale || !w.scale->is_float())
    return std::nullopt;
  if (zero && std::any_of(zero->i64.begin(), zero->i64.end(), [](int64_t z) { return z != 0; }))
    return std::nullopt;
  if (folded_by.count(weight_slot)) return w;
  // An imported origin: the float weight must still be integers x scale.
  const Tensor* current = im.constant_slots[weight_slot];
  const Tensor& q = *w.integers;
  if (!current || current->dtype != DType::kFloat32 || current->shape != q.shape)
    return std::nullopt;
  const int64_t n = q.numel();
  const int64_t channels = w.scale->numel();
  int64_t inner = 1;
  for (size_t d = static_cast<size_t>(w.axis) + 1; d < q.shape.size(); ++d) inner *= q.shape[d];
  for (int64_t i = 0; i < n; ++i) {
    const int64_t c = channels == 1 ? 0 : (i / inner) % channels;
    if (current->f32[i] != static_cast<float>(q.i64[i]) * w.scale->f32[c]) return std::nullopt;
  }
  return w;
}

// ExecutorOptions::int8 (see there): finds the layers that can run on integer kernels, gives them
// their integer parameters, and drops the QuantizeLinear -> DequantizeLinear step they absorb.
void plan_int8_layers(Executor::Impl& im, const Graph& graph,
                      const std::unordered_map<int, size_t>& folded_by) {
  const std::vector<int> readers = reader_counts(im);
  std::unordered_map<int, size_t> producer;  // slot -> step
  for (size_t i = 0; i < im.steps.size(); ++i) {
    if (im.steps[i].skip) continue;  // fused away (its output slot is now its fuser's)
    for (int o : im.steps[i].outputs)
      if (o >= 0) producer[o] = i;
  }
  auto constant = [&](const std::vector<int>& slots, size_t k) -> const Tensor* {
    return k < slots.size() && slots[k] >= 0 ? im.constant_slots[slots[k]] : nullptr;
  };
  for (Step& st : im.steps) {
    if (st.skip || !st.spec->layer || st.inputs.size() < 2 || st.inputs[0] < 0 || st.inputs[1] < 0)
      continue;
    const auto p = producer.find(st.inputs[0]);
    if (p == producer.end() || readers[st.inputs[0]] != 1) continue;
    Step& q = im.steps[p->second];
    if (q.skip || !q.fake_quantize) continue;
    const Tensor* x_scale = constant(q.inputs, 1);
    const Tensor* x_zero = constant(q.inputs, 2);
    if (!x_scale || !x_scale->is_float() || x_scale->numel() != 1) continue;
    if (q.inputs.size() > 2 && q.inputs[2] >= 0 &&
        (!x_zero || x_zero->dtype != DType::kUInt8 || x_zero->numel() != 1))
      continue;
    const Node& node = graph.nodes[st.node_index];
    const auto w = integer_weight(im, graph, node, st.inputs[1], folded_by);
    if (!w) continue;
    const Tensor* wq = w->integers;
    const Tensor* ws = w->scale;
    const bool out_first =
        node.op_type == "Conv" || (node.op_type == "Gemm" && node.attr_int("transB", 0) != 0);
    const int64_t rank = static_cast<int64_t>(wq->shape.size());
    const int64_t oc_axis = out_first ? 0 : rank - 1;
    if (ws->numel() != 1 && (w->axis != oc_axis || ws->numel() != wq->shape[oc_axis])) continue;
    // Scales whose products are not normal floats (0, subnormal, inf, NaN) would give NaN where
    // the float path gives the bias: keep such a layer in float.
    const bool normal_scales = std::all_of(ws->f32.begin(), ws->f32.end(), [&](float w) {
      return std::isnormal(x_scale->f32[0] * w);
    });
    if (!normal_scales) continue;
    DnnlInt8 int8;
    int8.x_scale = x_scale->f32[0];
    int8.x_zero_point = x_zero ? static_cast<int32_t>(x_zero->i64[0]) : 0;
    int8.weight.assign(wq->i64.begin(), wq->i64.end());
    int8.weight_scale = ws->f32;
    st.int8 = std::make_shared<const DnnlInt8>(std::move(int8));
    st.int8_qdq_node = q.node_index;
    st.int8_qdq_inputs = q.inputs;
    st.inputs[0] = q.inputs[0];
    q.skip = true;
  }
}

void drop_fused_steps(Executor::Impl& im) {
  std::vector<Step> kept;
  for (auto& st : im.steps) {
    if (!st.skip) kept.push_back(std::move(st));
  }
  im.steps = std::move(kept);
}

// oneDNN primitives for the layers whose weight (and bias) are constants, with the fused clamp.
void attach_onednn(Executor::Impl& im, const Graph& graph) {
  for (Step& st : im.steps) {
    const Node& node = graph.nodes[st.node_index];
    if (!st.spec->layer) continue;
    const ConstantWeights c = constant_weights(im, st);
    if (!c.weight || !c.bias_ok) continue;  // a computed weight or bias: Eigen
    const Tensor* weight = c.weight;
    const Tensor* bias = node.op_type == "MatMul" ? nullptr : c.bias;
    const detail::DnnlPostOp post{st.clamp, st.lo, st.hi};
    // kAuto: a tiny reduction (a first layer on 1-2 channels) runs the direct kernel instead.
    if (im.kernels == ExecutorOptions::Kernels::kAuto && !st.int8 && weight->shape.size() > 1 &&
        weight->shape[1] <= detail::kDirectConvPlannedChannels)
      st.dnnl = detail::make_direct_conv(node, weight, bias, post);
    if (!st.dnnl) st.dnnl = detail::DnnlOp::create(node, weight, bias, post, st.int8.get());
  }
}

// A MaxPool right after a direct convolution (the only reader of a value that is not a graph
// output) runs inside it (direct_conv.h): the convolution's full-size output is never written.
void fuse_direct_pools(Executor::Impl& im, const Graph& graph) {
  const std::vector<int> readers = reader_counts(im);
  bool fused = false;
  for (size_t i = 0; i + 1 < im.steps.size(); ++i) {
    Step& conv = im.steps[i];
    Step& pool = im.steps[i + 1];
    if (!conv.dnnl || conv.dnnl->onednn() || conv.outputs.size() != 1 || pool.inputs.empty() ||
        pool.inputs[0] != conv.outputs[0] || readers[conv.outputs[0]] != 1 ||
        pool.outputs.empty() || pool.outputs[0] < 0)
      continue;
    if (!detail::fuse_direct_conv_max_pool(*conv.dnnl, graph.nodes[pool.node_index])) continue;
    conv.fused_node = static_cast<int64_t>(pool.node_index);
    conv.outputs = pool.outputs;
    pool.skip = true;
    fused = true;
  }
  if (fused) drop_fused_steps(im);
}

// A computed value is released after its last reader unless it is a graph output.
void plan_liveness(Executor::Impl& im) {
  std::vector<int> last_reader(im.n_slots, -1);
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

}  // namespace

Executor::Executor(const Graph& graph, ExecutorOptions options) : impl_(std::make_shared<Impl>()) {
  Impl& im = *impl_;
  im.graph = &graph;
  im.options = options;
  im.threads = resolve_threads(options.threads, "ExecutorOptions::threads");
  im.kernels = kernels_from_environment(options.kernels);
  if (!graph.inputs.empty() && !graph.inputs[0].shape.empty())
    im.declared_batch = graph.inputs[0].shape[0];
  SlotMap slot;
  std::unordered_map<int, size_t> folded_by;
  assign_slots(im, graph, slot, folded_by);
  im.batch_coupled = couples_batch(im, graph);
  fuse_activations(im, graph);
  fuse_qdq_pairs(im, graph);
  if (options.int8 && im.kernels != ExecutorOptions::Kernels::kEigen && detail::dnnl_exact_int8())
    plan_int8_layers(im, graph, folded_by);
  drop_fused_steps(im);
  if (im.kernels != ExecutorOptions::Kernels::kEigen) {
    attach_onednn(im, graph);
    fuse_direct_pools(im, graph);
    plan_channels_last(im, graph, slot);
  }
  // Before fuse_depthwise_convs: a fused pair still counts both layers' work.
  im.flops_per_sample = flops_per_sample(im, graph);
  im.chunk_samples = chunk_samples(im, graph);
  if (im.kernels != ExecutorOptions::Kernels::kEigen) fuse_depthwise_convs(im, graph, slot);
  plan_liveness(im);
  if (options.time_steps) {
    im.step_ms.assign(im.steps.size(), 0.0);
    im.step_ran_int8.assign(im.steps.size(), 0);
    im.step_kernel.assign(im.steps.size(), "");
  }
}

}  // namespace compsearch::model
