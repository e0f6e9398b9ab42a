// Batch norm's per-channel math (SPEC §4), defined once: the CPU dispatcher and kernels and
// the CUDA kernels turn a channel's reduction into the coefficients of its elementwise pass
// with these functions, so every backend and every path (fused or split) computes the same
// values.
//
// Forward, mean μ = hi + lo (Note [Corrected two-pass], common/row_norm_math.hpp):
//   y = (x − μ)·rstd·γ + β = (x − hi)·a + b,   a = rstd·γ,  b = β − lo·a.
// (x − hi is exact or nearly so for data near its mean; folding hi into b instead would
// round x·a at the magnitude of the mean: SPEC §0's 1e4 + N(0, 1) test would fail.)
//
// Backward, with d = x − hi and the per-channel sums over the batch Σdy, Σdy·d, Σd:
//   x̂ = (d − r)·rstd, where r = lo — or, when the saved mean is the float32 value of this
//   batch's mean, r = Σd/M recovers what the float32 mean lacks (as the row norms do);
//   Σdy·x̂ = rstd·(Σdy·d − r·Σdy);
//   dx = γ·rstd·(dy − Σdy/M − x̂·Σdy·x̂/M) = a·dy + bd·d + c,
//   a = γ·rstd,  bd = −a·rstd·Σdy·x̂/M,  c = −a·Σdy/M − bd·r.
// Evaluation: μ, σ² are constants, dx = a·dy (bd = c = 0).
#pragma once

#include <cmath>
#include <cstdint>

#include "common/row_norm_math.hpp"
#include "normkit/config.hpp"

namespace normkit::detail {

// A channel's statistics as the elementwise pass uses them.
template <typename C>
struct BnChannel {
  C hi, lo, rstd;
};

// From the batch's exact moments (training): the biased variance m2/M.
template <typename C>
NK_HD BnChannel<C> bn_batch_channel(double mean, double m2, double M, double eps) {
  const SplitMean<C> s = split_mean<C>(mean);
  return {s.hi, s.lo, inv_std<C>(C(m2 / M), C(eps))};
}
// From running statistics (evaluation).
template <typename C>
NK_HD BnChannel<C> bn_running_channel(C mean, C var, double eps) {
  return {mean, C(0), inv_std<C>(var, C(eps))};
}

// Forward coefficients: y = (x − hi)·a + b.
template <typename C>
struct BnAffine {
  C hi, a, b;
};
template <typename C>
NK_HD BnAffine<C> bn_affine(BnChannel<C> ch, C w, C b) {
  const C a = ch.rstd * w;
  return {ch.hi, a, b - ch.lo * a};
}

// Backward coefficients: dx = a·dy + bd·(x − hi) + c; and dγ, dβ.
template <typename C>
struct BnBackward {
  C hi, a, bd, c;
  double dweight, dbias;  // Σdy·x̂, Σdy
};
// Σdy·x̂ from s_dy = Σdy and s_dyd = Σdy·d over the batch (d = x − hi), r as above.
template <typename C>
NK_HD double bn_sum_dy_xhat(double s_dy, double s_dyd, double r, C rstd) {
  return double(rstd) * (s_dyd - r * s_dy);
}
// From the batch's Σdy and Σdy·x̂ (the whole batch's, for the split backward) and M.
template <typename C>
NK_HD BnBackward<C> bn_backward(bool training, C hi, double r, C rstd, C w, double sum_dy,
                                double sum_dy_xhat, double M) {
  BnBackward<C> g;
  g.hi = hi;
  g.a = w * rstd;
  g.dweight = sum_dy_xhat;
  g.dbias = sum_dy;
  if (training) {
    const double bd = -double(g.a) * double(rstd) * sum_dy_xhat / M;
    g.bd = C(bd);
    g.c = C(-double(g.a) * sum_dy / M - bd * r);
  } else {
    g.bd = C(0);
    g.c = C(0);
  }
  return g;
}

// Weight norm (SPEC §9) on the same reductions: the channel's norm from its exact moments,
// ‖v‖² = M2 + M·mean² (two non-negative terms: nothing cancels), and the elementwise passes
//   w = v·a,  a = g/‖v‖                                    (hi = 0, b = 0);
//   dv = a·dw + bd·v,  bd = −g·dg/‖v‖², dg = Σ(dw·v)/‖v‖   (hi = 0, c = 0).
NK_HD double wn_norm(double mean, double m2, double M) { return sqrt(m2 + M * mean * mean); }

template <typename C>
struct WnBackward {
  C a, bd;
  double dg;
};
template <typename C>
NK_HD WnBackward<C> wn_backward(double sum_dw_v, C g, double norm) {
  const double rn = 1.0 / norm;
  const double dg = sum_dw_v * rn;
  return {C(double(g) * rn), C(-double(g) * dg * rn * rn), dg};
}

// The running statistics' update (training).
NK_HD double bn_running_update(double running, double batch, double momentum) {
  return (1.0 - momentum) * running + momentum * batch;
}

}  // namespace normkit::detail
