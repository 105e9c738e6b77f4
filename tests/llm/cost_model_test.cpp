// The LLM cost model: GGUF file sizes against the files real llama-quantize writes.
#include "llm/cost_model.h"

#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <regex>

#include "llm/checkpoint.h"
#include "llm/gguf_export.h"
#include "llm/llm_recipe.h"
#include "tests/llm/llm_test_util.h"
#include "tests/test_skip.h"

using namespace compsearch::llm;
using compsearch::testing::llm_fixture;
namespace fs = std::filesystem;

TEST_CASE("The GGUF file size equals the size of the file llama-quantize writes") {
  if (!fs::exists(compsearch::testing::llama_quantize())) {
    COMPSEARCH_SKIP_TEST("llama-quantize was not built (see llm/CMakeLists.txt)");
  }
  const LlmModel source = load_llm(llm_fixture("tiny_llama.f16.gguf"), /*with_data=*/false);
  const GgufLayout layout = gguf_layout(source);
  CHECK(layout.metadata_from_source);
  CHECK(layout.alignment == 32);
  CHECK(layout.metadata_bytes > 2000);  // 256 token strings, types, merges
  for (const char* type : {"Q4_K", "Q2_K", "Q8_0", "Q4_K_M"}) {
    CAPTURE(type);
    const bool pure = std::string(type) != "Q4_K_M";
    const fs::path file = compsearch::testing::run_llama_quantize(pure ? "--pure" : "", type);
    nlohmann::json recipe;
    if (pure) {
      recipe = {{"default", {{"type", type}}}};
    } else {  // the mix: each tensor's type as llama.cpp chose it
      nlohmann::json layers = nlohmann::json::object();
      for (const auto& t : load_llm(file, /*with_data=*/false).tensors) {
        if (t.is_matrix()) layers[t.name] = {{"type", tensor_type_name(t.stored_type)}};
      }
      recipe = {{"layers", layers}};
    }
    const AppliedRecipe plan = plan_llm_recipe(source, parse_llm_recipe(recipe, source, type));
    const auto actual = static_cast<int64_t>(fs::file_size(file));
    CHECK(gguf_file_bytes(source, plan) == actual);
    CHECK(layout.file_bytes(plan) == actual);
    // The tensor bytes alone miss the metadata (vocabulary included) and the padding.
    CHECK(plan.total_bytes + layout.metadata_bytes <= actual);
  }
}

TEST_CASE("The GGUF file size of a Hugging Face source assumes compsearch's export as input") {
  if (!fs::exists(compsearch::testing::llama_quantize())) {
    COMPSEARCH_SKIP_TEST("llama-quantize was not built (see llm/CMakeLists.txt)");
  }
  // compress --format gguf from the HF checkpoint, then llama-quantize --pure Q8_0 on that file:
  // the size predicted from the HF checkpoint alone is the size of llama-quantize's output.
  const LlmModel hf = load_llm(llm_fixture("tiny_llama"));
  const fs::path f16 = compsearch::testing::fresh_dir("cost_model_hf") / "tiny.f16.gguf";
  write_gguf(hf, plan_llm_recipe(hf, parse_llm_recipe({{"default", {{"type", "f16"}}}}, hf, "r")),
             f16);
  const fs::path q8 = compsearch::testing::run_llama_quantize("--pure", "Q8_0", f16);
  const GgufLayout layout = gguf_layout(hf);
  CHECK_FALSE(layout.metadata_from_source);
  const AppliedRecipe plan =
      plan_llm_recipe(hf, parse_llm_recipe({{"default", {{"type", "q8_0"}}}}, hf, "r"));
  CHECK(layout.file_bytes(plan) == static_cast<int64_t>(fs::file_size(q8)));
  CHECK(layout.metadata_bytes % 32 == 0);
  CHECK(layout.metadata_bytes < 4096);  // no vocabulary: hyperparameters and tensor infos only
}

TEST_CASE("The KV cache and compute buffer equal what llama.cpp allocates for them") {
  if (!fs::exists(compsearch::testing::llama_perplexity())) {
    COMPSEARCH_SKIP_TEST("llama-perplexity was not built (see llm/CMakeLists.txt)");
  }
  const fs::path gguf = llm_fixture("tiny_llama.f16.gguf");
  const LlmModel model = load_llm(gguf, /*with_data=*/false);
  const AppliedRecipe plan = plan_llm_recipe(model, LlmRecipe{});
  const fs::path text = compsearch::testing::fresh_dir("cost_model_text") / "text.txt";
  {
    std::ofstream out(text);
    for (int i = 0; i < 400; ++i) out << "The quick brown fox jumps over the lazy dog. ";
  }
  struct Case {
    int64_t context;
    bool flash;
  };
  for (const Case c :
       {Case{128, true}, Case{128, false}, Case{512, false}, Case{1024, true}, Case{1024, false}}) {
    CAPTURE(c.context);
    CAPTURE(c.flash);
    const std::string ctx = std::to_string(c.context);
    // -b = context: llama-perplexity evaluates one sequence of `context` tokens per graph.
    const std::string log = compsearch::testing::run_llama_perplexity(
        "-m " + gguf.string() + " -f " + text.string() + " -c " + ctx + " -b " + ctx +
            " --chunks 1 -t 1 -lv 5 -fa " + (c.flash ? "on" : "off"),
        "buffers");
    std::smatch kv, compute;
    REQUIRE_MESSAGE(
        std::regex_search(log, kv, std::regex(R"(size = +([0-9.]+) MiB \( *([0-9]+) cells)")), log);
    REQUIRE_MESSAGE(
        std::regex_search(log, compute, std::regex(R"(CPU compute buffer size = +([0-9.]+) MiB)")),
        log);
    LlmRunSettings s;
    s.context = c.context;
    s.ubatch = std::min<int64_t>(512, c.context);  // n_ubatch = min(512, n_batch)
    s.flash_attention = c.flash;
    const LlmMemory m = llm_memory(model, plan, s);
    CHECK(m.kv_cells == std::stoll(kv[2]));
    CHECK(static_cast<double>(m.kv_cache_bytes) / 1048576.0 ==
          doctest::Approx(std::stod(kv[1])).epsilon(0.005));
    // llama.cpp prints MiB with two decimals; its buffers also round each tensor to 32 bytes.
    CHECK(static_cast<double>(m.compute_buffer_bytes) / 1048576.0 ==
          doctest::Approx(std::stod(compute[1])).epsilon(0.01));
  }
}

