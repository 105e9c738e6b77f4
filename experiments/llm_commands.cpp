// inspect / evaluate for LLM checkpoints and their JSON and table renderings.
#include "experiments/llm_commands.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <sstream>

#include "experiments/text_table.h"
#include "experiments/usage_error.h"
#include "llm/cost_model.h"
#include "llm/gguf_export.h"
#include "llm/imatrix.h"
#include "model/tensor.h"

namespace compsearch::experiments {

namespace {

nlohmann::json config_json(const llm::LlmConfig& c) {
  return {{"architecture", c.architecture},
          {"hidden", c.hidden},
          {"intermediate", c.intermediate},
          {"layers", c.layers},
          {"heads", c.heads},
          {"kv_heads", c.kv_heads},
          {"head_dim", c.head_dim},
          {"vocab", c.vocab},
          {"context", c.context},
          {"rms_eps", c.rms_eps},
          {"rope_theta", c.rope_theta},
          {"tied_embeddings", c.tied_embeddings}};
}

// size_bytes: the whole GGUF file (the search's and estimate's size_bytes); tensor_bytes: the
// tensors' data alone.
nlohmann::json applied_json(const llm::AppliedRecipe& a, int64_t file_bytes) {
  return {{"size_bytes", file_bytes},
          {"tensor_bytes", a.total_bytes},
          {"bits_per_weight", a.bits_per_weight()}};
}

}  // namespace

bool is_llm_model(const std::string& model) { return llm::is_llm_checkpoint(model); }

LlmInspectResult inspect_llm(const std::string& model, const std::string& recipe) {
  LlmInspectResult r;
  r.model = model;
  r.checkpoint = llm::load_llm(model, /*with_data=*/false);
  if (!recipe.empty())
    r.plan = llm::plan_llm_recipe(r.checkpoint, llm::load_llm_recipe(recipe, r.checkpoint));
  return r;
}

nlohmann::json LlmInspectResult::to_json() const {
  nlohmann::json tensors = nlohmann::json::array();
  int64_t params = 0, macs = 0;
  for (size_t i = 0; i < checkpoint.tensors.size(); ++i) {
    const llm::LlmTensor& t = checkpoint.tensors[i];
    nlohmann::json j = {{"name", t.name},
                        {"hf_name", t.hf_name},
                        {"role", llm::role_name(t.role)},
                        {"layer", t.layer},
                        {"shape", t.shape},
                        {"params", t.params()},
                        {"macs_per_token", t.macs_per_token},
                        {"stored_type", llm::tensor_type_name(t.stored_type)}};
    if (plan) {
      j["type"] = llm::tensor_type_name(plan->tensors[i].asked);
      j["stored_as"] = llm::tensor_type_name(plan->tensors[i].stored);
      j["bytes"] = plan->tensors[i].bytes;
    }
    params += t.params();
    macs += t.macs_per_token;
    tensors.push_back(std::move(j));
  }
  nlohmann::json out = {{"model", model},
                        {"format", checkpoint.format},
                        {"config", config_json(checkpoint.config)},
                        {"tensors", tensors},
                        {"total_params", params},
                        {"total_macs_per_token", macs}};
  if (plan) out.update(applied_json(*plan, llm::gguf_file_bytes(checkpoint, *plan)));
  return out;
}

std::string LlmInspectResult::to_text() const {
  std::vector<std::string> head = {"tensor", "hf name", "role",      "shape",
                                   "type",   "params",  "MACs/token"};
  if (plan) head.insert(head.end(), {"recipe", "stored as", "bytes"});
  std::vector<std::vector<std::string>> rows;
  int64_t params = 0, macs = 0;
  for (size_t i = 0; i < checkpoint.tensors.size(); ++i) {
    const llm::LlmTensor& t = checkpoint.tensors[i];
    rows.push_back({t.name, t.hf_name, llm::role_name(t.role), model::shape_to_string(t.shape),
                    llm::tensor_type_name(t.stored_type), std::to_string(t.params()),
                    std::to_string(t.macs_per_token)});
    if (plan) {
      rows.back().insert(rows.back().end(), {llm::tensor_type_name(plan->tensors[i].asked),
                                             llm::tensor_type_name(plan->tensors[i].stored),
                                             std::to_string(plan->tensors[i].bytes)});
    }
    params += t.params();
    macs += t.macs_per_token;
  }
  const llm::LlmConfig& c = checkpoint.config;
  std::ostringstream out;
  out << model << ": " << checkpoint.format << ", " << c.architecture << ", " << c.layers
      << " layers, hidden " << c.hidden << ", ffn " << c.intermediate << ", heads " << c.heads
      << " (kv " << c.kv_heads << ", dim " << c.head_dim << "), vocab " << c.vocab
      << (c.tied_embeddings ? ", tied embeddings" : "") << "\n";
  out << text_table(head, rows, 5);
  char buf[200];
  std::snprintf(buf, sizeof buf, "total: %lld params (%.2f M), %lld MACs per token\n",
                static_cast<long long>(params), params / 1e6, static_cast<long long>(macs));
  out << buf;
  if (plan) {
    std::snprintf(buf, sizeof buf,
                  "recipe: GGUF file %lld bytes (tensors %lld), %.4f bits per weight\n",
                  static_cast<long long>(llm::gguf_file_bytes(checkpoint, *plan)),
                  static_cast<long long>(plan->total_bytes), plan->bits_per_weight());
    out << buf;
  }
  return out.str();
}

LlmEvaluateResult evaluate_llm(const LlmEvaluateRequest& request) {
  if (request.context < 0 || request.context == 1) {
    throw UsageError("--context must be >= 2 (or 0 for the default), got " +
                     std::to_string(request.context));
  }
  if (request.max_windows < 0) throw UsageError("--limit must be >= 0 windows (0 = all)");
  LlmEvaluateResult r;
  r.model = request.model;
  r.data = request.data;
  r.recipe = request.recipe;
  llm::LlmModel m = llm::load_llm(request.model);
  const std::vector<int32_t> tokens = llm::load_tokens(request.data, m.config.vocab);
  int64_t context = request.context;
  if (context == 0) {
    context = std::min<int64_t>({512, m.config.context, static_cast<int64_t>(tokens.size())});
  }
  std::optional<llm::KldReference> reference;
  if (request.kld) {
    reference = llm::kld_reference(m, tokens, context, request.max_windows, request.threads);
  }
  if (!request.imatrix.empty() && request.recipe.empty()) {
    throw UsageError("--imatrix quantizes a --recipe: give one");
  }
  if (!request.recipe.empty()) {
    std::optional<llm::Imatrix> imatrix;
    if (!request.imatrix.empty()) {
      imatrix = llm::read_imatrix(request.imatrix);
      llm::check_imatrix(*imatrix, m, request.imatrix);
    }
    r.applied = llm::apply_llm_recipe_imatrix(m, llm::load_llm_recipe(request.recipe, m),
                                              imatrix ? &*imatrix : nullptr);
    r.file_bytes = llm::gguf_file_bytes(m, *r.applied);
  }
  if (reference) {
    r.kld = llm::evaluate_kld(m, tokens, *reference, request.threads);
    r.perplexity = r.kld->perplexity;
  } else {
    r.perplexity =
        llm::evaluate_perplexity(m, tokens, context, request.max_windows, request.threads);
  }
  return r;
}

nlohmann::json LlmEvaluateResult::to_json() const {
  const llm::PerplexityResult& p = perplexity;
  nlohmann::json out = {{"model", model},
                        {"data", data},
                        {"recipe", recipe.empty() ? nlohmann::json() : nlohmann::json(recipe)},
                        {"context", p.context},
                        {"windows", p.windows},
                        {"tokens_scored", p.tokens_scored},
                        {"mean_nll", p.mean_nll},
                        {"perplexity", p.perplexity},
                        {"seconds", p.seconds},
                        {"tokens_per_second", p.tokens_per_second}};
  if (applied) out.update(applied_json(*applied, file_bytes));
  if (kld) {
    out.update({{"kld", kld->mean_kld},
                {"delta_nll", kld->delta_nll},
                {"kld_uncertainty", kld->kld_uncertainty},
                {"kld_median", kld->median_kld},
                {"kld_p99", kld->p99_kld},
                {"kld_max", kld->max_kld},
                {"same_top", kld->same_top},
                {"reference_mean_nll", kld->mean_nll_ref}});
  }
  return out;
}

std::string LlmEvaluateResult::to_text() const {
  const llm::PerplexityResult& p = perplexity;
  char buf[512];
  std::snprintf(
      buf, sizeof buf,
      "model:      %s%s%s\ndata:       %s\nperplexity: %.4f (mean NLL %.5f nats over %lld "
      "tokens; %lld windows of %lld, second halves scored)\ntime:       %.2f s (%.0f "
      "tokens/s)\n",
      model.c_str(), recipe.empty() ? "" : " with ", recipe.c_str(), data.c_str(), p.perplexity,
      p.mean_nll, static_cast<long long>(p.tokens_scored), static_cast<long long>(p.windows),
      static_cast<long long>(p.context), p.seconds, p.tokens_per_second);
  std::string out = buf;
  if (applied) {
    std::snprintf(buf, sizeof buf,
                  "size:       GGUF file %lld bytes (tensors %lld; %.4f bits per weight)\n",
                  static_cast<long long>(file_bytes), static_cast<long long>(applied->total_bytes),
                  applied->bits_per_weight());
    out += buf;
  }
  if (kld) {
    std::snprintf(buf, sizeof buf,
                  "KLD:        %.6f ± %.6f mean (median %.6f, 99%% %.6f, max %.6f) against the "
                  "model as loaded\nΔNLL:       %+.6f nats (reference NLL %.5f); same top token "
                  "%.2f%%\n",
                  kld->mean_kld, kld->kld_uncertainty, kld->median_kld, kld->p99_kld, kld->max_kld,
                  kld->delta_nll, kld->mean_nll_ref, 100.0 * kld->same_top);
    out += buf;
  }
  return out;
}

nlohmann::json calibrate_llm(const LlmCalibrateRequest& request) {
  if (request.context < 0 || request.context == 1) {
    throw UsageError("--context must be >= 2 (or 0 for the default), got " +
                     std::to_string(request.context));
  }
  if (request.max_windows < 0) throw UsageError("--limit must be >= 0 windows (0 = all)");
  const llm::LlmModel m = llm::load_llm(request.model);
  const std::vector<int32_t> tokens = llm::load_tokens(request.data, m.config.vocab);
  int64_t context = request.context;
  if (context == 0) {
    context = std::min<int64_t>({512, m.config.context, static_cast<int64_t>(tokens.size())});
  }
  const auto t0 = std::chrono::steady_clock::now();
  const llm::Imatrix im =
      llm::collect_imatrix(m, tokens, context, request.max_windows, request.threads,
                           request.process_output, request.data);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  llm::write_imatrix(im, request.out);
  return {{"out", request.out},
          {"format", "gguf"},
          {"entries", im.entries.size()},
          {"chunks", im.chunks},
          {"chunk_size", im.chunk_size},
          {"tokens", im.chunks * im.chunk_size},
          {"seconds", seconds}};
}

nlohmann::json compress_llm(const std::string& model, const std::string& recipe,
                            const std::string& format, const std::string& out) {
  if (format != "gguf") {
    throw UsageError("--format for an LLM checkpoint must be gguf, got '" + format + "'");
  }
  const llm::LlmModel m = llm::load_llm(model);
  const llm::AppliedRecipe plan = llm::plan_llm_recipe(m, llm::load_llm_recipe(recipe, m));
  llm::write_gguf(m, plan, out);
  nlohmann::json counts = nlohmann::json::object();
  for (const auto& t : plan.tensors) {
    const std::string name = llm::tensor_type_name(t.stored);
    counts[name] = counts.value(name, 0) + 1;
  }
  nlohmann::json summary = {{"format", "gguf"}, {"out", out}, {"tensors", counts}};
  // The file compsearch's own writer made (its metadata differs from llama-quantize's).
  summary.update(applied_json(plan, static_cast<int64_t>(std::filesystem::file_size(out))));
  return summary;
}

}  // namespace compsearch::experiments
