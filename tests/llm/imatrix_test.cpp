// Importance matrices: a hand computation on a one-layer window, llama-imatrix's numbers on the
// same tokens (its GGUF file read back), the file format read by llama-quantize --imatrix, and
// weights bit-identical to llama-quantize --imatrix's.
#include "llm/imatrix.h"

#include <dlfcn.h>
#include <doctest/doctest.h>
#include <ggml.h>

#include <cmath>
#include <cstdlib>
#include <fstream>

#include "llm/decoder.h"
#include "tests/llm/llm_test_util.h"
#include "tests/test_skip.h"

using namespace compsearch::llm;
namespace fs = std::filesystem;
using compsearch::testing::llm_fixture;

namespace {

fs::path tool(const std::string& name) { return fs::path(COMPSEARCH_BINARY_DIR) / "llm" / name; }

// Runs a llama.cpp tool from the folder of the libggml-base we link (it loads its CPU backend
// from the working directory); REQUIREs success.
void run_tool(const std::string& name, const std::string& args, const fs::path& log) {
  Dl_info info{};
  REQUIRE(dladdr(reinterpret_cast<void*>(&ggml_type_size), &info) != 0);
  const std::string cmd = "cd " + fs::path(info.dli_fname).parent_path().string() + " && " +
                          tool(name).string() + " " + args + " > " + log.string() + " 2>&1";
  REQUIRE_MESSAGE(std::system(cmd.c_str()) == 0, "failed: " << cmd << " (log " << log << ")");
}

std::vector<int32_t> calibration() {
  return load_tokens(llm_fixture("fortunes_calibration.u8.npy"), 256);
}

}  // namespace

TEST_CASE("collect_imatrix sums the squared inputs of every block matrix, per column") {
  const LlmModel m = load_llm(llm_fixture("tiny_llama.f16.gguf"));
  const std::vector<int32_t> all = calibration();
  const std::vector<int32_t> tokens(all.begin(), all.begin() + 64);
  const Imatrix im = collect_imatrix(m, tokens, 32);
  CHECK(im.chunks == 2);
  CHECK(im.chunk_size == 32);
  CHECK(im.entries.size() == 14);  // 2 blocks x 7 matrices; token_embd (tied output) never
  CHECK_FALSE(im.entries.contains("token_embd"));
  // Independent check of attn_q's input: rms_norm(embedding) * attn_norm, squared, summed.
  const LlmTensor& e = m.at("token_embd");
  const LlmTensor& g = m.at("blk.0.attn_norm");
  std::vector<double> expected(256, 0.0);
  for (int32_t tok : tokens) {
    double ms = 0;
    for (int j = 0; j < 256; ++j) ms += double{e.data[tok * 256 + j]} * e.data[tok * 256 + j];
    const double scale = 1.0 / std::sqrt(ms / 256 + m.config.rms_eps);
    for (int j = 0; j < 256; ++j) {
      const double x = e.data[tok * 256 + j] * scale * g.data[j];
      expected[j] += x * x;
    }
  }
  for (const char* name : {"blk.0.attn_q", "blk.0.attn_k", "blk.0.attn_v"}) {
    const Imatrix::Entry& q = im.entries.at(name);
    CHECK(q.count == 64);
    for (int j = 0; j < 256; j += 17)
      CHECK(q.sum2[j] == doctest::Approx(expected[j]).epsilon(1e-4));
  }
  CHECK(im.entries.at("blk.1.ffn_down").sum2.size() == 640u);
  CHECK(im.importance("blk.0.attn_q")[5] == doctest::Approx(expected[5] / 64).epsilon(1e-4));
  CHECK(im.importance("token_embd").empty());
  // --process-output: the output projection, when the model has one (the fixture's is tied).
  CHECK_FALSE(collect_imatrix(m, tokens, 32, 0, 0, true).entries.contains("token_embd"));

  // Written and read back (GGUF, llama-imatrix's layout).
  const fs::path dir = compsearch::testing::fresh_dir("imatrix_roundtrip");
  write_imatrix(im, dir / "im.gguf");
  const Imatrix back = read_imatrix(dir / "im.gguf");
  CHECK(back.chunks == 2);
  CHECK(back.chunk_size == 32);
  REQUIRE(back.entries.size() == im.entries.size());
  CHECK(back.entries.at("blk.1.ffn_up").count == 64);
  CHECK(back.entries.at("blk.1.ffn_up").sum2[7] ==
        doctest::Approx(im.entries.at("blk.1.ffn_up").sum2[7]).epsilon(1e-6));
  {
    std::ofstream bad(dir / "bad.dat");
    bad << "not a gguf";
  }
  CHECK_THROWS_WITH(read_imatrix(dir / "bad.dat"), doctest::Contains("not a GGUF imatrix"));
}

