// The 16-bit storage types of dtype.hpp: conversions are exact where they can be and round
// to nearest, ties to even, where they must (every kernel's scalar path relies on them).
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#include "nk_test.hpp"
#include "normkit/dtype.hpp"

namespace {

using normkit::bf16_to_float;
using normkit::bfloat16_t;
using normkit::float_to_bf16;
using normkit::float_to_half;
using normkit::half_t;
using normkit::half_to_float;

float pow2(int e) { return std::ldexp(1.0f, e); }

}  // namespace

NK_TEST(dtype, half_known_values) {
  struct Case {
    float f;
    uint16_t bits;
  };
  const Case cases[] = {
      {0.0f, 0x0000},
      {-0.0f, 0x8000},
      {1.0f, 0x3c00},
      {-2.0f, 0xc000},
      {65504.0f, 0x7bff},                   // largest finite half
      {65519.0f, 0x7bff},                   // below the halfway point to 65536
      {65520.0f, 0x7c00},                   // halfway rounds to even: Inf
      {std::numeric_limits<float>::infinity(), 0x7c00},
      {-std::numeric_limits<float>::infinity(), 0xfc00},
      {pow2(-14), 0x0400},                  // smallest normal
      {pow2(-24), 0x0001},                  // smallest subnormal
      {pow2(-25), 0x0000},                  // halfway to it: ties to even (0)
      {1.5f * pow2(-25), 0x0001},           // above halfway
      {3.0f * pow2(-25), 0x0002},           // 1.5 subnormal ulps: tie to even (2)
      {1.0f + pow2(-11), 0x3c00},           // tie between 1 and 1+2^-10: even (1)
      {1.0f + 3.0f * pow2(-11), 0x3c02},    // tie: even (1+2^-9)
      {1.0f + pow2(-11) + pow2(-20), 0x3c01},  // just above the tie
      {0.1f, 0x2e66},
  };
  for (const Case& c : cases) {
    NK_CHECK(float_to_half(c.f).bits == c.bits)
        << c.f << " -> 0x" << std::hex << float_to_half(c.f).bits << ", expected 0x" << c.bits;
  }
  NK_CHECK(half_to_float(half_t{0x0001}) == pow2(-24));
  NK_CHECK(half_to_float(half_t{0x03ff}) == 1023.0f * pow2(-24));
  NK_CHECK(half_to_float(half_t{0x7bff}) == 65504.0f);
  NK_CHECK(half_to_float(half_t{0xfc00}) == -std::numeric_limits<float>::infinity());
  NK_CHECK(std::isnan(half_to_float(float_to_half(std::nanf("")))));
}

NK_TEST(dtype, bfloat16_known_values) {
  struct Case {
    float f;
    uint16_t bits;
  };
  const Case cases[] = {
      {0.0f, 0x0000},
      {-0.0f, 0x8000},
      {1.0f, 0x3f80},
      {-2.0f, 0xc000},
      {1.0f + pow2(-8), 0x3f80},           // tie between 1 and 1+2^-7: even (1)
      {1.0f + 3.0f * pow2(-8), 0x3f82},    // tie: even
      {1.0f + pow2(-8) + pow2(-20), 0x3f81},
      {std::numeric_limits<float>::max(), 0x7f80},  // beyond bf16's max + half ulp: Inf
      {std::numeric_limits<float>::infinity(), 0x7f80},
      {std::numeric_limits<float>::denorm_min(), 0x0000},
      {pow2(-126), 0x0080},
  };
  for (const Case& c : cases) {
    NK_CHECK(float_to_bf16(c.f).bits == c.bits)
        << c.f << " -> 0x" << std::hex << float_to_bf16(c.f).bits << ", expected 0x" << c.bits;
  }
  // NaN stays NaN, including a signalling NaN whose payload lives only in the low bits.
  float snan;
  const uint32_t snan_bits = 0x7f800001u;
  std::memcpy(&snan, &snan_bits, 4);
  NK_CHECK(std::isnan(bf16_to_float(float_to_bf16(snan))));
  NK_CHECK(std::isnan(bf16_to_float(float_to_bf16(std::nanf("")))));
}

// Every 16-bit pattern survives widening and narrowing unchanged (NaNs stay NaNs).
NK_TEST(dtype, exhaustive_round_trip) {
  int64_t bad_half = 0, bad_bf16 = 0;
  for (uint32_t b = 0; b < 0x10000u; ++b) {
    const half_t h{uint16_t(b)};
    const float fh = half_to_float(h);
    const half_t h2 = float_to_half(fh);
    if (std::isnan(fh) ? !std::isnan(half_to_float(h2)) : h2.bits != h.bits) ++bad_half;
    const bfloat16_t g{uint16_t(b)};
    const float fg = bf16_to_float(g);
    const bfloat16_t g2 = float_to_bf16(fg);
    if (std::isnan(fg) ? !std::isnan(bf16_to_float(g2)) : g2.bits != g.bits) ++bad_bf16;
  }
  NK_CHECK(bad_half == 0) << bad_half << " half patterns do not round-trip";
  NK_CHECK(bad_bf16 == 0) << bad_bf16 << " bfloat16 patterns do not round-trip";
}

// Narrowing picks the nearest representable value (checked against neighbours in double).
NK_TEST(dtype, narrowing_is_nearest) {
  uint32_t state = 12345u;
  int64_t bad = 0;
  for (int i = 0; i < 200000; ++i) {
    state = state * 1664525u + 1013904223u;
    // floats in ±[2^-30, 2^17): covers half subnormals, normals and overflow
    const float f = std::ldexp(1.0f + float(state >> 8) * pow2(-24), int(state % 47) - 30) *
                    ((state & 0x80u) ? -1.0f : 1.0f);
    const double d = f;
    const half_t h = float_to_half(f);
    const double got = half_to_float(h);
    if (std::isinf(got)) {
      if (std::fabs(d) < 65520.0) ++bad;
      continue;
    }
    if (std::fabs(d) >= 65520.0) ++bad;  // should have overflowed to Inf
    // neighbours of h in magnitude
    const uint16_t mag = h.bits & 0x7fffu, sign = h.bits & 0x8000u;
    for (int delta : {-1, 1}) {
      const int m = int(mag) + delta;
      if (m < 0 || m > 0x7bff) continue;
      const double other = half_to_float(half_t{uint16_t(sign | m)});
      if (std::fabs(other - d) < std::fabs(got - d)) ++bad;
    }
    const bfloat16_t g = float_to_bf16(f);
    const double gb = bf16_to_float(g);
    for (int delta : {-1, 1}) {
      const uint16_t gm = g.bits & 0x7fffu;
      const int m = int(gm) + delta;
      if (m < 0 || m > 0x7f7f) continue;
      const double other = bf16_to_float(bfloat16_t{uint16_t((g.bits & 0x8000u) | m)});
      if (std::fabs(other - d) < std::fabs(gb - d)) ++bad;
    }
  }
  NK_CHECK(bad == 0) << bad << " conversions were not to the nearest value";
}
