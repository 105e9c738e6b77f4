// Internal helpers shared by shape inference, the executor and the layer table: attribute
// defaults that depend on the opset, convolution/pooling geometry and broadcasting. Not part of
// the model library's public face.
#pragma once

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "model/graph.h"

namespace compsearch::model::detail {

// "node 'conv1' (Conv)": how every error message names a node.
// QuantizeLinear's level: round half to even of v / s, plus z, saturated to [lo, hi]; NaN gives lo
// (as in ONNX Runtime). Branch-free and without a libm call, so that loops over it vectorize
// (std::nearbyint is a call per element on baseline x86-64): v / s is first clamped to +-2^22,
// beyond which every level saturates anyway (a NaN becomes -2^22), and adding 1.5 * 2^23 leaves
// integer ulps, which rounds half to even in the default rounding mode. Equal to
// std::nearbyint(v / s) + z saturated for every float, but for the sign of a zero
// (tests/model/quant_ops_test.cpp). GCC if-converts the selects only without -ftrapping-math (they
// compare floats), hence the pragma (the same as around quantize_levels, so that GCC inlines it
// there); quantize_levels below are the vectorized loops.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC push_options
#pragma GCC optimize("O3", "no-trapping-math")
#endif
inline float quantize_level(float v, float s, float z, float lo, float hi) {
  constexpr float kBound = 4194304.0f, kMagic = 12582912.0f;
  float t = v / s;
  t = t > -kBound ? t : -kBound;  // a NaN compares false: -kBound
  t = t < kBound ? t : kBound;
  float r = ((t + kMagic) - kMagic) + z;
  r = r > lo ? r : lo;
  return r < hi ? r : hi;
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC pop_options
#endif

// y[i] = quantize_level(x[i], s, z, lo, hi) for i < n, and the same into uint8 with lo 0, hi 255;
// vectorized for AVX-512, AVX2 or SSE2, picked at run time (ops_quantization.cpp).
void quantize_levels(const float* x, int64_t n, float s, float z, float lo, float hi, float* y);
void quantize_levels_u8(const float* x, int64_t n, float s, float z, uint8_t* q);

inline std::string node_label(const Node& node) {
  return "node '" + node.name + "' (" + node.op_type + ")";
}

inline int64_t normalize_axis(int64_t axis, int64_t rank, const Node& node) {
  const int64_t a = axis < 0 ? axis + rank : axis;
  if (a < 0 || a >= rank) {
    throw std::runtime_error(node_label(node) + ": axis " + std::to_string(axis) +
                             " is out of range for rank " + std::to_string(rank));
  }
  return a;
}

// Spatial geometry of a Conv or a pooling node on an input [N, C, H, W] (1-D and 2-D kernels;
// 1-D is treated as H = 1).
struct WindowGeometry {
  int64_t kh = 1, kw = 1;
  int64_t sh = 1, sw = 1;
  int64_t dh = 1, dw = 1;
  int64_t pad_top = 0, pad_left = 0, pad_bottom = 0, pad_right = 0;
  int64_t in_h = 1, in_w = 1;
  int64_t out_h = 1, out_w = 1;
};

inline int64_t window_out(int64_t in, int64_t k, int64_t s, int64_t d, int64_t pb, int64_t pe,
                          bool ceil_mode) {
  const int64_t eff = (k - 1) * d + 1;
  const int64_t span = in + pb + pe - eff;
  if (span < 0) return 0;
  int64_t out = ceil_mode ? (span + s - 1) / s + 1 : span / s + 1;
  // PyTorch/ONNX: with ceil_mode the last window must start inside the input or left padding.
  if (ceil_mode && (out - 1) * s >= in + pb) --out;
  return out;
}

// `spatial` = the input's spatial dims (size 1 or 2); `kernel` from the weight or kernel_shape.
inline WindowGeometry window_geometry(const Node& node, const std::vector<int64_t>& spatial,
                                      const std::vector<int64_t>& kernel) {
  const size_t nd = spatial.size();
  if (nd < 1 || nd > 2 || kernel.size() != nd) {
    throw std::runtime_error(node_label(node) + ": only 1-D and 2-D windows are supported, got " +
                             std::to_string(nd) + " spatial dims");
  }
  auto strides = node.attr_ints("strides", std::vector<int64_t>(nd, 1));
  auto dilations = node.attr_ints("dilations", std::vector<int64_t>(nd, 1));
  auto pads = node.attr_ints("pads", std::vector<int64_t>(2 * nd, 0));
  if (strides.size() != nd || dilations.size() != nd || pads.size() != 2 * nd) {
    throw std::runtime_error(node_label(node) + ": strides/dilations/pads do not match " +
                             std::to_string(nd) + " spatial dims");
  }
  const std::string auto_pad = node.attr_string("auto_pad", "NOTSET");
  const bool ceil_mode = node.attr_int("ceil_mode", 0) != 0;
  std::vector<int64_t> out(nd);
  for (size_t i = 0; i < nd; ++i) {
    if (strides[i] < 1 || dilations[i] < 1 || kernel[i] < 1) {
      throw std::runtime_error(node_label(node) + ": strides, dilations and kernel must be >= 1");
    }
    if (auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER") {
      const int64_t o = (spatial[i] + strides[i] - 1) / strides[i];
      const int64_t total = std::max<int64_t>(
          0, (o - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1 - spatial[i]);
      const int64_t small = total / 2, big = total - total / 2;
      pads[i] = auto_pad == "SAME_UPPER" ? small : big;
      pads[i + nd] = total - pads[i];
    } else if (auto_pad == "VALID") {
      pads[i] = pads[i + nd] = 0;
    } else if (auto_pad != "NOTSET") {
      throw std::runtime_error(node_label(node) + ": auto_pad '" + auto_pad +
                               "' is not one of NOTSET, SAME_UPPER, SAME_LOWER, VALID");
    }
    out[i] = window_out(spatial[i], kernel[i], strides[i], dilations[i], pads[i], pads[i + nd],
                        ceil_mode);
  }
  WindowGeometry g;
  if (nd == 1) {
    g.kw = kernel[0];
    g.sw = strides[0];
    g.dw = dilations[0];
    g.pad_left = pads[0];
    g.pad_right = pads[1];
    g.in_w = spatial[0];
    g.out_w = out[0];
  } else {
    g.kh = kernel[0];
    g.kw = kernel[1];
    g.sh = strides[0];
    g.sw = strides[1];
    g.dh = dilations[0];
    g.dw = dilations[1];
    g.pad_top = pads[0];
    g.pad_left = pads[1];
    g.pad_bottom = pads[2];
    g.pad_right = pads[3];
    g.in_h = spatial[0];
    g.in_w = spatial[1];
    g.out_h = out[0];
    g.out_w = out[1];
  }
  return g;
}

// NumPy broadcasting of two shapes; throws naming the node when they are incompatible.
// A -1 (unknown) dimension broadcasts with 1 to -1.
inline Shape broadcast_shapes(const Shape& a, const Shape& b, const Node& node) {
  const size_t r = std::max(a.size(), b.size());
  Shape out(r);
  for (size_t i = 0; i < r; ++i) {
    const int64_t da = i < r - a.size() ? 1 : a[i - (r - a.size())];
    const int64_t db = i < r - b.size() ? 1 : b[i - (r - b.size())];
    if (da == db || db == 1) {
      out[i] = da;
    } else if (da == 1) {
      out[i] = db;
    } else if (da == -1 || db == -1) {
      out[i] = da == -1 ? db : da;
    } else {
      throw std::runtime_error(node_label(node) + ": shapes " + shape_to_string(a) + " and " +
                               shape_to_string(b) + " do not broadcast");
    }
  }
  return out;
}

}  // namespace compsearch::model::detail
