// The Llama decoder forward pass over a window of tokens, and perplexity over a token file.
//
// Per block: x += attn_output(attention(rope(attn_q(n)), rope(attn_k(n)), attn_v(n))) with
// n = rms_norm(x) * attn_norm; x += ffn_down(silu(ffn_gate(n)) * ffn_up(n)) with
// n = rms_norm(x) * ffn_norm; logits = output(rms_norm(x) * output_norm) (token_embd when tied).
// Attention is causal, grouped-query (query head h reads key/value head h / (heads / kv_heads)),
// scaled by 1/sqrt(head_dim). RoPE works on llama.cpp's layout (checkpoint.h): adjacent pairs
// (x[2i], x[2i+1]) of each head turn by position * rope_theta^(-2i / head_dim).
// float32 throughout (angles in double), matrix products by Eigen, parallel with OpenMP.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "llm/checkpoint.h"

namespace compsearch::llm {

// Sees the input of every matrix product before it is multiplied: the weight tensor's GGUF name
// and the input rows [rows, cols] (row-major, cols = the tensor's row length). attn_q, attn_k and
// attn_v are reported one by one with the same input, as are ffn_gate and ffn_up (llama-imatrix
// collects per weight tensor likewise). Called from the calling thread, never in parallel.
using MatmulObserver =
    std::function<void(const std::string& tensor, const float* x, int64_t rows, int64_t cols)>;

// Logits [tokens.size(), vocab] (row-major) of the window `tokens` (positions 0..n-1). Throws
// std::invalid_argument for an empty window or a token outside [0, vocab). `observer`, when set,
// sees every matrix product's input (for importance matrices).
std::vector<float> decoder_logits(const LlmModel& model, std::span<const int32_t> tokens,
                                  const MatmulObserver& observer = {});

// llama-perplexity's windows (also its --kl-divergence and llama-imatrix's chunks): floor(n /
// context) non-overlapping windows, capped by `max_windows` > 0; in each, the logits at positions
// first() .. context-2 predict the next token. Throws std::invalid_argument when context < 2 or
// fewer than `context` tokens are given.
struct WindowPlan {
  int64_t context = 0;
  int64_t windows = 0;
  int64_t first() const { return context / 2; }
  int64_t scored_per_window() const { return context - 1 - context / 2; }
  int64_t tokens_scored() const { return windows * scored_per_window(); }
};
WindowPlan plan_windows(int64_t n_tokens, int64_t context, int64_t max_windows);

// Caps OpenMP's threads (Eigen's products and the attention loop follow omp_get_max_threads())
// for its lifetime; n <= 0 leaves the default.
class OmpThreadCap {
 public:
  explicit OmpThreadCap(int n);
  ~OmpThreadCap();
  OmpThreadCap(const OmpThreadCap&) = delete;
  OmpThreadCap& operator=(const OmpThreadCap&) = delete;

 private:
  int saved_;
};

// Runs the decoder over each window of `plan` and hands fn(window index, window tokens, logits
// [context, vocab]) the result, with the thread cap held. Returns the seconds spent.
double for_each_window(
    const LlmModel& model, std::span<const int32_t> tokens, const WindowPlan& plan, int threads,
    const std::function<void(int64_t, std::span<const int32_t>, const std::vector<float>&)>& fn,
    const MatmulObserver& observer = {});

// -log softmax(row)[token] over a row of `vocab` logits (max-shifted, summed in double).
double token_nll(const float* row, int64_t vocab, int32_t token);

struct PerplexityResult {
  int64_t context = 0;             // window length
  int64_t windows = 0;             // non-overlapping windows evaluated
  int64_t tokens_scored = 0;       // windows * (context - 1 - context / 2)
  double mean_nll = 0.0;           // nats per scored token
  double perplexity = 0.0;         // exp(mean_nll)
  double seconds = 0.0;            // wall time of the forward passes
  double tokens_per_second = 0.0;  // tokens run through the decoder (windows * context) / seconds
};

// Perplexity as llama.cpp's llama-perplexity measures it: the tokens are cut into
// floor(n / context) non-overlapping windows; in each, the logits at positions
// context/2 .. context-2 predict the next token, so the first half of a window is context only.
// `max_windows` > 0 caps the windows; `threads` > 0 caps the OpenMP threads of the forward passes
// (0: OpenMP's default). Throws std::invalid_argument when context < 2 or fewer than `context`
// tokens are given.
PerplexityResult evaluate_perplexity(const LlmModel& model, std::span<const int32_t> tokens,
                                     int64_t context, int64_t max_windows = 0, int threads = 0);

// Tokens from an NPY file of integers (uint8, int32 or int64; any shape, read flat), each
// checked against [0, vocab). Throws naming the file.
std::vector<int32_t> load_tokens(const std::filesystem::path& path, int64_t vocab);

}  // namespace compsearch::llm
