// normkit/dtype.hpp — element types and the 16-bit storage formats.
//
// float16 and bfloat16 are *storage* types: kernels load them, widen to float32, compute,
// and round back once on store (round to nearest, ties to even; NaN stays NaN).
#pragma once

#include <cstdint>
#include <cstring>

#include "normkit/config.hpp"

namespace normkit {

enum class DType : int8_t { Float32 = 0, Float64 = 1, Float16 = 2, BFloat16 = 3 };

inline const char* dtype_name(DType t) {
  switch (t) {
    case DType::Float32: return "float32";
    case DType::Float64: return "float64";
    case DType::Float16: return "float16";
    case DType::BFloat16: return "bfloat16";
  }
  return "unknown";
}

inline int64_t dtype_size(DType t) {
  switch (t) {
    case DType::Float32: return 4;
    case DType::Float64: return 8;
    case DType::Float16:
    case DType::BFloat16: return 2;
  }
  return 0;
}

// Statistics (mean, rstd) are float64 for float64 input and float32 otherwise (SPEC §0).
inline DType stat_dtype(DType x) { return x == DType::Float64 ? DType::Float64 : DType::Float32; }

// IEEE binary16, stored as its bits.
struct half_t {
  uint16_t bits;
};
// bfloat16 (the upper half of an IEEE binary32), stored as its bits.
struct bfloat16_t {
  uint16_t bits;
};

NK_HD uint32_t f32_bits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
#endif
}
NK_HD float bits_f32(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, 4);
  return f;
#endif
}

NK_HD uint64_t f64_bits(double d) {
#if defined(__CUDA_ARCH__)
  return static_cast<uint64_t>(__double_as_longlong(d));
#else
  uint64_t u;
  std::memcpy(&u, &d, 8);
  return u;
#endif
}
NK_HD double bits_f64(uint64_t u) {
#if defined(__CUDA_ARCH__)
  return __longlong_as_double(static_cast<long long>(u));
#else
  double d;
  std::memcpy(&d, &u, 8);
  return d;
#endif
}

NK_HD float bf16_to_float(bfloat16_t h) { return bits_f32(uint32_t(h.bits) << 16); }

NK_HD bfloat16_t float_to_bf16(float f) {
  uint32_t u = f32_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return bfloat16_t{uint16_t((u >> 16) | 0x40u)};  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest, ties to even
  return bfloat16_t{uint16_t(u >> 16)};
}

// binary16 <-> binary32 by bit manipulation (exact for every input; the SIMD layers use the
// hardware instructions, which give the same bits — cpp/tests/test_vec_math.cpp checks every
// pattern on every ISA). A signaling NaN comes out quiet, payload kept, as IEEE 754's
// conversion and F16C's vcvtph2ps make it.
NK_HD float half_to_float(half_t h) {
  const uint32_t sign = uint32_t(h.bits & 0x8000u) << 16;
  const uint32_t exp = (h.bits >> 10) & 0x1fu;
  const uint32_t man = h.bits & 0x3ffu;
  if (exp == 0x1f)  // Inf / NaN (quieted)
    return bits_f32(sign | 0x7f800000u | (man << 13) | (man != 0 ? 0x400000u : 0u));
  if (exp != 0) return bits_f32(sign | ((exp + 112u) << 23) | (man << 13));
  if (man == 0) return bits_f32(sign);
  // Subnormal: value = man * 2^-24, exactly representable in float32.
  float v = float(man) * 5.9604644775390625e-8f;
  return sign ? -v : v;
}

NK_HD half_t float_to_half(float f) {
  const uint32_t u = f32_bits(f);
  const uint16_t sign = uint16_t((u >> 16) & 0x8000u);
  const uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return half_t{uint16_t(sign | 0x7e00u | ((a >> 13) & 0x3ffu))};  // NaN
  if (a >= 0x477ff000u) return half_t{uint16_t(sign | 0x7c00u)};  // overflow (rounds to Inf)
  if (a >= 0x38800000u) {  // normal half
    uint32_t r = a - 0x38000000u;  // rebias exponent 127 -> 15
    r += 0xfffu + ((r >> 13) & 1u);  // round to nearest, ties to even
    return half_t{uint16_t(sign | (r >> 13))};
  }
  if (a < 0x33000000u) return half_t{sign};  // below half of the smallest subnormal -> 0
  // Subnormal half: shift the full mantissa (with hidden bit) right, rounding to even.
  const uint32_t e = a >> 23;
  const uint32_t m = (a & 0x7fffffu) | 0x800000u;
  const uint32_t shift = 126u - e;  // 14..24
  uint32_t q = m >> shift;
  const uint32_t rem = m & ((1u << shift) - 1u);
  const uint32_t half = 1u << (shift - 1u);
  if (rem > half || (rem == half && (q & 1u))) ++q;
  return half_t{uint16_t(sign | q)};
}

// Compute-type conversions used by every scalar path (CPU scalar kernels, SIMD tails, CUDA).
NK_HD float to_compute(float v) { return v; }
NK_HD double to_compute(double v) { return v; }
NK_HD float to_compute(half_t v) { return half_to_float(v); }
NK_HD float to_compute(bfloat16_t v) { return bf16_to_float(v); }

template <typename T>
struct StoreAs;
template <>
struct StoreAs<float> {
  NK_HD static float from(float v) { return v; }
  NK_HD static float from(double v) { return float(v); }
};
template <>
struct StoreAs<double> {
  NK_HD static double from(double v) { return v; }
  NK_HD static double from(float v) { return v; }
};
template <>
struct StoreAs<half_t> {
  NK_HD static half_t from(float v) { return float_to_half(v); }
  NK_HD static half_t from(double v) { return float_to_half(float(v)); }
};
template <>
struct StoreAs<bfloat16_t> {
  NK_HD static bfloat16_t from(float v) { return float_to_bf16(v); }
  NK_HD static bfloat16_t from(double v) { return float_to_bf16(float(v)); }
};

template <typename T, typename C>
NK_HD T from_compute(C v) {
  return StoreAs<T>::from(v);
}

// Accumulation type: float64 for float64 data, float32 for everything else.
template <typename T>
struct ComputeType {
  using type = float;
};
template <>
struct ComputeType<double> {
  using type = double;
};
template <typename T>
using compute_t = typename ComputeType<T>::type;

}  // namespace normkit
