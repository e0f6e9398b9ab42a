// exp, tanh, tanh_fast and sigmoid on top of the Vec interface (cpu/vec/vec.hpp, common/lane.hpp),
// written once for every backend: V = detail::Lane<C> (scalar CPU path, CUDA) or any ISA's
// Vec<C>, C = float or double (the coefficients follow V::value_type). Branch-free: every
// lane takes the same instructions, special values included.
//
// Bounds: max error in ULP of C at the exact value (|y − f(x)| / ulp(f(x))), for every finite
// x, on every ISA (FMA ISAs and the unfused scalar Lane alike); cpp/tests/test_vec_math.cpp
// asserts them on each ISA it can run (every 97th float bit pattern, a finer sweep of
// [−2, 2], every branch/clamp/saturation neighbourhood, special values; ~4M doubles) and
// prints what it measures. Measured maxima, scalar Lane / FMA ISAs (AVX2, NEON, which give
// the same bits; AVX-512 runs the same operations), float over all 2^32 inputs, double over
// 1.2e8 random ones plus the test's sets:
//
//   function  bound f32 / f64   float measured     double measured
//   exp       1.5 / 1.5         1.36 / 1.06        1.20 / 0.91
//   tanh      2   / 2           1.62 / 1.54        1.58 / 1.50
//   sigmoid   2.5 / 2.5         2.46 / 2.40        2.36 / 2.36
//   tanh_fast 7   / 2           6.22 / 4.72        = tanh (double: tanh itself)
//
// The scalar Lane is a little worse than the SIMD ISAs because its fmadd rounds twice.
// A SIMD ISA and the scalar path differ by at most 1 ULP (exp) / 2 ULP (tanh, sigmoid) on the
// test's sets; tanh_fast's float results by up to 8 (the test allows 11).
//
// Special values: NaN → NaN (all three). exp: ±0 → 1 exactly, +Inf → +Inf, −Inf → +0,
// overflow → +Inf exactly from the true threshold on (x ≥ 88.7228 float, 709.7827 double),
// denormal results below −87.34 / −708.40 rounded once (gradual underflow), +0 from the true
// threshold on (x ≤ −103.9721 / −745.1332). tanh: ±0 → ±0, ±Inf → ±1, tanh(x) = x for tiny
// |x| (denormals included), odd bit for bit (tanh(−x) = −tanh(x)), exactly ±1 for
// |x| ≥ 8.6643 float / 18.715 double (the exact value rounds to ±1 from 9.0109 / 19.0615 on;
// in between 1 is within one ULP). sigmoid: ±0 → 1/2, +Inf → 1, −Inf → +0, exactly 1 from
// x ≥ 16.64 / 36.74, denormal results for very negative x (as exp), +0 below −103.97 /
// −745.13. No floating-point exception flags are promised (the unselected branch of a lane
// may overflow or divide by zero). tanh_fast (float): ±0 → ±0, ±Inf → ±1, NaN → NaN,
// tanh(x) = x for tiny |x|, odd bit for bit, |result| ≤ 1, exactly ±1 for |x| ≥ 9.02.
//
// Cost (float on AVX2, vector instructions per vector, constants hoisted): exp 23, tanh 32
// (30 on AVX-512, where pow2i is one vscalefps), sigmoid 30, tanh_fast 14; one division in
// tanh, tanh_fast and sigmoid. double: tanh 42. Measured on AVX2 (Zen, L1-resident): tanh
// 7.5 ns per vector, tanh_fast 3.4 ns. DyT's forward uses tanh_fast (its output is usually
// 16-bit, and it must keep up with memory); its backward, tanh_sech2.
//
// Method (coefficients are our own minimax fits, relative error, Remez exchange in 60-digit
// arithmetic; the fit's error is listed beside each polynomial):
//   exp(x) = 2^n · e^r,  n = round(x·log2 e),  r = x − n·ln2 (Cody–Waite: ln2 = hi + lo with
//     n·hi exact, so x − n·hi is exact even without FMA), e^r = 1 + r + r²·(...) on
//     |r| ≤ ln2/2. 2^n is applied as two factors 2^n1·2^n2 (n1 = round(n/2)), each a
//     normal number, so results in the denormal range round once and overflow is honest.
//   tanh(x) = sign(x)·y(|x|), the sign taken from the sign bit (so ±0 → ±0; a sum x + x³·P
//     in x itself would turn −0 into +0): y(a) = a + a³·P(a²) for a < 0.55, else
//     (1 − e)/(1 + e) with e = exp(−2·min(a, clamp)) ∈ (0, 1/3]: no cancellation
//     (1 − e ≥ 2/3), and e's relative error reaches y damped by 2e/(1 − e²) ≤ 3/4. The
//     threshold 0.55 sits at tanh = 1/2 (atanh ½ = 0.5493): below it e > 1/3 and 1 − e
//     would magnify e's error. Past the clamp e is so small that y rounds to 1.
//   tanh_fast(x) (float) = x·P(x²)/Q(x²) on x clamped to ±9.02, then clamped to [−1, 1]
//     (R may pass 1 by an ULP or two near 8.1–9.02): P, Q of degree 4 with positive coefficients, so
//     Horner has no cancellation; a minimax fit of tanh(a)/a on [0, 9.02] in relative error
//     (differential correction, tools/fit_tanh_rational.py reproduces it); 2 FMA chains and
//     one division, no exp, no branch to select.
//   sigmoid(x) = s/(1 + e), e = exp(−|x|), s = 1 for x ≥ 0 and e for x < 0 (= e^x/(1 + e^x)):
//     e ≤ 1 never overflows, and for x → −∞ the result underflows like e^x instead of
//     becoming 0 when 1 + e^(−x) overflows.
#pragma once