TEST_CASE("The KV cache pads the context to 256 cells per sequence and sizes K and V by type") {
  // Llama-2-7B: 32 layers, 32 key/value heads of 128. At 4096 tokens, F16: 2 x 32 x 4096 x 4096 x
  // 2 bytes = 2 GiB (llama.cpp prints "KV self size = 2048.00 MiB"); Q8_0 rows of 4096 take 4096
  // / 32 x 34 bytes: 1088 MiB.
  LlmConfig c;
  c.hidden = 4096, c.intermediate = 11008, c.layers = 32, c.heads = 32, c.kv_heads = 32;
  c.head_dim = 128, c.vocab = 32000;
  LlmRunSettings s;
  s.context = 4096;
  CHECK(kv_cache_bytes(c, s) == int64_t{2} << 30);
  s.kv_type = TensorType::kQ8_0;
  CHECK(kv_cache_bytes(c, s) == int64_t{1088} << 20);
  s.kv_type = TensorType::kF16;
  s.context = 1000;  // padded to 1024
  CHECK(kv_cache_cells(s) == 1024);
  s.batch = 3;  // n_ctx 3000 -> 3072; 3 streams of 3072 / 3 = 1024 cells
  CHECK(kv_cache_cells(s) == 1024);
  CHECK(kv_cache_bytes(c, s) == 3 * int64_t{512} << 20);
  s.context = 100;  // 300 -> 512; 512 / 3 = 170 -> 256 per stream
  CHECK(kv_cache_cells(s) == 256);
  s.flash_attention = false;
  s.kv_type = TensorType::kQ4_0;
  CHECK_THROWS_WITH(s.validate("x"), doctest::Contains("needs flash attention"));
}

TEST_CASE("Decode reads every device weight once and the embedding as one row") {
  // A hand-sized model: Llama-shaped, untied, every matrix q8_0 (34 bytes per 32 weights).
  LlmConfig c;
  c.hidden = 256, c.intermediate = 512, c.layers = 2, c.heads = 4, c.kv_heads = 2;
  c.head_dim = 64, c.vocab = 1000;
  const LlmModel model = llm_model_from_config(c, "hand");
  const AppliedRecipe plan =
      plan_llm_recipe(model, parse_llm_recipe({{"default", {{"type", "q8_0"}}}}, model, "r"));
  const double q8_row = 256.0 / 32 * 34;  // bytes of one row of 256
  const double embd = 1000 * q8_row, output = embd;
  const double per_layer = (256 + 128 + 128 + 256) * q8_row  // q, k, v, output rows of 256
                           + 2 * 512 * q8_row                // gate, up: 512 rows of 256
                           + 256 * (512.0 / 32 * 34)         // down: 256 rows of 512
                           + 2 * 256 * 4;                    // two F32 norms
  const double device = 2 * per_layer + output + 256 * 4;    // + output_norm
  const LlmMemory m = llm_memory(model, plan, LlmRunSettings{});
  CHECK(m.weights_device_bytes == static_cast<int64_t>(device));
  CHECK(m.weights_host_bytes == static_cast<int64_t>(embd));

  LlmGpu gpu;
  gpu.bandwidth_bytes_per_s = 1e9;
  gpu.decode_bandwidth_efficiency = 0.5;
  gpu.layer_overhead_s = 0.5e-3;  // x 2 layers
  gpu.peak_flops = 1e12;
  gpu.prefill_efficiency = 0.5;
  gpu.prefill_efficiency_quantized = 0.25;
  LlmRunSettings s;
  s.context = 100;
  s.batch = 2;
  const LlmSpeed v = llm_speed(model, plan, gpu, s);
  const double kv = 2 * 100 * 2 * (128 * 2.0);  // layers x context x (K, V) x kv_dim x f16
  const double bytes = device + 2 * (q8_row + kv);
  CHECK(v.decode_bytes_per_step == doctest::Approx(bytes));
  CHECK(v.decode_tok_s == doctest::Approx(2 / (1e-3 + bytes / 0.5e9)));
  const double params = 2 * (256 * 256 + 2 * 128 * 256 + 256 * 256 + 3 * 512 * 256) + 1000 * 256;
  const double attention = 4.0 * 2 * 4 * 64 * 100 * 101 / 2;
  CHECK(v.prefill_quantized_flops == doctest::Approx(2 * params * 100));
  CHECK(v.prefill_float_flops == doctest::Approx(attention));
  CHECK(v.prefill_s == doctest::Approx(1e-3 + attention / 0.5e12 + 2 * params * 100 / 0.25e12));
}
