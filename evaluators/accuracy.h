// Accuracy and label-free fidelity of a (compressed) model on a dataset: top-1 accuracy, top-1
// agreement with the uncompressed model and the mean KL divergence between their output
// distributions. Activation fake quantization runs inside the executor through its
// LayerInputHook, with parameters from a calibration pass.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <vector>

#include "compressors/activation_quant.h"
#include "compressors/apply.h"
#include "model/dataset.h"
#include "model/graph.h"
#include "model/layer_table.h"

namespace compsearch::evaluators {

// The one options struct of every evaluation path (`evaluate`, `evaluate --recipe`, the search's
// evaluators, `train`'s held-out evaluation).
struct EvaluationOptions {
  int64_t batch = 256;
  int64_t limit = -1;  // evaluate only the first `limit` samples (-1: all; 0 and < -1 rejected)
  int threads = 0;     // executor threads (0: OpenMP default)
  // Candidates with layers of <= 8-bit weights and 4/8-bit activations run as their QDQ graph on
  // integer kernels (model::ExecutorOptions::int8) where the CPU has them
  // (model::int8_kernels_available); the results equal the fake-quantized float path up to float
  // rounding of the accumulation (docs/compression.md). Off: always the float path.
  bool int8 = false;
};

// Whether `options.int8` makes `recipe` run on integer kernels on this machine.
bool runs_int8(const compressors::Recipe& recipe, const model::LayerTable& table,
               const EvaluationOptions& options);

// Throws std::invalid_argument for batch < 1 or a limit that is neither -1 nor >= 1.
void check_evaluation_options(const EvaluationOptions& options);

// Throws std::invalid_argument naming the dataset and the sample when, among the first `samples`,
// a label is negative or >= `classes` (it could never match the model's prediction) or an input
// value is NaN or infinite (the model's output would be NaN: 0% accuracy without a word).
void check_evaluation_data(const model::Dataset& data, int64_t classes, int64_t samples);

struct EvaluationResult {
  double accuracy = 0.0;   // top-1 against the labels (NaN for an unlabelled set)
  double agreement = 1.0;  // fraction of samples where the top-1 equals the reference's
  double kl = 0.0;  // mean over samples of KL(softmax(reference) || softmax(candidate)), nats
  int64_t samples = 0;
};

// The model's first output for every sample, [samples, classes] row-major (`classes` is set).
// `activations` (may be null) fake-quantizes Conv/Gemm/MatMul inputs, keyed by node index.
std::vector<float> run_model(
    const model::Graph& graph, const model::Dataset& data,
    const std::map<size_t, compressors::ActivationQuantParams>* activations,
    const EvaluationOptions& options, int64_t& classes);

// Accuracy, agreement and KL from two output matrices (`reference` may equal `candidate`).
// Outputs are treated as logits (softmax is applied for KL; top-1 is the arg max, lowest index on
// ties). Throws std::invalid_argument when sizes disagree.
EvaluationResult compare_outputs(const std::vector<float>& reference,
                                 const std::vector<float>& candidate, int64_t classes,
                                 const std::vector<int64_t>& labels);

// Fills cm.activations for every layer with a_bits 4 or 8: runs the compressed graph on the first
// `samples` images of `calibration` with an observing hook, and derives per-tensor ranges by the
// recipe's activation_calibration method. Layers with a_bits 16 get half rounding.
void calibrate_activations(compressors::CompressedModel& cm, const model::Dataset& calibration,
                           int64_t samples = 512, const EvaluationOptions& options = {});

// Activation statistics of the UNCOMPRESSED model: one observer per layer (by layer name) over the
// first `samples` calibration images. A search observes once and derives every candidate's
// activation ranges from them (calibrate_from_reference) instead of re-running the candidate on
// the calibration set: the ranges are then those of the uncompressed model's layer inputs.
// The parameters derived from an observer (percentile and MSE ranges cost a pass over the kept
// samples) are memoized per layer, bits and method; thread-safe.
class ReferenceActivations {
 public:
  std::map<std::string, compressors::ActivationObserver> observers;  // by layer name
  // Throws std::invalid_argument for a layer without statistics.
  compressors::ActivationQuantParams params(const std::string& layer, int bits,
                                            compressors::ActivationCalibration method,
                                            double percentile) const;

 private:
  struct Cache {
    std::mutex mu;
    std::map<std::tuple<std::string, int, int, double>, compressors::ActivationQuantParams> params;
  };
  std::shared_ptr<Cache> cache_ = std::make_shared<Cache>();  // copies share it
};

ReferenceActivations observe_reference_activations(const model::Graph& graph,
                                                   const model::LayerTable& table,
                                                   const model::Dataset& calibration,
                                                   int64_t samples = 512,
                                                   const EvaluationOptions& options = {});

// Fills cm.activations from reference statistics (no forward pass); same bit/method rules as
// calibrate_activations.
void calibrate_from_reference(compressors::CompressedModel& cm,
                              const ReferenceActivations& reference);

// Evaluates the uncompressed model alone (agreement 1, kl 0).
EvaluationResult evaluate_model(const model::Graph& graph, const model::Dataset& data,
                                const EvaluationOptions& options = {});

// Evaluates a compressed model against its uncompressed reference on the same samples.
// `reference_outputs` (optional) skips re-running the reference when it was run already.
EvaluationResult evaluate_compressed(const model::Graph& reference,
                                     const compressors::CompressedModel& cm,
                                     const model::Dataset& data,
                                     const EvaluationOptions& options = {},
                                     const std::vector<float>* reference_outputs = nullptr);

}  // namespace compsearch::evaluators
