// Softmax cross-entropy and Hinton distillation losses (model/loss.h). Per-sample terms are
// computed in double with the max-subtracted log-sum-exp and summed in sample order, so the loss
// does not depend on the thread count.
#include "model/loss.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

namespace compsearch::model {

namespace {

void check_logits(const Tensor& logits, const char* what) {
  if (logits.dtype != DType::kFloat32 || logits.shape.size() != 2 ||
      logits.f32.size() != static_cast<size_t>(shape_numel(logits.shape))) {
    throw std::invalid_argument(std::string(what) + " must be a float32 tensor [N, C], got " +
                                shape_to_string(logits.shape));
  }
}

void check_labels(std::span<const int64_t> labels, int64_t n, int64_t c) {
  if (static_cast<int64_t>(labels.size()) != n) {
    throw std::invalid_argument("got " + std::to_string(labels.size()) + " labels for a batch of " +
                                std::to_string(n));
  }
  for (size_t i = 0; i < labels.size(); ++i) {
    if (labels[i] < 0 || labels[i] >= c) {
      throw std::invalid_argument("label " + std::to_string(labels[i]) + " of sample " +
                                  std::to_string(i) + " is outside [0, " + std::to_string(c) + ")");
    }
  }
}

// p = softmax(z * inv_t) in double; returns log(sum exp(z*inv_t - max)) + max (the log-sum-exp).
double softmax_row(const float* z, int64_t c, double inv_t, double* p) {
  double mx = -INFINITY;
  for (int64_t j = 0; j < c; ++j) mx = std::max(mx, double(z[j]) * inv_t);
  double sum = 0.0;
  for (int64_t j = 0; j < c; ++j) {
    p[j] = std::exp(double(z[j]) * inv_t - mx);
    sum += p[j];
  }
  for (int64_t j = 0; j < c; ++j) p[j] /= sum;
  return std::log(sum) + mx;
}

void prepare_grad(Tensor* grad, const Shape& shape) {
  if (!grad) return;
  grad->dtype = DType::kFloat32;
  grad->shape = shape;
  grad->i64.clear();
  grad->f32.resize(static_cast<size_t>(shape_numel(shape)));
}

}  // namespace

double cross_entropy(const Tensor& logits, std::span<const int64_t> labels, Tensor* grad) {
  check_logits(logits, "logits");
  const int64_t n = logits.shape[0], c = logits.shape[1];
  check_labels(labels, n, c);
  prepare_grad(grad, logits.shape);
  std::vector<double> p(static_cast<size_t>(c));
  double total = 0.0;
  const double inv_n = n > 0 ? 1.0 / double(n) : 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const float* z = logits.f32.data() + i * c;
    const double lse = softmax_row(z, c, 1.0, p.data());
    total += lse - double(z[labels[i]]);
    if (grad) {
      float* g = grad->f32.data() + i * c;
      for (int64_t j = 0; j < c; ++j) {
        g[j] = static_cast<float>((p[j] - (j == labels[i] ? 1.0 : 0.0)) * inv_n);
      }
    }
  }
  return total * inv_n;
}

double distillation_loss(const Tensor& student_logits, const Tensor& teacher_logits,
                         std::span<const int64_t> labels, const DistillationOptions& options,
                         Tensor* grad) {
  check_logits(student_logits, "student logits");
  check_logits(teacher_logits, "teacher logits");
  if (student_logits.shape != teacher_logits.shape) {
    throw std::invalid_argument("student logits " + shape_to_string(student_logits.shape) +
                                " and teacher logits " + shape_to_string(teacher_logits.shape) +
                                " differ in shape");
  }
  const double t = options.temperature, alpha = options.alpha;
  if (!(t > 0.0) || !std::isfinite(t)) {
    throw std::invalid_argument("distillation temperature " + std::to_string(t) +
                                " must be a finite number > 0");
  }
  if (!(alpha >= 0.0 && alpha <= 1.0)) {
    throw std::invalid_argument("distillation alpha " + std::to_string(alpha) +
                                " must be in [0, 1]");
  }
  const int64_t n = student_logits.shape[0], c = student_logits.shape[1];
  const bool use_labels = alpha < 1.0;
  if (use_labels) {
    if (labels.empty()) {
      throw std::invalid_argument("distillation with alpha " + std::to_string(alpha) +
                                  " < 1 needs labels (alpha = 1 is the label-free mode)");
    }
    check_labels(labels, n, c);
  }
  prepare_grad(grad, student_logits.shape);
  const double inv_t = 1.0 / t, inv_n = n > 0 ? 1.0 / double(n) : 0.0;
  std::vector<double> ps(static_cast<size_t>(c)), pt(static_cast<size_t>(c)),
      p1(static_cast<size_t>(c));
  double kl_total = 0.0, ce_total = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const float* s = student_logits.f32.data() + i * c;
    const float* tz = teacher_logits.f32.data() + i * c;
    const double lse_s = softmax_row(s, c, inv_t, ps.data());
    const double lse_t = softmax_row(tz, c, inv_t, pt.data());
    double kl = 0.0;
    for (int64_t j = 0; j < c; ++j) {
      if (pt[j] > 0.0) {
        const double log_pt = double(tz[j]) * inv_t - lse_t;
        const double log_ps = double(s[j]) * inv_t - lse_s;
        kl += pt[j] * (log_pt - log_ps);
      }
    }
    kl_total += kl;
    if (use_labels) {
      const double lse1 = softmax_row(s, c, 1.0, p1.data());
      ce_total += lse1 - double(s[labels[i]]);
    }
    if (grad) {
      float* g = grad->f32.data() + i * c;
      for (int64_t j = 0; j < c; ++j) {
        // d/ds [T^2 KL] = T (ps - pt); d/ds CE = p1 - onehot.
        double v = alpha * t * (ps[j] - pt[j]);
        if (use_labels) v += (1.0 - alpha) * (p1[j] - (j == labels[i] ? 1.0 : 0.0));
        g[j] = static_cast<float>(v * inv_n);
      }
    }
  }
  double loss = alpha * t * t * kl_total * inv_n;
  if (use_labels) loss += (1.0 - alpha) * ce_total * inv_n;
  return loss;
}

int64_t count_correct(const Tensor& logits, std::span<const int64_t> labels) {
  check_logits(logits, "logits");
  const int64_t n = logits.shape[0], c = logits.shape[1];
  if (static_cast<int64_t>(labels.size()) != n) check_labels(labels, n, c);
  int64_t correct = 0;
  for (int64_t i = 0; i < n; ++i) {
    const float* z = logits.f32.data() + i * c;
    const int64_t arg = std::max_element(z, z + c) - z;
    correct += arg == labels[i];
  }
  return correct;
}

}  // namespace compsearch::model
