// Internal: one pass of the spectral-norm CPU kernel (cpu/spectral_norm_kernel.cpp) as the
// dispatcher (cpu/spectral_norm_dispatch.cpp) prepares it. Every pass walks W by row blocks
// fixed by the shape (SnPass::nblocks, rows_per_block), each block on one thread and its
// partial results in its own slot, so the bits never depend on the thread count.
#pragma once

#include <cstdint>

#include "common/spectral_norm_problem.hpp"

namespace normkit::cpu {

enum class SnPassKind {
  Power,   // a[r] = W_r·v (C), t_b += a[r]·W_r over block b's rows (partials [nblocks][cols], C)
  RowDot,  // a[r] = W_r·v
  Scale,   // out = W·k
  Dot,     // dots[b] = Σ over block b of ⟨dy_r, W_r⟩ (double)
  BackwardApply,  // dw_r = dy_r·k − (k2·u[r])·v
};

struct SnPass {
  SnPassKind kind = SnPassKind::Power;
  int threads = 1;
  int64_t nblocks = 1, rows_per_block = 1;
  bool nontemporal = false;
  const void* v = nullptr;  // [cols] compute type
  const void* u = nullptr;  // [rows] compute type (BackwardApply)
  void* a = nullptr;        // [rows] compute type
  void* partials = nullptr; // [nblocks][cols] compute type (Power)
  double* dots = nullptr;   // [nblocks] (Dot)
  double k = 1.0, k2 = 0.0;
};

}  // namespace normkit::cpu