#include "normkit/config.hpp"

namespace normkit::detail::vmath {
namespace impl {

// c0 + x·(c1 + x·(c2 + ...)): Horner with FMAs, coefficients in ascending order.
template <typename V>
NK_HD V horner(V, typename V::value_type c0) {
  return V::set1(c0);
}
template <typename V, typename... Cs>
NK_HD V horner(V x, typename V::value_type c0, typename V::value_type c1, Cs... cs) {
  return V::fmadd(horner(x, c1, cs...), x, V::set1(c0));
}

template <typename C>
struct Consts;

template <>
struct Consts<float> {
  static constexpr float kLog2e = 0x1.715476p+0f;
  // ln2 = kLn2Hi + kLn2Lo (+5.5e-14): kLn2Hi has 15 significant bits, so n·kLn2Hi is exact
  // for |n| < 2^9 (here |n| ≤ 150).
  static constexpr float kLn2Hi = 0x1.62e4p-1f;
  static constexpr float kLn2Lo = 0x1.7f7d1cp-20f;
  // exp's input clamp: e^-104 < 2^-150 rounds to 0, e^89 > FLT_MAX; n stays in [-150, 128].
  static constexpr float kExpLo = -104.0f;
  static constexpr float kExpHi = 89.0f;
  // tanh: polynomial below kTanhSmall; |x| beyond kTanhClamp has tanh = ±1 in float
  // (1 − tanh 9.0109 = 2^-25), so e = exp(−2·kTanhClamp) = 1.2e-8 < 2^-25 gives 1 exactly.
  static constexpr float kTanhSmall = 0.55f;
  static constexpr float kTanhClamp = 9.1f;

