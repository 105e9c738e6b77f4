// IEEE 754 binary16 ("half") <-> binary32 conversion: the one copy of the rule for everything that
// rounds to fp16 (DESIGN.md rule 7 and a_bits 16 in compressors/, FLOAT16 tensors in ONNX import
// and export, the executor's Cast). Header-only and constexpr, so the hot loops that call it
// inline it.
#pragma once

#include <bit>
#include <cstdint>

namespace compsearch::model {

// Round to nearest, ties to even. Overflow (|x| >= 65520 after rounding) gives +-inf; results
// below 2^-14 are half subnormals (not flushed); +-0 keeps its sign. A NaN stays a NaN with its
// sign and the top 10 bits of its payload, made quiet (bit 9 set), as x86 F16C's vcvtps2ph and
// ARM's fcvt do; a signalling half NaN therefore does not survive a round trip unchanged.
constexpr uint16_t float_to_half_bits(float x) {
  const uint32_t u = std::bit_cast<uint32_t>(x);
  const uint32_t sign = (u >> 16) & 0x8000u;
  const uint32_t abs = u & 0x7fffffffu;
  if (abs >= 0x7f800000u) {  // inf, or NaN: quiet, the payload's top 10 bits kept
    return static_cast<uint16_t>(sign | 0x7c00u |
                                 (abs > 0x7f800000u ? 0x200u | ((abs >> 13) & 0x3ffu) : 0u));
  }
  if (abs >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // rounds to >= 65520: inf
  if (abs < 0x38800000u) {
    // Below 2^-14 the result is subnormal (or zero): value = m * 2^-24, m rounded to nearest even.
    if (abs < 0x33000000u) return static_cast<uint16_t>(sign);  // below 2^-25: rounds to 0
    const uint32_t exp = abs >> 23;
    const uint32_t mant = (abs & 0x7fffffu) | 0x800000u;
    const uint32_t shift = 126 - exp;  // 14..24 bits to drop (value = mant * 2^(exp - 150))
    const uint32_t kept = mant >> shift;
    const uint32_t rem = mant & ((1u << shift) - 1);
    const uint32_t half = 1u << (shift - 1);
    const uint32_t r = kept + (rem > half || (rem == half && (kept & 1u)));
    return static_cast<uint16_t>(sign | r);
  }
  // Normal: rebias the exponent (127 -> 15) and round the 13 dropped mantissa bits to nearest
  // even; a carry into the exponent is the correct next binade.
  uint32_t h = (abs - 0x38000000u) >> 13;
  const uint32_t rem = abs & 0x1fffu;
  h += (rem > 0x1000u || (rem == 0x1000u && (h & 1u)));
  return static_cast<uint16_t>(sign | h);
}

// Exact (every half is a float). NaN payloads are kept, shifted into the top of the float's.
constexpr float half_bits_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  const uint32_t mant = h & 0x3ffu;
  if (exp == 0) {
    // Zero or subnormal: mant * 2^-24, exact in float (a normal float for mant > 0).
    return std::bit_cast<float>(sign |
                                std::bit_cast<uint32_t>(static_cast<float>(mant) * 0x1p-24f));
  }
  if (exp == 31) return std::bit_cast<float>(sign | 0x7f800000u | (mant << 13));
  return std::bit_cast<float>(sign | ((exp + 112) << 23) | (mant << 13));
}

// x rounded to the nearest half, as a float.
constexpr float round_to_half(float x) { return half_bits_to_float(float_to_half_bits(x)); }

}  // namespace compsearch::model
