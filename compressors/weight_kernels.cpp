// Weight kernels (DESIGN.md rules 1-7) on flat float buffers. See weight_kernels.h; the kernels
// live in one file per topic (weight_kernels_internal.h lists them). This file holds the layout.
//
// Speed matters here: the search applies a recipe to every candidate, and the benchmark goal is
// quantize + prune at >= 0.5 x memcpy on 100 M weights. Unstructured pruning therefore selects
// its threshold from a sampled bracket (one read pass, which also records each row's max), and
// prune + quantize of one row is one AVX2 sweep while the row is in cache, in float with an exact
// double redo next to rounding ties. The out-of-place compress_weights skips the separate read
// pass: it sweeps at once and fixes the few weights inside the bracket afterwards.
// Every fast path equals the plain rule bit for bit (tests/compressors/weight_kernels_test.cpp
// checks them against a stable-sort / std::nearbyint reference).
#include <stdexcept>
#include <string>

#include "compressors/weight_kernels_internal.h"
#include "model/layer_table.h"

namespace compsearch::compressors {

namespace detail {

void check_size(std::span<const float> w, const WeightLayout& l) {
  if (static_cast<int64_t>(w.size()) != l.numel())
    throw std::invalid_argument("weight buffer has " + std::to_string(w.size()) +
                                " elements but its layout describes " + std::to_string(l.numel()));
}

}  // namespace detail

WeightLayout WeightLayout::dense(int64_t out_features, int64_t in_features, bool transposed) {
  WeightLayout l;
  l.out_channels = out_features;
  l.in_per_group = in_features;
  l.transposed = transposed;
  return l;
}

WeightLayout WeightLayout::conv(int64_t out_channels, int64_t in_per_group,
                                int64_t kernel_elements) {
  WeightLayout l;
  l.out_channels = out_channels;
  l.in_per_group = in_per_group;
  l.kernel_elements = kernel_elements;
  return l;
}

WeightLayout WeightLayout::from_layer(const model::LayerInfo& layer) {
  if (layer.op == "Conv") {
    int64_t k = 1;
    for (size_t i = 2; i < layer.weight_shape.size(); ++i) k *= layer.weight_shape[i];
    return conv(layer.weight_shape.at(0), layer.weight_shape.at(1), k);
  }
  if (layer.weight_shape.size() != 2)
    throw std::invalid_argument("layer " + layer.name + ": expected a 2-D weight for " + layer.op);
  if (layer.weight_transposed) return dense(layer.weight_shape[1], layer.weight_shape[0], true);
  return dense(layer.weight_shape[0], layer.weight_shape[1], false);
}

int64_t group_count(const WeightLayout& layout, const Granularity& g) {
  switch (g.kind) {
    case GranularityKind::kPerTensor:
      return 1;
    case GranularityKind::kPerChannel:
      return layout.out_channels;
    case GranularityKind::kGroup:
      return layout.out_channels * ((layout.row_length() + g.group_size - 1) / g.group_size);
  }
  return 1;
}

}  // namespace compsearch::compressors
