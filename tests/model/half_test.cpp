// model/half.h (the project's one float <-> IEEE half conversion) against independent references:
// numpy's float16 (run through /usr/bin/python3), the CPU's F16C conversion instructions, and
// hand-computed cases for ties, subnormals, overflow and NaN payloads.
#include <doctest/doctest.h>
#include <unistd.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "common/machine_info.h"
#include "model/half.h"
#include "tests/test_skip.h"

using compsearch::model::float_to_half_bits;
using compsearch::model::half_bits_to_float;
using compsearch::model::round_to_half;

namespace {

bool is_half_nan(uint16_t h) { return (h & 0x7c00u) == 0x7c00u && (h & 0x3ffu) != 0; }
bool is_float_nan(uint32_t u) { return (u & 0x7fffffffu) > 0x7f800000u; }

// The value of half bit pattern h (finite), computed in double from the format's definition.
double half_value(uint32_t h) {
  const uint32_t exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu;
  const double v =
      exp == 0 ? std::ldexp(mant, -24) : std::ldexp(1024.0 + mant, static_cast<int>(exp) - 25);
  return (h & 0x8000u) ? -v : v;
}

bool numpy_available() {
  return std::system("/usr/bin/python3 -c 'import numpy' > /dev/null 2>&1") == 0;
}

// Converts `in` with numpy (`in_type` -> `out_type`, e.g. "float32" -> "float16"; the arrays travel
// as raw bit patterns through temporary files).
template <typename Out, typename In>
std::vector<Out> numpy_convert(const std::vector<In>& in, const std::string& in_type,
                               const std::string& out_type) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path();
  const std::string tag = "compsearch_half_test_" + std::to_string(getpid()) + "_" + in_type;
  const fs::path in_path = dir / (tag + ".in"), out_path = dir / (tag + ".out");
  {
    std::ofstream f(in_path, std::ios::binary);
    f.write(reinterpret_cast<const char*>(in.data()),
            static_cast<std::streamsize>(in.size() * sizeof(In)));
  }
  const std::string in_int = sizeof(In) == 2 ? "uint16" : "uint32";
  const std::string out_int = sizeof(Out) == 2 ? "uint16" : "uint32";
  const std::string cmd =
      "/usr/bin/python3 -W ignore -c 'import sys, numpy as np; np.fromfile(sys.argv[1], dtype=np." +
      in_int + ").view(np." + in_type + ").astype(np." + out_type + ").view(np." + out_int +
      ").tofile(sys.argv[2])' " + in_path.string() + " " + out_path.string();
  const int rc = std::system(cmd.c_str());
  std::vector<Out> out(in.size());
  std::ifstream f(out_path, std::ios::binary);
  f.read(reinterpret_cast<char*>(out.data()),
         static_cast<std::streamsize>(out.size() * sizeof(Out)));
  const bool complete = f.gcount() == static_cast<std::streamsize>(out.size() * sizeof(Out));
  fs::remove(in_path);
  fs::remove(out_path);
  REQUIRE_MESSAGE(rc == 0, "numpy conversion failed: " << cmd);
  REQUIRE(complete);
  return out;
}

// Floats where rounding to half is decided: every finite half value, the midpoint to the next
// half up (a tie), and the floats just below and above each midpoint, with both signs; plus the
// edges below the smallest subnormal, float subnormals, overflow and infinities.
std::vector<uint32_t> rounding_cases() {
  std::vector<uint32_t> cases;
  int inexact_midpoints = 0;
  for (uint32_t h = 0; h < 0x7c00u; ++h) {
    const float v = static_cast<float>(half_value(h));
    const float mid =
        static_cast<float>((half_value(h) + half_value(h + 1)) / 2);  // exact in float
    inexact_midpoints += static_cast<double>(mid) != (half_value(h) + half_value(h + 1)) / 2;
    for (float x : {v, mid, std::nextafter(mid, 0.0f),
                    std::nextafter(mid, std::numeric_limits<float>::infinity())}) {
      cases.push_back(std::bit_cast<uint32_t>(x));
      cases.push_back(std::bit_cast<uint32_t>(-x));
    }
  }
  for (float x :
       {std::ldexp(1.0f, -25), std::ldexp(1.0f, -26), std::ldexp(3.0f, -26),
        std::nextafter(std::ldexp(1.0f, -25), 1.0f), std::nextafter(std::ldexp(1.0f, -25), 0.0f),
        std::numeric_limits<float>::denorm_min(), std::numeric_limits<float>::min(),
        std::numeric_limits<float>::max(), 65536.0f, 1e10f,
        std::numeric_limits<float>::infinity()}) {
    cases.push_back(std::bit_cast<uint32_t>(x));
    cases.push_back(std::bit_cast<uint32_t>(-x));
  }
  CHECK(inexact_midpoints == 0);
  return cases;
}

