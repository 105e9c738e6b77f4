// Channel-pruning propagation (DESIGN.md rule 3): which layers read a producer layer's output
// channels as their own input channels, so that zeroing a producer channel lets them drop the
// matching inputs. The one definition used by compressors (exact dropped indices and sizes) and
// hardware_models (effective MACs and bytes per target).
//
// A zero channel reaches a consumer only through ops that keep an all-zero channel all-zero and
// keep channels on dim 1:
//   * Relu, MaxPool, AveragePool, GlobalAveragePool;
//   * Clip, only when 0 lies in [min, max] with constant bounds (attributes or initializer
//     inputs; a computed bound cannot be checked, so it stops propagation);
//   * Identity, and Dropout (an identity at inference, which is all this project runs);
//   * Flatten at axis 1 (or the negative axis naming dim 1) of a tensor whose dims after the
//     first are known: channel c becomes features [c·k, (c+1)·k) with k = the product of the dims
//     after the channel dim. Any other axis mixes channels into the batch dim: no propagation;
//   * Reshape only when it is a flatten at axis 1: input [N, C, d2, ...] with known C, d2, ...,
//     output of rank 2 whose second dim is C·d2·... (what PyTorch's x.view(x.size(0), -1)
//     exports). Any other reshape moves channels across dims: no propagation.
// Everything else (Add, Concat, BatchNormalization, Sigmoid, ...) stops it.
//
// The producer's channels must sit on dim 1: any Conv output, or a Gemm / MatMul output of rank 2.
// A consumer layer counts when the propagated value is its data input (input 0), Gemm has no
// transA, a Gemm / MatMul consumer reads a rank-2 value (features on dim 1 are its reduction), and
// its input channels / features are exactly the producer's output channels times k (so every
// propagated index is one of its inputs).
#pragma once

#include <cstdint>
#include <vector>

#include "model/graph.h"
#include "model/layer_table.h"

namespace compsearch::model {

// One consumer of a producer layer's output channels.
struct ChannelConsumer {
  int layer = -1;                  // index into the layer table
  int64_t inputs_per_channel = 1;  // producer channel c feeds consumer inputs [c·k, (c+1)·k)
};

// Whether `node` maps an all-zero channel of its input 0 to an all-zero channel of its output 0
// with the same channel index (Relu, pools, Clip with 0 in range, Identity, Dropout). Flatten
// and Reshape are not in this set: they renumber channels (see channel_consumers).
bool keeps_zero_channel(const Graph& graph, const Node& node);

// The layers whose input channels (Conv, over all groups) or input features (Gemm / MatMul) are
// layer `producer`'s output channels, in the order the graph reaches them. `table` must be the
// layer table of `graph`. Empty when `producer` is out of range.
std::vector<ChannelConsumer> channel_consumers(const Graph& graph, const LayerTable& table,
                                               int producer);

// For every layer of `table`, the layer whose output channels are its input channels (the inverse
// of channel_consumers: each layer has at most one), or -1.
std::vector<int> channel_sources(const Graph& graph, const LayerTable& table);

}  // namespace compsearch::model
