// Internal: a validated BLN call as the backends receive it (cpp/src/batch_layer_norm.cpp
// resolves the views; backends trust them). x is B rows of P·F contiguous elements (row b at
// x_idx.offset(b)); feature row (b, p) is the F elements at offset p·F of row b; column
// j = p·F + f of the batch statistics.
#pragma once

#include <cstdint>

#include "common/batch_norm_problem.hpp"
#include "common/row_index.hpp"
#include "normkit/dtype.hpp"

namespace normkit::detail {

struct BlnProblem {
  int device_index = 0;
  DType x_dtype = DType::Float32;
  bool backward = false;
  int64_t B = 0, P = 0, F = 0;  // all >= 1 when a kernel runs
  const void* x = nullptr;
  RowIndex x_idx;
  const void* dy = nullptr;
  RowIndex dy_idx;
  void* out = nullptr;  // y, or dx (backward; may be null)
  RowIndex out_idx;
  Chan weight, bias;
  bool batch_input = true, feature_input = true;  // statistics of the input (else running)
  Chan run_bmean, run_bvar;  // [P·F]
  Chan run_fmean, run_fvar;  // [P]
  double momentum = 0.1, eps = 1e-3;
  double wf = 0, wb = 0;  // the mixing weights w_f, w_b
  Chan bmean, brstd;      // [P·F]: forward outputs (optional), backward inputs
  Chan fmean, frstd;      // [B·P]: the same
  Chan dweight, dbias;    // backward outputs

  int64_t columns() const { return P * F; }
  int64_t feature_rows() const { return B * P; }
};

}  // namespace normkit::detail
