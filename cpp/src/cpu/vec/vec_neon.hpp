// Vec<C> for AArch64 NEON: 4 float lanes / 2 double lanes. No streaming stores.
#pragma once

#include <cstring>

#include <arm_neon.h>

#include "normkit/dtype.hpp"

namespace normkit::cpu::NK_CPU_ISA {

template <typename C>
struct Vec;

template <>
struct Vec<float> {
  using value_type = float;
  using Mask = uint32x4_t;  // all-ones / all-zeros lanes
  static constexpr int size = 4;
  float32x4_t v;

  static Vec zero() { return {vdupq_n_f32(0.0f)}; }
  static Vec set1(float a) { return {vdupq_n_f32(a)}; }
  static Vec load(const float* p) { return {vld1q_f32(p)}; }
  static Vec load(const half_t* p) {
    return {vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(reinterpret_cast<const uint16_t*>(p))))};
  }
  static Vec load(const bfloat16_t* p) {
    const uint32x4_t w = vshlq_n_u32(vmovl_u16(vld1_u16(reinterpret_cast<const uint16_t*>(p))), 16);
    return {vreinterpretq_f32_u32(w)};
  }
  void store(float* p) const { vst1q_f32(p, v); }
  void store(half_t* p) const {
    vst1_u16(reinterpret_cast<uint16_t*>(p), vreinterpret_u16_f16(vcvt_f16_f32(v)));
  }
  void store(bfloat16_t* p) const {
    const uint32x4_t u = vreinterpretq_u32_f32(v);
    const uint32x4_t lsb = vandq_u32(vshrq_n_u32(u, 16), vdupq_n_u32(1));
    uint32x4_t r = vaddq_u32(vaddq_u32(u, vdupq_n_u32(0x7fff)), lsb);
    const uint32x4_t is_num = vceqq_f32(v, v);
    r = vbslq_u32(is_num, r, vorrq_u32(u, vdupq_n_u32(0x400000)));
    vst1_u16(reinterpret_cast<uint16_t*>(p), vmovn_u32(vshrq_n_u32(r, 16)));
  }
  template <typename T>
  void stream(T* p) const {
    store(p);
  }
  friend Vec operator+(Vec a, Vec b) { return {vaddq_f32(a.v, b.v)}; }
  friend Vec operator-(Vec a, Vec b) { return {vsubq_f32(a.v, b.v)}; }
  friend Vec operator*(Vec a, Vec b) { return {vmulq_f32(a.v, b.v)}; }
  friend Vec operator/(Vec a, Vec b) { return {vdivq_f32(a.v, b.v)}; }
  friend Vec operator-(Vec a) { return {vnegq_f32(a.v)}; }
  static Vec fmadd(Vec a, Vec b, Vec c) { return {vfmaq_f32(c.v, a.v, b.v)}; }
  float sum() const { return vaddvq_f32(v); }
  // a < b ? a : b, as x86 minps and Lane (fmin/vminq return the NaN, and -0 for min(+0, -0)).
  static Vec min(Vec a, Vec b) { return {vbslq_f32(vcltq_f32(a.v, b.v), a.v, b.v)}; }
  static Vec max(Vec a, Vec b) { return {vbslq_f32(vcgtq_f32(a.v, b.v), a.v, b.v)}; }
  static Vec abs(Vec a) { return {vabsq_f32(a.v)}; }
  static Mask lt(Vec a, Vec b) { return vcltq_f32(a.v, b.v); }
  static Mask le(Vec a, Vec b) { return vcleq_f32(a.v, b.v); }
  static Mask gt(Vec a, Vec b) { return vcgtq_f32(a.v, b.v); }
  static Mask ge(Vec a, Vec b) { return vcgeq_f32(a.v, b.v); }
  static Mask eq(Vec a, Vec b) { return vceqq_f32(a.v, b.v); }
  // The bits as a signed integer < 0: the sign bit set (−0 and negative NaNs included).
  static Mask signbit(Vec a) { return vcltzq_s32(vreinterpretq_s32_f32(a.v)); }
  static Vec select(Mask m, Vec a, Vec b) { return {vbslq_f32(m, a.v, b.v)}; }
  static Vec round(Vec a) { return {vrndnq_f32(a.v)}; }  // FRINTN: nearest, ties to even
  // n integer-valued in [-126, 127]: (n + 127) in the exponent field.
  static Vec pow2i(Vec n) {
    const int32x4_t e = vaddq_s32(vcvtnq_s32_f32(n.v), vdupq_n_s32(127));
    return {vreinterpretq_f32_s32(vshlq_n_s32(e, 23))};
  }
};

template <>
struct Vec<double> {
  using value_type = double;
  using Mask = uint64x2_t;  // all-ones / all-zeros lanes
  static constexpr int size = 2;
  float64x2_t v;

  static Vec zero() { return {vdupq_n_f64(0.0)}; }
  static Vec set1(double a) { return {vdupq_n_f64(a)}; }
  static Vec load(const double* p) { return {vld1q_f64(p)}; }
  void store(double* p) const { vst1q_f64(p, v); }
  void stream(double* p) const { store(p); }
  friend Vec operator+(Vec a, Vec b) { return {vaddq_f64(a.v, b.v)}; }
  friend Vec operator-(Vec a, Vec b) { return {vsubq_f64(a.v, b.v)}; }
  friend Vec operator*(Vec a, Vec b) { return {vmulq_f64(a.v, b.v)}; }
  friend Vec operator/(Vec a, Vec b) { return {vdivq_f64(a.v, b.v)}; }
  friend Vec operator-(Vec a) { return {vnegq_f64(a.v)}; }
  static Vec fmadd(Vec a, Vec b, Vec c) { return {vfmaq_f64(c.v, a.v, b.v)}; }
  double sum() const { return vaddvq_f64(v); }
  static Vec min(Vec a, Vec b) { return {vbslq_f64(vcltq_f64(a.v, b.v), a.v, b.v)}; }
  static Vec max(Vec a, Vec b) { return {vbslq_f64(vcgtq_f64(a.v, b.v), a.v, b.v)}; }
  static Vec abs(Vec a) { return {vabsq_f64(a.v)}; }
  static Mask lt(Vec a, Vec b) { return vcltq_f64(a.v, b.v); }
  static Mask le(Vec a, Vec b) { return vcleq_f64(a.v, b.v); }
  static Mask gt(Vec a, Vec b) { return vcgtq_f64(a.v, b.v); }
  static Mask ge(Vec a, Vec b) { return vcgeq_f64(a.v, b.v); }
  static Mask eq(Vec a, Vec b) { return vceqq_f64(a.v, b.v); }
  static Mask signbit(Vec a) { return vcltzq_s64(vreinterpretq_s64_f64(a.v)); }
  static Vec select(Mask m, Vec a, Vec b) { return {vbslq_f64(m, a.v, b.v)}; }
  static Vec round(Vec a) { return {vrndnq_f64(a.v)}; }
  // n integer-valued in [-1022, 1023].
  static Vec pow2i(Vec n) {
    const int64x2_t e = vaddq_s64(vcvtnq_s64_f64(n.v), vdupq_n_s64(1023));
    return {vreinterpretq_f64_s64(vshlq_n_s64(e, 52))};
  }
};

template <typename T>
constexpr int stream_alignment() {
  return 0;
}
inline void stream_fence() {}
// Without streaming stores (stream_alignment 0) an ordinary 16-byte copy.
inline void stream16(void* p, const void* src) { std::memcpy(p, src, 16); }

}  // namespace normkit::cpu::NK_CPU_ISA
