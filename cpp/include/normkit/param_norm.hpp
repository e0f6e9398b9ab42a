// normkit/param_norm.hpp — the parameter norms: weight normalization (SPEC §9) and spectral
// normalization (SPEC §10), forward and backward. They reparametrize a layer's weight at
// every forward, so they are small, memory-bound ops over one array.
//
// Weight norm: w = g·v/‖v‖, one norm per channel c of v — the norm over every dim but one.
//   v        channels first (N, C, *) — channel c is dim 1 — or channels last (*, C), with the
//            layouts of normkit/batch_norm.hpp (a 2-D v is (N, C) both ways). The Python API
//            views v of any shape this way: dim k is the C of (prod(shape[:k]), shape[k],
//            prod(shape[k+1:])); "no dim" (one norm over everything) is C = 1.
//   g        [C], v's dtype (or float32 for 16-bit v).
//   w, dv    like v.   norm [C] (forward output, backward input): ‖v‖ per channel, float32
//            (float64 allowed; float64 for float64 v).   dg [C] like g.
//   Backward: dg = Σ(dw·v)/‖v‖,  dv = (g/‖v‖)·dw − (g·dg/‖v‖²)·v.
//   The norm is √(M2 + M·mean²) of the channel's exact moments (batch norm's reduction, in a
//   fixed order); a channel of zero norm is an error on the CPU (w is undefined there). On
//   CUDA it gives ±inf / NaN as IEEE arithmetic says (checking would need a host
//   synchronization every call).
//
// Spectral norm: W_sn = W/σ for a matrix W (out, in) — the Python API views a weight of any
// rank as (shape[dim], rest), as torch does.
//   weight   [rows, cols], rows of unit stride (any row stride).
//   u [rows], v [cols]  weight's dtype (or float32 for 16-bit weight), contiguous.
//   Forward: n_power_iterations of u = normalize(W v), v = normalize(Wᵀu) (torch's order;
//   normalize(x) = x/max(‖x‖, eps)) update u and v in place; then σ = uᵀ W v — after an
//   iteration ‖Wᵀu‖²/max(‖Wᵀu‖, eps), which is that value and costs no read of W — into
//   `sigma` [1] (float32, float64 allowed; float64 for float64 weight) and out = W/σ. Each
//   iteration is one read of W (Note [One pass per power iteration],
//   cpu/spectral_norm_kernel.cpp). σ = 0 (W v = 0) and, for an iteration, a zero v are errors
//   on the CPU; on CUDA they give ±inf / NaN (no host synchronization).
//   Backward (u, v constants): dW = dout/σ − (⟨dout, W⟩/σ²)·u vᵀ.
// Outputs may alias an input exactly (w over v; dv over dw or v); any other overlap, and two
// outputs sharing memory, are rejected.
#pragma once

#include <cstdint>

#include "normkit/config.hpp"
#include "normkit/tensor.hpp"

namespace normkit {

struct WeightNormArgs {
  bool channels_last = false;
  const TensorView* v = nullptr;
  const TensorView* g = nullptr;     // [C]
  const TensorView* w = nullptr;     // like v, output
  const TensorView* norm = nullptr;  // [C] optional output: ‖v‖ (for the backward)
};

struct WeightNormBackwardArgs {
  bool channels_last = false;
  const TensorView* dw = nullptr;    // like v
  const TensorView* v = nullptr;
  const TensorView* g = nullptr;     // [C]
  const TensorView* norm = nullptr;  // [C] the forward's norm
  const TensorView* dv = nullptr;    // like v, optional output
  const TensorView* dg = nullptr;    // [C] optional output
};

struct SpectralNormArgs {
  const TensorView* weight = nullptr;  // [rows, cols]
  const TensorView* u = nullptr;       // [rows]: read; written when n_power_iterations > 0
  const TensorView* v = nullptr;       // [cols]: the same
  int64_t n_power_iterations = 1;      // 0: evaluation (u, v as given)
  double eps = 1e-12;
  const TensorView* out = nullptr;     // like weight, optional output: W/σ
  const TensorView* sigma = nullptr;   // [1] optional output: σ
};

struct SpectralNormBackwardArgs {
  const TensorView* dout = nullptr;     // like weight
  const TensorView* weight = nullptr;
  const TensorView* u = nullptr;        // the forward's u, v (after its iterations)
  const TensorView* v = nullptr;
  const TensorView* sigma = nullptr;    // [1] the forward's σ
  const TensorView* dweight = nullptr;  // like weight, output
};

NORMKIT_API void spectral_norm_forward(const SpectralNormArgs& args, Stream stream = nullptr);
NORMKIT_API void spectral_norm_backward(const SpectralNormBackwardArgs& args,
                                        Stream stream = nullptr);

NORMKIT_API void weight_norm_forward(const WeightNormArgs& args, Stream stream = nullptr);
NORMKIT_API void weight_norm_backward(const WeightNormBackwardArgs& args, Stream stream = nullptr);

}  // namespace normkit
