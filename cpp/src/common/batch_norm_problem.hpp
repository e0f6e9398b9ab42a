// Internal: a validated batch-norm call as the backends receive it (cpp/src/batch_norm.cpp
// resolves the views; backends trust them). Layouts as channel_layout.hpp: per_row == true,
// row r is the (n, c) plane, c = r % C; per_row == false, rows of C channels.
#pragma once

#include <cstdint>

#include "common/row_index.hpp"
#include "normkit/dtype.hpp"

namespace normkit::detail {

struct BnLayout {
  int device_index = 0;
  DType x_dtype = DType::Float32;
  bool per_row = false;
  int64_t rows = 0, width = 0;  // both >= 1 when a kernel runs
  int64_t C = 0;
  int64_t count() const { return C > 0 ? rows * width / C : 0; }  // M, values per channel
};

// A per-channel array [C] (or null) and its dtype; written only where the call says so.
struct Chan {
  void* p = nullptr;
  DType dtype = DType::Float32;
};

// Every batch-norm entry point resolves into this one problem: the arrays shaped like x that
// the call uses (null otherwise) and the per-channel arrays.
enum class BnOp {
  Forward, Backward, Stats, Apply, BackwardReduce, BackwardApply,
  // Weight norm (normkit/param_norm.hpp): weight = g, save_rstd = the norm written /
  // rstd = the norm read, dweight = dg; no mean (hi = 0).
  WeightNorm, WeightNormBackward,
};

struct BnProblem : BnLayout {
  BnOp op = BnOp::Forward;
  const void* x = nullptr;
  RowIndex x_idx;
  const void* dy = nullptr;
  RowIndex dy_idx;
  void* out = nullptr;  // y (forward, apply) or dx (backward)
  RowIndex out_idx;
  Chan mean, rstd, weight, bias;  // inputs
  Chan running_mean, running_var;   // forward: read (evaluation) / updated (training)
  Chan sum_dy, sum_dy_xhat;        // backward apply: the batch's sums
  double total = 0;                     // backward apply: M of the whole batch
  bool training = false;
  double momentum = 0.1, eps = 1e-5;
  Chan save_mean, save_rstd;   // forward
  Chan stat_mean, stat_m2;     // batch_norm_stats
  Chan red_dy, red_dy_xhat;    // backward reduce
  Chan dweight, dbias;         // backward
};

struct MomentsMergeProblem {
  int device_index = 0;
  int64_t K = 0, C = 0;
  Chan counts, means, m2s;  // [K], [K, C], [K, C]
  Chan count, mean, m2;       // [1] (or null), [C], [C]
};

}  // namespace normkit::detail
