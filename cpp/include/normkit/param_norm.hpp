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
// Spectral norm: see spectral_norm_forward below.
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

NORMKIT_API void weight_norm_forward(const WeightNormArgs& args, Stream stream = nullptr);
NORMKIT_API void weight_norm_backward(const WeightNormBackwardArgs& args, Stream stream = nullptr);

}  // namespace normkit
