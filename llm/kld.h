// KL divergence of a quantized model's next-token distribution from the reference model's, as
// llama.cpp's `llama-perplexity --kl-divergence` defines it (tools/perplexity/perplexity.cpp of
// the pinned tree): over the positions llama-perplexity scores (plan_windows: in each window the
// logits at context/2 .. context-2), per position KLD = sum over the vocabulary of
// p_ref * (log p_ref - log p_q), terms with log p_ref <= -16 left out as llama.cpp leaves them
// out; the mean is over all scored positions of all windows. ΔNLL = mean NLL(q) - mean NLL(ref)
// of the true next token (llama.cpp's "ln(PPL(Q)/PPL(base))"). llama.cpp stores the reference
// log-probs as 16-bit steps between their minimum and maximum; here they stay float32, so its
// numbers differ from ours by that rounding only.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "llm/checkpoint.h"
#include "llm/decoder.h"

namespace compsearch::llm {

// The reference model's log-softmax on every scored position: [positions, vocab] row-major, in
// window order, with the next token of each position.
struct KldReference {
  WindowPlan plan;
  int64_t vocab = 0;
  std::vector<float> log_probs;  // plan.tokens_scored() * vocab
  std::vector<int32_t> next;     // the true next token per scored position
  double mean_nll = 0.0;         // the reference's mean NLL over those positions
  double seconds = 0.0;          // forward passes
};

KldReference kld_reference(const LlmModel& reference, std::span<const int32_t> tokens,
                           int64_t context, int64_t max_windows = 0, int threads = 0);

// One position: `ref_log_probs` (vocab) against the quantized model's `logits` (vocab).
struct KldPosition {
  double kld = 0.0;       // sum p_ref (log p_ref - log p_q) over log p_ref > -16
  double nll = 0.0;       // -log p_q(next)
  double nll_ref = 0.0;   // -log p_ref(next)
  bool same_top = false;  // argmax of both equal (llama.cpp's "same top p")
};
KldPosition kld_position(std::span<const float> ref_log_probs, std::span<const float> logits,
                         int32_t next);

struct KldResult {
  int64_t tokens_scored = 0;
  double mean_kld = 0.0;
  double kld_uncertainty = 0.0;  // llama.cpp's ± (standard error of the mean; 0 below 11 values)
  double median_kld = 0.0;
  double p99_kld = 0.0;  // llama.cpp's percentile (linear between sorted values)
  double max_kld = 0.0;
  double mean_nll = 0.0;        // the quantized model's
  double mean_nll_ref = 0.0;    // the reference's
  double delta_nll = 0.0;       // mean_nll - mean_nll_ref
  double same_top = 0.0;        // fraction of positions with the same argmax
  PerplexityResult perplexity;  // the quantized model's perplexity from the same forward passes
};

// The quantized model `model` over the reference's windows (the same tokens). Throws
// std::invalid_argument when the vocabularies differ or `tokens` is not what the reference saw.
KldResult evaluate_kld(const LlmModel& model, std::span<const int32_t> tokens,
                       const KldReference& reference, int threads = 0);

}  // namespace compsearch::llm