#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("f16c"))) uint16_t f16c_float_to_half(float x) {
  return static_cast<uint16_t>(_cvtss_sh(x, _MM_FROUND_TO_NEAREST_INT));
}
__attribute__((target("f16c"))) float f16c_half_to_float(uint16_t h) { return _cvtsh_ss(h); }
bool has_f16c() {  // clang 14's __builtin_cpu_supports does not know "f16c"
  const auto isa = compsearch::machine_info().isa;
  return std::find(isa.begin(), isa.end(), "f16c") != isa.end();
}
#else
uint16_t f16c_float_to_half(float) { return 0; }
float f16c_half_to_float(uint16_t) { return 0.0f; }
bool has_f16c() { return false; }
#endif

}  // namespace

TEST_CASE("Half rounding of hand-computed ties, subnormals, overflow and signed zeros") {
  // 1 + 2^-11 lies halfway between 1 and 1 + 2^-10: ties go to the even mantissa.
  CHECK(float_to_half_bits(1.0f + std::ldexp(1.0f, -11)) == 0x3c00u);
  CHECK(float_to_half_bits(1.0f + 3 * std::ldexp(1.0f, -11)) == 0x3c02u);  // odd below: up to even
  CHECK(float_to_half_bits(std::nextafter(1.0f + std::ldexp(1.0f, -11), 2.0f)) == 0x3c01u);
  CHECK(float_to_half_bits(65504.0f) == 0x7bffu);  // the largest half
  CHECK(float_to_half_bits(65519.99f) == 0x7bffu);
  CHECK(float_to_half_bits(65520.0f) == 0x7c00u);  // the tie above the largest half: inf
  CHECK(float_to_half_bits(-1e30f) == 0xfc00u);
  CHECK(float_to_half_bits(std::ldexp(1.0f, -14)) == 0x0400u);  // the smallest normal
  CHECK(float_to_half_bits(std::ldexp(1.0f, -24)) == 0x0001u);  // the smallest subnormal
  CHECK(float_to_half_bits(std::ldexp(1.0f, -25)) == 0x0000u);  // tie between 0 and 2^-24: 0
  CHECK(float_to_half_bits(std::ldexp(3.0f, -26)) == 0x0001u);  // 0.75 * 2^-24: up
  CHECK(float_to_half_bits(std::ldexp(3.0f, -25)) == 0x0002u);  // 1.5 * 2^-24: tie to even 2
  CHECK(float_to_half_bits(std::ldexp(1023.5f, -24)) ==
        0x0400u);  // subnormal rounds up into the normals
  CHECK(float_to_half_bits(std::numeric_limits<float>::denorm_min()) == 0x0000u);
  CHECK(float_to_half_bits(-0.0f) == 0x8000u);
  CHECK(float_to_half_bits(-std::ldexp(1.0f, -30)) == 0x8000u);  // underflow keeps the sign
  CHECK(half_bits_to_float(0x0001u) == std::ldexp(1.0f, -24));
  CHECK(half_bits_to_float(0x83ffu) == -std::ldexp(1023.0f, -24));
  CHECK(half_bits_to_float(0x7bffu) == 65504.0f);
  CHECK(std::bit_cast<uint32_t>(half_bits_to_float(0x8000u)) == 0x80000000u);
  CHECK(round_to_half(0.1f) == 0.0999755859375f);
}

TEST_CASE("Half conversion keeps infinities and NaN signs and payloads, making NaNs quiet") {
  CHECK(float_to_half_bits(std::numeric_limits<float>::infinity()) == 0x7c00u);
  CHECK(float_to_half_bits(-std::numeric_limits<float>::infinity()) == 0xfc00u);
  // Positive NaNs stay positive (the sign bit is not fed by the float's exponent).
  CHECK(float_to_half_bits(std::bit_cast<float>(0x7fc00000u)) == 0x7e00u);
  CHECK(float_to_half_bits(std::bit_cast<float>(0xffc00000u)) == 0xfe00u);
  // Signalling NaN whose payload lies below the kept bits: quiet, still a NaN.
  CHECK(float_to_half_bits(std::bit_cast<float>(0x7f800001u)) == 0x7e00u);
  // Signalling NaN with the top payload bits set: they are kept, the quiet bit added.
  CHECK(float_to_half_bits(std::bit_cast<float>(0x7fbfe000u)) == 0x7fffu);
  CHECK(float_to_half_bits(std::bit_cast<float>(0xff802000u)) == 0xfe01u);
  CHECK(std::bit_cast<uint32_t>(half_bits_to_float(0x7e01u)) == 0x7fc02000u);
  CHECK(std::bit_cast<uint32_t>(half_bits_to_float(0xfc01u)) ==
        0xff802000u);  // payload kept, not quieted
  CHECK(half_bits_to_float(0xfc00u) == -std::numeric_limits<float>::infinity());
}

