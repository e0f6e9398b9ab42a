// normkit/rnn.hpp — layer-normalized recurrent cells and sequences (SPEC §12): LN-LSTM,
// LN-GRU and LN-Elman (tanh / relu), one layer in one direction, forward and backward through
// time. Multi-layer and bidirectional networks are built from these calls (normkit.torch).
//
// Shapes (G = 4 gates for LSTM, 3 for GRU, 1 for Elman; N = G·H):
//   x       [T, B, I]: any strides but a unit-stride last dim (batch_first data is a view).
//   h0, c0  [B, H] optional (zeros); c0 / c_n / dc_* for LSTM only. Unit-stride last dim.
//   w_ih    [N, I], w_hh [N, H]: torch's layout and gate order (LSTM i, f, g, o; GRU r, z, n);
//           unit-stride last dim, any row stride.
//   b_ih, b_hh  [N] optional (0).
//   LN parameters (optional: γ = 1, β = 0), contiguous:
//     LSTM  ln_x_*, ln_h_* [N] (LN over the N pre-activations, or each gate's H with
//           per_gate), ln_c_* [H] (the cell state's LN on the output path);
//     GRU   ln_x_*, ln_h_* [N];
//     Elman ln_x_* [H] (one LN over W_ih·x + W_hh·h + b).
//   y       [T, B, H] output (unit-stride last dim); h_n, c_n [B, H] optional outputs.
//   Every array float32, or every array float64 (16-bit data: a TypeError — the CPU BLAS has
//   no 16-bit GEMM). One device.
// Math (SPEC §12, LN(v) = γ·(v − mean)/sqrt(var + eps) + β, biased var):
//   LSTM  a = LN_h(W_hh·h) + LN_x(W_ih·x) + b_ih + b_hh; i, f, g, o = σ, σ, tanh, σ of a's
//         quarters; c̃ = f·c + i·g; h̃ = o·tanh(LN_c(c̃)).
//   GRU   gx = LN_x(W_ih·x) + b_ih, gh = LN_h(W_hh·h) + b_hh; r = σ(gx_r + gh_r),
//         z = σ(gx_z + gh_z), n = tanh(gx_n + r·gh_n); h̃ = (1 − z)·n + z·h.
//   Elman h̃ = act(LN(W_ih·x + W_hh·h + b_ih + b_hh)).
// Zoneout (Krueger et al. 2016): h' = m_h·h + (1 − m_h)·h̃ and, for LSTM, c' = m_c·c +
//   (1 − m_c)·c̃ (h̃ uses c̃, as in the paper), with m the masks zoneout_mask_h / _c
//   [T, B, H] (values in [0, 1]; training draws them from Bernoulli(p)) or, where a mask is
//   absent, the constant zoneout_h / zoneout_c (evaluation passes p: the expectation; 0: off).
//   Without zoneout h' = h̃, c' = c̃. y[t] = h' of step t.
// reverse: the steps run from t = T − 1 down to 0 (the backward direction of a bidirectional
//   layer), y[t] still the output for x[t].
// Saved activations: `reserve`, a contiguous 1-D array of rnn_reserve_size() elements of x's
//   dtype, written by a training forward and read by the backward (null: inference, nothing
//   saved). Scratch: `workspace` of *_workspace_size() bytes, 64-byte aligned, or null (the core
//   allocates its own).
// Matrix products go to the BLAS (normkit/blas.hpp; cuBLAS on CUDA, loaded at run time): the
// input projection of all T steps is one product, each step one recurrent product and then
// one fused pass (LN, gates, state). Every result is the same for any thread count; a row's
// result is NOT bit-identical across batch sizes (the BLAS picks kernels by matrix size).
// CUDA: the backend allocates its scratch stream-ordered itself (workspace sizes are 0).
#pragma once

#include <cstddef>
#include <cstdint>

#include "normkit/config.hpp"
#include "normkit/tensor.hpp"

