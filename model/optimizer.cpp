// Optimizers, learning-rate schedules and the seeded epoch shuffle (model/optimizer.h).
#include "model/optimizer.h"

#include <Eigen/Core>
#include <cmath>
#include <numbers>
#include <stdexcept>
#include <string>

namespace compsearch::model {

namespace {

constexpr uint64_t kGolden = 0x9E3779B97F4A7C15ULL;

void fail_all(const std::vector<std::string>& problems, const char* what) {
  if (problems.empty()) return;
  std::string msg = std::string(what) + ": ";
  for (size_t i = 0; i < problems.size(); ++i) msg += (i ? "; " : "") + problems[i];
  throw std::invalid_argument(msg);
}

std::string num(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

}  // namespace

void OptimizerOptions::validate() const {
  std::vector<std::string> p;
  if (!(momentum >= 0.0 && momentum < 1.0))
    p.push_back("momentum " + num(momentum) + " must be in [0, 1)");
  if (!(dampening >= 0.0 && dampening < 1.0))
    p.push_back("dampening " + num(dampening) + " must be in [0, 1)");
  if (nesterov && (momentum <= 0.0 || dampening != 0.0)) {
    p.push_back("nesterov needs momentum > 0 and dampening 0");
  }
  if (!(weight_decay >= 0.0) || !std::isfinite(weight_decay)) {
    p.push_back("weight_decay " + num(weight_decay) + " must be >= 0");
  }
  if (!(beta1 >= 0.0 && beta1 < 1.0)) p.push_back("beta1 " + num(beta1) + " must be in [0, 1)");
  if (!(beta2 >= 0.0 && beta2 < 1.0)) p.push_back("beta2 " + num(beta2) + " must be in [0, 1)");
  if (!(eps > 0.0)) p.push_back("eps " + num(eps) + " must be > 0");
  if (kind != Kind::kSgd && (momentum != 0.0 || nesterov || dampening != 0.0)) {
    p.push_back("momentum, dampening and nesterov are SGD options, not " +
                optimizer_kind_to_string(kind));
  }
  fail_all(p, "optimizer options");
}

OptimizerOptions::Kind optimizer_kind_from_string(const std::string& s) {
  if (s == "sgd") return OptimizerOptions::Kind::kSgd;
  if (s == "adam") return OptimizerOptions::Kind::kAdam;
  if (s == "adamw") return OptimizerOptions::Kind::kAdamW;
  throw std::invalid_argument("optimizer '" + s + "' is not one of sgd, adam, adamw");
}

std::string optimizer_kind_to_string(OptimizerOptions::Kind kind) {
  switch (kind) {
    case OptimizerOptions::Kind::kSgd:
      return "sgd";
    case OptimizerOptions::Kind::kAdam:
      return "adam";
    case OptimizerOptions::Kind::kAdamW:
      return "adamw";
  }
  return "?";
}

Optimizer::Optimizer(OptimizerOptions options) : options_(options) { options_.validate(); }

void Optimizer::reset() {
  steps_ = 0;
  m_.clear();
  v_.clear();
}

void Optimizer::step(std::span<TrainableParameter> params, double lr) {
  if (!(lr >= 0.0) || !std::isfinite(lr)) {
    throw std::invalid_argument("learning rate " + num(lr) + " must be a finite number >= 0");
  }
  const bool adam = options_.kind != OptimizerOptions::Kind::kSgd;
  if (steps_ == 0 && m_.empty()) {
    m_.resize(params.size());
    if (adam) v_.resize(params.size());
    for (size_t i = 0; i < params.size(); ++i) {
      m_[i].assign(params[i].value.f32.size(), 0.0f);
      if (adam) v_[i].assign(params[i].value.f32.size(), 0.0f);
    }
  }
  if (m_.size() != params.size()) {
    throw std::invalid_argument("optimizer state has " + std::to_string(m_.size()) +
                                " parameters, step got " + std::to_string(params.size()));
  }
  for (size_t i = 0; i < params.size(); ++i) {
    if (m_[i].size() != params[i].value.f32.size() ||
        params[i].grad.f32.size() != params[i].value.f32.size()) {
      throw std::invalid_argument("parameter '" + params[i].name +
                                  "' changed size or has no gradient");
    }
  }
  ++steps_;
  const float flr = static_cast<float>(lr);
  const float wd = static_cast<float>(options_.weight_decay);
  if (!adam) {
    const float mom = static_cast<float>(options_.momentum);
    const float damp1 = static_cast<float>(1.0 - options_.dampening);
    const bool nesterov = options_.nesterov;
    for (size_t i = 0; i < params.size(); ++i) {
      const Eigen::Index n = static_cast<Eigen::Index>(m_[i].size());
      Eigen::Map<Eigen::ArrayXf> p(params[i].value.f32.data(), n), buf(m_[i].data(), n);
      Eigen::Map<const Eigen::ArrayXf> g0(params[i].grad.f32.data(), n);
      // g + 0 * p == g for finite p, so one expression serves with and without weight decay.
      if (mom == 0.0f) {
        p = p - flr * (g0 + wd * p);
      } else {
        if (steps_ == 1) {
          buf = g0 + wd * p;
        } else {
          buf = mom * buf + damp1 * (g0 + wd * p);
        }
        if (nesterov) {
          p = p - flr * ((g0 + wd * p) + mom * buf);
        } else {
          p = p - flr * buf;
        }
      }
    }
    return;
  }
  const bool decoupled = options_.kind == OptimizerOptions::Kind::kAdamW;
  const double b1 = options_.beta1, b2 = options_.beta2;
  const double bc1 = 1.0 - std::pow(b1, double(steps_));
  const double bc2 = 1.0 - std::pow(b2, double(steps_));
  // PyTorch (_single_tensor_adam): step_size = lr / bc1; denom = sqrt(v) / sqrt(bc2) + eps.
  const float step_size = static_cast<float>(lr / bc1);
  const float sqrt_bc2 = static_cast<float>(std::sqrt(bc2));
  const float fb1 = static_cast<float>(b1), fb2 = static_cast<float>(b2);
  const float eps = static_cast<float>(options_.eps);
  const float c1 = static_cast<float>(1.0 - b1), c2 = static_cast<float>(1.0 - b2);
  const float decay = static_cast<float>(1.0 - lr * options_.weight_decay);
  // AdamW decays first and adds no L2 term; Adam the reverse (p * 1 and g + 0 * p are exact).
  const float l2 = decoupled ? 0.0f : wd;
  for (size_t i = 0; i < params.size(); ++i) {
    const Eigen::Index n = static_cast<Eigen::Index>(m_[i].size());
    Eigen::Map<Eigen::ArrayXf> p(params[i].value.f32.data(), n), m(m_[i].data(), n),
        v(v_[i].data(), n);
    Eigen::Map<const Eigen::ArrayXf> g0(params[i].grad.f32.data(), n);
    if (decoupled) p *= decay;
    // torch 1.13: exp_avg.mul_(b1).add_(g, alpha=1-b1); exp_avg_sq.mul_(b2).addcmul_(g, g,
    // value=1-b2); p.addcdiv_(exp_avg, exp_avg_sq.sqrt() / sqrt(bc2) + eps, value=-lr/bc1).
    m = m * fb1 + c1 * (g0 + l2 * p);
    v = v * fb2 + c2 * ((g0 + l2 * p) * (g0 + l2 * p));
    p = p - step_size * (m / (v.sqrt() / sqrt_bc2 + eps));
  }
}

void LrSchedule::validate() const {
  std::vector<std::string> p;
  if (!(base_lr >= 0.0) || !std::isfinite(base_lr))
    p.push_back("base_lr " + num(base_lr) + " must be >= 0");
  if (warmup_steps < 0)
    p.push_back("warmup_steps " + std::to_string(warmup_steps) + " must be >= 0");
  if (kind == Kind::kStep) {
    if (step_size < 1) p.push_back("step_size " + std::to_string(step_size) + " must be >= 1");
    if (!(gamma > 0.0 && gamma <= 1.0)) p.push_back("gamma " + num(gamma) + " must be in (0, 1]");
  }
  if (kind == Kind::kCosine) {
    if (total_steps <= warmup_steps) {
      p.push_back("cosine needs total_steps (" + std::to_string(total_steps) +
                  ") > warmup_steps (" + std::to_string(warmup_steps) + ")");
    }
    if (!(min_lr >= 0.0 && min_lr <= base_lr))
      p.push_back("min_lr " + num(min_lr) + " must be in [0, base_lr]");
  }
  fail_all(p, "learning-rate schedule");
}

double LrSchedule::lr_at(int64_t step) const {
  if (step < 0) step = 0;
  if (step < warmup_steps) return base_lr * double(step + 1) / double(warmup_steps);
  const int64_t t = step - warmup_steps;
  switch (kind) {
    case Kind::kConstant:
      return base_lr;
    case Kind::kStep:
      return base_lr * std::pow(gamma, double(t / std::max<int64_t>(1, step_size)));
    case Kind::kCosine: {
      const int64_t span = std::max<int64_t>(1, total_steps - warmup_steps);
      const double frac = double(std::min(t, span)) / double(span);
      return min_lr + (base_lr - min_lr) * (1.0 + std::cos(std::numbers::pi * frac)) / 2.0;
    }
  }
  return base_lr;
}

LrSchedule::Kind schedule_kind_from_string(const std::string& s) {
  if (s == "constant") return LrSchedule::Kind::kConstant;
  if (s == "step") return LrSchedule::Kind::kStep;
  if (s == "cosine") return LrSchedule::Kind::kCosine;
  throw std::invalid_argument("schedule '" + s + "' is not one of constant, step, cosine");
}

std::string schedule_kind_to_string(LrSchedule::Kind kind) {
  switch (kind) {
    case LrSchedule::Kind::kConstant:
      return "constant";
    case LrSchedule::Kind::kStep:
      return "step";
    case LrSchedule::Kind::kCosine:
      return "cosine";
  }
  return "?";
}

uint64_t SplitMix64::next() {
  state += kGolden;
  uint64_t z = state;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

std::vector<int64_t> epoch_permutation(int64_t n, uint64_t seed, int64_t epoch) {
  if (n < 0) throw std::invalid_argument("epoch_permutation: n " + std::to_string(n) + " < 0");
  std::vector<int64_t> perm(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) perm[i] = i;
  SplitMix64 rng(seed ^ (static_cast<uint64_t>(epoch) * kGolden));
  for (int64_t i = n - 1; i >= 1; --i) {
    const int64_t j = static_cast<int64_t>(rng.next() % static_cast<uint64_t>(i + 1));
    std::swap(perm[i], perm[j]);
  }
  return perm;
}

}  // namespace compsearch::model
