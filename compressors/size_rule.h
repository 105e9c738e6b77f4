// DESIGN.md rule 9 (stored size) from counts: the one definition that compressors' exact
// accounting (layer_cost, per pruned channel sets) and the hardware models' fast estimate (per
// kept-channel fractions) both use, so `evaluate` and `estimate` never disagree on a layer's size.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "compressors/recipe.h"

namespace compsearch::compressors {

struct StoredBits {
  double stored_weights = 0;  // kept dense weights minus unstructured / N:M zeros
  double weight = 0;          // w_bits per stored weight
  double scale = 0;           // 16 per quantization group (the fp16 scale, or alpha for 1 bit)
  double index = 0;           // unstructured: min(bitmap, 16 per non-zero); N:M: 2 per kept
  double bias = 0;            // fp32 bias of the kept output channels
  double total() const { return weight + scale + index + bias; }
};

// `kept_weights`: dense weights left once pruned output channels and dropped inputs go;
// `kept_out`: output channels left; `reduction_length`: the full row length the scales were
// computed on (groups are counted over full rows, as the quantizer sees them). Counts are whole
// numbers held in doubles (exact below 2^53). Unstructured pruning stores kept - floor(ratio *
// kept) weights and pays index overhead only when it removes at least one weight; N:M stores
// kept * N / M (eligibility makes kept a multiple of M).
inline StoredBits stored_bits(const LayerSetting& s, double kept_weights, double kept_out,
                              int64_t reduction_length, bool has_bias) {
  StoredBits b;
  double removed = 0;
  if (s.prune.kind == PruneKind::kUnstructured) {
    removed = std::floor(s.prune.ratio * kept_weights);
  } else if (s.prune.kind == PruneKind::kNM && s.prune.m > 0) {
    removed = kept_weights - std::floor(kept_weights * s.prune.n / s.prune.m);
  }
  b.stored_weights = kept_weights - removed;
  b.weight = static_cast<double>(s.w_bits) * b.stored_weights;
  if (s.w_bits <= 8) {
    double groups = 1;
    if (s.granularity.kind == GranularityKind::kPerChannel) groups = kept_out;
    if (s.granularity.kind == GranularityKind::kGroup && s.granularity.group_size > 0)
      groups =
          kept_out * std::ceil(static_cast<double>(reduction_length) / s.granularity.group_size);
    b.scale = 16 * groups;
  }
  if (s.prune.kind == PruneKind::kUnstructured && removed > 0) {
    b.index = std::min(kept_weights, 16 * b.stored_weights);
  } else if (s.prune.kind == PruneKind::kNM) {
    b.index = 2 * b.stored_weights;
  }
  if (has_bias) b.bias = 32 * kept_out;
  return b;
}

}  // namespace compsearch::compressors
