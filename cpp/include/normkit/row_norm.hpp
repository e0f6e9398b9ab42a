// normkit/row_norm.hpp — layer norm, RMS norm and fused residual add + norm (SPEC §1–3), and
// AdaNorm (SPEC §8).
//
// Conventions (SPEC §0):
//   x      [*, H...]   the last `normalized_ndim` dims form a row of H elements and must be
//                      compact (C-contiguous among themselves); the leading dims may have any
//                      strides (each row is found by its own offset). rows = numel / H.
//   weight [H...]      γ, optional; compact; dtype = x.dtype, or float32 for 16-bit x.
//   bias   [H...]      β, optional; dtype x.dtype or float32 for 16-bit x (independently of
//                      weight's).
//   mean   [rows]      float32 (float64 for float64 x), any shape with `rows` elements,
//   rstd   [rows]      C-contiguous. For RMS norm `rstd` holds rrms and `mean` must be absent.
// Optional arguments are null pointers. Outputs may alias an input exactly (y over x,
// residual_out over residual, dx over dy or x); any other overlap is rejected.
// Every function validates all of its arguments before touching memory and throws
// normkit::Error naming the argument on bad input.
#pragma once

#include <cstddef>

#include "normkit/config.hpp"
#include "normkit/tensor.hpp"

namespace normkit {

enum class NormKind : int8_t { Layer = 0, RMS = 1, Ada = 2 };

struct RowNormForwardArgs {
  NormKind kind = NormKind::Layer;
  int normalized_ndim = 1;
  double eps = 1e-5;
  double weight_offset = 0.0;   // RMS: y = x̂·(γ + offset); must be 0 for layer norm
  double residual_scale = 1.0;  // fused add: s = x + x_bias + residual_scale·residual
  double ada_k = 0.1, ada_scale = 2.0;  // AdaNorm: y = ada_scale·(1 − ada_k·ŷ)·ŷ

  const TensorView* x = nullptr;             // [*, H...]
  const TensorView* residual = nullptr;      // [*, H...] optional: enables the fused add
  const TensorView* x_bias = nullptr;        // [H...]    optional (fused add only)
  const TensorView* weight = nullptr;        // [H...]    optional
  const TensorView* bias = nullptr;          // [H...]    optional
  const TensorView* y = nullptr;             // [*, H...] output
  const TensorView* residual_out = nullptr;  // [*, H...] optional output s (fused add only)
  const TensorView* mean = nullptr;          // [rows]    optional output (layer norm only)
  const TensorView* rstd = nullptr;          // [rows]    optional output (rrms for RMS)
};

struct RowNormBackwardArgs {
  NormKind kind = NormKind::Layer;
  int normalized_ndim = 1;
  double weight_offset = 0.0;
  double residual_scale = 1.0;
  double ada_k = 0.1, ada_scale = 2.0;  // AdaNorm: as the forward's

  const TensorView* dy = nullptr;      // [*, H...]
  const TensorView* ds = nullptr;      // [*, H...] optional: gradient arriving on s (pre-norm)
  const TensorView* x = nullptr;       // [*, H...] the normalized input (s for the fused add)
  const TensorView* mean = nullptr;    // [rows]    layer norm only
  const TensorView* rstd = nullptr;    // [rows]
  const TensorView* weight = nullptr;  // [H...]    optional
  const TensorView* dx = nullptr;      // [*, H...] output: dL/dx (= dL/ds_total)
  const TensorView* dresidual = nullptr;  // [*, H...] optional output: residual_scale·dx
  const TensorView* dweight = nullptr;    // [H...] optional output (needs weight)
  const TensorView* dbias = nullptr;      // [H...] optional output: Σ_rows dy
  const TensorView* dx_bias = nullptr;    // [H...] optional output: Σ_rows dx
  // Scratch for the deterministic parameter-gradient reduction. Leave null to let the core
  // allocate (and free) it; or query row_norm_backward_workspace_size() and pass that many
  // bytes on the same device, 64-byte aligned.
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
};

NORMKIT_API void row_norm_forward(const RowNormForwardArgs& args, Stream stream = nullptr);
NORMKIT_API void row_norm_backward(const RowNormBackwardArgs& args, Stream stream = nullptr);
NORMKIT_API size_t row_norm_backward_workspace_size(const RowNormBackwardArgs& args);

// Convenience spellings of the common cases (normalize over the last dim).
inline void layer_norm_forward(const TensorView& x, const TensorView* weight,
                               const TensorView* bias, double eps, const TensorView& y,
                               const TensorView* mean = nullptr, const TensorView* rstd = nullptr,
                               Stream stream = nullptr) {
  RowNormForwardArgs a;
  a.kind = NormKind::Layer;
  a.eps = eps;
  a.x = &x;
  a.weight = weight;
  a.bias = bias;
  a.y = &y;
  a.mean = mean;
  a.rstd = rstd;
  row_norm_forward(a, stream);
}

inline void rms_norm_forward(const TensorView& x, const TensorView* weight, double eps,
                             const TensorView& y, const TensorView* rrms = nullptr,
                             double weight_offset = 0.0, Stream stream = nullptr) {
  RowNormForwardArgs a;
  a.kind = NormKind::RMS;
  a.eps = eps;
  a.weight_offset = weight_offset;
  a.x = &x;
  a.weight = weight;
  a.y = &y;
  a.rstd = rrms;
  row_norm_forward(a, stream);
}

// AdaNorm (SPEC §8) over the last dim; mean and rstd are wanted by the backward.
inline void ada_norm_forward(const TensorView& x, double k, double scale, double eps,
                             const TensorView& y, const TensorView* mean = nullptr,
                             const TensorView* rstd = nullptr, Stream stream = nullptr) {
  RowNormForwardArgs a;
  a.kind = NormKind::Ada;
  a.eps = eps;
  a.ada_k = k;
  a.ada_scale = scale;
  a.x = &x;
  a.y = &y;
  a.mean = mean;
  a.rstd = rstd;
  row_norm_forward(a, stream);
}

inline void ada_norm_backward(const TensorView& dy, const TensorView& x, const TensorView& mean,
                              const TensorView& rstd, double k, double scale,
                              const TensorView& dx, Stream stream = nullptr) {
  RowNormBackwardArgs a;
  a.kind = NormKind::Ada;
  a.ada_k = k;
  a.ada_scale = scale;
  a.dy = &dy;
  a.x = &x;
  a.mean = &mean;
  a.rstd = &rstd;
  a.dx = &dx;
  row_norm_backward(a, stream);
}

}  // namespace normkit
