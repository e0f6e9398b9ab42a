// The row-norm family's scalar math, defined once for the scalar CPU path, the SIMD
// kernels' tails and reductions, and the CUDA kernels (SPEC §1–3).
//
// Note [Variance by chunks]: a row is cut into chunks that stay in L1; each chunk's mean
// and M2 come from two passes over the chunk (exact to working precision, no E[x²]−E[x]²),
// and chunks are combined with Chan et al.'s pairwise formula. The order of operations
// depends only on H, so a row's statistics never depend on the batch or the thread count.
#pragma once

#include <cmath>

#include "normkit/config.hpp"
#include "normkit/row_norm.hpp"

namespace normkit::detail {

template <typename C>
struct Moments {
  C count;  // number of elements (as C, to avoid conversions in the merge)
  C mean;
  C m2;  // Σ (x − mean)²
};

// Chan, Golub & LeVeque's update for two disjoint sets a and b.
template <typename C>
NK_HD Moments<C> merge_moments(Moments<C> a, Moments<C> b) {
  if (a.count == C(0)) return b;
  if (b.count == C(0)) return a;
  const C n = a.count + b.count;
  const C delta = b.mean - a.mean;
  const C wb = b.count / n;
  Moments<C> r;
  r.count = n;
  r.mean = a.mean + delta * wb;
  r.m2 = a.m2 + b.m2 + delta * delta * (a.count * wb);
  return r;
}

// rstd = 1/sqrt(σ² + eps): the division and the square root are both correctly rounded
// in IEEE arithmetic (CUDA kernels are built without fast-math), so CPU and GPU agree on
// rstd for the same σ².
template <typename C>
NK_HD C inv_std(C var, C eps) {
  return C(1) / std::sqrt(var + eps);
}

// Normalize-and-affine for one element. For RMS norm mean is 0.
template <typename C>
NK_HD C norm_affine(C x, C mean, C rstd, C w, C b) {
  return (x - mean) * rstd * w + b;
}

// Backward of y = x̂·w + b, x̂ = (x − μ)·rstd, for one element (SPEC §1):
//   g = dy·w;  dx = rstd·(g − mean(g) − x̂·mean(g·x̂)).
// Derivation: ∂x̂_j/∂x_i = rstd·(δ_ij − 1/H − x̂_i x̂_j / H), so
//   dx_i = Σ_j g_j ∂x̂_j/∂x_i = rstd·(g_i − Σg/H − x̂_i Σ(g x̂)/H).
// RMS norm (μ ≡ 0, rrms = 1/sqrt(mean(x²)+eps)) drops the mean(g) term:
//   ∂x̂_j/∂x_i = rrms·(δ_ij − x̂_i x̂_j / H)  ⇒  dx_i = rrms·(g_i − x̂_i·mean(g·x̂)).
// The callers pass mean_g = 0 for RMS.
template <typename C>
NK_HD C norm_dx(C rstd, C g, C mean_g, C xhat, C mean_gxhat) {
  return rstd * (g - mean_g - xhat * mean_gxhat);
}

}  // namespace normkit::detail
