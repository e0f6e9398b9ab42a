// DyT's math (SPEC §6), defined once for every backend: the scalar CPU path and the CUDA
// kernels call it with detail::Lane<C> (one value), the SIMD kernels with Vec<C>.
//
//   y  = γ·tanh(α·x) + β
//   t  = tanh(α·x),  s = 1 − t² = sech²(α·x)   (computed as sech², vmath::tanh_sech2: 1 − t²
//                                               would lose every bit where |t| nears 1)
//   dx = dy·γ·α·s                                    (∂y/∂x = γ·α·(1 − t²))
//   dα = Σ dy·γ·x·s = Σ_c γ_c · A_c,  A_c = Σ_{elements of channel c} dy·x·s
//   dγ = Σ dy·t,  dβ = Σ dy
// The forward's tanh is vmath::tanh_fast (≤ 7 ULP in float, half the cost of vmath::tanh:
// the forward must keep pace with memory); the backward's t comes with sech² from
// vmath::tanh_sech2 (≤ 2 ULP).
// Factoring γ out of dα lets every gradient be a per-channel column sum (one reduction
// machinery for all four), and the last step Σ_c γ_c·A_c is one short fixed-order sum.
#pragma once

#include "common/vec_math.hpp"
#include "normkit/config.hpp"

namespace normkit::detail {

// Without a bias nothing is added (w·t, not w·t + 0, which would turn tanh(−0) = −0 into +0).
template <bool kBias, typename V>
NK_HD V dyt_forward(V x, V alpha, V w, V b) {
  const V t = vmath::tanh_fast(alpha * x);
  if constexpr (kBias) {
    return V::fmadd(w, t, b);
  } else {
    (void)b;
    return w * t;
  }
}

template <typename V>
struct DytGrad {
  V dx;  // dy·γ·α·s
  V a;   // dy·x·s      (summed into A)
  V t;   // tanh(α·x)   (dy·t summed into G)
};

template <typename V>
NK_HD DytGrad<V> dyt_backward(V dy, V x, V alpha, V w) {
  V s;
  const V t = vmath::tanh_sech2(alpha * x, s);
  const V ds = dy * s;
  return {ds * (w * alpha), ds * x, t};
}

}  // namespace normkit::detail
