// The Llama decoder forward pass (Eigen matrix products, OpenMP over heads) and perplexity.
#include "llm/decoder.h"

#include <omp.h>

#include <Eigen/Core>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <stdexcept>

#include "common/check.h"
#include "model/dataset.h"

namespace compsearch::llm {

namespace {

using Matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using ConstMap = Eigen::Map<const Matrix>;

ConstMap weight(const LlmTensor& t) {
  COMPSEARCH_CHECK(t.is_matrix() && static_cast<int64_t>(t.data.size()) == t.params(),
                   "tensor " + t.name + " has no data (loaded without weights?)");
  return ConstMap(t.data.data(), t.shape[0], t.shape[1]);
}

// y = x W^T, x [T, in], W [out, in]; the observer sees x first.
Matrix project(const Matrix& x, const LlmTensor& w, const MatmulObserver& observer) {
  if (observer) observer(w.name, x.data(), x.rows(), x.cols());
  return x * weight(w).transpose();
}

// x / sqrt(mean(x^2) + eps) * gamma, per row.
Matrix rms_norm(const Matrix& x, const LlmTensor& gamma, double eps) {
  COMPSEARCH_CHECK(static_cast<int64_t>(gamma.data.size()) == x.cols(), "norm " + gamma.name);
  Matrix out(x.rows(), x.cols());
  const Eigen::Map<const Eigen::RowVectorXf> g(gamma.data.data(), x.cols());
  for (Eigen::Index r = 0; r < x.rows(); ++r) {
    const float ms = x.row(r).squaredNorm() / static_cast<float>(x.cols());
    const float scale = 1.0f / std::sqrt(ms + static_cast<float>(eps));
    out.row(r) = (x.row(r) * scale).cwiseProduct(g);
  }
  return out;
}

// cos/sin tables [T, head_dim / 2] for adjacent-pair RoPE.
struct Rope {
  Matrix cos, sin;
};

Rope rope_tables(int64_t tokens, int64_t head_dim, double theta) {
  Rope r{Matrix(tokens, head_dim / 2), Matrix(tokens, head_dim / 2)};
  for (int64_t i = 0; i < head_dim / 2; ++i) {
    const double freq =
        std::pow(theta, -2.0 * static_cast<double>(i) / static_cast<double>(head_dim));
    for (int64_t p = 0; p < tokens; ++p) {
      const double a = static_cast<double>(p) * freq;
      r.cos(p, i) = static_cast<float>(std::cos(a));
      r.sin(p, i) = static_cast<float>(std::sin(a));
    }
  }
  return r;
}

void apply_rope(Matrix& x, int64_t heads, int64_t head_dim, const Rope& rope) {
  for (Eigen::Index p = 0; p < x.rows(); ++p) {
    float* row = x.row(p).data();
    for (int64_t h = 0; h < heads; ++h) {
      float* v = row + h * head_dim;
      for (int64_t i = 0; i < head_dim / 2; ++i) {
        const float c = rope.cos(p, i), s = rope.sin(p, i);
        const float x0 = v[2 * i], x1 = v[2 * i + 1];
        v[2 * i] = x0 * c - x1 * s;
        v[2 * i + 1] = x0 * s + x1 * c;
      }
    }
  }
}

// Causal grouped-query attention: q [T, heads*hd], k/v [T, kv*hd] -> [T, heads*hd].
Matrix attention(const Matrix& q, const Matrix& k, const Matrix& v, const LlmConfig& c) {
  const int64_t t = q.rows(), hd = c.head_dim, group = c.heads / c.kv_heads;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  Matrix out(t, c.heads * hd);
#pragma omp parallel for schedule(static)
  for (int64_t h = 0; h < c.heads; ++h) {
    const int64_t kvh = h / group;
    const Matrix qh = q.middleCols(h * hd, hd);
    const Matrix kh = k.middleCols(kvh * hd, hd);
    const Matrix vh = v.middleCols(kvh * hd, hd);
    Matrix scores = (qh * kh.transpose()) * scale;  // [T, T]
    for (int64_t i = 0; i < t; ++i) {
      const float mx = scores.row(i).head(i + 1).maxCoeff();
      float sum = 0.0f;
      for (int64_t j = 0; j <= i; ++j) {
        scores(i, j) = std::exp(scores(i, j) - mx);
        sum += scores(i, j);
      }
      scores.row(i).head(i + 1) /= sum;
      scores.row(i).tail(t - i - 1).setZero();
    }
    out.middleCols(h * hd, hd) = scores * vh;
  }
  return out;
}

}  // namespace

std::vector<float> decoder_logits(const LlmModel& model, std::span<const int32_t> tokens,
                                  const MatmulObserver& observer) {
  const LlmConfig& c = model.config;
  if (tokens.empty()) throw std::invalid_argument("decoder_logits: empty token window");
  const int64_t t = static_cast<int64_t>(tokens.size());
  const LlmTensor& embd = model.at("token_embd");
  const ConstMap e = weight(embd);
  Matrix x(t, c.hidden);
  for (int64_t p = 0; p < t; ++p) {
    if (tokens[p] < 0 || tokens[p] >= c.vocab) {
      throw std::invalid_argument("token " + std::to_string(tokens[p]) + " at position " +
                                  std::to_string(p) + " is outside the vocabulary [0, " +
                                  std::to_string(c.vocab) + ")");
    }
    x.row(p) = e.row(tokens[p]);
  }
  const Rope rope = rope_tables(t, c.head_dim, c.rope_theta);
  for (int64_t l = 0; l < c.layers; ++l) {
    const std::string b = "blk." + std::to_string(l) + ".";
    Matrix n = rms_norm(x, model.at(b + "attn_norm"), c.rms_eps);
    Matrix q = project(n, model.at(b + "attn_q"), observer);
    Matrix k = project(n, model.at(b + "attn_k"), observer);
    const Matrix v = project(n, model.at(b + "attn_v"), observer);
    apply_rope(q, c.heads, c.head_dim, rope);
    apply_rope(k, c.kv_heads, c.head_dim, rope);
    x += project(attention(q, k, v, c), model.at(b + "attn_output"), observer);
    n = rms_norm(x, model.at(b + "ffn_norm"), c.rms_eps);
    Matrix gate = project(n, model.at(b + "ffn_gate"), observer);
    const Matrix up = project(n, model.at(b + "ffn_up"), observer);
    gate = gate.array() / (1.0f + (-gate.array()).exp()) * up.array();  // silu(gate) * up
    x += project(gate, model.at(b + "ffn_down"), observer);
  }
  const Matrix n = rms_norm(x, model.at("output_norm"), c.rms_eps);
  const Matrix logits = project(n, c.tied_embeddings ? embd : model.at("output"), observer);
  return {logits.data(), logits.data() + logits.size()};
}

WindowPlan plan_windows(int64_t n_tokens, int64_t context, int64_t max_windows) {
  if (context < 2) {
    throw std::invalid_argument("context must be >= 2 tokens, got " + std::to_string(context));
  }
  if (n_tokens < context) {
    throw std::invalid_argument("perplexity over windows of " + std::to_string(context) +
                                " tokens needs at least that many, got " +
                                std::to_string(n_tokens));
  }
  WindowPlan plan;
  plan.context = context;
  plan.windows = n_tokens / context;
  if (max_windows > 0) plan.windows = std::min(plan.windows, max_windows);
  return plan;
}

OmpThreadCap::OmpThreadCap(int n) : saved_(omp_get_max_threads()) {
  if (n > 0) omp_set_num_threads(n);
}
OmpThreadCap::~OmpThreadCap() { omp_set_num_threads(saved_); }

double for_each_window(
    const LlmModel& model, std::span<const int32_t> tokens, const WindowPlan& plan, int threads,
    const std::function<void(int64_t, std::span<const int32_t>, const std::vector<float>&)>& fn,
    const MatmulObserver& observer) {
  COMPSEARCH_CHECK(plan.windows * plan.context <= static_cast<int64_t>(tokens.size()),
                   "window plan longer than the tokens");
  const OmpThreadCap cap(threads);
  const auto t0 = std::chrono::steady_clock::now();
  for (int64_t w = 0; w < plan.windows; ++w) {
    const auto window =
        tokens.subspan(static_cast<size_t>(w * plan.context), static_cast<size_t>(plan.context));
    fn(w, window, decoder_logits(model, window, observer));
  }
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

double token_nll(const float* row, int64_t vocab, int32_t token) {
  const float mx = *std::max_element(row, row + vocab);
  double sum = 0.0;
  for (int64_t v = 0; v < vocab; ++v) sum += std::exp(static_cast<double>(row[v] - mx));
  return std::log(sum) + mx - row[token];
}

PerplexityResult evaluate_perplexity(const LlmModel& model, std::span<const int32_t> tokens,
                                     int64_t context, int64_t max_windows, int threads) {
  const WindowPlan plan = plan_windows(static_cast<int64_t>(tokens.size()), context, max_windows);
  PerplexityResult r;
  r.context = context;
  r.windows = plan.windows;
  const int64_t vocab = model.config.vocab;
  double nll = 0.0;
  r.seconds = for_each_window(
      model, tokens, plan, threads,
      [&](int64_t, std::span<const int32_t> window, const std::vector<float>& logits) {
        for (int64_t p = plan.first(); p < context - 1; ++p) {
          nll += token_nll(logits.data() + p * vocab, vocab, window[p + 1]);
          ++r.tokens_scored;
        }
      });
  r.mean_nll = nll / static_cast<double>(r.tokens_scored);
  r.perplexity = std::exp(r.mean_nll);
  r.tokens_per_second = r.seconds > 0 ? static_cast<double>(r.windows * context) / r.seconds : 0.0;
  return r;
}

std::vector<int32_t> load_tokens(const std::filesystem::path& path, int64_t vocab) {
  const model::Tensor t = model::read_npy(path);
  if (t.dtype == model::DType::kFloat32) {
    throw std::runtime_error(path.string() +
                             ": token file holds float32, expected integers (uint8, int32, int64)");
  }
  std::vector<int32_t> out(t.i64.size());
  for (size_t i = 0; i < t.i64.size(); ++i) {
    if (t.i64[i] < 0 || t.i64[i] >= vocab) {
      throw std::runtime_error(path.string() + ": token " + std::to_string(t.i64[i]) +
                               " at index " + std::to_string(i) +
                               " is outside the vocabulary [0, " + std::to_string(vocab) + ")");
    }
    out[i] = static_cast<int32_t>(t.i64[i]);
  }
  return out;
}

}  // namespace compsearch::llm
