// Datasets: labelled image sets for evaluation and unlabelled ones for calibration.
//
// Sources: IDX files (gzip or plain, as MNIST/Fashion-MNIST ship them), NPY arrays (float32 or
// uint8, C order; labels int64/int32/uint8), and the built-in name `fashion-mnist` (Debian's
// dataset-fashion-mnist, pixels / 255). Preprocessing is x' = (x * scale - mean[c]) / std[c] per
// channel c (dim 0 of a sample).
//
// Dataset JSON spec (`--data FILE.json`; relative paths are relative to the JSON file):
//   {"format": "idx" | "npy",          required
//    "images": "path",                 required (IDX: ubyte [N, H, W] or [N, C, H, W]; NPY: [N,
//    ...]) "labels": "path",                 IDX: required; NPY: optional (unlabelled calibration
//    set) "scale": 0.00392156862745098,     default 1/255 for uint8 pixels, 1 for float32 "mean":
//    [0.5], "std": [0.5],      optional, one value per channel (or one for all) "shape": [1, 28,
//    28],             optional: the per-sample shape the model wants (same
//                                      element count, e.g. NPY [N, 784] -> [1, 28, 28]; an IDX
//                                      [N, H, W] file becomes [N, 1, H, W] by default)
//    "layout": "nchw" | "nhwc",        NPY only, default nchw: nhwc arrays are transposed
//    "limit": 1000}                    optional: only the first `limit` samples
// Unknown keys and bad values are errors naming the file, the key, the value and what is allowed.
#pragma once

#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "model/graph.h"
#include "model/tensor.h"

namespace compsearch::model {

struct Preprocessing {
  std::optional<double> scale;  // unset: 1/255 for uint8 sources, 1 for float32 sources
  std::vector<double> mean;     // empty, one value, or one per channel
  std::vector<double> std;
};

struct DatasetSpec {
  std::string format;  // "idx" or "npy"
  std::filesystem::path images;
  std::filesystem::path labels;  // empty: unlabelled
  Preprocessing preprocessing;
  Shape sample_shape;  // empty: as stored (IDX [H, W] samples get a channel dim of 1)
  std::string layout = "nchw";
  int64_t limit = -1;
  std::string source;  // where the spec came from, for error messages
};

struct Dataset {
  std::string name;             // the built-in name or the file it came from, for messages
  Shape sample_shape;           // per sample, e.g. [1, 28, 28]
  std::vector<float> images;    // size() * numel(sample_shape), preprocessed
  std::vector<int64_t> labels;  // size() entries, or empty for an unlabelled set

  int64_t size() const;
  bool labelled() const { return !labels.empty(); }
  // Samples [begin, begin + count) as one float tensor [count, sample_shape...].
  Tensor batch(int64_t begin, int64_t count) const;
};

// Parses the JSON spec above. `source` names it in errors; relative paths resolve against
// `base_dir`. Throws std::invalid_argument.
DatasetSpec dataset_spec_from_json(const nlohmann::json& j, const std::string& source,
                                   const std::filesystem::path& base_dir);

// `name_or_path` is `fashion-mnist` (split "train" or "test") or a dataset JSON file (split
// ignored). Throws std::runtime_error / std::invalid_argument naming the file and the problem.
Dataset load_dataset(const std::string& name_or_path, const std::string& split = "test");
Dataset load_dataset(const DatasetSpec& spec);

// Directory of the built-in Fashion-MNIST files: $COMPSEARCH_FASHION_MNIST_DIR or
// /usr/share/datasets/fashion-mnist.
std::filesystem::path fashion_mnist_dir();

// Raw readers. read_idx returns uint8 values widened in Tensor::i64 (dtype kUInt8);
// read_npy returns float32 data in f32, integer data in i64.
Tensor read_idx(const std::filesystem::path& path);
Tensor read_npy(const std::filesystem::path& path);
void write_npy(const Tensor& tensor, const std::filesystem::path& path);  // float32 or int64

// Throws std::invalid_argument when the dataset's samples do not fit the model's first input
// (naming both shapes).
void check_dataset_matches_model(const Dataset& data, const Graph& graph);

}  // namespace compsearch::model