  // e^r on |r| ≤ 0.3467 (ln2/2 = 0.34657): 1 + r·Q(r), Q of degree 5, fit error 2^-28.9.
  template <typename V>
  NK_HD static V exp_poly(V r) {
    return horner(r, 1.0f, 1.0f, 0x1.fffffcp-2f, 0x1.555418p-3f, 0x1.555824p-5f, 0x1.1267cp-7f,
                  0x1.6ae6f4p-10f);
  }
  // tanh(x) = x + x³·P(x²) on |x| ≤ 0.5504, P of degree 4, fit error (relative) 2^-29.8.
  template <typename V>
  NK_HD static V tanh_poly(V t) {
    return horner(t, -0x1.55554ap-2f, 0x1.110d2p-3f, -0x1.b92786p-5f, 0x1.59349cp-6f,
                  -0x1.9afdacp-8f);
  }
  // tanh_fast: tanh(x) = x·R(x²), R = P/Q both of degree 4 with positive coefficients, on
  // |x| ≤ kTanhFastClamp; fit error (relative) 2^-25.5. Past the clamp R gives 1 after the
  // final clamp to [−1, 1].
  static constexpr float kTanhFastClamp = 9.02f;
  template <typename V>
  NK_HD static V tanh_fast_p(V t) {
    return horner(t, 1.0f, 0x1.120442p-3f, 0x1.c9f85ap-9f, 0x1.595564p-16f, 0x1.c9a3d6p-27f);
  }
  template <typename V>
  NK_HD static V tanh_fast_q(V t) {
    return horner(t, 1.0f, 0x1.de576ap-2f, 0x1.a7df26p-6f, 0x1.5841dcp-12f, 0x1.a0b868p-21f);
  }
};

template <>
struct Consts<double> {
  static constexpr double kLog2e = 0x1.71547652b82fep+0;
  // kLn2Hi has 42 significant bits: n·kLn2Hi exact for |n| < 2^11 (here |n| ≤ 1076);
  // ln2 − kLn2Hi − kLn2Lo = 1.9e-31.
  static constexpr double kLn2Hi = 0x1.62e42fefa38p-1;
  static constexpr double kLn2Lo = 0x1.ef35793c7673p-45;
  // e^-746 < 2^-1075 rounds to 0, e^710 > DBL_MAX; n stays in [-1076, 1024].
  static constexpr double kExpLo = -746.0;
  static constexpr double kExpHi = 710.0;
  // 1 − tanh 19.0615 = 2^-54; exp(−2·19.1) = 2.6e-17 < 2^-54.
  static constexpr double kTanhSmall = 0.55;
  static constexpr double kTanhClamp = 19.1;