TEST_CASE("Every half bit pattern survives a round trip through float, NaNs made quiet") {
  int mismatches = 0;
  for (uint32_t h = 0; h <= 0xffffu; ++h) {
    const uint16_t want =
        is_half_nan(static_cast<uint16_t>(h)) ? static_cast<uint16_t>(h | 0x200u) : h;
    const uint16_t got = float_to_half_bits(half_bits_to_float(static_cast<uint16_t>(h)));
    if (got != want && mismatches++ < 5)
      FAIL_CHECK("half " << h << " came back as " << got << ", expected " << want);
  }
  CHECK(mismatches == 0);
}

TEST_CASE("Half to float equals numpy's float16 conversion for all 65,536 bit patterns") {
  if (!numpy_available()) COMPSEARCH_SKIP_TEST("numpy is not importable by /usr/bin/python3");
  std::vector<uint16_t> halves(65536);
  for (uint32_t h = 0; h <= 0xffffu; ++h) halves[h] = static_cast<uint16_t>(h);
  const std::vector<uint32_t> want = numpy_convert<uint32_t>(halves, "float16", "float32");
  int mismatches = 0, nans = 0;
  for (uint32_t h = 0; h <= 0xffffu; ++h) {
    const uint32_t got = std::bit_cast<uint32_t>(half_bits_to_float(static_cast<uint16_t>(h)));
    bool ok = got == want[h];
    if (is_half_nan(static_cast<uint16_t>(h))) {
      // numpy may quiet a signalling NaN; ours keeps the bits: compare NaN-ness and sign, and the
      // payload with the format's rule (the half's 10 bits at the top of the float's 23).
      ++nans;
      ok = is_float_nan(want[h]) && (got >> 31) == (want[h] >> 31) &&
           (got & 0x7fffffu) == ((h & 0x3ffu) << 13);
    }
    if (!ok && mismatches++ < 5)
      FAIL_CHECK("half " << h << ": got float bits " << got << ", numpy gives " << want[h]);
  }
  CHECK(nans == 2 * 1023);
  CHECK(mismatches == 0);
}

TEST_CASE("Float to half equals numpy's float16 rounding at every tie and next to it") {
  if (!numpy_available()) COMPSEARCH_SKIP_TEST("numpy is not importable by /usr/bin/python3");
  const std::vector<uint32_t> cases = rounding_cases();
  const std::vector<uint16_t> want = numpy_convert<uint16_t>(cases, "float32", "float16");
  int mismatches = 0;
  for (size_t i = 0; i < cases.size(); ++i) {
    const uint16_t got = float_to_half_bits(std::bit_cast<float>(cases[i]));
    if (got != want[i] && mismatches++ < 5)
      FAIL_CHECK("float bits " << cases[i] << ": got half " << got << ", numpy gives " << want[i]);
  }
  CHECK(cases.size() > 250000);
  CHECK(mismatches == 0);
}

TEST_CASE("Float to half equals the CPU's F16C conversion across the float range, NaNs included") {
  if (!has_f16c()) COMPSEARCH_SKIP_TEST("this CPU has no F16C instructions");
  int mismatches = 0;
  int64_t checked = 0;
  auto check = [&](uint32_t u) {
    const float x = std::bit_cast<float>(u);
    const uint16_t got = float_to_half_bits(x), want = f16c_float_to_half(x);
    ++checked;
    if (got != want && mismatches++ < 5)
      FAIL_CHECK("float bits " << u << ": got half " << got << ", F16C gives " << want);
  };
  // Every sign, exponent and top-10 mantissa pattern, with the 13 dropped bits at 0, just above 0,
  // just below, at and just above the tie, at the top, and one pseudo-random value.
  for (uint32_t hi = 0; hi < (1u << 19); ++hi) {
    for (uint32_t lo : {0x0u, 0x1u, 0xfffu, 0x1000u, 0x1001u, 0x1fffu, (hi * 2654435761u) >> 19})
      check((hi << 13) | lo);
  }
  // Every float whose half is subnormal or zero-by-rounding (exponents 2^-26 .. 2^-15), where the
  // dropped bits are more than 13.
  for (uint32_t u = 101u << 23; u < (113u << 23); ++u) check(u);
  CHECK(checked > 100'000'000);
  CHECK(mismatches == 0);
}

TEST_CASE("Half to float equals the CPU's F16C conversion for every non-NaN half") {
  if (!has_f16c()) COMPSEARCH_SKIP_TEST("this CPU has no F16C instructions");
  int mismatches = 0;
  for (uint32_t h = 0; h <= 0xffffu; ++h) {
    if (is_half_nan(static_cast<uint16_t>(h))) continue;
    const uint32_t got = std::bit_cast<uint32_t>(half_bits_to_float(static_cast<uint16_t>(h)));
    const uint32_t want = std::bit_cast<uint32_t>(f16c_half_to_float(static_cast<uint16_t>(h)));
    if (got != want && mismatches++ < 5)
      FAIL_CHECK("half " << h << ": got " << got << ", F16C gives " << want);
  }
  CHECK(mismatches == 0);
}
