// Exporting a compressed model in formats deployment pipelines read:
//  - onnx-qdq: int8 weight initializers + DequantizeLinear for layers of <= 8 bits (per-channel
//    axis where the granularity is per_channel; group:G layers dequantize with scale 1 and a Mul
//    by the per-element scales, since blocked DequantizeLinear needs opset 21), and
//    QuantizeLinear / DequantizeLinear pairs (uint8; a Clip first for 4 bits) or a float16 Cast
//    pair on quantized activations. Opset raised to 13 where lower (per-axis DequantizeLinear).
//  - onnx: the fake-quantized float weights in the original graph (activation quantization is not
//    represented: the executor has no Round op to express it).
//  - safetensors: the integer weights (I8), their scales (F64, so q * scale reproduces the
//    in-memory weights bit for bit), every other float initializer (F32; F16 for 16-bit layers),
//    and the recipe plus the layer settings as metadata.
#pragma once

#include <filesystem>
#include <string>

#include "compressors/apply.h"
#include "model/graph.h"

namespace compsearch::compressors {

enum class ExportFormat { kOnnxQdq, kOnnx, kSafetensors };

ExportFormat export_format_from_string(const std::string& s);  // throws std::invalid_argument
std::string export_format_to_string(ExportFormat f);

// The QDQ graph itself (for tests and inspection). `cm` must come from apply_recipe with
// keep_quantized and be calibrated when it has 4/8-bit activations.
model::Graph make_qdq_graph(const CompressedModel& cm);

void export_model(const CompressedModel& cm, ExportFormat format, const std::filesystem::path& out);

// Reads a safetensors export back into a copy of `original` (the uncompressed graph it came from):
// every quantized weight becomes q * scale (as float), every other stored tensor replaces the
// initializer of the same name. Throws std::runtime_error naming the file and the problem.
model::Graph load_safetensors_weights(const model::Graph& original,
                                      const std::filesystem::path& path);

}  // namespace compsearch::compressors
