// Internal: a validated group-norm call as the backends receive it (cpp/src/group_norm.cpp
// resolves the views; backends trust them). Layouts as channel_layout.hpp: per_row == true,
// row r is the (n, c) plane (rows = N·C); per_row == false, rows of C channels, sample n
// holding rows [n·rows/N, (n+1)·rows/N).
#pragma once

#include <cstdint>

#include "common/batch_norm_problem.hpp"
#include "common/row_index.hpp"
#include "normkit/dtype.hpp"

namespace normkit::detail {

struct GnProblem : BnLayout {
  bool backward = false;
  int64_t N = 0, G = 0;
  const void* x = nullptr;
  RowIndex x_idx;
  const void* dy = nullptr;  // backward
  RowIndex dy_idx;
  void* out = nullptr;       // y (forward) or dx (backward; may be null)
  RowIndex out_idx;
  Chan weight, bias;         // [C] (bias: forward)
  double eps = 1e-5;
  Chan save_mean, save_rstd;        // forward outputs [N, G]
  Chan running_mean, running_var;   // forward, G == C: updated
  double momentum = 0.1;
  Chan mean, rstd;                  // backward inputs [N, G]
  Chan dweight, dbias;              // backward outputs [C]

  int64_t Cg() const { return C / G; }
  int64_t spatial() const { return N > 0 && C > 0 ? rows * width / (N * C) : 0; }
  int64_t group_count() const { return Cg() * spatial(); }  // M, values per (n, g)
  int64_t rows_per_sample() const { return N > 0 ? rows / N : 0; }
};

}  // namespace normkit::detail
