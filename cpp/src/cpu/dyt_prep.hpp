// Internal: what the DyT dispatcher (cpu/dyt_dispatch.cpp) hands to the per-ISA kernels
// (cpu/dyt_kernel.cpp).
#pragma once

#include <cstdint>

#include "common/dyt_problem.hpp"

namespace normkit::cpu {

struct DytPrep {
  double alpha = 0;              // α, as a value of the compute type
  const void* weight = nullptr;  // [C] compute type, or null (γ = 1)
  const void* bias = nullptr;    // [C] compute type, or null (β = 0)
  // Backward partial sums (Note [Fixed-order parameter gradients]), compute type, the sums
  // of dyt_sums() in order (A, G, B; absent ones skipped):
  //   channels last: [nblocks][nacc][C], rows cut into blocks by block_layout(rows, C);
  //   per row:       [rows][nacc], one set of sums per (n, c) plane.
  void* partials = nullptr;
  int64_t nblocks = 1;
  int64_t rows_per_block = 0;
  int nacc = 0;
  int threads = 1;
  bool nontemporal = false;  // stream y / dx
};

}  // namespace normkit::cpu
