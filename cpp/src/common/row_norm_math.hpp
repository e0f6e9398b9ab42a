// The row-norm family's math, defined once for the CPU kernels (the per-element functions
// are generic: called with Vec<C> by the SIMD kernels and with C by CUDA) and the CUDA
// kernels (SPEC §1–3 and AdaNorm, §8).
//
// Note [Variance by chunks]: a row is cut into chunks that stay in L1; each chunk's mean
// and M2 come from two passes over the chunk (never E[x²]−E[x]²), and chunks are combined
// with Chan et al.'s pairwise formula. The order of operations depends only on H, so a
// row's statistics never depend on the batch or the thread count.
//
// Note [Corrected two-pass]: pass 1 gives m = Σx/n in the compute type C. Rounding m costs
// up to half an ulp of the mean — 4.9e-4 for a float32 mean of 1e4 — and (x − m)·rstd would
// pass that straight on to y (SPEC §0 asks for 1e-4 relative at mean 1e4, std 1). Pass 2
// therefore sums both d = x − m (exact or nearly: x and m are close) and d², and the chunk's
// mean and M2 become m + Σd/n and Σd² − (Σd)²/n (Björck's corrected two-pass), carried in
// double; chunks merge in double. The row mean is then split into hi + lo in C, and
// elements are normalized as ((x − hi) − lo)·rstd. The backward, which receives the float32
// mean, recovers the same correction from the data: r = mean(x − mean), x̂ = (x − mean − r)·rstd.
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

// A chunk's exact moments from pass-1 mean m and pass-2 sums s1 = Σ(x − m), s2 = Σ(x − m)²
// over n elements (Note [Corrected two-pass]).
template <typename C>
NK_HD Moments<double> corrected_moments(int64_t n, C m, C s1, C s2) {
  const double dn = double(n), d1 = double(s1);
  Moments<double> r;
  r.count = dn;
  r.mean = double(m) + d1 / dn;
  // An infinite m makes every d NaN: the mean is m itself then (IEEE: mean of a row with
  // +Inf is +Inf), while M2 stays NaN as the variance of such a row is.
  if (r.mean != r.mean) r.mean = double(m);
  const double m2 = double(s2) - d1 * d1 / dn;
  r.m2 = m2 < 0.0 ? 0.0 : m2;  // rounding can make it slightly negative; NaN passes through
  return r;
}

// The mean as hi + lo in the compute type: hi is the value saved as `mean`, lo the part of
// the double mean that C cannot hold.
template <typename C>
struct SplitMean {
  C hi, lo;
};
template <typename C>
NK_HD SplitMean<C> split_mean(double mean) {
  const C hi = C(mean);
  return {hi, C(mean - double(hi))};
}

// rstd = 1/sqrt(σ² + eps): the division and the square root are both correctly rounded
// in IEEE arithmetic (CUDA kernels are built without fast-math), so CPU and GPU agree on
// rstd for the same σ².
template <typename C>
NK_HD C inv_std(C var, C eps) {
  return C(1) / std::sqrt(var + eps);
}

// Normalize-and-affine for one element, mean = hi + lo. For RMS norm hi = lo = 0.
template <typename C>
NK_HD C norm_affine(C x, C mean_hi, C mean_lo, C rstd, C w, C b) {
  return ((x - mean_hi) - mean_lo) * rstd * w + b;
}

// Backward of y = x̂·w + b, x̂ = (x − μ)·rstd, for one element (SPEC §1):
//   g = dy·w;  dx = rstd·(g − mean(g) − x̂·mean(g·x̂)).
// Derivation: ∂x̂_j/∂x_i = rstd·(δ_ij − 1/H − x̂_i x̂_j / H), so
//   dx_i = Σ_j g_j ∂x̂_j/∂x_i = rstd·(g_i − Σg/H − x̂_i Σ(g x̂)/H).
// RMS norm (μ ≡ 0, rrms = 1/sqrt(mean(x²)+eps)) drops the mean(g) term:
//   ∂x̂_j/∂x_i = rrms·(δ_ij − x̂_i x̂_j / H)  ⇒  dx_i = rrms·(g_i − x̂_i·mean(g·x̂)).
// The callers pass mean_g = 0 for RMS.
template <typename V>
NK_HD V norm_dx(V rstd, V g, V mean_g, V xhat, V mean_gxhat) {
  return rstd * ((g - mean_g) - xhat * mean_gxhat);
}

