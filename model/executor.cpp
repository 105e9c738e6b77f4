// Executor::run: runs the plan (planner.cpp, executor_plan.h) on one batch. Each step calls its
// op's kernel from the op table (op_registry.h; Eigen kernels in ops_*.cpp) or, for Conv, Gemm,
// MatMul and poolings that the plan gave a oneDNN primitive, oneDNN (model/dnnl_ops.h), keeping
// the values of a channels-last chain NHWC; ExecutorOptions::kernels picks Eigen instead, and
// kAuto keeps it where it measured faster (prefer_onednn). A batch at least as large as the thread
// count is split into slices that run the whole plan in parallel; smaller batches parallelise
// inside the kernels. Activation buffers come from a pool kept in a per-run workspace: the op
// sequence is the same every run, so after the first batch no activation or im2col buffer is
// allocated again.
#include "model/executor.h"

#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <functional>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <utility>

#include "model/executor_plan.h"

namespace compsearch::model {

using detail::ActLayout;
using detail::convert_layout;
using detail::OpContext;
using detail::Step;
using detail::Workspace;

namespace {

// A batch with fewer Conv/Gemm/MatMul flops than this runs on one thread: about 0.1-0.2 ms of
// work on one core, the cost of a few fork/joins on a busy 2-core machine (bench_executor: the
// reference CNN at batch 1 ran 10x slower on 2 threads than on 1 under a load average of 7).
constexpr double kSerialFlops = 8e6;

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

// Threads for the slices of a split batch, started once and kept, each waiting passively (a
// condition variable, not a spin) for the next batch: a thread started per batch costs tens of
// microseconds, as much as the whole batch of a small model, and on a loaded machine the new
// thread may wait a time slice to be scheduled. One batch at a time: a concurrent run() that finds
// the workers busy starts threads of its own.
class SliceWorkers {
 public:
  // Runs fn(0) on the caller and fn(1) ... fn(n - 1) on workers; returns when all have returned
  // (fn must not throw).
  void run(int n, const std::function<void(int)>& fn) {
    std::unique_lock<std::mutex> busy(busy_, std::try_to_lock);
    // (A forked child has none of the parent's workers: it starts threads of its own too.)
    if (!busy.owns_lock() || getpid() != pid_) {
      std::vector<std::thread> threads;
      for (int t = 1; t < n; ++t) threads.emplace_back(fn, t);
      fn(0);
      for (auto& th : threads) th.join();
      return;
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      while (static_cast<int>(threads_.size()) < n - 1) {
        const int index = static_cast<int>(threads_.size()) + 1;
        threads_.emplace_back([this, index] { loop(index); });
      }
      fn_ = &fn;
      n_ = n;
      pending_ = n - 1;
      ++generation_;
    }
    wake_.notify_all();
    fn(0);
    std::unique_lock<std::mutex> lock(mutex_);
    done_.wait(lock, [&] { return pending_ == 0; });
    fn_ = nullptr;
  }

 private:
  void loop(int index) {
    uint64_t seen = 0;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      seen = generation_ - 1;  // started for the batch being handed out now
    }
    for (;;) {
      const std::function<void(int)>* fn = nullptr;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return generation_ != seen; });
        seen = generation_;
        if (index < n_) fn = fn_;
      }
      if (!fn) continue;
      (*fn)(index);
      std::lock_guard<std::mutex> lock(mutex_);
      if (--pending_ == 0) done_.notify_one();
    }
  }

  const pid_t pid_ = getpid();  // the process the workers run in
  std::mutex busy_;             // held by the run() using the workers
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  std::vector<std::thread> threads_;
  const std::function<void(int)>* fn_ = nullptr;
  int n_ = 0, pending_ = 0;
  uint64_t generation_ = 0;
};

// Never destroyed: the workers wait forever and end with the process.
SliceWorkers& slice_workers() {
  static SliceWorkers* workers = new SliceWorkers;
  return *workers;
}

}  // namespace

int resolve_threads(int threads, const std::string& what) {
  if (threads < 0 || threads > kMaxThreads) {
    throw std::invalid_argument(what + ": value " + std::to_string(threads) +
                                " out of range; expected 0 (all cores) to " +
                                std::to_string(kMaxThreads));
  }
  return threads > 0 ? threads : omp_get_max_threads();
}

void Executor::set_layer_input_hook(LayerInputHook hook) { impl_->hook = std::move(hook); }

int64_t Executor::onednn_calls() const { return impl_->onednn_calls.load(); }

int64_t Executor::int8_calls() const { return impl_->int8_calls.load(); }

