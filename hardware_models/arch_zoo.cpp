// Layer tables of well-known networks from their published shapes. BatchNorm is taken as folded
// into the preceding convolution (as ONNX exports of eval-mode models are), so each convolution
// carries a bias of its output channels.
#include "hardware_models/arch_zoo.h"

#include <cmath>
#include <functional>
#include <map>
#include <sstream>
#include <stdexcept>

namespace compsearch::hardware_models {

namespace {

// Builds a layer table while tracking the activation shape and the layer whose output channels are
// the current activation's channels (reset by residual adds, which are not channel-preserving).
class TableBuilder {
 public:
  TableBuilder(int64_t c, int64_t h, int64_t w) : c_(c), h_(h), w_(w) {}

  struct Shape3 {
    int64_t c, h, w;
    int source;
  };
  Shape3 shape() const { return {c_, h_, w_, source_}; }
  void set_shape(const Shape3& s) {
    c_ = s.c;
    h_ = s.h;
    w_ = s.w;
    source_ = s.source;
  }

  // PyTorch-style padding: out = floor((in + 2·pad − k) / stride) + 1.
  int conv(const std::string& name, int64_t out, int64_t kh, int64_t kw, int64_t stride,
           int64_t pad_h, int64_t pad_w, int64_t groups = 1, bool bias = true) {
    const int64_t oh = (h_ + 2 * pad_h - kh) / stride + 1;
    const int64_t ow = (w_ + 2 * pad_w - kw) / stride + 1;
    return add_conv(name, out, kh, kw, oh, ow, groups, bias);
  }
  // TensorFlow "same" padding: out = ceil(in / stride).
  int conv_same(const std::string& name, int64_t out, int64_t kh, int64_t kw, int64_t stride,
                int64_t groups = 1, bool bias = true) {
    return add_conv(name, out, kh, kw, (h_ + stride - 1) / stride, (w_ + stride - 1) / stride,
                    groups, bias);
  }
  void pool(int64_t k, int64_t stride, int64_t pad) {  // max/avg pooling keeps channels
    h_ = (h_ + 2 * pad - k) / stride + 1;
    w_ = (w_ + 2 * pad - k) / stride + 1;
  }
  void global_pool() { h_ = w_ = 1; }
  void residual_add() { source_ = -1; }  // Add is not in DESIGN.md's channel-preserving list
  int gemm(const std::string& name, int64_t out, bool bias = true) {
    const std::string what = "layer '" + name + "'";
    const int64_t in = model::checked_numel({c_, h_, w_}, what + " input");
    model::LayerInfo L;
    L.name = name;
    L.op = "Gemm";
    L.node_index = table_.layers.size();
    L.weight_name = name + ".weight";
    L.bias_name = bias ? name + ".bias" : "";
    L.weight_shape = {out, in};
    L.weight_elements = model::checked_numel({out, in}, what + " weight");
    L.params = L.weight_elements + (bias ? out : 0);
    L.macs = L.weight_elements;
    L.input_elements = in;
    L.output_elements = out;
    L.out_channels = out;
    L.in_channels = in;
    L.reduction_length = in;
    L.output_positions = 1;
    return push(L, out, 1, 1);
  }
  Workload finish() {
    Workload w;
    for (const auto& L : table_.layers) {
      if (__builtin_add_overflow(table_.total_params, L.params, &table_.total_params) ||
          __builtin_add_overflow(table_.total_macs, L.macs, &table_.total_macs))
        throw std::runtime_error("the model's total parameters or MACs exceed a 64-bit count");
    }
    w.table = std::move(table_);
    w.channel_source = std::move(sources_);
    return w;
  }

