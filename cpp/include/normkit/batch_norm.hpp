// normkit/batch_norm.hpp — batch normalization (SPEC §4): the fused training / evaluation
// forward and backward, and the split phases of synchronized (multi-process) batch norm.
//
// Conventions (SPEC §0):
//   x       channels first (N, C, *) or channels last (*, C) (`channels_last`); a 2-D x is
//           (N, C) in both. Channels first: the dims after C compact among themselves, or C
//           of unit stride (a torch.channels_last tensor: computed as channels last over the
//           same memory); channels last: C of unit stride; leading dims any strides.
//           M = x.numel() / C values per channel.
//   weight, bias, running_mean, running_var   [C], x's dtype or float32 for 16-bit x.
//   mean, rstd (saved statistics)             [C], float32 (float64 for float64 x).
//   Split-phase statistics (mean, m2, rstd, sum_dy, sum_dy_xhat) may also be float64 for
//   any x: a float64 mean is used as hi + lo (Note [Corrected two-pass] in
//   common/row_norm_math.hpp), so statistics merged across processes lose nothing.
//   y, dy, dx  like x, laid out so that the same rule applies.
// Training: μ, σ² (biased) of the batch per channel; y = (x − μ)·rstd·γ + β with
// rstd = 1/sqrt(σ² + eps); running_mean ← (1 − m)·running_mean + m·μ, running_var ←
// (1 − m)·running_var + m·σ²·M/(M − 1) in the same call (M = 1 is an error). Evaluation:
// μ = running_mean, σ² = running_var. Backward (training): x̂ = (x − μ)·rstd,
//   dx = γ·rstd·(dy − Σdy/M − x̂·Σ(dy·x̂)/M),  dγ = Σ dy·x̂,  dβ = Σ dy;
// (evaluation): dx = γ·rstd·dy. Every per-channel sum is reduced in an order that depends on
// the shape only (never on the thread count).
// Optional arguments are null pointers. Outputs may alias an input exactly (y over x, dx
// over dy or x); any other overlap, and two outputs sharing memory, are rejected.
#pragma once

#include <cstddef>
#include <cstdint>

#include "normkit/config.hpp"
#include "normkit/tensor.hpp"

namespace normkit {

struct BatchNormForwardArgs {
  bool channels_last = false;
  const TensorView* x = nullptr;
  const TensorView* weight = nullptr;        // [C] optional (1)
  const TensorView* bias = nullptr;          // [C] optional (0)
  const TensorView* running_mean = nullptr;  // [C]: updated in training, read in evaluation
  const TensorView* running_var = nullptr;   // [C]: the same (both or neither)
  bool training = false;
  double momentum = 0.1;  // the update factor (torch's cumulative average: 1/batches)
  double eps = 1e-5;
  const TensorView* y = nullptr;          // like x, output
  const TensorView* save_mean = nullptr;  // [C] optional output: μ used (for the backward)
  const TensorView* save_rstd = nullptr;  // [C] optional output: rstd used
};

struct BatchNormBackwardArgs {
  bool channels_last = false;
  bool training = false;               // what the forward did: statistics of the batch or not
  const TensorView* dy = nullptr;      // like x
  const TensorView* x = nullptr;
  const TensorView* mean = nullptr;    // [C] the forward's save_mean
  const TensorView* rstd = nullptr;    // [C] the forward's save_rstd
  const TensorView* weight = nullptr;  // [C] optional
  const TensorView* dx = nullptr;      // like x, optional output
  const TensorView* dweight = nullptr; // [C] optional output (needs weight)
  const TensorView* dbias = nullptr;   // [C] optional output
};

// Split phase 1: per-channel count (returned: M), mean and M2 = Σ(x − mean)² of x.
struct BatchNormStatsArgs {
  bool channels_last = false;
  const TensorView* x = nullptr;
  const TensorView* mean = nullptr;  // [C] output
  const TensorView* m2 = nullptr;    // [C] output
};

// Chan et al.'s merge of K per-channel (count, mean, M2) triples, in order k = 0, 1, ...,
// in double. counts [K]; means, m2s [K, C]; outputs count [1] (optional: the total), mean and
// m2 [C]; all float32 or float64 (each its own), on one device.
struct MomentsMergeArgs {
  const TensorView* counts = nullptr;
  const TensorView* means = nullptr;
  const TensorView* m2s = nullptr;
  const TensorView* count = nullptr;
  const TensorView* mean = nullptr;
  const TensorView* m2 = nullptr;
};

// Split phase 2: y = (x − mean)·rstd·γ + β.
struct BatchNormApplyArgs {
  bool channels_last = false;
  const TensorView* x = nullptr;
  const TensorView* mean = nullptr;    // [C]
  const TensorView* rstd = nullptr;    // [C]
  const TensorView* weight = nullptr;  // [C] optional
  const TensorView* bias = nullptr;    // [C] optional
  const TensorView* y = nullptr;       // like x, output
};

// Backward phase 1: per channel Σdy and Σdy·x̂ (x̂ = (x − mean)·rstd) over this x.
struct BatchNormBackwardReduceArgs {
  bool channels_last = false;
  const TensorView* dy = nullptr;
  const TensorView* x = nullptr;
  const TensorView* mean = nullptr;         // [C]
  const TensorView* rstd = nullptr;         // [C]
  const TensorView* sum_dy = nullptr;       // [C] output
  const TensorView* sum_dy_xhat = nullptr;  // [C] output
};

// Backward phase 2: dx = γ·rstd·(dy − sum_dy/count − x̂·sum_dy_xhat/count), the sums and the
// count those of the whole (possibly multi-process) batch.
struct BatchNormBackwardApplyArgs {
  bool channels_last = false;
  const TensorView* dy = nullptr;
  const TensorView* x = nullptr;
  const TensorView* mean = nullptr;         // [C]
  const TensorView* rstd = nullptr;         // [C]
  const TensorView* weight = nullptr;       // [C] optional
  const TensorView* sum_dy = nullptr;       // [C]
  const TensorView* sum_dy_xhat = nullptr;  // [C]
  double count = 0;                         // M of the whole batch, >= 1
  const TensorView* dx = nullptr;           // like x, output
};

NORMKIT_API void batch_norm_forward(const BatchNormForwardArgs& args, Stream stream = nullptr);
NORMKIT_API void batch_norm_backward(const BatchNormBackwardArgs& args, Stream stream = nullptr);
NORMKIT_API int64_t batch_norm_stats(const BatchNormStatsArgs& args, Stream stream = nullptr);
NORMKIT_API void moments_merge(const MomentsMergeArgs& args, Stream stream = nullptr);
NORMKIT_API void batch_norm_apply(const BatchNormApplyArgs& args, Stream stream = nullptr);
NORMKIT_API void batch_norm_backward_reduce(const BatchNormBackwardReduceArgs& args,
                                            Stream stream = nullptr);
NORMKIT_API void batch_norm_backward_apply(const BatchNormBackwardApplyArgs& args,
                                           Stream stream = nullptr);

}  // namespace normkit