bool int8_kernels_available() { return detail::dnnl_exact_int8(); }

std::vector<Executor::StepTime> Executor::step_times() const {
  const Impl& im = *impl_;
  std::lock_guard<std::mutex> lock(im.times_mutex);
  std::vector<StepTime> out;
  for (size_t i = 0; i < im.steps.size(); ++i) {
    const detail::Step& st = im.steps[i];
    StepTime t;
    t.node_index = st.node_index;
    t.ms = im.step_ms.empty() ? 0.0 : im.step_ms[i];
    t.int8 = !im.step_ran_int8.empty() && im.step_ran_int8[i];
    if (!im.step_kernel.empty()) t.kernel = im.step_kernel[i];
    t.fused_activation = st.clamp;
    out.push_back(t);
  }
  return out;
}

namespace {

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

// Gives value slot `s` a buffer from the workspace's pool: the one that had this value's size in
// the last run at this batch size (the op sequence repeats, so each value finds its buffer again
// and resizing it neither reallocates nor zero-fills), else the smallest one that is large
// enough, else the largest. (Keeping one buffer per value size instead would never zero-fill a
// grown buffer, but its larger footprint cost more in cache misses: MobileNetV2 at batch 1 ran 12%
// slower.)
void take_pooled_buffer(Workspace& ws, const std::vector<size_t>& last_size, int s) {
  const size_t want = last_size[s];
  auto& pool = ws.free_buffers;
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
  ws.values[s].f32 = std::move(pool[best]);
  pool.erase(pool.begin() + static_cast<std::ptrdiff_t>(best));
}

// Samples [b0, b1) of every input (batch first), into `slice`, whose buffers are reused from run to
// run (fresh ones would page-fault every batch).
const std::vector<Tensor>& slice_batch(const std::vector<Tensor>& inputs, int64_t b0, int64_t b1,
                                       std::vector<Tensor>& slice) {
  slice.resize(inputs.size());
  for (size_t i = 0; i < inputs.size(); ++i) {
    const Tensor& x = inputs[i];
    const int64_t batch = x.shape.empty() ? 0 : x.shape[0];
    const int64_t per = batch ? x.numel() / batch : 0;
    Tensor& t = slice[i];
    t.dtype = x.dtype;
    t.shape = x.shape;
    t.shape[0] = b1 - b0;
    if (x.is_float()) {
      t.i64.clear();
      t.f32.assign(x.f32.begin() + b0 * per, x.f32.begin() + b1 * per);
    } else {
      t.f32.clear();
      t.i64.assign(x.i64.begin() + b0 * per, x.i64.begin() + b1 * per);
    }
  }
  return slice;
}

// Runs every step once on `all_inputs` (with b0 >= 0: on its samples [b0, b1)) with `threads`
// threads inside the kernels.
std::vector<Tensor> run_steps(const Executor::Impl& im, const std::vector<Tensor>& all_inputs,
                              int threads, bool use_hook, int64_t b0 = -1, int64_t b1 = -1) {
  const Graph& graph = *im.graph;
  auto ws = im.acquire();
  struct Return {  // hands the workspace back even when a node throws
    const Executor::Impl& im;
    std::unique_ptr<Workspace>& ws;
    ~Return() { im.give_back(std::move(ws)); }
  } giver{im, ws};
  const std::vector<Tensor>& inputs =
      b0 < 0 ? all_inputs : slice_batch(all_inputs, b0, b1, ws->slice_inputs);
  OpContext ctx;
  ctx.threads = threads;
  ctx.opset = graph.opset_version;
  ctx.declared_batch = im.declared_batch;
  const OmpThreads omp_threads(threads);
  std::vector<size_t>& last_size =
      ws->last_size_for(inputs.empty() || inputs[0].shape.empty() ? 0 : inputs[0].shape[0]);
  auto value = [&](int s) -> const Tensor* {
    if (s < 0) return nullptr;
    if (static_cast<size_t>(s) < im.n_inputs) return &inputs[s];
    if (im.constant_slots[s]) return im.constant_slots[s];
    return &ws->values[s];
  };
  std::vector<const Tensor*> in;
  std::vector<Tensor*> out;
  const bool timed = im.options.time_steps;
  for (const Step& step : im.steps) {
    const Node& node = graph.nodes[step.node_index];
    const auto t0 =
        timed ? std::chrono::steady_clock::now() : std::chrono::steady_clock::time_point{};
    in.clear();
    for (int s : step.inputs) in.push_back(value(s));
    const bool hook_now = use_hook && step.hooked && im.hook;
    // An int8 step's float fallback: its QuantizeLinear -> DequantizeLinear pair, applied here.
    auto fake_quantized_input = [&]() {
      std::vector<const Tensor*> q_in;
      for (int s : step.int8_qdq_inputs) q_in.push_back(value(s));
      q_in[0] = in[0];
      OpContext q_ctx = ctx;
      q_ctx.clamp = false;
      q_ctx.fake_quantize = true;
      const Node& q_node = graph.nodes[step.int8_qdq_node];
      detail::op_spec(q_node).kernel(q_node, q_in, ws->int8_input, q_ctx);
      in[0] = &ws->int8_input;
    };
    if (step.int8 && hook_now) fake_quantized_input();  // the hook sees what the float plan feeds
    if (hook_now) {
      if (step.in_layout != ActLayout::kNchw) {  // the hook sees NCHW, whatever the plan keeps
        convert_layout(*in[0], step.in_layout, ActLayout::kNchw, ws->hooked_input);
        im.hook(step.node_index, ws->hooked_input);
        ws->layout_copy = ws->hooked_input;
        convert_layout(ws->layout_copy, ActLayout::kNchw, step.in_layout, ws->hooked_input);
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
      if (t.f32.capacity() == 0 && !ws->free_buffers.empty() && !im.is_output[s])
        take_pooled_buffer(*ws, last_size, s);
      out.push_back(&t);
    }
    ctx.clamp = step.clamp;
    ctx.lo = step.lo;
    ctx.hi = step.hi;
    ctx.fake_quantize = step.fake_quantize;
    const bool bound = step.in_layout != ActLayout::kNchw || step.out_layout != ActLayout::kNchw;
    const bool hook_fused = use_hook && step.fused_hooked && im.hook;
    // A fused 1x1 -> depthwise pair whose depthwise input the hook must see: the two kernels
    // unfused (blocked in and out), the hook between them on an NCHW copy. (Both were planned
    // for the same shapes; should the second decline after the first ran, the own-kernel path
    // below runs the pair again and calls the hook a second time.)
    auto run_pair = [&]() {
      Tensor& mid = ws->pool_input;
      if (!step.pair_first->run(*in[0], mid, threads, ws->dnnl_scratch)) return false;
      convert_layout(mid, ActLayout::kBlocked, ActLayout::kNchw, ws->layout_copy);
      im.hook(static_cast<size_t>(step.fused_node), ws->layout_copy);
      convert_layout(ws->layout_copy, ActLayout::kNchw, ActLayout::kBlocked, mid);
      return step.pair_second->run(mid, *out[0], threads, ws->dnnl_scratch);
    };
    const bool pair_ran = hook_fused && step.pair_first && run_pair();
    const bool onednn =
        pair_ran || (step.dnnl && !(step.int8 && hook_now) && !hook_fused &&
                     (bound || step.int8 || !step.dnnl->onednn() ||
                      prefer_onednn(im.kernels, node, *in[0], in.size() > 1 ? in[1] : nullptr)) &&
                     step.dnnl->run(*in[0], *out[0], threads, ws->dnnl_scratch));
    if (!onednn && step.int8 && !hook_now) fake_quantized_input();
    // The step's own kernel; with a node fused into it (a MaxPool, a depthwise convolution), the
    // step's node into a scratch tensor and the fused node's kernel after it.
    auto own_kernel = [&](Tensor& y) {
      if (step.fused_node < 0) {
        step.spec->kernel(node, in, y, ctx);
        return;
      }
      step.spec->kernel(node, in, ws->pool_input, ctx);
      const auto f = static_cast<size_t>(step.fused_node);
      if (hook_fused) im.hook(f, ws->pool_input);
      std::vector<const Tensor*> f_in = {&ws->pool_input};
      for (size_t k = 1; k < step.fused_inputs.size(); ++k)
        f_in.push_back(value(step.fused_inputs[k]));
      OpContext f_ctx = ctx;
      f_ctx.clamp = step.fused_clamp;
      f_ctx.lo = step.fused_lo;
      f_ctx.hi = step.fused_hi;
      detail::op_spec(graph.nodes[f]).kernel(graph.nodes[f], f_in, y, f_ctx);
    };
    if (onednn) {
      if (step.dnnl->onednn()) im.onednn_calls.fetch_add(1, std::memory_order_relaxed);
      if (step.int8) im.int8_calls.fetch_add(1, std::memory_order_relaxed);
    } else if (bound) {  // oneDNN declined the shape: the Eigen kernel in NCHW, converted around
      if (step.in_layout != ActLayout::kNchw) {
        convert_layout(*in[0], step.in_layout, ActLayout::kNchw, ws->layout_copy);
        in[0] = &ws->layout_copy;
      }
      own_kernel(*out[0]);
      if (step.out_layout != ActLayout::kNchw) {
        ws->layout_copy = *out[0];
        convert_layout(ws->layout_copy, ActLayout::kNchw, step.out_layout, *out[0]);
      }
    } else {
      own_kernel(*out[0]);
    }
    for (int s : step.outputs)
      if (s >= 0) last_size[s] = ws->values[s].f32.size();
    for (int s : step.release) {
      Tensor& t = ws->values[s];
      if (t.f32.capacity()) ws->free_buffers.push_back(std::move(t.f32));
      t.f32 = {};
    }
    if (timed) {
      const double ms =
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      std::lock_guard<std::mutex> lock(im.times_mutex);
      im.step_ms[&step - im.steps.data()] = ms;
      im.step_ran_int8[&step - im.steps.data()] = onednn && step.int8;
      std::string& k = im.step_kernel[&step - im.steps.data()];
      if (!onednn) {
        k = "executor";
      } else if (pair_ran) {
        k = "oneDNN " + step.pair_first->kernel(in[0]->shape, threads) + ", hook, " +
            step.pair_second->kernel(ws->pool_input.shape, threads);
      } else {
        k = step.dnnl->kernel(in[0]->shape, threads);
        if (step.dnnl->onednn()) k = "oneDNN " + k;
      }
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
  bool sliceable = (!im.hook || im.options.hook_per_slice) && !im.batch_coupled;
  for (const auto& t : inputs) sliceable = sliceable && !t.shape.empty() && t.shape[0] == batch;
  sliceable = sliceable && !im.options.time_steps;  // step times are of whole-batch steps
  // Too little work to share: one thread (a fork/join costs tens of microseconds, far more on a
  // loaded machine, where a second thread may wait a whole time slice for a core).
  if (im.flops_per_sample > 0 && static_cast<double>(batch) * im.flops_per_sample < kSerialFlops)
    return run_steps(im, inputs, 1, true);
  // Coarse-grained batch parallelism: each thread runs the whole graph on a contiguous slice of
  // the batch with single-threaded kernels, so a batch costs one fork/join instead of one per op
  // (which matters on a loaded machine, where every barrier waits for a descheduled thread).
  // With a hook set we keep whole-batch calls (the hook sees the full batch, from one thread).
  const bool split = sliceable && im.threads > 1 && batch >= im.threads;
  const int nt = split ? im.threads : 1;
  // Each thread's slice runs in chunks of at most `chunk` samples (Impl::chunk_samples).
  const int64_t chunk = sliceable && im.chunk_samples > 0 ? im.chunk_samples : batch;
  std::vector<std::pair<int64_t, int64_t>> pieces;
  std::vector<size_t> first_piece(nt + 1, 0);
  for (int t = 0; t < nt; ++t) {
    first_piece[t] = pieces.size();
    const int64_t s1 = batch * (t + 1) / nt;
    for (int64_t b0 = batch * t / nt; b0 < s1; b0 += chunk)
      pieces.emplace_back(b0, std::min(s1, b0 + chunk));
  }
  first_piece[nt] = pieces.size();
  if (pieces.size() <= 1) return run_steps(im, inputs, im.threads, true);
  std::vector<std::vector<Tensor>> parts(pieces.size());
  std::vector<std::exception_ptr> errors(nt);
  // Threads of our own rather than an OpenMP team: on a loaded machine OpenMP's spin-waiting
  // workers (libgomp's default wait policy) cost up to 8x here (bench_executor at a load average
  // of 5, 2 threads, batch 256: whole-batch steps with oneDNN's OpenMP threads ran the CNN at 5-14
  // K images/s, slices on these workers at 45-56 K); the workers wait passively (SliceWorkers).
  auto work = [&](int t) {
    try {
      for (size_t i = first_piece[t]; i < first_piece[t + 1]; ++i)
        parts[i] =
            run_steps(im, inputs, split ? 1 : im.threads, true, pieces[i].first, pieces[i].second);
    } catch (...) {
      errors[t] = std::current_exception();
    }
  };
  if (nt > 1)
    slice_workers().run(nt, work);
  else
    work(0);
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
    for (size_t i = 0; i < pieces.size(); ++i) {
      const Tensor& p = parts[i][o];
      // An output without the batch as dim 0 cannot be stitched: run the batch whole instead.
      if (p.shape.empty() || p.shape[0] != pieces[i].second - pieces[i].first) {
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
