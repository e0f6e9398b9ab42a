// Vec<C> for AVX-512 (F, BW, VL, DQ) + FMA + F16C: 16 float lanes / 8 double lanes. The
// avx512bf16 ISA is the same code with AVX512_BF16's float -> bf16 conversion.
#pragma once

#include <immintrin.h>

#include "normkit/dtype.hpp"

namespace normkit::cpu::NK_CPU_ISA {

template <typename C>
struct Vec;

template <>
struct Vec<float> {
  using value_type = float;
  using Mask = __mmask16;  // bit i: lane i
  static constexpr int size = 16;
  __m512 v;

  static Vec zero() { return {_mm512_setzero_ps()}; }
  static Vec set1(float a) { return {_mm512_set1_ps(a)}; }
  static Vec load(const float* p) { return {_mm512_loadu_ps(p)}; }
  static Vec load(const half_t* p) {
    return {_mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)))};
  }
  static Vec load(const bfloat16_t* p) {
    return from_bf16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
  // The first n < 16 lanes from p, the rest zero — masked loads, which never touch (or
  // fault on) the lanes masked off: Note [Masked partial vectors] (loops.hpp).
  static Vec load_n(const float* p, int64_t n) { return {_mm512_maskz_loadu_ps(first(n), p)}; }
  static Vec load_n(const half_t* p, int64_t n) {
    return {_mm512_cvtph_ps(_mm256_maskz_loadu_epi16(first(n), p))};
  }
  static Vec load_n(const bfloat16_t* p, int64_t n) {
    return from_bf16(_mm256_maskz_loadu_epi16(first(n), p));
  }
  // The first n < 16 lanes stored to p; nothing else written.
  void store_n(float* p, int64_t n) const { _mm512_mask_storeu_ps(p, first(n), v); }
  void store_n(half_t* p, int64_t n) const { _mm256_mask_storeu_epi16(p, first(n), to_half()); }
  void store_n(bfloat16_t* p, int64_t n) const {
    _mm256_mask_storeu_epi16(p, first(n), to_bf16());
  }

  void store(float* p) const { _mm512_storeu_ps(p, v); }
  void store(half_t* p) const {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), to_half());
  }
  void store(bfloat16_t* p) const {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), to_bf16());
  }
  void stream(float* p) const { _mm512_stream_ps(p, v); }
  void stream(half_t* p) const {
    _mm256_stream_si256(reinterpret_cast<__m256i*>(p), to_half());
  }
  void stream(bfloat16_t* p) const {
    _mm256_stream_si256(reinterpret_cast<__m256i*>(p), to_bf16());
  }
  // lo's 16 values then hi's as 32 consecutive 16-bit values: one 64-byte store (Note
  // [Paired stores], loops.hpp); stream2 needs p 64-byte aligned.
  static void store2(bfloat16_t* p, Vec lo, Vec hi) {
    _mm512_storeu_si512(static_cast<void*>(p), to_bf16x2(lo.v, hi.v));
  }
  static void stream2(bfloat16_t* p, Vec lo, Vec hi) {
    _mm512_stream_si512(reinterpret_cast<__m512i*>(p), to_bf16x2(lo.v, hi.v));
  }
  static void store2(half_t* p, Vec lo, Vec hi) {
    _mm512_storeu_si512(static_cast<void*>(p), to_halfx2(lo, hi));
  }
  static void stream2(half_t* p, Vec lo, Vec hi) {
    _mm512_stream_si512(reinterpret_cast<__m512i*>(p), to_halfx2(lo, hi));
  }

  friend Vec operator+(Vec a, Vec b) { return {_mm512_add_ps(a.v, b.v)}; }
  friend Vec operator-(Vec a, Vec b) { return {_mm512_sub_ps(a.v, b.v)}; }
  friend Vec operator*(Vec a, Vec b) { return {_mm512_mul_ps(a.v, b.v)}; }
  friend Vec operator/(Vec a, Vec b) { return {_mm512_div_ps(a.v, b.v)}; }
  friend Vec operator-(Vec a) { return {_mm512_xor_ps(a.v, _mm512_set1_ps(-0.0f))}; }
  static Vec fmadd(Vec a, Vec b, Vec c) { return {_mm512_fmadd_ps(a.v, b.v, c.v)}; }
  // vminps/vmaxps: a < b ? a : b (a > b ? a : b) — b when either is NaN, as Lane.
  static Vec min(Vec a, Vec b) { return {_mm512_min_ps(a.v, b.v)}; }
  static Vec max(Vec a, Vec b) { return {_mm512_max_ps(a.v, b.v)}; }
  static Vec abs(Vec a) { return {_mm512_andnot_ps(_mm512_set1_ps(-0.0f), a.v)}; }
  static Mask lt(Vec a, Vec b) { return _mm512_cmp_ps_mask(a.v, b.v, _CMP_LT_OQ); }
  static Mask le(Vec a, Vec b) { return _mm512_cmp_ps_mask(a.v, b.v, _CMP_LE_OQ); }
  static Mask gt(Vec a, Vec b) { return _mm512_cmp_ps_mask(a.v, b.v, _CMP_GT_OQ); }
  static Mask ge(Vec a, Vec b) { return _mm512_cmp_ps_mask(a.v, b.v, _CMP_GE_OQ); }
  static Mask eq(Vec a, Vec b) { return _mm512_cmp_ps_mask(a.v, b.v, _CMP_EQ_OQ); }
  // The lanes' sign bits (vpmovd2m).
  static Mask signbit(Vec a) { return _mm512_movepi32_mask(_mm512_castps_si512(a.v)); }
  // mask_blend(k, x, y) = k ? y : x.
  static Vec select(Mask m, Vec a, Vec b) { return {_mm512_mask_blend_ps(m, b.v, a.v)}; }
  // roundscale with scale 2^0 (imm bits 7:4 = 0), rounding from the immediate.
  static Vec round(Vec a) {
    return {_mm512_roundscale_ps(a.v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)};
  }
  // scalef(1, n) = 1·2^floor(n): exact for the integer n of the domain.
  static Vec pow2i(Vec n) { return {_mm512_scalef_ps(_mm512_set1_ps(1.0f), n.v)}; }
  float sum() const {
    // Fixed pairwise order (halves, then quarters...), the same on every call.
    const __m256 h = _mm256_add_ps(_mm512_castps512_ps256(v),
                                   _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }

 private:
  static __mmask16 first(int64_t n) { return __mmask16((1u << unsigned(n)) - 1u); }
  // bf16 -> float: each 16-bit word moved into the high half of its lane, the low halves
  // zeroed, in one zero-masked vpermw (cheaper here than vpmovzxwd + vpslld).
  static Vec from_bf16(__m256i bits) {
    const __m512i to_high =
        _mm512_set_epi16(15, 15, 14, 14, 13, 13, 12, 12, 11, 11, 10, 10, 9, 9, 8, 8, 7, 7, 6, 6,
                         5, 5, 4, 4, 3, 3, 2, 2, 1, 1, 0, 0);
    const __m512i w = _mm512_castsi256_si512(bits);
    return {_mm512_castsi512_ps(_mm512_maskz_permutexvar_epi16(0xAAAAAAAAu, to_high, w))};
  }
  __m256i to_half() const {
    return _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  }
  static __m512i to_halfx2(Vec lo, Vec hi) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(lo.to_half()), hi.to_half(), 1);
  }
  // Round to nearest even, NaN kept quiet — bit-identical to float_to_bf16(): each lane's
  // bf16 in its high half.
  static __m512i bf16_round(__m512 v) {
    const __m512i u = _mm512_castps_si512(v);
    const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    const __m512i r = _mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(0x7fff)), lsb);
    const __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    return _mm512_mask_mov_epi32(r, nan, _mm512_or_si512(u, _mm512_set1_epi32(0x400000)));
  }
  // The high halves are gathered with one vpermw (cheaper than a shift and vpmovdw here);
  // of two vectors, with one vpermt2w.
  static __m256i bf16_soft(__m512 v) {
    const __m512i high_halves =
        _mm512_set_epi16(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1, 31, 29, 27,
                         25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
    return _mm512_castsi512_si256(_mm512_permutexvar_epi16(high_halves, bf16_round(v)));
  }
  static __m512i bf16x2_soft(__m512 lo, __m512 hi) {
    const __m512i high_halves =  // words 0-31: lo's, 32-63: hi's
        _mm512_set_epi16(63, 61, 59, 57, 55, 53, 51, 49, 47, 45, 43, 41, 39, 37, 35, 33, 31, 29,
                         27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
    return _mm512_permutex2var_epi16(bf16_round(lo), high_halves, bf16_round(hi));
  }
#if defined(NK_CPU_ISA_avx512bf16)
  // Note [Hardware bf16 rounding]: vcvtneps2bf16 (vcvtne2ps2bf16: two vectors) rounds to
  // nearest even and quiets NaNs as float_to_bf16() does, but flushes denormal inputs to
  // zero; a vector holding one (one vfpclassps, almost never taken) goes through the software
  // rounding, so every ISA gives the same bits.
  __m256i to_bf16() const {
    if (__builtin_expect(_mm512_fpclass_ps_mask(v, 0x20) != 0, 0)) return bf16_soft(v);
    return reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(v));
  }
  static __m512i to_bf16x2(__m512 lo, __m512 hi) {
    const __mmask16 d0 = _mm512_fpclass_ps_mask(lo, 0x20), d1 = _mm512_fpclass_ps_mask(hi, 0x20);
    if (__builtin_expect(_kortestz_mask16_u8(d0, d1) == 0, 0)) return bf16x2_soft(lo, hi);
    return reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(hi, lo));
  }
