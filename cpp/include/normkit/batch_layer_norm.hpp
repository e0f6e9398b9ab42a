// normkit/batch_layer_norm.hpp — batch layer normalization, BLN (SPEC §7; Ziaee & Çano 2022).
//
// Conventions (SPEC §0):
//   x       (B, *, F): features last; the dims after 0 C-contiguous among themselves, dim 0 of
//           any stride. P = prod(x.shape[1:-1]) positions (1 for a 2-D x).
//   weight, bias    [F], x's dtype or float32 for 16-bit x.
//   Batch statistics: one per (position, feature), over the B samples — x.shape[1:] values
//   (saved: batch_mean, batch_rstd; running: running_batch_mean / _var).
//   Feature statistics: one per (sample, position), over the F features — x.shape[:-1]
//   values saved (feature_mean, feature_rstd); running: x.shape[1:-1] values, the batch
//   average of each sample's (running_feature_mean / _var).
//   Saved statistics: float32 (float64 for float64 x); running ones like weight.
// Forward: x_b = (x − μ_b)·rstd_b, x_f = (x − μ_f)·rstd_f, rstd = 1/sqrt(σ² + eps) (biased σ²),
//   y = γ·(w_f·x_f + w_b·x_b)/sqrt(F) + β,  w_f = 1/B' − δ,  w_b = 1 − 1/B' − δ,
// B' = `batch_size` (the batch the layer was trained with; 0: B). Each statistic is either the
// input's (`*_of_input`; the running one, if given, updated in the same call with `momentum`,
// the unbiased variance stored as batch norm's) or the running one's.
// Backward through the statistics of the input (the running ones are constants):
//   g = dy·γ/sqrt(F),  dx = w_f·rstd_f·(g − mean_f(g) − x_f·mean_f(g·x_f))
//                         + w_b·rstd_b·(g − mean_b(g) − x_b·mean_b(g·x_b)),
//   dγ = Σ dy·(w_f·x_f + w_b·x_b)/sqrt(F), dβ = Σ dy, reduced in an order fixed by the shape.
// Optional arguments are null pointers. Outputs may alias an input exactly (y over x, dx
// over dy or x); any other overlap, and two outputs sharing memory, are rejected.
#pragma once

#include <cstdint>

#include "normkit/config.hpp"
#include "normkit/tensor.hpp"

namespace normkit {

struct BatchLayerNormForwardArgs {
  const TensorView* x = nullptr;
  const TensorView* weight = nullptr;  // [F] optional (1)
  const TensorView* bias = nullptr;    // [F] optional (0)
  bool batch_stats_of_input = true;    // false: running_batch_mean / _var are used
  bool feature_stats_of_input = true;  // false: running_feature_mean / _var are used
  const TensorView* running_batch_mean = nullptr;    // x.shape[1:] (both or neither)
  const TensorView* running_batch_var = nullptr;
  const TensorView* running_feature_mean = nullptr;  // x.shape[1:-1] (both or neither)
  const TensorView* running_feature_var = nullptr;
  double momentum = 0.1;  // update factor of the running statistics of the input
  double eps = 1e-3;
  double delta = 1e-4;
  double batch_size = 0;  // B' of the mixing weights (0: x.shape[0])
  const TensorView* y = nullptr;             // like x, output
  const TensorView* batch_mean = nullptr;    // optional outputs: the statistics used
  const TensorView* batch_rstd = nullptr;
  const TensorView* feature_mean = nullptr;
  const TensorView* feature_rstd = nullptr;
};

struct BatchLayerNormBackwardArgs {
  const TensorView* dy = nullptr;  // like x
  const TensorView* x = nullptr;
  const TensorView* weight = nullptr;        // [F] optional
  const TensorView* batch_mean = nullptr;    // the forward's saved statistics
  const TensorView* batch_rstd = nullptr;
  const TensorView* feature_mean = nullptr;
  const TensorView* feature_rstd = nullptr;
  bool batch_stats_of_input = true;    // as in the forward
  bool feature_stats_of_input = true;
  double delta = 1e-4;
  double batch_size = 0;
  const TensorView* dx = nullptr;       // like x, optional output
  const TensorView* dweight = nullptr;  // [F] optional output (needs weight)
  const TensorView* dbias = nullptr;    // [F] optional output
};

NORMKIT_API void batch_layer_norm_forward(const BatchLayerNormForwardArgs& args,
                                          Stream stream = nullptr);
NORMKIT_API void batch_layer_norm_backward(const BatchLayerNormBackwardArgs& args,
                                           Stream stream = nullptr);

}  // namespace normkit
