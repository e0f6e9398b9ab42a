// Vec<C> for AVX2 + FMA + F16C: 8 float lanes / 4 double lanes.
#pragma once

#include <immintrin.h>

#include "normkit/dtype.hpp"

namespace normkit::cpu::NK_CPU_ISA {

template <typename C>
struct Vec;

template <>
struct Vec<float> {
  using value_type = float;
  using Mask = __m256;  // all-ones / all-zeros lanes
  static constexpr int size = 8;
  __m256 v;

  static Vec zero() { return {_mm256_setzero_ps()}; }
  static Vec set1(float a) { return {_mm256_set1_ps(a)}; }
  static Vec load(const float* p) { return {_mm256_loadu_ps(p)}; }
  // The first n < 8 float lanes (masked vmaskmovps: the lanes off are neither read nor
  // written); 16-bit partial vectors stay staged (no 16-bit masked moves in AVX2).
  static Vec load_n(const float* p, int64_t n) { return {_mm256_maskload_ps(p, first(n))}; }
  void store_n(float* p, int64_t n) const { _mm256_maskstore_ps(p, first(n), v); }
  static Vec load(const half_t* p) {
    return {_mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)))};
  }
  static Vec load(const bfloat16_t* p) {
    const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    return {_mm256_castsi256_ps(_mm256_slli_epi32(w, 16))};
  }

  // Note [Reductions in any lane order] (moments.hpp): 16 consecutive bf16 values as two
  // vectors, the even-indexed ones in `even` and the odd ones in `odd` — one load, a shift
  // and a mask instead of two widening loads and two shifts.
  static void load2_deinterleaved(const bfloat16_t* p, Vec& even, Vec& odd) {
    const __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    even = {_mm256_castsi256_ps(_mm256_slli_epi32(w, 16))};
    odd = {_mm256_castsi256_ps(_mm256_and_si256(w, _mm256_set1_epi32(int(0xffff0000u))))};
  }

  void store(float* p) const { _mm256_storeu_ps(p, v); }
  void store(half_t* p) const {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(p), to_half());
  }
  void store(bfloat16_t* p) const {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(p), to_bf16());
  }
  // Non-temporal stores: p must be stream_alignment<T>()-aligned.
  void stream(float* p) const { _mm256_stream_ps(p, v); }
  void stream(half_t* p) const { _mm_stream_si128(reinterpret_cast<__m128i*>(p), to_half()); }
  void stream(bfloat16_t* p) const {
    _mm_stream_si128(reinterpret_cast<__m128i*>(p), to_bf16());
  }
  // lo's 8 values then hi's as 16 consecutive 16-bit values: one 32-byte store (Note
  // [Paired stores], loops.hpp); stream2 needs p 32-byte aligned.
  static void store2(bfloat16_t* p, Vec lo, Vec hi) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), to_bf16x2(lo, hi));
  }
  static void stream2(bfloat16_t* p, Vec lo, Vec hi) {
    _mm256_stream_si256(reinterpret_cast<__m256i*>(p), to_bf16x2(lo, hi));
  }
  static void store2(half_t* p, Vec lo, Vec hi) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), to_halfx2(lo, hi));
  }
  static void stream2(half_t* p, Vec lo, Vec hi) {
    _mm256_stream_si256(reinterpret_cast<__m256i*>(p), to_halfx2(lo, hi));
  }

  friend Vec operator+(Vec a, Vec b) { return {_mm256_add_ps(a.v, b.v)}; }
  friend Vec operator-(Vec a, Vec b) { return {_mm256_sub_ps(a.v, b.v)}; }
  friend Vec operator*(Vec a, Vec b) { return {_mm256_mul_ps(a.v, b.v)}; }
  friend Vec operator/(Vec a, Vec b) { return {_mm256_div_ps(a.v, b.v)}; }
  friend Vec operator-(Vec a) { return {_mm256_xor_ps(a.v, _mm256_set1_ps(-0.0f))}; }
  static Vec fmadd(Vec a, Vec b, Vec c) { return {_mm256_fmadd_ps(a.v, b.v, c.v)}; }
  // minps/maxps: a < b ? a : b (a > b ? a : b) — b when either is NaN, as Lane.
  static Vec min(Vec a, Vec b) { return {_mm256_min_ps(a.v, b.v)}; }
  static Vec max(Vec a, Vec b) { return {_mm256_max_ps(a.v, b.v)}; }
  static Vec abs(Vec a) { return {_mm256_andnot_ps(_mm256_set1_ps(-0.0f), a.v)}; }
  static Mask lt(Vec a, Vec b) { return _mm256_cmp_ps(a.v, b.v, _CMP_LT_OQ); }
  static Mask le(Vec a, Vec b) { return _mm256_cmp_ps(a.v, b.v, _CMP_LE_OQ); }
  static Mask gt(Vec a, Vec b) { return _mm256_cmp_ps(a.v, b.v, _CMP_GT_OQ); }
  static Mask ge(Vec a, Vec b) { return _mm256_cmp_ps(a.v, b.v, _CMP_GE_OQ); }
  static Mask eq(Vec a, Vec b) { return _mm256_cmp_ps(a.v, b.v, _CMP_EQ_OQ); }
  // The sign bit spread over its lane (all-ones masks, like the comparisons').
  static Mask signbit(Vec a) {
    return _mm256_castsi256_ps(_mm256_srai_epi32(_mm256_castps_si256(a.v), 31));
  }
  static Vec select(Mask m, Vec a, Vec b) { return {_mm256_blendv_ps(b.v, a.v, m)}; }
  static Vec round(Vec a) {
    return {_mm256_round_ps(a.v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)};
  }
  // n integer-valued in [-126, 127]: (n + 127) in the exponent field.
  static Vec pow2i(Vec n) {
    const __m256i e = _mm256_add_epi32(_mm256_cvtps_epi32(n.v), _mm256_set1_epi32(127));
    return {_mm256_castsi256_ps(_mm256_slli_epi32(e, 23))};
  }
  float sum() const {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }

 private:
  // Lane i all-ones when i < n (vmaskmov's mask).
  static __m256i first(int64_t n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(int(n)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
  __m128i to_half() const { return _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  static __m256i to_halfx2(Vec lo, Vec hi) {
    return _mm256_inserti128_si256(_mm256_castsi128_si256(lo.to_half()), hi.to_half(), 1);
  }
  // Round to nearest even, NaN kept quiet — bit-identical to float_to_bf16(): each lane's
  // bf16 in its low half, the high half zero.
  __m256i bf16_round() const {
    const __m256i u = _mm256_castps_si256(v);
    const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
    __m256i r = _mm256_add_epi32(_mm256_add_epi32(u, _mm256_set1_epi32(0x7fff)), lsb);
    const __m256i nan = _mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q));
    r = _mm256_blendv_epi8(r, _mm256_or_si256(u, _mm256_set1_epi32(0x400000)), nan);
    return _mm256_srli_epi32(r, 16);
  }
  __m128i to_bf16() const {
    const __m256i r = bf16_round();
    return _mm_packus_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1));
  }
  // bf16_round for lanes that are not NaN (no quieting).
  __m256i bf16_round_ordered() const {
    const __m256i u = _mm256_castps_si256(v);
    const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
    return _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(u, _mm256_set1_epi32(0x7fff)), lsb),
                             16);
  }
  // vpackusdw packs within 128-bit lanes (lo 0-3, hi 0-3, lo 4-7, hi 4-7); vpermq puts
  // the quarters in order. Note [One NaN test per pair]: one unordered compare of lo with
  // hi finds a NaN in either; only then are the lanes rounded with bf16_round's quieting
  // blend. The bits are bf16_round's either way; the common case saves two compares, two
  // ORs and two blends per 16 values (the AVX2 bf16 forwards are arithmetic-bound).
  static __m256i to_bf16x2(Vec lo, Vec hi) {
    __m256i p;
    if (__builtin_expect(_mm256_movemask_ps(_mm256_cmp_ps(lo.v, hi.v, _CMP_UNORD_Q)) == 0, 1))
      p = _mm256_packus_epi32(lo.bf16_round_ordered(), hi.bf16_round_ordered());
    else
      p = _mm256_packus_epi32(lo.bf16_round(), hi.bf16_round());
    return _mm256_permute4x64_epi64(p, 0xD8);
  }
};

