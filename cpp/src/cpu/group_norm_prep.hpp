// Internal: what the group-norm dispatcher (cpu/group_norm_dispatch.cpp) hands to the per-ISA
// kernel (cpu/group_norm_kernel.cpp).
//
// The kernel's task is one group (n, g) for channels-first data (its C/G planes are reduced,
// finished and normalized while in cache) or one sample n for channels-last data (per-column
// moments / sums over the sample's rows, merged per group, then the sample's rows). A
// group's per-channel coefficients come from common/batch_norm_math.hpp, as batch norm's.
#pragma once

#include <cstddef>
#include <cstdint>

#include "common/batch_norm_math.hpp"
#include "common/group_norm_problem.hpp"

namespace normkit::cpu {

struct GnPrep {
  int threads = 1;
  bool nontemporal = false;       // stream the output
  const void* weight = nullptr;   // [C] compute type, or null (1)
  const void* bias = nullptr;     // [C] compute type, or null (0)
  // Forward: the kernel writes each group's exact moments, stats[2·(n·G + g) + {0, 1}] =
  // mean, M2 (the dispatcher derives the saved and running statistics from them).
  double* stats = nullptr;
  // Backward: per group the saved mean as hi (compute type) + lo (double; null: recover the
  // rest of this batch's mean from the data, Note [Corrected two-pass]) and rstd.
  const void* hi = nullptr;
  const double* lo = nullptr;
  const void* rstd = nullptr;
  // Backward: per (n, c) the parameter-gradient partials, part[2·(n·C + c) + {0, 1}] =
  // Σdy·x̂, Σdy (summed over n in order by the dispatcher).
  double* part = nullptr;
  // Channels last: per-thread scratch of `scratch_stride` bytes each.
  char* scratch = nullptr;
  size_t scratch_stride = 0;
};

// Bytes of per-thread scratch the channels-last kernel needs for C channels of compute type
// of `csize` bytes: 3·C doubles and 8·C compute-type values.
inline size_t gn_scratch_bytes(int64_t C, size_t csize) {
  return size_t(C) * (3 * sizeof(double) + 8 * csize);
}

}  // namespace normkit::cpu
