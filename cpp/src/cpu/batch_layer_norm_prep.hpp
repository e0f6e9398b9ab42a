// Internal: what the BLN dispatcher (cpu/batch_layer_norm_dispatch.cpp) hands to the per-ISA
// kernel (cpu/batch_layer_norm_kernel.cpp). A call is two kernel phases with the per-column
// math in between (the dispatcher's):
//
//   Columns: the batch statistics' reduction over the B samples, per column j = p·F + f
//            (forward: exact moments; backward: Σdy, Σdy·d_b, Σd_b with d_b = x − hb_j), in
//            blocks of columns;
//   Rows:    one pass per feature row (b, p): its feature statistics (forward: exact
//            moments; backward: the weighted sums), then the elementwise pass
//              forward   y  = γ'·(af·d_f + ab_j·d_b + cf + cb_j) + β,
//              backward  dx = (af·γ' + ab_j)·dy + bdf·d_f + bdb_j·d_b + cf + cb_j,
//            with γ' = γ/sqrt(F), d_f = x − hi_f; and the backward's dγ, dβ partials per
//            block of rows (block_layout: the order depends on the shape only).
#pragma once

#include <cstdint>

#include "common/batch_layer_norm_problem.hpp"
#include "common/batch_norm_math.hpp"

namespace normkit::cpu {

enum class BlnPhase { Columns, Rows };

struct BlnPrep {
  BlnPhase phase = BlnPhase::Columns;
  int threads = 1;
  bool nontemporal = false;
  const void* gamma = nullptr;  // [F] compute type: γ/sqrt(F) (never null)
  const void* bias = nullptr;   // [F] compute type, or null
  // Per column [P·F], compute type: hb, ab, cb (forward); hb, ab, bdb, cb, kb, kb0 (backward).
  const void* hb = nullptr;
  const void* ab = nullptr;
  const void* bdb = nullptr;
  const void* cb = nullptr;
  const void* kb = nullptr;
  const void* kb0 = nullptr;
  double* colstat = nullptr;  // Columns: [2][P·F] moments or [3][P·F] sums (double)
  int64_t col_block = 1024;   // Columns: columns per task
  // Rows, forward: feature statistics of the input -> rowstat[2·r] = mean, M2 (written);
  // running ones -> run_hi, run_rstd [P] (compute type).
  double* rowstat = nullptr;
  const void* run_hi = nullptr;
  const void* run_rstd = nullptr;
  // Rows, backward: the saved feature statistics per row [B·P]: hi (compute type), lo
  // (double; null: recover the rest from the data), rstd (compute type).
  const void* fhi = nullptr;
  const double* flo = nullptr;
  const void* frstd = nullptr;
  double wf = 0, rsqrt_f = 1;
  double eps = 0;
  bool feature_input = true;
  // Rows, backward: [nblocks][2][F] compute-type partials of dγ, dβ (null: not wanted).
  void* partials = nullptr;
  int64_t nblocks = 1, rows_per_block = 0;
  // Per-thread scratch (Columns: 3·col_block compute-type values), `scratch_stride` bytes each.
  char* scratch = nullptr;
  size_t scratch_stride = 0;
};

}  // namespace normkit::cpu