  // e^r on |r| ≤ 0.3467: 1 + r·Q(r), Q of degree 10, fit error 2^-58.0.
  template <typename V>
  NK_HD static V exp_poly(V r) {
    return horner(r, 1.0, 1.0, 0x1.000000000000bp-1, 0x1.55555555554b3p-3,
                  0x1.555555555014dp-5, 0x1.111111112f9abp-7, 0x1.6c16c1856ab3ap-10,
                  0x1.a01a01117bc51p-13, 0x1.a019972fc385dp-16, 0x1.71df492cdfb0bp-19,
                  0x1.28afc15c2a3ccp-22, 0x1.ad594d7075466p-26);
  }
  // tanh(x) = x + x³·P(x²) on |x| ≤ 0.5504, P of degree 10, fit error (relative) 2^-59.6.
  template <typename V>
  NK_HD static V tanh_poly(V t) {
    return horner(t, -0x1.5555555555552p-2, 0x1.1111111110af7p-3, -0x1.ba1ba1b9a19c8p-5,
                  0x1.664f485f4ce9ap-6, -0x1.226e2f9a371c0p-7, 0x1.d6d2a9296c940p-9,
                  -0x1.7d9031f6a2df8p-10, 0x1.34848aadf51cap-11, -0x1.e965ce999cf66p-13,
                  0x1.5d29f140b3776p-14, -0x1.45f7db08ae1edp-16);
  }
};

// e^x = p·2^n: returns p = e^r (in [0.70, 1.42]) and n (integer-valued). x must be finite
// or NaN and |x| small enough that x·log2e rounds to an exact integer-valued n.
template <typename V>
NK_HD V exp_reduce(V x, V& n) {
  using K = Consts<typename V::value_type>;
  n = V::round(x * V::set1(K::kLog2e));
  V r = V::fmadd(n, V::set1(-K::kLn2Hi), x);  // exact
  r = V::fmadd(n, V::set1(-K::kLn2Lo), r);
  return K::exp_poly(r);
}

}  // namespace impl

// e^x. Bound and special values: see the top of this file.
template <typename V>
NK_HD V exp(V x) {
  using C = typename V::value_type;
  using K = impl::Consts<C>;
  // x as the second operand of min/max: a NaN x comes through (the NaN rule of Lane::min).
  x = V::max(V::set1(K::kExpLo), V::min(V::set1(K::kExpHi), x));
  V n;
  const V p = impl::exp_reduce(x, n);
  const V n1 = V::round(n * V::set1(C(0.5)));
  return (p * V::pow2i(n1)) * V::pow2i(n - n1);
}

// tanh x. Bound and special values: see the top of this file.
template <typename V>
NK_HD V tanh(V x) {
  using C = typename V::value_type;
  using K = impl::Consts<C>;
  const V one = V::set1(C(1));
  const V a = V::abs(x);
  // |x| < kTanhSmall: a + a³·P(a²).
  const V t = a * a;
  const V small = V::fmadd(a * t, K::tanh_poly(t), a);
  // |x| ≥ kTanhSmall: z ∈ [-2·kTanhClamp, -1.1], so n ∈ [-55, -1] and one 2^n factor does.
  // A NaN |x| comes through min (second operand).
  const V z = V::min(V::set1(K::kTanhClamp), a) * V::set1(C(-2));
  V n;
  const V p = impl::exp_reduce(z, n);
  const V e = p * V::pow2i(n);
  const V y = V::select(V::lt(a, V::set1(K::kTanhSmall)), small, (one - e) / (one + e));
  // The sign from the sign bit (a comparison with 0 would not see −0).
  return V::select(V::signbit(x), -y, y);
}

// tanh x, cheaper (float: 14 vector instructions, no exp; 2.2× tanh()'s throughput on AVX2)
// and less accurate (float: 7 ULP) than tanh(); double: tanh() itself. Bound and special
// values: see the top of this file.
template <typename V>
NK_HD V tanh_fast(V x) {
  using C = typename V::value_type;
  if constexpr (sizeof(C) == 8) {
    return tanh(x);
  } else {
    using K = impl::Consts<C>;
    const V c = V::set1(K::kTanhFastClamp), one = V::set1(C(1));
    // x as the second operand of min/max: a NaN x comes through.
    const V a = V::max(-c, V::min(c, x));
    const V t = a * a;
    // Odd bit for bit (t is the same for ±a), ±0 → ±0, and a for tiny a (P, Q → 1).
    const V y = (a * K::tanh_fast_p(t)) / K::tanh_fast_q(t);
    return V::max(-one, V::min(one, y));
  }
}

// 1/(1 + e^−x). Bound and special values: see the top of this file.
template <typename V>
NK_HD V sigmoid(V x) {
  const V one = V::set1(typename V::value_type(1));
  const V e = exp(-V::abs(x));
  return V::select(V::lt(x, V::zero()), e, one) / (one + e);
}

// tanh x, and sech² x = 1 − tanh² x in `sech2`, both with small *relative* error: sech² as
// 4e/(1 + e)², e = exp(−2|x|) ∈ (0, 1], never as 1 − t² (which loses every bit where |t|
// nears 1, and is 0 from |x| ≈ 9 on while sech² is still ~1e-8). One exp serves both. For
// |x| ≥ kTanhSmall, t = (1 − e)·1/(1 + e) — one rounding more than tanh()'s (1 − e)/(1 + e),
// so t may differ from tanh(x) by an ULP there. sech² underflows to 0 like exp (|x| > 44
// float). NaN → NaN in both; ±Inf → (±1, 0). Used by DyT's backward (common/dyt_math.hpp).
template <typename V>
NK_HD V tanh_sech2(V x, V& sech2) {
  using C = typename V::value_type;
  using K = impl::Consts<C>;
  const V one = V::set1(C(1));
  const V a = V::abs(x);
  const V t2 = a * a;
  const V small = V::fmadd(a * t2, K::tanh_poly(t2), a);
  const V e = exp(a * V::set1(C(-2)));
  const V r = one / (one + e);
  const V y = V::select(V::lt(a, V::set1(K::kTanhSmall)), small, (one - e) * r);
  sech2 = (V::set1(C(4)) * e) * (r * r);
  return V::select(V::signbit(x), -y, y);
}

}  // namespace normkit::detail::vmath
