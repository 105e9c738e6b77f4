// safetensors parsing: dtypes read back exactly, and every kind of bad file is a clear error.
#include "llm/safetensors.h"

#include <doctest/doctest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

#include "model/half.h"
#include "tests/llm/llm_test_util.h"

using namespace compsearch::llm;
namespace fs = std::filesystem;

TEST_CASE("safetensors F32, F16 and BF16 tensors read back as their float values") {
  const fs::path dir = compsearch::testing::fresh_dir("safetensors_ok");
  const std::vector<float> f32 = {1.5f, -2.25f, 3.0f, 0.1f, -0.0f, 1e-8f};
  std::string f16(6 * 2, '\0'), bf16(6 * 2, '\0');
  for (int i = 0; i < 6; ++i) {
    const uint16_t h = compsearch::model::float_to_half_bits(f32[i]);
    const uint16_t b = float_to_bf16_bits(f32[i]);
    std::memcpy(f16.data() + 2 * i, &h, 2);
    std::memcpy(bf16.data() + 2 * i, &b, 2);
  }
  std::string f32_raw(24, '\0');
  std::memcpy(f32_raw.data(), f32.data(), 24);
  compsearch::testing::write_safetensors(
      dir / "m.safetensors",
      {{"a", "F32", {2, 3}, f32_raw}, {"b", "F16", {6}, f16}, {"c", "BF16", {3, 2}, bf16}});
  const SafetensorsFile file = read_safetensors_header(dir / "m.safetensors");
  REQUIRE(file.tensors.size() == 3);
  CHECK(file.tensors[0].name == "a");
  CHECK(file.tensors[0].shape == std::vector<int64_t>{2, 3});
  CHECK(read_safetensors_tensor(file, file.tensors[0]) == f32);
  const auto b = read_safetensors_tensor(file, file.tensors[1]);
  const auto c = read_safetensors_tensor(file, file.tensors[2]);
  for (int i = 0; i < 6; ++i) {
    CAPTURE(i);
    CHECK(b[i] == compsearch::model::round_to_half(f32[i]));
    CHECK(c[i] == bf16_bits_to_float(float_to_bf16_bits(f32[i])));
  }
  CHECK(c[0] == 1.5f);
  CHECK(c[3] == doctest::Approx(0.1).epsilon(1.0 / 128));  // 8 significant bits
  // BF16 rounding: to nearest even on the 16 dropped bits.
  CHECK(float_to_bf16_bits(1.0f + 0x1p-8f) == 0x3f80);             // tie, even stays
  CHECK(float_to_bf16_bits(1.0f + 0x1p-8f + 0x1p-20f) == 0x3f81);  // above the tie
}

TEST_CASE("Bad safetensors files are errors naming the file and what is wrong") {
  const fs::path dir = compsearch::testing::fresh_dir("safetensors_bad");
  auto write_raw = [&](const std::string& name, const std::string& bytes) {
    std::ofstream(dir / name, std::ios::binary) << bytes;
    return dir / name;
  };
  std::string four_floats(16, '\0');
  SUBCASE("shorter than the length field") {
    CHECK_THROWS_WITH(read_safetensors_header(write_raw("short.safetensors", "abc")),
                      doctest::Contains("short.safetensors: truncated: 3 bytes"));
  }
  SUBCASE("header length over the limit") {
    std::string raw(8, '\0');
    const uint64_t len = 200'000'000;
    std::memcpy(raw.data(), &len, 8);
    CHECK_THROWS_WITH(read_safetensors_header(write_raw("big.safetensors", raw + "{}")),
                      doctest::Contains("header length 200000000 bytes exceeds the limit"));
  }
  SUBCASE("header nested 100,000 deep") {
    const std::string deep = std::string(100000, '[') + std::string(100000, ']');
    std::string raw(8, '\0');
    const uint64_t len = deep.size();
    std::memcpy(raw.data(), &len, 8);
    CHECK_THROWS_WITH(read_safetensors_header(write_raw("deep.safetensors", raw + deep)),
                      doctest::Contains("deep.safetensors: header is JSON nested deeper than 512"));
  }
  SUBCASE("header longer than the file") {
    std::string raw(8, '\0');
    const uint64_t len = 50;
    std::memcpy(raw.data(), &len, 8);
    CHECK_THROWS_WITH(read_safetensors_header(write_raw("cut.safetensors", raw + "{\"a\":")),
                      doctest::Contains("truncated: the header says 50 header bytes"));
  }
  SUBCASE("data cut off") {
    compsearch::testing::write_safetensors(dir / "data.safetensors",
                                           {{"w", "F32", {4}, four_floats}});
    fs::resize_file(dir / "data.safetensors", fs::file_size(dir / "data.safetensors") - 4);
    CHECK_THROWS_WITH(read_safetensors_header(dir / "data.safetensors"),
                      doctest::Contains("tensor 'w': data_offsets end 16 is past the end of the "
                                        "data (12 bytes): truncated file"));
  }
  SUBCASE("unsupported dtype") {
    compsearch::testing::write_safetensors(dir / "i64.safetensors",
                                           {{"w", "I64", {2}, four_floats}});
    CHECK_THROWS_WITH(read_safetensors_header(dir / "i64.safetensors"),
                      doctest::Contains("tensor 'w': dtype I64 is not supported, expected F32, "
                                        "F16 or BF16"));
  }
  SUBCASE("byte count that does not fit the shape") {
    compsearch::testing::write_safetensors(dir / "shape.safetensors",
                                           {{"w", "F16", {3}, four_floats}});
    CHECK_THROWS_WITH(read_safetensors_header(dir / "shape.safetensors"),
                      doctest::Contains("tensor 'w': 16 bytes for shape [3] of F16 (expected 6)"));
  }
  SUBCASE("header that is not JSON") {
    std::string raw(8, '\0');
    const uint64_t len = 4;
    std::memcpy(raw.data(), &len, 8);
    CHECK_THROWS_WITH(read_safetensors_header(write_raw("json.safetensors", raw + "{{{{")),
                      doctest::Contains("json.safetensors: header is not valid JSON"));
  }
}