 private:
  int add_conv(const std::string& name, int64_t out, int64_t kh, int64_t kw, int64_t oh, int64_t ow,
               int64_t groups, bool bias) {
    model::LayerInfo L;
    L.name = name;
    L.op = "Conv";
    L.node_index = table_.layers.size();
    L.weight_name = name + ".weight";
    L.bias_name = bias ? name + ".bias" : "";
    const std::string what = "layer '" + name + "'";
    L.weight_shape = {out, c_ / groups, kh, kw};
    L.weight_elements = model::checked_numel(L.weight_shape, what + " weight");
    L.params = L.weight_elements + (bias ? out : 0);
    L.kernel_elements = model::checked_numel({kh, kw}, what + " kernel");
    L.reduction_length = model::checked_numel({c_ / groups, kh, kw}, what + " weight");
    L.output_positions = model::checked_numel({oh, ow}, what + " output");
    L.macs = model::checked_numel({out, oh, ow, L.reduction_length}, what + " MACs");
    L.input_elements = model::checked_numel({c_, h_, w_}, what + " input");
    L.output_elements = model::checked_numel({out, oh, ow}, what + " output");
    L.out_channels = out;
    L.in_channels = c_;
    L.groups = groups;
    L.depthwise = groups > 1 && groups == c_;
    return push(L, out, oh, ow);
  }
  int push(const model::LayerInfo& L, int64_t c, int64_t h, int64_t w) {
    table_.layers.push_back(L);
    sources_.push_back(source_);
    source_ = int(table_.layers.size()) - 1;
    c_ = c;
    h_ = h;
    w_ = w;
    return source_;
  }

