// Internal: what the row-norm dispatcher (cpu/row_norm_dispatch.cpp) hands to the per-ISA
// kernels (cpu/row_norm_kernel.cpp).
#pragma once

#include <cstdint>

#include "common/row_norm_problem.hpp"

namespace normkit::cpu {

// Per-call preparation done once by the dispatcher, so the kernels' inner loops see one
// parameter layout: [H] arrays of the compute type (float; double for float64 x), with the
// RMS weight offset already added to the weight. Null when absent.
struct ForwardPrep {
  const void* weight = nullptr;
  const void* bias = nullptr;
  const void* x_bias = nullptr;
  int threads = 1;
  bool nontemporal = false;  // stream y (it is larger than the cache and is not read back)
};

struct BackwardPrep {
  const void* weight = nullptr;  // compute type, offset added
  // Deterministic parameter gradients (Note [Fixed-order parameter gradients]):
  // rows are cut into `nblocks` blocks of `rows_per_block` (a function of rows and H only);
  // block b accumulates Σ over its rows, in row order, into partials[b][k][0..H) for each
  // of the `nacc` wanted sums (k: dweight, dbias, dx_bias in that order, absent ones
  // skipped); the blocks are then added in block order.
  void* partials = nullptr;  // compute type [nblocks][nacc][H]
  int64_t nblocks = 1;
  int64_t rows_per_block = 0;
  int nacc = 0;
  int threads = 1;
  bool nontemporal = false;  // stream dx / dresidual
};

}  // namespace normkit::cpu