namespace normkit {

enum class RnnCell : int { LSTM = 0, GRU = 1, RNN_TANH = 2, RNN_RELU = 3 };

struct RnnForwardArgs {
  RnnCell cell = RnnCell::LSTM;
  bool per_gate = false;  // LSTM / GRU: LN per gate instead of over all N
  double eps = 1e-5;
  bool reverse = false;
  const TensorView* x = nullptr;
  const TensorView* h0 = nullptr;
  const TensorView* c0 = nullptr;
  const TensorView* w_ih = nullptr;
  const TensorView* w_hh = nullptr;
  const TensorView* b_ih = nullptr;
  const TensorView* b_hh = nullptr;
  const TensorView* ln_x_weight = nullptr;
  const TensorView* ln_x_bias = nullptr;
  const TensorView* ln_h_weight = nullptr;
  const TensorView* ln_h_bias = nullptr;
  const TensorView* ln_c_weight = nullptr;
  const TensorView* ln_c_bias = nullptr;
  const TensorView* zoneout_mask_h = nullptr;  // [T, B, H] optional
  const TensorView* zoneout_mask_c = nullptr;  // [T, B, H] optional, LSTM
  double zoneout_h = 0.0;                      // where the mask is absent
  double zoneout_c = 0.0;
  const TensorView* y = nullptr;        // [T, B, H] output
  const TensorView* h_n = nullptr;      // [B, H] optional output
  const TensorView* c_n = nullptr;      // [B, H] optional output, LSTM
  const TensorView* reserve = nullptr;  // [rnn_reserve_size] optional output (training)
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
};

// The backward of one forward call made with the same arguments (and its reserve).
struct RnnBackwardArgs {
  RnnCell cell = RnnCell::LSTM;
  bool per_gate = false;
  double eps = 1e-5;
  bool reverse = false;
  const TensorView* dy = nullptr;    // [T, B, H] optional (0)
  const TensorView* dh_n = nullptr;  // [B, H] optional (0)
  const TensorView* dc_n = nullptr;  // [B, H] optional (0), LSTM
  const TensorView* x = nullptr;
  const TensorView* w_ih = nullptr;
  const TensorView* w_hh = nullptr;
  const TensorView* b_ih = nullptr;  // only its presence is read (db_ih is wanted)
  const TensorView* b_hh = nullptr;
  const TensorView* ln_x_weight = nullptr;
  const TensorView* ln_x_bias = nullptr;  // presence only, but ln_c_bias's values are read
  const TensorView* ln_h_weight = nullptr;
  const TensorView* ln_h_bias = nullptr;
  const TensorView* ln_c_weight = nullptr;
  const TensorView* ln_c_bias = nullptr;
  const TensorView* zoneout_mask_h = nullptr;
  const TensorView* zoneout_mask_c = nullptr;
  double zoneout_h = 0.0;
  double zoneout_c = 0.0;
  const TensorView* reserve = nullptr;  // required: the training forward's
  // Outputs, each optional (null: not computed).
  const TensorView* dx = nullptr;
  const TensorView* dh0 = nullptr;
  const TensorView* dc0 = nullptr;
  const TensorView* dw_ih = nullptr;
  const TensorView* dw_hh = nullptr;
  const TensorView* db_ih = nullptr;
  const TensorView* db_hh = nullptr;
  const TensorView* dln_x_weight = nullptr;
  const TensorView* dln_x_bias = nullptr;
  const TensorView* dln_h_weight = nullptr;
  const TensorView* dln_h_bias = nullptr;
  const TensorView* dln_c_weight = nullptr;
  const TensorView* dln_c_bias = nullptr;
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
};

NORMKIT_API int rnn_gates(RnnCell cell);
// Elements of the reserve for T steps of batch B and hidden size H.
NORMKIT_API int64_t rnn_reserve_size(RnnCell cell, int64_t T, int64_t B, int64_t H);
NORMKIT_API size_t rnn_forward_workspace_size(const RnnForwardArgs& args);
NORMKIT_API size_t rnn_backward_workspace_size(const RnnBackwardArgs& args);
NORMKIT_API void rnn_forward(const RnnForwardArgs& args, Stream stream = nullptr);
NORMKIT_API void rnn_backward(const RnnBackwardArgs& args, Stream stream = nullptr);

// One step (SPEC §12's *_cell): x [B, I], h [B, H] (c [B, H] for LSTM) -> h_out (c_out),
// the same math as a sequence of T = 1; for the backward, reserve from a training step.
// Spelled as the sequence calls with x, y, masks viewed as [1, B, ·] (the *_cell views of
// args: x, y, zoneout masks and dy are [B, ·]; h0 / c0 are h / c; h_n is unused).
NORMKIT_API void rnn_cell_forward(const RnnForwardArgs& args, Stream stream = nullptr);
NORMKIT_API void rnn_cell_backward(const RnnBackwardArgs& args, Stream stream = nullptr);

// Where a sequence's CPU time goes (Note [RNN profile] in cpu/rnn_dispatch.cpp): on = true
// resets and starts two counters, the seconds in the BLAS products and in the fused step
// kernels, summed over every call (and thread-safe); read them with rnn_profile_read().
struct RnnProfile {
  double gemm_seconds = 0.0;
  double step_seconds = 0.0;
};
NORMKIT_API void rnn_profile(bool on);
// Frees the scratch the CPU sequences keep between calls on the calling thread (Note [Kept
// scratch] in cpu/rnn_dispatch.cpp: without a caller's workspace, a grow-only buffer per
// calling thread saves the page faults of re-mapping tens of MB per call).
NORMKIT_API void rnn_release_scratch();
NORMKIT_API RnnProfile rnn_profile_read();

}  // namespace normkit
