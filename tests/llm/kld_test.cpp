// KL divergence as llama-perplexity --kl-divergence defines it: a hand computation on a
// three-token vocabulary, zero for the model itself, growing with fewer bits on the tiny model.
#include "llm/kld.h"

#include <doctest/doctest.h>

#include <cmath>

#include "llm/llm_recipe.h"
#include "tests/llm/llm_test_util.h"

using namespace compsearch::llm;
using compsearch::testing::llm_fixture;

namespace {

const LlmModel& tiny() {
  static const LlmModel m = load_llm(llm_fixture("tiny_llama"));
  return m;
}

std::vector<int32_t> heldout() { return load_tokens(llm_fixture("fortunes_heldout.u8.npy"), 256); }

KldResult kld_of(const std::string& type, const KldReference& ref) {
  LlmModel m = tiny();
  apply_llm_recipe(m, parse_llm_recipe({{"default", {{"type", type}}}}, m, type));
  return evaluate_kld(m, heldout(), ref);
}

}  // namespace

TEST_CASE("KLD of one position by hand: p_ref (1/2, 1/4, 1/4) against p_q (1/4, 1/2, 1/4)") {
  const std::vector<float> ref = {std::log(0.5f), std::log(0.25f), std::log(0.25f)};
  // Logits are shifted by 3 to show that only their softmax counts.
  const std::vector<float> logits = {std::log(0.25f) + 3, std::log(0.5f) + 3, std::log(0.25f) + 3};
  const KldPosition k = kld_position(ref, logits, 1);
  // 1/2 ln(2) + 1/4 ln(1/2) + 1/4 ln(1) = ln(2) / 4.
  CHECK(k.kld == doctest::Approx(std::log(2.0) / 4).epsilon(1e-6));
  CHECK(k.nll == doctest::Approx(std::log(2.0)).epsilon(1e-6));
  CHECK(k.nll_ref == doctest::Approx(std::log(4.0)).epsilon(1e-6));
  CHECK_FALSE(k.same_top);
  // llama.cpp leaves out reference terms with log p <= -16: a token the reference gives e^-20
  // adds nothing, however much mass the quantized model puts there.
  const float tiny_lp = -20.0f, rest = std::log1p(-std::exp(-20.0f)) - std::log(2.0f);
  const std::vector<float> ref2 = {rest, rest, tiny_lp};
  const std::vector<float> q2 = {0.0f, 0.0f, 5.0f};
  // p_q = (1, 1, e^5) / (2 + e^5); kept terms: 2 * 1/2 * (ln(1/2) - ln(1 / (2 + e^5))).
  const double expected = std::log((2 + std::exp(5.0)) / 2);
  CHECK(kld_position(ref2, q2, 0).kld == doctest::Approx(expected).epsilon(1e-5));
}

TEST_CASE("KLD on the tiny model: 0 for the model itself, q8_0 < q4_k < q2_k") {
  const std::vector<int32_t> tokens = heldout();
  const KldReference ref = kld_reference(tiny(), tokens, 128, 4);
  CHECK(ref.plan.tokens_scored() == 4 * 63);
  CHECK(ref.mean_nll == doctest::Approx(evaluate_perplexity(tiny(), tokens, 128, 4).mean_nll));
  const KldResult same = evaluate_kld(tiny(), tokens, ref);
  CHECK(std::fabs(same.mean_kld) < 1e-6);
  CHECK(std::fabs(same.delta_nll) < 1e-6);
  CHECK(same.same_top == 1.0);
  const KldResult q8 = kld_of("q8_0", ref), q4 = kld_of("q4_k", ref), q2 = kld_of("q2_k", ref);
  MESSAGE("KLD q8_0 " << q8.mean_kld << ", q4_k " << q4.mean_kld << ", q2_k " << q2.mean_kld
                      << "; dNLL " << q8.delta_nll << ", " << q4.delta_nll << ", " << q2.delta_nll);
  CHECK(q8.mean_kld > 0.0);
  CHECK(q8.mean_kld < q4.mean_kld);
  CHECK(q4.mean_kld < q2.mean_kld);
  CHECK(q2.delta_nll > 0.0);
  // The same forward passes give the quantized model's perplexity.
  LlmModel m = tiny();
  apply_llm_recipe(m, parse_llm_recipe({{"default", {{"type", "q2_k"}}}}, m, "q2_k"));
  CHECK(q2.mean_nll == doctest::Approx(evaluate_perplexity(m, tokens, 128, 4).mean_nll));
  CHECK(q2.delta_nll == doctest::Approx(q2.mean_nll - ref.mean_nll));
  CHECK(q2.tokens_scored == 252);
  CHECK(q2.max_kld >= q2.p99_kld);
  CHECK(q2.p99_kld >= q2.median_kld);
  // Other tokens than the reference's are refused.
  std::vector<int32_t> other = tokens;
  other[100] = (other[100] + 1) % 256;
  CHECK_THROWS_WITH(evaluate_kld(tiny(), other, ref),
                    doctest::Contains("tokens differ from those the reference"));
}
