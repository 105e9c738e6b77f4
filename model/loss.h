// Losses on logits [N, C]: softmax cross-entropy and Hinton knowledge distillation.
//
// Both return the batch mean (PyTorch's reduction="mean" for cross-entropy, "batchmean" for the
// KL term) computed in double, and optionally write dL/d(student logits) (same shape, float32)
// for Trainer::backward().
#pragma once

#include <cstdint>
#include <span>

#include "model/tensor.h"

namespace compsearch::model {

// mean_n [ logsumexp(z_n) - z_n[y_n] ]. Throws std::invalid_argument when `logits` is not
// [N, C], labels.size() != N or a label is outside [0, C).
double cross_entropy(const Tensor& logits, std::span<const int64_t> labels, Tensor* grad = nullptr);

struct DistillationOptions {
  double temperature = 4.0;  // T > 0
  double alpha = 0.9;        // weight of the distillation term, in [0, 1]; 1 = label-free
};

// alpha * T^2 * KL(softmax(t/T) || softmax(s/T)) + (1 - alpha) * CE(s, y), KL summed over
// classes and averaged over the batch; exactly PyTorch's
//   alpha * T*T * F.kl_div(F.log_softmax(s/T, 1), F.softmax(t/T, 1), reduction="batchmean")
//   + (1 - alpha) * F.cross_entropy(s, y).
// `labels` may be empty only when alpha == 1. Throws std::invalid_argument on shape mismatch,
// T <= 0, alpha outside [0, 1] or missing labels.
double distillation_loss(const Tensor& student_logits, const Tensor& teacher_logits,
                         std::span<const int64_t> labels, const DistillationOptions& options,
                         Tensor* grad = nullptr);

// Samples whose arg-max logit (first index on ties) equals the label.
int64_t count_correct(const Tensor& logits, std::span<const int64_t> labels);

}  // namespace compsearch::model
