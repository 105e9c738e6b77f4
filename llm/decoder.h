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
#include <span>
#include <vector>

#include "llm/checkpoint.h"

namespace compsearch::llm {

// Logits [tokens.size(), vocab] (row-major) of the window `tokens` (positions 0..n-1). Throws
// std::invalid_argument for an empty window or a token outside [0, vocab).
std::vector<float> decoder_logits(const LlmModel& model, std::span<const int32_t> tokens);

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
