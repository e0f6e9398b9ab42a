// Internal: a validated recurrent call (normkit/rnn.hpp), as the CPU and CUDA backends get it
// (cpp/src/rnn.cpp resolves the views; backends trust it), and the reserve's layout, which
// every backend shares (the reserve a forward writes is what the backward reads).
#pragma once

#include <cstddef>
#include <cstdint>

#include "normkit/dtype.hpp"
#include "normkit/rnn.hpp"

namespace normkit::detail {

// Rows of a [T, B, W] array with a unit-stride last dim: row (t, b) at t·st + b·sb elements.
struct SeqRows {
  void* p = nullptr;
  int64_t st = 0, sb = 0;
  const void* cp() const { return p; }
};
// Rows of a [B, W] array: row b at b·sb.
struct BatchRows {
  void* p = nullptr;
  int64_t sb = 0;
};

struct RnnShape {
  RnnCell cell = RnnCell::LSTM;
  int G = 4;  // gates
  bool per_gate = false;
  double eps = 1e-5;
  bool reverse = false;
  DType dtype = DType::Float32;
  int device_index = 0;
  int64_t T = 0, B = 0, I = 0, H = 0, N = 0;  // N = G·H
  NK_HD bool lstm() const { return cell == RnnCell::LSTM; }
  NK_HD bool gru() const { return cell == RnnCell::GRU; }
  NK_HD bool elman() const { return cell == RnnCell::RNN_TANH || cell == RnnCell::RNN_RELU; }
};

// The parameters every call reads (contiguous arrays of dtype, or null for the default).
struct RnnParams {
  const void* w_ih = nullptr;
  int64_t w_ih_ld = 0;
  const void* w_hh = nullptr;
  int64_t w_hh_ld = 0;
  const void* b_ih = nullptr;
  const void* b_hh = nullptr;
  const void* lnx_w = nullptr;
  const void* lnx_b = nullptr;
  const void* lnh_w = nullptr;
  const void* lnh_b = nullptr;
  const void* lnc_w = nullptr;
  const void* lnc_b = nullptr;
  SeqRows mask_h, mask_c;  // p null: the constants below
  double zo_h = 0.0, zo_c = 0.0;
};

struct RnnProblem : RnnShape, RnnParams {
  SeqRows x;
  BatchRows h0, c0;  // p null: zeros
  SeqRows y;
  BatchRows h_n, c_n;  // p null: not wanted
  void* reserve = nullptr;  // null: inference
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
};

struct RnnBackwardProblem : RnnShape, RnnParams {
  SeqRows dy;          // p null: zeros
  BatchRows dh_n, dc_n;  // p null: zeros
  SeqRows x;
  const void* reserve = nullptr;
  SeqRows dx;
  BatchRows dh0, dc0;
  void* dw_ih = nullptr;  // [N, I] contiguous
  void* dw_hh = nullptr;  // [N, H] contiguous
  void* db_ih = nullptr;
  void* db_hh = nullptr;
  void* dlnx_w = nullptr;
  void* dlnx_b = nullptr;
  void* dlnh_w = nullptr;
  void* dlnh_b = nullptr;
  void* dlnc_w = nullptr;
  void* dlnc_b = nullptr;
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
};

// Note [Reserve layout]: blocks of [T, B, width] elements of the data type, one after the
// other, so that each block is a matrix of T·B rows (hprev is the right operand of dW_hh's
// product as it stands). Per step t and row b:
//   LSTM   hprev H | cprev H | x̂_x N | x̂_h N | gates (i, f, g, o activated) N | c̃ H |
//          stats 10 (rstd_x[4], rstd_h[4], mean_c, rstd_c; per_gate or not)
//   GRU    hprev H | x̂_x N | x̂_h N | r, z, n 3H | gh_n H | stats 6 (rstd_x[3], rstd_h[3])
//   Elman  hprev H | x̂ H | h̃ H | stats 1 (rstd)
// hprev / cprev hold the state the step started from (h0 / c0 for the first step).
struct RnnReserve {
  enum Block { HPrev, CPrev, XhatX, XhatH, Gates, CTil, GhN, HTil, Stats, kBlocks };
  int64_t width[kBlocks] = {};
  int64_t offset[kBlocks] = {};  // in elements, times T·B
  int64_t row = 0;               // Σ widths
};

inline RnnReserve rnn_reserve_layout(RnnCell cell, int64_t H) {
  RnnReserve r;
  const int64_t N = int64_t(rnn_gates(cell)) * H;
  auto& w = r.width;
  w[RnnReserve::HPrev] = H;
  if (cell == RnnCell::LSTM) {
    w[RnnReserve::CPrev] = H;
    w[RnnReserve::XhatX] = N;
    w[RnnReserve::XhatH] = N;
    w[RnnReserve::Gates] = N;
    w[RnnReserve::CTil] = H;
    w[RnnReserve::Stats] = 10;
  } else if (cell == RnnCell::GRU) {
    w[RnnReserve::XhatX] = N;
    w[RnnReserve::XhatH] = N;
    w[RnnReserve::Gates] = 3 * H;
    w[RnnReserve::GhN] = H;
    w[RnnReserve::Stats] = 6;
  } else {
    w[RnnReserve::XhatX] = H;
    w[RnnReserve::HTil] = H;
    w[RnnReserve::Stats] = 1;
  }
  int64_t o = 0;
  for (int k = 0; k < RnnReserve::kBlocks; ++k) {
    r.offset[k] = o;
    o += w[k];
  }
  r.row = o;
  return r;
}

}  // namespace normkit::detail
