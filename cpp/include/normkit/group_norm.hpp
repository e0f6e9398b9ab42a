// normkit/group_norm.hpp — group normalization and instance normalization (SPEC §5).
//
// Conventions (SPEC §0; layouts as batch_norm.hpp):
//   x       channels first (N, C, *) or channels last (N, *, C) (`channels_last`); a 2-D x is
//           (N, C) in both. Channels first: the dims after C compact among themselves, or C
//           of unit stride (a torch.channels_last tensor, computed as channels last over the
//           same memory); channels last: C of unit stride; leading dims any strides.
//   num_groups G, dividing C; group g holds channels [g·C/G, (g+1)·C/G).
//   weight, bias    [C], x's dtype or float32 for 16-bit x.
//   mean, rstd (saved statistics)   [N, G], float32 (float64 for float64 x).
//   y, dy, dx   like x.
// Per (n, g): μ, σ² (biased) over the group's C/G channels and every spatial position
// (M = C/G · spatial values); y = (x − μ)·rstd·γ + β, rstd = 1/sqrt(σ² + eps).
// Backward: g = dy·γ, dx = rstd·(g − mean(g) − x̂·mean(g·x̂)) over the group,
// dγ = Σ_{n, positions} dy·x̂, dβ = Σ dy (reduced over n = 0, 1, ... in order: the same bits
// for any thread count). A sample's outputs never depend on the other samples.
// Instance norm is G = C. Its running statistics (optional, G == C only, spatial > 1) are
// updated in the same call, as torch's InstanceNorm*d does: running_mean ← (1 − m)·running_mean
// + m·mean_n(μ_nc), running_var ← (1 − m)·running_var + m·mean_n(σ²_nc·S/(S − 1)).
// Optional arguments are null pointers. Outputs may alias an input exactly (y over x, dx
// over dy or x); any other overlap, and two outputs sharing memory, are rejected.
#pragma once

#include <cstdint>

#include "normkit/config.hpp"
#include "normkit/tensor.hpp"

namespace normkit {

struct GroupNormForwardArgs {
  bool channels_last = false;
  const TensorView* x = nullptr;
  int64_t num_groups = 1;
  const TensorView* weight = nullptr;  // [C] optional (1)
  const TensorView* bias = nullptr;    // [C] optional (0)
  double eps = 1e-5;
  const TensorView* y = nullptr;          // like x, output
  const TensorView* save_mean = nullptr;  // [N, G] optional output
  const TensorView* save_rstd = nullptr;  // [N, G] optional output
  // Instance norm (num_groups == C): [C] running statistics updated in place (both or neither).
  const TensorView* running_mean = nullptr;
  const TensorView* running_var = nullptr;
  double momentum = 0.1;
};

struct GroupNormBackwardArgs {
  bool channels_last = false;
  const TensorView* dy = nullptr;      // like x
  const TensorView* x = nullptr;
  int64_t num_groups = 1;
  const TensorView* mean = nullptr;    // [N, G] the forward's save_mean
  const TensorView* rstd = nullptr;    // [N, G] the forward's save_rstd
  const TensorView* weight = nullptr;  // [C] optional
  const TensorView* dx = nullptr;      // like x, optional output
  const TensorView* dweight = nullptr; // [C] optional output (needs weight)
  const TensorView* dbias = nullptr;   // [C] optional output
};

NORMKIT_API void group_norm_forward(const GroupNormForwardArgs& args, Stream stream = nullptr);
NORMKIT_API void group_norm_backward(const GroupNormBackwardArgs& args, Stream stream = nullptr);

}  // namespace normkit
