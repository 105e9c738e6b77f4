// KL divergence and ΔNLL against a reference model, llama-perplexity --kl-divergence's way.
#include "llm/kld.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "common/check.h"

namespace compsearch::llm {

namespace {

// log-softmax of `row` into `out` (double accumulation, max-shifted).
void log_softmax(const float* row, int64_t vocab, float* out) {
  const float mx = *std::max_element(row, row + vocab);
  double sum = 0.0;
  for (int64_t v = 0; v < vocab; ++v) sum += std::exp(static_cast<double>(row[v] - mx));
  const double lse = std::log(sum) + mx;
  for (int64_t v = 0; v < vocab; ++v) out[v] = static_cast<float>(row[v] - lse);
}

// llama.cpp's percentile of sorted values: linear between the two neighbours of f * (n - 1).
double percentile(const std::vector<float>& sorted, double fraction) {
  const double p = fraction * static_cast<double>(sorted.size() - 1);
  const size_t ip = static_cast<size_t>(p);
  const double frac = p - static_cast<double>(ip);
  return (1 - frac) * sorted[ip] + frac * sorted[std::min(ip + 1, sorted.size() - 1)];
}

}  // namespace

KldReference kld_reference(const LlmModel& reference, std::span<const int32_t> tokens,
                           int64_t context, int64_t max_windows, int threads) {
  KldReference r;
  r.plan = plan_windows(static_cast<int64_t>(tokens.size()), context, max_windows);
  r.vocab = reference.config.vocab;
  const int64_t scored = r.plan.scored_per_window();
  r.log_probs.resize(static_cast<size_t>(r.plan.tokens_scored() * r.vocab));
  r.next.resize(static_cast<size_t>(r.plan.tokens_scored()));
  double nll = 0.0;
  r.seconds = for_each_window(
      reference, tokens, r.plan, threads,
      [&](int64_t w, std::span<const int32_t> window, const std::vector<float>& logits) {
        for (int64_t i = 0; i < scored; ++i) {
          const int64_t p = r.plan.first() + i, at = w * scored + i;
          float* lp = r.log_probs.data() + at * r.vocab;
          log_softmax(logits.data() + p * r.vocab, r.vocab, lp);
          r.next[at] = window[p + 1];
          nll -= lp[window[p + 1]];
        }
      });
  r.mean_nll = nll / static_cast<double>(r.plan.tokens_scored());
  return r;
}

KldPosition kld_position(std::span<const float> ref_log_probs, std::span<const float> logits,
                         int32_t next) {
  COMPSEARCH_CHECK(ref_log_probs.size() == logits.size() && !logits.empty(),
                   "kld_position: vocabularies differ");
  const int64_t vocab = static_cast<int64_t>(logits.size());
  COMPSEARCH_CHECK(next >= 0 && next < vocab, "kld_position: next token outside the vocabulary");
  const auto top = std::max_element(logits.begin(), logits.end());
  double sum = 0.0;
  for (const float l : logits) sum += std::exp(static_cast<double>(l - *top));
  const double lse = std::log(sum) + *top;
  KldPosition r;
  r.nll = lse - logits[next];
  r.nll_ref = -ref_log_probs[next];
  for (int64_t v = 0; v < vocab; ++v) {
    const double lp_ref = ref_log_probs[v];
    if (lp_ref > -16.0) r.kld += std::exp(lp_ref) * (lp_ref - (logits[v] - lse));
  }
  r.same_top =
      (top - logits.begin()) ==
      (std::max_element(ref_log_probs.begin(), ref_log_probs.end()) - ref_log_probs.begin());
  return r;
}

KldResult evaluate_kld(const LlmModel& model, std::span<const int32_t> tokens,
                       const KldReference& reference, int threads) {
  if (model.config.vocab != reference.vocab) {
    throw std::invalid_argument(
        "KL divergence: the model's vocabulary (" + std::to_string(model.config.vocab) +
        ") differs from the reference's (" + std::to_string(reference.vocab) + ")");
  }
  const WindowPlan& plan = reference.plan;
  const int64_t scored = plan.scored_per_window(), vocab = reference.vocab;
  KldResult r;
  std::vector<float> klds(static_cast<size_t>(plan.tokens_scored()));
  double sum_kld = 0.0, sum_kld2 = 0.0, nll = 0.0, nll_ref = 0.0;
  int64_t same_top = 0;
  const double seconds = for_each_window(
      model, tokens, plan, threads,
      [&](int64_t w, std::span<const int32_t> window, const std::vector<float>& logits) {
        for (int64_t i = 0; i < scored; ++i) {
          const int64_t p = plan.first() + i, at = w * scored + i;
          if (window[p + 1] != reference.next[at]) {
            throw std::invalid_argument(
                "KL divergence: the tokens differ from those the reference was computed on "
                "(window " +
                std::to_string(w) + ", position " + std::to_string(p) + ")");
          }
          const KldPosition k =
              kld_position(std::span<const float>(reference.log_probs.data() + at * vocab, vocab),
                           std::span<const float>(logits.data() + p * vocab, vocab), window[p + 1]);
          klds[at] = static_cast<float>(k.kld);
          sum_kld += k.kld;
          sum_kld2 += k.kld * k.kld;
          nll += k.nll;
          nll_ref += k.nll_ref;
          same_top += k.same_top ? 1 : 0;
        }
      });
  const double n = static_cast<double>(plan.tokens_scored());
  r.tokens_scored = plan.tokens_scored();
  r.mean_kld = sum_kld / n;
  const double var = sum_kld2 / n - r.mean_kld * r.mean_kld;
  r.kld_uncertainty = var > 0 && r.tokens_scored > 10 ? std::sqrt(var / (n - 1)) : 0.0;
  r.mean_nll = nll / n;
  r.mean_nll_ref = nll_ref / n;
  r.delta_nll = r.mean_nll - r.mean_nll_ref;
  r.same_top = static_cast<double>(same_top) / n;
  std::sort(klds.begin(), klds.end());
  const size_t m = klds.size();
  r.median_kld = m % 2 == 0 ? 0.5 * (klds[m / 2] + klds[m / 2 - 1]) : klds[m / 2];
  r.p99_kld = percentile(klds, 0.99);
  r.max_kld = klds.back();
  PerplexityResult& pp = r.perplexity;
  pp.context = plan.context;
  pp.windows = plan.windows;
  pp.tokens_scored = r.tokens_scored;
  pp.mean_nll = r.mean_nll;
  pp.perplexity = std::exp(r.mean_nll);
  pp.seconds = seconds;
  pp.tokens_per_second =
      seconds > 0 ? static_cast<double>(plan.windows * plan.context) / seconds : 0.0;
  return r;
}

}  // namespace compsearch::llm