TEST_CASE("Our importance matrix equals llama-imatrix's on the same tokens (1e-3 relative)") {
  if (!fs::exists(tool("llama-imatrix"))) {
    COMPSEARCH_SKIP_TEST("llama-imatrix was not built (see llm/CMakeLists.txt)");
  }
  const fs::path gguf = llm_fixture("tiny_llama.f16.gguf");
  const std::vector<int32_t> tokens = calibration();
  const fs::path dir = compsearch::testing::fresh_dir("llama_imatrix");
  {
    std::ofstream text(dir / "calib.txt", std::ios::binary);
    for (int32_t t : tokens) text.put(static_cast<char>(t));
  }
  run_tool("llama-imatrix",
           "-m " + gguf.string() + " -f " + (dir / "calib.txt").string() +
               " -c 128 --chunks 8 -b 128 -t 2 --no-ppl -o " + (dir / "theirs.gguf").string(),
           dir / "imatrix.log");
  const Imatrix theirs = read_imatrix(dir / "theirs.gguf");
  const Imatrix ours = collect_imatrix(load_llm(gguf), tokens, 128, 8);
  CHECK(theirs.chunks == 8);
  CHECK(theirs.chunk_size == 128);
  REQUIRE(theirs.entries.size() == ours.entries.size());
  double worst = 0;
  for (const auto& entry : theirs.entries) {
    const auto& name = entry.first;  // not a structured binding: clang 14's CAPTURE
    const auto& e = entry.second;
    CAPTURE(name);
    REQUIRE(ours.entries.contains(name));
    const Imatrix::Entry& o = ours.entries.at(name);
    CHECK(o.count == e.count);
    REQUIRE(o.sum2.size() == e.sum2.size());
    double scale = 0;  // relative to the tensor's largest column
    for (double v : e.sum2) scale = std::max(scale, v);
    for (size_t j = 0; j < e.sum2.size(); ++j)
      worst = std::max(worst, std::fabs(o.sum2[j] - e.sum2[j]) / scale);
  }
  MESSAGE("largest difference to llama-imatrix: " << worst << " of the tensor's largest column");
  CHECK(worst <= 1e-3);
}

TEST_CASE(
    "Recipes quantized with our imatrix give llama-quantize --imatrix's weights, bit for bit") {
  if (!fs::exists(tool("llama-quantize"))) {
    COMPSEARCH_SKIP_TEST("llama-quantize was not built (see llm/CMakeLists.txt)");
  }
  const fs::path gguf = llm_fixture("tiny_llama.f16.gguf");
  const LlmModel source = load_llm(gguf);
  const fs::path dir = compsearch::testing::fresh_dir("quantize_imatrix");
  const Imatrix im = collect_imatrix(source, calibration(), 128, 8, 0, false, "calibration");
  write_imatrix(im, dir / "ours.gguf");
  for (const char* type : {"Q4_K", "Q2_K", "IQ4_XS"}) {
    CAPTURE(type);
    const fs::path out = dir / (std::string(type) + ".gguf");
    run_tool("llama-quantize",
             "--pure --imatrix " + (dir / "ours.gguf").string() + " " + gguf.string() + " " +
                 out.string() + " " + type,
             dir / (std::string(type) + ".log"));
    const LlmModel theirs = load_llm(out);
    LlmModel with = source, without = source;
    const LlmRecipe recipe = parse_llm_recipe({{"default", {{"type", type}}}}, with, type);
    apply_llm_recipe_imatrix(with, recipe, &im);
    apply_llm_recipe(without, recipe);
    int differ_without = 0;
    for (size_t i = 0; i < with.tensors.size(); ++i) {
      CAPTURE(with.tensors[i].name);
      CHECK(theirs.tensors[i].data == with.tensors[i].data);
      differ_without += im.entries.contains(with.tensors[i].name) &&
                        theirs.tensors[i].data != without.tensors[i].data;
    }
    // The imatrix changed every tensor it lists (it is not ignored).
    CHECK(differ_without == 14);
  }
}
