// normkit/dyt.hpp — Dynamic Tanh, DyT (SPEC §6): y = γ·tanh(α·x) + β, elementwise.
//
// Conventions (SPEC §0):
//   x       [*, C] (channels_last) or [N, C, *] (channels first); C = the channel dim.
//           Channels last: the last dim must have unit stride, the leading dims any strides.
//           Channels first: the dims after C must be compact among themselves — or C itself
//           has unit stride (a torch.channels_last tensor: logical NCHW, NHWC memory), in which
//           case the call is computed as channels last over the same memory.
//           A 2-D x is the same in both layouts.
//   alpha   one element (shape [1] or []); dtype x's, or float32 for 16-bit x.
//   weight  [C] γ, optional (1); bias [C] β, optional (0); dtype x's or float32 for 16-bit x.
//   y, dy, dx  like x (shape, dtype, device) and laid out so that the same rule applies.
// Backward (t = tanh(αx)):  dx = dy·γ·α·(1 − t²);  dα = Σ dy·γ·x·(1 − t²);  dγ = Σ dy·t;
// dβ = Σ dy — all sums reduced in a fixed order that depends on the shape only.
// Optional arguments are null pointers. Outputs may alias an input exactly (y over x, dx over
// dy or x); any other overlap, and any two outputs sharing memory, are rejected.
#pragma once

#include <cstddef>

#include "normkit/config.hpp"
#include "normkit/tensor.hpp"

namespace normkit {

struct DytForwardArgs {
  bool channels_last = true;
  const TensorView* x = nullptr;       // [*, C] or [N, C, *]
  const TensorView* alpha = nullptr;   // [1]
  const TensorView* weight = nullptr;  // [C] optional
  const TensorView* bias = nullptr;    // [C] optional
  const TensorView* y = nullptr;       // like x, output
};

struct DytBackwardArgs {
  bool channels_last = true;
  const TensorView* dy = nullptr;       // like x
  const TensorView* x = nullptr;
  const TensorView* alpha = nullptr;    // [1]
  const TensorView* weight = nullptr;   // [C] optional
  const TensorView* dx = nullptr;       // like x, output
  const TensorView* dalpha = nullptr;   // [1], dtype of alpha; optional output
  const TensorView* dweight = nullptr;  // [C] optional output (needs weight)
  const TensorView* dbias = nullptr;    // [C] optional output
  // Scratch for the deterministic reductions: null lets the core allocate (and free) it;
  // or pass dyt_backward_workspace_size() bytes on the same device, 64-byte aligned.
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
};

NORMKIT_API void dyt_forward(const DytForwardArgs& args, Stream stream = nullptr);
NORMKIT_API void dyt_backward(const DytBackwardArgs& args, Stream stream = nullptr);
NORMKIT_API size_t dyt_backward_workspace_size(const DytBackwardArgs& args);

}  // namespace normkit