#else
  __m256i to_bf16() const { return bf16_soft(v); }
  static __m512i to_bf16x2(__m512 lo, __m512 hi) { return bf16x2_soft(lo, hi); }
#endif
};

template <>
struct Vec<double> {
  using value_type = double;
  using Mask = __mmask8;  // bit i: lane i
  static constexpr int size = 8;
  __m512d v;

  static Vec zero() { return {_mm512_setzero_pd()}; }
  static Vec set1(double a) { return {_mm512_set1_pd(a)}; }
  static Vec load(const double* p) { return {_mm512_loadu_pd(p)}; }
  void store(double* p) const { _mm512_storeu_pd(p, v); }
  static Vec load_n(const double* p, int64_t n) {
    return {_mm512_maskz_loadu_pd(__mmask8((1u << unsigned(n)) - 1u), p)};
  }
  void store_n(double* p, int64_t n) const {
    _mm512_mask_storeu_pd(p, __mmask8((1u << unsigned(n)) - 1u), v);
  }
  void stream(double* p) const { _mm512_stream_pd(p, v); }
  friend Vec operator+(Vec a, Vec b) { return {_mm512_add_pd(a.v, b.v)}; }
  friend Vec operator-(Vec a, Vec b) { return {_mm512_sub_pd(a.v, b.v)}; }
  friend Vec operator*(Vec a, Vec b) { return {_mm512_mul_pd(a.v, b.v)}; }
  friend Vec operator/(Vec a, Vec b) { return {_mm512_div_pd(a.v, b.v)}; }
  friend Vec operator-(Vec a) { return {_mm512_xor_pd(a.v, _mm512_set1_pd(-0.0))}; }
  static Vec fmadd(Vec a, Vec b, Vec c) { return {_mm512_fmadd_pd(a.v, b.v, c.v)}; }
  static Vec min(Vec a, Vec b) { return {_mm512_min_pd(a.v, b.v)}; }
  static Vec max(Vec a, Vec b) { return {_mm512_max_pd(a.v, b.v)}; }
  static Vec abs(Vec a) { return {_mm512_andnot_pd(_mm512_set1_pd(-0.0), a.v)}; }
  static Mask lt(Vec a, Vec b) { return _mm512_cmp_pd_mask(a.v, b.v, _CMP_LT_OQ); }
  static Mask le(Vec a, Vec b) { return _mm512_cmp_pd_mask(a.v, b.v, _CMP_LE_OQ); }
  static Mask gt(Vec a, Vec b) { return _mm512_cmp_pd_mask(a.v, b.v, _CMP_GT_OQ); }
  static Mask ge(Vec a, Vec b) { return _mm512_cmp_pd_mask(a.v, b.v, _CMP_GE_OQ); }
  static Mask eq(Vec a, Vec b) { return _mm512_cmp_pd_mask(a.v, b.v, _CMP_EQ_OQ); }
  static Mask signbit(Vec a) { return _mm512_movepi64_mask(_mm512_castpd_si512(a.v)); }
  static Vec select(Mask m, Vec a, Vec b) { return {_mm512_mask_blend_pd(m, b.v, a.v)}; }
  static Vec round(Vec a) {
    return {_mm512_roundscale_pd(a.v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)};
  }
  static Vec pow2i(Vec n) { return {_mm512_scalef_pd(_mm512_set1_pd(1.0), n.v)}; }
  double sum() const {
    const __m256d h = _mm256_add_pd(_mm512_castpd512_pd256(v), _mm512_extractf64x4_pd(v, 1));
    __m128d s = _mm_add_pd(_mm256_castpd256_pd128(h), _mm256_extractf128_pd(h, 1));
    return _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
  }
};

template <typename T>
constexpr int stream_alignment() {
  return int(sizeof(T)) * Vec<compute_t<T>>::size;
}
inline void stream_fence() { _mm_sfence(); }
// 16 bytes from src to p (16-byte aligned), streamed.
inline void stream16(void* p, const void* src) {
  _mm_stream_si128(static_cast<__m128i*>(p), _mm_loadu_si128(static_cast<const __m128i*>(src)));
}

}  // namespace normkit::cpu::NK_CPU_ISA