// The per-row terms of norm_dx from sums over the row of e = x − mean (the saved mean), g
// and g·e: corr = Σe/H recovers the part of the mean the saved value lacks (Note [Corrected
// two-pass]), x̂ = (e − corr)·rstd, mean(g·x̂) = rstd·(Σg·e − corr·Σg)/H. RMS norm (mean ≡ 0):
// corr = mean(g) = 0.
template <typename C>
struct BackwardTerms {
  C corr, mean_g, mean_gx;
};
template <typename C>
NK_HD BackwardTerms<C> backward_terms(C se, C sg, C sge, int64_t H, C rstd, bool rms) {
  if (rms) se = sg = C(0);
  const C inv_h = C(1) / C(H);
  const C corr = se * inv_h;
  return BackwardTerms<C>{corr, sg * inv_h, rstd * (sge - corr * sg) * inv_h};
}

// ---------------------------------------------------------------------------------------
// AdaNorm (SPEC §8): ŷ = (x − μ)/(s + eps), s the unbiased std; z = scale·(1 − k·ŷ)·ŷ.
// ---------------------------------------------------------------------------------------

// rstd = 1/(s + eps) from M2 = Σ(x − μ)² over H ≥ 2 elements (eps is added to the std).
template <typename C>
NK_HD C ada_inv_std(C m2_over_h1, C eps) {
  return C(1) / (std::sqrt(m2_over_h1) + eps);
}

// z = scale·(1 − k·ŷ)·ŷ, as (a + nb·ŷ)·ŷ with a = scale, nb = −scale·k (ada_coeffs): the same
// expression is the backward's φ = scale·(1 − k·ŷ) = a + nb·ŷ.
template <typename C>
struct AdaCoeffs {
  C a, nb;
};
template <typename C>
NK_HD AdaCoeffs<C> ada_coeffs(double k, double scale) {
  return AdaCoeffs<C>{C(scale), C(-(scale * k))};
}
template <typename V>
NK_HD V ada_phi(V xhat, V a, V nb) {
  return a + nb * xhat;
}

// Note [AdaNorm backward]: φ = scale·(1 − k·ŷ) is a constant in the backward (the paper's
// gradient stop), so z = φ·ŷ and dL/dŷ = g = dy·φ. With u = x − μ, ŷ = u·rstd and
// ∂s/∂x_i = u_i/((H−1)·s):
//   ∂ŷ_j/∂x_i = rstd·(δ_ij − 1/H) − u_j·rstd²·∂s/∂x_i
//             = rstd·(δ_ij − 1/H − ŷ_i·ŷ_j·κ/H),        κ = H/((H−1)·s·rstd),
// so dx = rstd·(g − mean(g) − ŷ·mean(g·ŷ)·κ): layer norm's norm_dx with mean(g·ŷ) scaled by
// κ (= H/(H−1)·(s + eps)/s). s comes from the data again (no eps needed, no cancellation in
// 1 − eps·rstd). A constant row (s = 0, ŷ = 0) has no derivative of s; there κ = 0 (s held
// constant), which is also the limit of the κ-term, ŷ_i·mean(g·ŷ)·κ = O(s/eps), as s → 0.
//
// g depends on ŷ, and ŷ on corr, which pass 1 is still summing; so pass 1 sums, over
// e = x − mean (the saved mean), Σe, Σe², Σdy, Σdy·e and Σdy·e², and the terms follow in
// closed form with d = e − corr: Σg = a·Σdy + nb·rstd·Σdy·d, Σg·d = a·Σdy·d + nb·rstd·Σdy·d²,
// Σdy·d = Σdy·e − corr·Σdy, Σdy·d² = Σdy·e² − 2·corr·Σdy·e + corr²·Σdy, M2 = Σe² − corr·Σe.
template <typename C>
struct AdaSums {
  C e, e2, dy, dye, dye2;
};
template <typename C>
NK_HD BackwardTerms<C> ada_backward_terms(const AdaSums<C>& s, int64_t H, C rstd,
                                          AdaCoeffs<C> c) {
  const C inv_h = C(1) / C(H);
  const C corr = s.e * inv_h;
  const C dyd = s.dye - corr * s.dy;
  const C dyd2 = (s.dye2 - C(2) * corr * s.dye) + corr * corr * s.dy;
  const C nbr = c.nb * rstd;
  const C sg = c.a * s.dy + nbr * dyd;
  const C sgd = c.a * dyd + nbr * dyd2;
  const C m2 = s.e2 - corr * s.e;
  const C sd = m2 > C(0) ? std::sqrt(m2 / C(H - 1)) : C(0);
  const C kappa = sd > C(0) ? C(H) / (C(H - 1) * sd * rstd) : C(0);
  return BackwardTerms<C>{corr, sg * inv_h, rstd * sgd * inv_h * kappa};
}

}  // namespace normkit::detail