  int64_t c_, h_, w_;
  int source_ = -1;
  model::LayerTable table_;
  std::vector<int> sources_;
};

// max(1, floor(c * alpha)), refusing widths that are no int64 (a double -> int64 conversion out of
// range is undefined behaviour).
int64_t scaled_channels(int64_t c, double alpha) {
  const double v = static_cast<double>(c) * alpha;
  if (!(v < 0x1p62)) {
    throw std::runtime_error(std::to_string(c) + " channels scaled by alpha " +
                             std::to_string(alpha) + " do not fit a 64-bit count");
  }
  return std::max<int64_t>(1, static_cast<int64_t>(v));
}

int64_t make_divisible(double v, int64_t divisor = 8) {  // torchvision's _make_divisible
  if (!(v < 0x1p62))
    throw std::runtime_error("channel width " + std::to_string(v) + " does not fit a 64-bit count");
  int64_t nv = std::max<int64_t>(divisor, int64_t(v + divisor / 2.0) / divisor * divisor);
  if (nv < 0.9 * v) nv += divisor;
  return nv;
}

Workload mobilenet_v1(const ZooOptions& o) {
  const int res = o.resolution ? o.resolution : 224;
  const int classes = o.classes ? o.classes : 1000;
  auto ch = [&](int c) { return scaled_channels(c, o.alpha); };
  TableBuilder b(3, res, res);
  b.conv("conv1", ch(32), 3, 3, 2, 1, 1);
  const int spec[13][2] = {{64, 1},  {128, 2}, {128, 1}, {256, 2}, {256, 1},  {512, 2}, {512, 1},
                           {512, 1}, {512, 1}, {512, 1}, {512, 1}, {1024, 2}, {1024, 1}};
  for (int i = 0; i < 13; ++i) {
    const auto in = b.shape().c;
    b.conv("dw" + std::to_string(i + 1), in, 3, 3, spec[i][1], 1, 1, in);
    b.conv("pw" + std::to_string(i + 1), ch(spec[i][0]), 1, 1, 1, 0, 0);
  }
  b.global_pool();
  b.gemm("fc", classes);
  return b.finish();
}

Workload mobilenet_v2(const ZooOptions& o) {
  const int res = o.resolution ? o.resolution : 224;
  const int classes = o.classes ? o.classes : 1000;
  TableBuilder b(3, res, res);
  int64_t in = make_divisible(32 * o.alpha);
  const int64_t last = make_divisible(1280 * std::max(1.0, o.alpha));
  b.conv("features.0.0", in, 3, 3, 2, 1, 1);
  const int cfg[7][4] = {{1, 16, 1, 1}, {6, 24, 2, 2},  {6, 32, 3, 2}, {6, 64, 4, 2},
                         {6, 96, 3, 1}, {6, 160, 3, 2}, {6, 320, 1, 1}};
  int idx = 1;
  for (const auto& c : cfg) {
    const int64_t out = make_divisible(c[1] * o.alpha);
    for (int i = 0; i < c[2]; ++i, ++idx) {
      const int stride = i == 0 ? c[3] : 1;
      const int64_t hidden = in * c[0];
      const std::string p = "features." + std::to_string(idx) + ".conv.";
      if (c[0] == 1) {
        b.conv(p + "0.0", hidden, 3, 3, stride, 1, 1, hidden);
        b.conv(p + "1", out, 1, 1, 1, 0, 0);
      } else {
        b.conv(p + "0.0", hidden, 1, 1, 1, 0, 0);
        b.conv(p + "1.0", hidden, 3, 3, stride, 1, 1, hidden);
        b.conv(p + "2", out, 1, 1, 1, 0, 0);
      }
      if (stride == 1 && in == out) b.residual_add();
      in = out;
    }
  }
  b.conv("features.18.0", last, 1, 1, 1, 0, 0);
  b.global_pool();
  b.gemm("classifier.1", classes);
  return b.finish();
}

// torchvision ResNet / ResNeXt (v1.5: the stride sits on the 3x3 convolution).
Workload resnet(const ZooOptions& o, bool bottleneck, const std::vector<int>& blocks, int groups,
                int width_per_group) {
  const int res = o.resolution ? o.resolution : 224;
  const int classes = o.classes ? o.classes : 1000;
  TableBuilder b(3, res, res);
  b.conv("conv1", 64, 7, 7, 2, 3, 3);
  b.pool(3, 2, 1);
  int64_t in = 64;
  const int expansion = bottleneck ? 4 : 1;
  for (int s = 0; s < 4; ++s) {
    const int64_t planes = 64 << s;
    for (int i = 0; i < blocks[s]; ++i) {
      const int stride = (i == 0 && s > 0) ? 2 : 1;
      const std::string p = "layer" + std::to_string(s + 1) + "." + std::to_string(i) + ".";
      const auto block_in = b.shape();
      if (bottleneck) {
        const int64_t width = planes * width_per_group / 64 * groups;
        b.conv(p + "conv1", width, 1, 1, 1, 0, 0);
        b.conv(p + "conv2", width, 3, 3, stride, 1, 1, groups);
        b.conv(p + "conv3", planes * expansion, 1, 1, 1, 0, 0);
      } else {
        b.conv(p + "conv1", planes, 3, 3, stride, 1, 1);
        b.conv(p + "conv2", planes, 3, 3, 1, 1, 1);
      }
      const auto block_out = b.shape();
      if (stride != 1 || in != planes * expansion) {
        b.set_shape(block_in);
        b.conv(p + "downsample.0", planes * expansion, 1, 1, stride, 0, 0);
        b.set_shape(block_out);
      }
      b.residual_add();
      in = planes * expansion;
    }
  }
  b.global_pool();
  b.gemm("fc", classes);
  return b.finish();
}

// MLPerf Tiny keyword spotting reference (DS-CNN small, Keras, 'same' padding).
Workload ds_cnn_kws(const ZooOptions& o) {
  TableBuilder b(1, 49, 10);
  b.conv_same("conv1", 64, 10, 4, 2);
  for (int i = 1; i <= 4; ++i) {
    b.conv_same("dw" + std::to_string(i), 64, 3, 3, 1, 64);
    b.conv_same("pw" + std::to_string(i), 64, 1, 1, 1);
  }
  b.global_pool();  // AveragePooling2D over the whole 25x5 map
  b.gemm("fc", o.classes ? o.classes : 12);
  return b.finish();
}

// MLPerf Tiny image classification reference (ResNet-8 for CIFAR-10, Keras, 'same' padding).
Workload resnet8_cifar(const ZooOptions& o) {
  TableBuilder b(3, 32, 32);
  b.conv_same("conv1", 16, 3, 3, 1);
  const int filters[3] = {16, 32, 64};
  for (int s = 0; s < 3; ++s) {
    const int stride = s == 0 ? 1 : 2;
    const std::string p = "stack" + std::to_string(s + 1) + ".";
    const auto in = b.shape();
    b.conv_same(p + "conv1", filters[s], 3, 3, stride);
    b.conv_same(p + "conv2", filters[s], 3, 3, 1);
    if (s > 0) {
      const auto out = b.shape();
      b.set_shape(in);
      b.conv_same(p + "shortcut", filters[s], 1, 1, stride);
      b.set_shape(out);
    }
    b.residual_add();
  }
  b.global_pool();
  b.gemm("fc", o.classes ? o.classes : 10);
  return b.finish();
}

// MLPerf Tiny anomaly detection reference (FC autoencoder on 640 log-mel features).
Workload fc_autoencoder(const ZooOptions&) {
  TableBuilder b(640, 1, 1);
  const int dims[10] = {128, 128, 128, 128, 8, 128, 128, 128, 128, 640};
  for (int i = 0; i < 10; ++i) b.gemm("dense" + std::to_string(i + 1), dims[i]);
  return b.finish();
}

const std::map<std::string, std::function<Workload(const ZooOptions&)>>& registry() {
  static const std::map<std::string, std::function<Workload(const ZooOptions&)>> r = {
      {"mobilenet_v1", mobilenet_v1},
      {"mobilenet_v2", mobilenet_v2},
      {"resnet18",
       [](const ZooOptions& o) {
         return resnet(o, false, {2, 2, 2, 2}, 1, 64);
       }},
      {"resnet50",
       [](const ZooOptions& o) {
         return resnet(o, true, {3, 4, 6, 3}, 1, 64);
       }},
      {"resnext101_32x8d",
       [](const ZooOptions& o) {
         return resnet(o, true, {3, 4, 23, 3}, 32, 8);
       }},
      {"ds_cnn_kws", ds_cnn_kws},
      {"resnet8_cifar", resnet8_cifar},
      {"mobilenet_v1_vww",
       [](const ZooOptions& o) {
         ZooOptions v = o;
         if (v.alpha == 1.0) v.alpha = 0.25;
         if (!v.resolution) v.resolution = 96;
         if (!v.classes) v.classes = 2;
         return mobilenet_v1(v);
       }},
      {"fc_autoencoder", fc_autoencoder},
  };
  return r;
}

}  // namespace

std::vector<std::string> zoo_model_names() {
  std::vector<std::string> names;
  for (const auto& [n, f] : registry()) names.push_back(n);
  return names;
}

Workload build_zoo_model(const std::string& name, const ZooOptions& options) {
  auto it = registry().find(name);
  if (it == registry().end()) {
    std::string list;
    for (const auto& n : zoo_model_names()) list += (list.empty() ? "" : ", ") + n;
    throw std::invalid_argument("zoo model '" + name + "' is unknown; known models: " + list);
  }
  if (!(options.alpha > 0.0) || options.resolution < 0 || options.classes < 0) {
    throw std::invalid_argument("zoo model '" + name +
                                "': alpha must be > 0, res and classes >= 0");
  }
  try {
    return it->second(options);
  } catch (const std::runtime_error& e) {  // sizes that overflow a 64-bit count
    throw std::invalid_argument("zoo model '" + name + "': " + e.what());
  }
}

Workload build_zoo_model_from_spec(const std::string& spec) {
  std::string rest = spec;
  if (rest.rfind("zoo:", 0) == 0) rest = rest.substr(4);
  std::stringstream ss(rest);
  std::string name, item;
  std::getline(ss, name, ',');
  ZooOptions o;
  while (std::getline(ss, item, ',')) {
    const auto eq = item.find('=');
    const std::string key = item.substr(0, eq);
    const std::string value = eq == std::string::npos ? "" : item.substr(eq + 1);
    try {
      size_t used = 0;
      if (key == "alpha") {
        o.alpha = std::stod(value, &used);
      } else if (key == "res") {
        o.resolution = std::stoi(value, &used);
      } else if (key == "classes") {
        o.classes = std::stoi(value, &used);
      } else {
        throw std::invalid_argument("unknown option '" + key + "'; allowed: alpha, res, classes");
      }
      if (used != value.size()) throw std::invalid_argument("bad number");
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument("model '" + spec + "': option '" + item + "': " + e.what());
    } catch (const std::out_of_range&) {
      throw std::invalid_argument("model '" + spec + "': option '" + item + "': out of range");
    }
  }
  return build_zoo_model(name, o);
}

}  // namespace compsearch::hardware_models
