// detail::Lane<C>: one value of the compute type C (float or double) behind the SIMD
// layer's Vec<C> interface (cpu/vec/vec.hpp), for host and device code alike. The scalar CPU
// ISA's Vec<C> is this type, and the CUDA kernels call the family math (common/*_math.hpp,
// common/vec_math.hpp) with it, so the one scalar path is the executable specification that
// every SIMD layer must match (to rounding).
//
// The interface, shared with every ISA's Vec<C>:
//   value_type = C, size (lanes; 1 here), Mask (a comparison's result; bool here)
//   zero(), set1(c), load(const T*) / store(T*) / stream(T*) for T = C or a 16-bit storage
//     type (widened on load, rounded to nearest even on store)
//   + − * / (IEEE, rounded to nearest), unary − (flips the sign bit, also of 0 and NaN)
//   fmadd(a, b, c) = a·b + c; here two roundings (the SIMD layers fuse, where they can)
//   min(a, b) = a < b ? a : b,  max(a, b) = a > b ? a : b  — so when either is NaN the result
//     is b, and min(±0, ∓0) = b (x86 minps/maxps; NEON emulates it)
//   abs(a) (clears the sign bit), lt le gt ge eq (ordered: false when either is NaN),
//   signbit(a) (the lanes whose sign bit is set: −0 and negative NaNs too),
//   select(m, a, b) = m ? a : b per lane
//   round(a): to the nearest integer, ties to even, as C (±0, ±Inf, NaN kept; −0.3 → −0)
//   pow2i(n) = 2^n for integer-valued n in [−126, 127] (float) / [−1022, 1023] (double);
//     other n give unspecified values (never UB)
//   sum() (horizontal; the value itself here)
//
// Device notes: nvcc contracts a·b + c into an FMA by default (--fmad=true), also across
// these inlined calls; a multiply written with __fmul_rn/__dmul_rn is never contracted, so a
// Lane computes the same bits on the device as on the host (built with -ffp-contract=off).
// Division uses __fdiv_rn/__ddiv_rn: IEEE whatever -prec-div says. Only arithmetic and bit
// casts otherwise: no <cmath> (not all of it is device code). Device code must not be built
// with --use_fast_math (it flushes denormals).
#pragma once

#include <cstdint>

#include "normkit/config.hpp"
#include "normkit/dtype.hpp"

namespace normkit::detail {

// What Lane needs to know about C's bits.
template <typename C>
struct LaneBits;
template <>
struct LaneBits<float> {
  using U = uint32_t;
  static constexpr U kSign = 0x80000000u;
  static constexpr int kMantBits = 23;
  static constexpr U kBias = 127;
  // 2^23: every float of at least this magnitude is an integer.
  static constexpr float kIntThreshold = 0x1p23f;
  // 1.5·2^23: t = n + kShifter (|n| < 2^22, integer) is exact and holds n, in two's
  // complement, in its low mantissa bits.
  static constexpr float kShifter = 0x1.8p23f;
  NK_HD static U to(float f) { return f32_bits(f); }
  NK_HD static float from(U u) { return bits_f32(u); }
  NK_HD static float mul(float a, float b) {
#if defined(__CUDA_ARCH__)
    return __fmul_rn(a, b);
#else
    return a * b;
#endif
  }
  NK_HD static float div(float a, float b) {
#if defined(__CUDA_ARCH__)
    return __fdiv_rn(a, b);
#else
    return a / b;
#endif
  }
};
template <>
struct LaneBits<double> {
  using U = uint64_t;
  static constexpr U kSign = 0x8000000000000000u;
  static constexpr int kMantBits = 52;
  static constexpr U kBias = 1023;
  static constexpr double kIntThreshold = 0x1p52;
  static constexpr double kShifter = 0x1.8p52;
  NK_HD static U to(double d) { return f64_bits(d); }
  NK_HD static double from(U u) { return bits_f64(u); }
  NK_HD static double mul(double a, double b) {
#if defined(__CUDA_ARCH__)
    return __dmul_rn(a, b);
#else
    return a * b;
#endif
  }
  NK_HD static double div(double a, double b) {
#if defined(__CUDA_ARCH__)
    return __ddiv_rn(a, b);
#else
    return a / b;
#endif
  }
};

template <typename C>
struct Lane {
  using value_type = C;
  using Mask = bool;
  static constexpr int size = 1;
  C v;

  NK_HD static Lane zero() { return {C(0)}; }
  NK_HD static Lane set1(C a) { return {a}; }
  template <typename T>
  NK_HD static Lane load(const T* p) {
    return {C(to_compute(*p))};
  }
  template <typename T>
  NK_HD void store(T* p) const {
    *p = from_compute<T>(v);
  }
  template <typename T>
  NK_HD void stream(T* p) const {
    store(p);
  }

  NK_HD friend Lane operator+(Lane a, Lane b) { return {a.v + b.v}; }
  NK_HD friend Lane operator-(Lane a, Lane b) { return {a.v - b.v}; }
  NK_HD friend Lane operator*(Lane a, Lane b) { return {B::mul(a.v, b.v)}; }
  NK_HD friend Lane operator/(Lane a, Lane b) { return {B::div(a.v, b.v)}; }
  NK_HD friend Lane operator-(Lane a) { return {-a.v}; }
  NK_HD static Lane fmadd(Lane a, Lane b, Lane c) { return {B::mul(a.v, b.v) + c.v}; }
  NK_HD C sum() const { return v; }

  NK_HD static Lane min(Lane a, Lane b) { return a.v < b.v ? a : b; }
  NK_HD static Lane max(Lane a, Lane b) { return a.v > b.v ? a : b; }
  NK_HD static Lane abs(Lane a) { return {B::from(B::to(a.v) & ~B::kSign)}; }

  NK_HD static Mask lt(Lane a, Lane b) { return a.v < b.v; }
  NK_HD static Mask le(Lane a, Lane b) { return a.v <= b.v; }
  NK_HD static Mask gt(Lane a, Lane b) { return a.v > b.v; }
  NK_HD static Mask ge(Lane a, Lane b) { return a.v >= b.v; }
  NK_HD static Mask eq(Lane a, Lane b) { return a.v == b.v; }
  NK_HD static Mask signbit(Lane a) { return (B::to(a.v) & B::kSign) != 0; }
  NK_HD static Lane select(Mask m, Lane a, Lane b) { return m ? a : b; }

  // (|a| + 2^23) − 2^23 rounds |a| < 2^23 to an integer in the current rounding mode
  // (nearest even; the add rounds, the subtraction is exact); larger |a|, ±Inf and NaN are
  // integers or NaN already. The sign goes back on last, so −0.3 gives −0 as roundps does.
  NK_HD static Lane round(Lane a) {
    const C m = abs(a).v;
    const C r = m < B::kIntThreshold ? (m + B::kIntThreshold) - B::kIntThreshold : m;
    return {B::from(B::to(r) | (B::to(a.v) & B::kSign))};
  }
  // kShifter + n holds n in its low bits; shifted up to the exponent field, the exponent
  // and the shifter's own mantissa bit fall off the top (unsigned shifts: no UB for any n).
  NK_HD static Lane pow2i(Lane n) {
    const U t = B::to(n.v + B::kShifter);
    return {B::from(U(t << B::kMantBits) + U(B::kBias << B::kMantBits))};
  }

 private:
  using B = LaneBits<C>;
  using U = typename B::U;
};

}  // namespace normkit::detail