template <>
struct Vec<double> {
  using value_type = double;
  using Mask = __m256d;  // all-ones / all-zeros lanes
  static constexpr int size = 4;
  __m256d v;

  static Vec zero() { return {_mm256_setzero_pd()}; }
  static Vec set1(double a) { return {_mm256_set1_pd(a)}; }
  static Vec load(const double* p) { return {_mm256_loadu_pd(p)}; }
  void store(double* p) const { _mm256_storeu_pd(p, v); }
  static Vec load_n(const double* p, int64_t n) { return {_mm256_maskload_pd(p, first(n))}; }
  void store_n(double* p, int64_t n) const { _mm256_maskstore_pd(p, first(n), v); }
  static __m256i first(int64_t n) {
    return _mm256_cmpgt_epi64(_mm256_set1_epi64x(n), _mm256_setr_epi64x(0, 1, 2, 3));
  }
  void stream(double* p) const { _mm256_stream_pd(p, v); }
  friend Vec operator+(Vec a, Vec b) { return {_mm256_add_pd(a.v, b.v)}; }
  friend Vec operator-(Vec a, Vec b) { return {_mm256_sub_pd(a.v, b.v)}; }
  friend Vec operator*(Vec a, Vec b) { return {_mm256_mul_pd(a.v, b.v)}; }
  friend Vec operator/(Vec a, Vec b) { return {_mm256_div_pd(a.v, b.v)}; }
  friend Vec operator-(Vec a) { return {_mm256_xor_pd(a.v, _mm256_set1_pd(-0.0))}; }
  static Vec fmadd(Vec a, Vec b, Vec c) { return {_mm256_fmadd_pd(a.v, b.v, c.v)}; }
  static Vec min(Vec a, Vec b) { return {_mm256_min_pd(a.v, b.v)}; }
  static Vec max(Vec a, Vec b) { return {_mm256_max_pd(a.v, b.v)}; }
  static Vec abs(Vec a) { return {_mm256_andnot_pd(_mm256_set1_pd(-0.0), a.v)}; }
  static Mask lt(Vec a, Vec b) { return _mm256_cmp_pd(a.v, b.v, _CMP_LT_OQ); }
  static Mask le(Vec a, Vec b) { return _mm256_cmp_pd(a.v, b.v, _CMP_LE_OQ); }
  static Mask gt(Vec a, Vec b) { return _mm256_cmp_pd(a.v, b.v, _CMP_GT_OQ); }
  static Mask ge(Vec a, Vec b) { return _mm256_cmp_pd(a.v, b.v, _CMP_GE_OQ); }
  static Mask eq(Vec a, Vec b) { return _mm256_cmp_pd(a.v, b.v, _CMP_EQ_OQ); }
  // AVX2 has no 64-bit arithmetic shift: compare as signed 64-bit integers with 0.
  static Mask signbit(Vec a) {
    return _mm256_castsi256_pd(
        _mm256_cmpgt_epi64(_mm256_setzero_si256(), _mm256_castpd_si256(a.v)));
  }
  static Vec select(Mask m, Vec a, Vec b) { return {_mm256_blendv_pd(b.v, a.v, m)}; }
  static Vec round(Vec a) {
    return {_mm256_round_pd(a.v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)};
  }
  // n integer-valued in [-1022, 1023]. AVX2 has no double -> int64 conversion: n + 1.5·2^52
  // holds n in its low mantissa bits (Lane::pow2i); shifted into the exponent field, the
  // rest falls off the top.
  static Vec pow2i(Vec n) {
    const __m256i t = _mm256_castpd_si256(_mm256_add_pd(n.v, _mm256_set1_pd(0x1.8p52)));
    const __m256i e = _mm256_add_epi64(_mm256_slli_epi64(t, 52),
                                       _mm256_set1_epi64x(int64_t(1023) << 52));
    return {_mm256_castsi256_pd(e)};
  }
  double sum() const {
    __m128d s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    return _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
  }
};

// Bytes of one vector store of T (the alignment _stream needs).
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
