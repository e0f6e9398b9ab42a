// Internal: one step of a recurrent sequence as the RNN dispatcher (cpu/rnn_dispatch.cpp)
// hands it to the per-ISA fused kernels (cpu/rnn_kernel.cpp). Every array is of the compute
// type C (= the data type: float or double) and, unless said otherwise, a contiguous [B, ·].
#pragma once

#include <cstdint>

#include "common/rnn_problem.hpp"

namespace normkit::cpu {

struct RnnStepPrep {
  const detail::RnnShape* shape = nullptr;
  int64_t t = 0;  // the time index of this step
  // Parameters (never null: the dispatcher materializes γ = 1, β = 0, b = 0).
  const void* lnx_w = nullptr;  // [N] (Elman [H])
  const void* lnx_b = nullptr;
  const void* lnh_w = nullptr;  // [N] LSTM / GRU
  const void* lnh_b = nullptr;
  const void* lnc_w = nullptr;  // [H] LSTM
  const void* lnc_b = nullptr;
  const void* bias = nullptr;   // [N]: LSTM / Elman b_ih + b_hh; GRU b_ih
  const void* bias_h = nullptr;  // [N]: GRU b_hh
  detail::SeqRows mask_h, mask_c;  // [T, B, H] of the data type, or p null: the constants
  double zo_h = 0.0, zo_c = 0.0;
  void* reserve = nullptr;  // the whole reserve (Note [Reserve layout]); null: inference
  // Forward: px (this step's input projection, overwritten: GRU's gx), ph (the recurrent
  // product, overwritten: scratch), the states in and out, y's rows.
  void* px = nullptr;
  void* ph = nullptr;
  const void* h_prev = nullptr;
  const void* c_prev = nullptr;
  void* h_next = nullptr;
  void* c_next = nullptr;
  detail::SeqRows y;
  // Backward: dy's rows (p null: 0), the state gradients reaching this step (dh_in, dc_in)
  // and the direct parts of those reaching the step before (dh_out, dc_out; the dispatcher
  // adds dph·W_hh to dh_out), dpx / dph of this step (Elman: the same array), and the
  // parameter-gradient partial sums, [nchunks][partial_width].
  detail::SeqRows dy;
  const void* dh_in = nullptr;
  const void* dc_in = nullptr;
  void* dh_out = nullptr;
  void* dc_out = nullptr;
  void* dpx = nullptr;
  void* dph = nullptr;
  void* partials = nullptr;
  int64_t partial_width = 0;
  // Rows are cut into nchunks chunks of chunk_rows (a function of B alone): a chunk's
  // partial sums are formed by one thread, step after step, in a fixed order.
  int64_t chunk_rows = 1, nchunks = 1;
  int threads = 1;
};

// The partial sums of one chunk, in this order (each of the given width):
//   LSTM   Σda N | Σda·x̂_x N | Σda·x̂_h N | Σdu·ĉ H | Σdu H   (da: the gradient of a;
//          du: of LN_c's output) — Σda is db_ih = db_hh = dβ_x = dβ_h
//   GRU    Σdgx N | Σdgh N | Σdgx·x̂_x N | Σdgh·x̂_h N   — Σdgx = db_ih = dβ_x, Σdgh likewise
//   Elman  Σdpre H | Σdu·x̂ H | Σdu H   — Σdpre = db_ih = db_hh
inline int64_t rnn_partial_width(const detail::RnnShape& s) {
  if (s.lstm()) return 3 * s.N + 2 * s.H;
  if (s.gru()) return 4 * s.N;
  return 3 * s.H;
}

}  // namespace normkit::cpu
