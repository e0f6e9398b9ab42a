// Entry points of the layer-normalized recurrent cells (SPEC §12, normkit/rnn.hpp): every
// argument validated once with the shared toolkit, resolved into an RnnProblem, dispatched
// on the device.
#include <cmath>
#include <string>

#include "common/backends.hpp"
#include "common/rnn_problem.hpp"
#include "normkit/rnn.hpp"
#include "validate.hpp"

namespace normkit {
namespace {

using detail::fail;
using detail::Role;

std::string S(const char* op, const char* name) { return std::string(op) + ": " + name + ": "; }

const char* cell_name(RnnCell c) {
  switch (c) {
    case RnnCell::LSTM: return "lstm";
    case RnnCell::GRU: return "gru";
    case RnnCell::RNN_TANH: return "rnn_tanh";
    case RnnCell::RNN_RELU: return "rnn_relu";
  }
  return "rnn";
}

// One array of the call: `nd` dims of sizes `shape` (described by `what`), x's dtype and
// device, aligned, a unit-stride last dim (or contiguous), writable when an output.
void check_array(const char* op, const TensorView& t, const char* name, const TensorView& x,
                 const int64_t* shape, int nd, const char* what, Role role, bool contiguous) {
  detail::check_view(t, op, name);
  bool same = t.ndim == nd;
  for (int i = 0; same && i < nd; ++i) same = t.shape[i] == shape[i];
  if (!same)
    fail(ErrorKind::Value, S(op, name) + "expected shape " + detail::shape_str(shape, nd) +
                               " (" + what + "), got " + detail::shape_str(t));
  if (t.dtype != x.dtype)
    fail(ErrorKind::Type, S(op, name) + "expected dtype " + dtype_name(x.dtype) +
                              " (the dtype of x), got " + dtype_name(t.dtype));
  detail::check_aligned(t, op, name);
  detail::check_same_device(t, x, op, name, "x");
  if (contiguous ? !detail::dims_compact(t, 0)
                 : (t.numel() > 0 && t.shape[nd - 1] > 1 && t.strides[nd - 1] != 1))
    fail(ErrorKind::Value, S(op, name) + (contiguous ? "expected a contiguous array"
                                                     : "expected a unit stride in the last dim"));
  if (role == Role::Out) detail::check_writable(t, op, name);
}

detail::SeqRows seq_rows(const TensorView* t) {
  detail::SeqRows r;
  if (t) r.p = t->data, r.st = t->strides[0], r.sb = t->strides[1];
  return r;
}
detail::BatchRows batch_rows(const TensorView* t) {
  detail::BatchRows r;
  if (t) r.p = t->data, r.sb = t->strides[0];
  return r;
}

// What forward and backward share: the shape from x and the weights, the parameters.
struct Common {
  const char* op;
  detail::RnnShape shape;
  detail::RnnParams params;
};

template <typename A>
Common resolve_common(const char* op, const A& a, const TensorView& x, bool forward) {
  Common c{op, {}, {}};
  auto& s = c.shape;
  const int ci = int(a.cell);
  if (ci < 0 || ci > 3)
    fail(ErrorKind::Value, S(op, "cell") + "expected LSTM, GRU, RNN_TANH or RNN_RELU, got " +
                               std::to_string(ci));
  s.cell = a.cell;
  s.G = rnn_gates(a.cell);
  s.per_gate = a.per_gate && s.G > 1;
  if (!(a.eps >= 0.0) || !std::isfinite(a.eps))
    fail(ErrorKind::Value, S(op, "eps") + "expected a finite value >= 0, got " +
                               std::to_string(a.eps));
  s.eps = a.eps;
  s.reverse = a.reverse;
  detail::check_view(x, op, "x");
  detail::check_float_dtype(x, op, "x");
  if (x.dtype == DType::Float16 || x.dtype == DType::BFloat16)
    fail(ErrorKind::Type, S(op, "x") + "dtype " + dtype_name(x.dtype) +
                              " is not supported: the CPU BLAS (scipy-openblas32) has no " +
                              dtype_name(x.dtype) + " GEMM; pass float32 or float64");
  detail::check_aligned(x, op, "x");
  if (x.ndim != 3)
    fail(ErrorKind::Value, S(op, "x") + "expected 3 dims (T, B, input_size), got shape " +
                               detail::shape_str(x));
  if (x.numel() > 0 && x.shape[2] > 1 && x.strides[2] != 1)
    fail(ErrorKind::Value, S(op, "x") + "expected a unit stride in the last dim");
  s.dtype = x.dtype;
  s.device_index = x.device_index;
  s.T = x.shape[0];
  s.B = x.shape[1];
  s.I = x.shape[2];
  if (a.w_hh == nullptr) fail(ErrorKind::Value, S(op, "w_hh") + "is required");
  if (a.w_ih == nullptr) fail(ErrorKind::Value, S(op, "w_ih") + "is required");
  const TensorView& whh = *a.w_hh;
  detail::check_view(whh, op, "w_hh");
  if (whh.ndim != 2 || whh.shape[0] % s.G != 0 || whh.shape[0] != s.G * whh.shape[1] ||
      whh.shape[1] < 1)
    fail(ErrorKind::Value, S(op, "w_hh") + "expected shape (" + std::to_string(s.G) +
                               "*hidden_size, hidden_size) for " + cell_name(a.cell) +
                               ", got " + detail::shape_str(whh));
  s.H = whh.shape[1];
  s.N = s.G * s.H;
  const int64_t wih_shape[2] = {s.N, s.I}, whh_shape[2] = {s.N, s.H};
  check_array(op, *a.w_ih, "w_ih", x, wih_shape, 2,
              "(gates*hidden_size, input_size): input_size is x.shape[2]", Role::In, false);
  check_array(op, whh, "w_hh", x, whh_shape, 2, "(gates*hidden_size, hidden_size)", Role::In,
              false);
  auto& p = c.params;
  p.w_ih = a.w_ih->data;
  p.w_ih_ld = s.I > 1 || s.N == 0 ? a.w_ih->strides[0] : 1;
  if (p.w_ih_ld < s.I) p.w_ih_ld = s.I;  // size-1 dims may carry any stride
  p.w_hh = whh.data;
  p.w_hh_ld = whh.strides[0] < s.H ? s.H : whh.strides[0];
  const int64_t n1[1] = {s.N}, h1[1] = {s.H};
  auto param = [&](const TensorView* t, const char* name, const int64_t* shape,
                   const char* what) -> const void* {
    if (t == nullptr) return nullptr;
    check_array(op, *t, name, x, shape, 1, what, Role::In, true);
    return t->data;
  };
  p.b_ih = param(a.b_ih, "b_ih", n1, "gates*hidden_size");
  p.b_hh = param(a.b_hh, "b_hh", n1, "gates*hidden_size");
  const int64_t* lnx = s.elman() ? h1 : n1;
  p.lnx_w = param(a.ln_x_weight, "ln_x_weight", lnx, s.elman() ? "hidden_size" : "gates*hidden_size");
  p.lnx_b = param(a.ln_x_bias, "ln_x_bias", lnx, s.elman() ? "hidden_size" : "gates*hidden_size");
  auto only = [&](const TensorView* t, const char* name, bool allowed, const char* who) {
    if (t != nullptr && !allowed)
      fail(ErrorKind::Value, S(op, name) + "is only for " + who + " (cell is " +
                                 cell_name(a.cell) + ")");
  };
  only(a.ln_h_weight, "ln_h_weight", !s.elman(), "LSTM and GRU");
  only(a.ln_h_bias, "ln_h_bias", !s.elman(), "LSTM and GRU");
  only(a.ln_c_weight, "ln_c_weight", s.lstm(), "LSTM");
  only(a.ln_c_bias, "ln_c_bias", s.lstm(), "LSTM");
  only(a.zoneout_mask_c, "zoneout_mask_c", s.lstm(), "LSTM");
  p.lnh_w = param(a.ln_h_weight, "ln_h_weight", n1, "gates*hidden_size");
  p.lnh_b = param(a.ln_h_bias, "ln_h_bias", n1, "gates*hidden_size");
  p.lnc_w = param(a.ln_c_weight, "ln_c_weight", h1, "hidden_size");
  p.lnc_b = param(a.ln_c_bias, "ln_c_bias", h1, "hidden_size");
  const int64_t tbh[3] = {s.T, s.B, s.H};
  if (a.zoneout_mask_h)
    check_array(op, *a.zoneout_mask_h, "zoneout_mask_h", x, tbh, 3, "(T, B, hidden_size)",
                Role::In, false);
  if (a.zoneout_mask_c)
    check_array(op, *a.zoneout_mask_c, "zoneout_mask_c", x, tbh, 3, "(T, B, hidden_size)",
                Role::In, false);
  p.mask_h = seq_rows(a.zoneout_mask_h);
  p.mask_c = seq_rows(a.zoneout_mask_c);
  auto prob = [&](double v, const char* name) {
    if (!(v >= 0.0 && v <= 1.0))
      fail(ErrorKind::Value, S(op, name) + "expected a probability in [0, 1], got " +
                                 std::to_string(v));
    return v;
  };
  p.zo_h = prob(a.zoneout_h, "zoneout_h");
  p.zo_c = prob(a.zoneout_c, "zoneout_c");
  if (p.zo_c != 0.0 && !s.lstm())
    fail(ErrorKind::Value, S(op, "zoneout_c") + "is only for LSTM (cell is " +
                               cell_name(a.cell) + ")");
  (void)forward;
  return c;
}

void dispatch_check_device(const TensorView& x, const char* op) {
  if (x.device == DeviceType::CUDA) detail::check_cuda_device(x, op, "x");
}

detail::RnnProblem resolve_forward(const RnnForwardArgs& a, const char* op) {
  if (a.x == nullptr) fail(ErrorKind::Value, S(op, "x") + "is required");
  if (a.y == nullptr) fail(ErrorKind::Value, S(op, "y") + "is required");
  const TensorView& x = *a.x;
  const Common c = resolve_common(op, a, x, true);
  const auto& s = c.shape;
  if (s.elman() || s.gru()) {
    if (a.c0) fail(ErrorKind::Value, S(op, "c0") + "is only for LSTM");
    if (a.c_n) fail(ErrorKind::Value, S(op, "c_n") + "is only for LSTM");
  }
  const int64_t bh[2] = {s.B, s.H}, tbh[3] = {s.T, s.B, s.H};
  if (a.h0) check_array(op, *a.h0, "h0", x, bh, 2, "(B, hidden_size)", Role::In, false);
  if (a.c0) check_array(op, *a.c0, "c0", x, bh, 2, "(B, hidden_size)", Role::In, false);
  check_array(op, *a.y, "y", x, tbh, 3, "(T, B, hidden_size)", Role::Out, false);
  if (a.h_n) check_array(op, *a.h_n, "h_n", x, bh, 2, "(B, hidden_size)", Role::Out, false);
  if (a.c_n) check_array(op, *a.c_n, "c_n", x, bh, 2, "(B, hidden_size)", Role::Out, false);
  if (a.reserve) {
    const int64_t n = rnn_reserve_size(a.cell, s.T, s.B, s.H);
    check_array(op, *a.reserve, "reserve", x, &n, 1, "rnn_reserve_size(cell, T, B, H)",
                Role::Out, true);
  }
  // Outputs never overlap an input (the steps read h0 and write y in turn): no exact aliasing.
  const TensorView* ins[] = {a.x, a.h0, a.c0, a.w_ih, a.w_hh, a.b_ih, a.b_hh, a.ln_x_weight,
                             a.ln_x_bias, a.ln_h_weight, a.ln_h_bias, a.ln_c_weight,
                             a.ln_c_bias, a.zoneout_mask_h, a.zoneout_mask_c};
  const char* in_names[] = {"x", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh", "ln_x_weight",
                            "ln_x_bias", "ln_h_weight", "ln_h_bias", "ln_c_weight",
                            "ln_c_bias", "zoneout_mask_h", "zoneout_mask_c"};
  const TensorView* outs[] = {a.y, a.h_n, a.c_n, a.reserve};
  const char* out_names[] = {"y", "h_n", "c_n", "reserve"};
  for (int o = 0; o < 4; ++o) {
    if (outs[o] == nullptr) continue;
    for (int i = 0; i < 15; ++i) {
      uintptr_t lo1, hi1, lo2, hi2;
      if (ins[i] && detail::extent(*outs[o], lo1, hi1) && detail::extent(*ins[i], lo2, hi2) &&
          lo1 <= hi2 && lo2 <= hi1)
        fail(ErrorKind::Value, S(op, out_names[o]) + "overlaps input " + in_names[i]);
    }
  }
  detail::check_disjoint_outputs(op, outs, out_names, 4);
  detail::RnnProblem p;
  static_cast<detail::RnnShape&>(p) = s;
  static_cast<detail::RnnParams&>(p) = c.params;
  p.x = seq_rows(a.x);
  p.h0 = batch_rows(a.h0);
  p.c0 = batch_rows(a.c0);
  p.y = seq_rows(a.y);
  p.h_n = batch_rows(a.h_n);
  p.c_n = batch_rows(a.c_n);
  p.reserve = a.reserve ? a.reserve->data : nullptr;
  p.workspace = a.workspace;
  p.workspace_bytes = a.workspace_bytes;
  dispatch_check_device(x, op);
  return p;
}

detail::RnnBackwardProblem resolve_backward(const RnnBackwardArgs& a, const char* op) {
  if (a.x == nullptr) fail(ErrorKind::Value, S(op, "x") + "is required");
  if (a.reserve == nullptr)
    fail(ErrorKind::Value, S(op, "reserve") + "is required (the training forward's)");
  const TensorView& x = *a.x;
  const Common c = resolve_common(op, a, x, false);
  const auto& s = c.shape;
  if (!s.lstm()) {
    if (a.dc_n) fail(ErrorKind::Value, S(op, "dc_n") + "is only for LSTM");
    if (a.dc0) fail(ErrorKind::Value, S(op, "dc0") + "is only for LSTM");
  }
  if (s.elman() && (a.dln_h_weight || a.dln_h_bias))
    fail(ErrorKind::Value, S(op, "dln_h_weight") + "is only for LSTM and GRU");
  if (!s.lstm() && (a.dln_c_weight || a.dln_c_bias))
    fail(ErrorKind::Value, S(op, "dln_c_weight") + "is only for LSTM");
  const int64_t bh[2] = {s.B, s.H}, tbh[3] = {s.T, s.B, s.H}, tbi[3] = {s.T, s.B, s.I};
  const int64_t nI[2] = {s.N, s.I}, nH[2] = {s.N, s.H}, n1[1] = {s.N}, h1[1] = {s.H};
  const int64_t* lnx = s.elman() ? h1 : n1;
  if (a.dy) check_array(op, *a.dy, "dy", x, tbh, 3, "(T, B, hidden_size)", Role::In, false);
  if (a.dh_n) check_array(op, *a.dh_n, "dh_n", x, bh, 2, "(B, hidden_size)", Role::In, false);
  if (a.dc_n) check_array(op, *a.dc_n, "dc_n", x, bh, 2, "(B, hidden_size)", Role::In, false);
  const int64_t n = rnn_reserve_size(a.cell, s.T, s.B, s.H);
  check_array(op, *a.reserve, "reserve", x, &n, 1, "rnn_reserve_size(cell, T, B, H)", Role::In,
              true);
  if (a.dx) check_array(op, *a.dx, "dx", x, tbi, 3, "like x", Role::Out, false);
  if (a.dh0) check_array(op, *a.dh0, "dh0", x, bh, 2, "(B, hidden_size)", Role::Out, false);
  if (a.dc0) check_array(op, *a.dc0, "dc0", x, bh, 2, "(B, hidden_size)", Role::Out, false);
  if (a.dw_ih) check_array(op, *a.dw_ih, "dw_ih", x, nI, 2, "like w_ih", Role::Out, true);
  if (a.dw_hh) check_array(op, *a.dw_hh, "dw_hh", x, nH, 2, "like w_hh", Role::Out, true);
  auto grad = [&](const TensorView* t, const char* name, const int64_t* shape,
                  const TensorView* of, const char* of_name) -> void* {
    if (t == nullptr) return nullptr;
    check_array(op, *t, name, x, shape, 1, "like the parameter", Role::Out, true);
    (void)of;
    (void)of_name;
    return t->data;
  };
  const TensorView* ins[] = {a.dy, a.dh_n, a.dc_n, a.x, a.w_ih, a.w_hh, a.ln_x_weight,
                             a.ln_h_weight, a.ln_c_weight, a.ln_c_bias, a.zoneout_mask_h,
                             a.zoneout_mask_c, a.reserve};
  const char* in_names[] = {"dy", "dh_n", "dc_n", "x", "w_ih", "w_hh", "ln_x_weight",
                            "ln_h_weight", "ln_c_weight", "ln_c_bias", "zoneout_mask_h",
                            "zoneout_mask_c", "reserve"};
  const TensorView* outs[] = {a.dx, a.dh0, a.dc0, a.dw_ih, a.dw_hh, a.db_ih, a.db_hh,
                              a.dln_x_weight, a.dln_x_bias, a.dln_h_weight, a.dln_h_bias,
                              a.dln_c_weight, a.dln_c_bias};
  const char* out_names[] = {"dx", "dh0", "dc0", "dw_ih", "dw_hh", "db_ih", "db_hh",
                             "dln_x_weight", "dln_x_bias", "dln_h_weight", "dln_h_bias",
                             "dln_c_weight", "dln_c_bias"};
  for (int o = 0; o < 13; ++o) {
    if (outs[o] == nullptr) continue;
    for (int i = 0; i < 13; ++i) {
      uintptr_t lo1, hi1, lo2, hi2;
      if (ins[i] && detail::extent(*outs[o], lo1, hi1) && detail::extent(*ins[i], lo2, hi2) &&
          lo1 <= hi2 && lo2 <= hi1)
        fail(ErrorKind::Value, S(op, out_names[o]) + "overlaps input " + in_names[i]);
    }
  }
  detail::check_disjoint_outputs(op, outs, out_names, 13);
  detail::RnnBackwardProblem p;
  static_cast<detail::RnnShape&>(p) = s;
  static_cast<detail::RnnParams&>(p) = c.params;
  p.dy = seq_rows(a.dy);
  p.dh_n = batch_rows(a.dh_n);
  p.dc_n = batch_rows(a.dc_n);
  p.x = seq_rows(a.x);
  p.reserve = a.reserve->data;
  p.dx = seq_rows(a.dx);
  p.dh0 = batch_rows(a.dh0);
  p.dc0 = batch_rows(a.dc0);
  p.dw_ih = a.dw_ih ? a.dw_ih->data : nullptr;
  p.dw_hh = a.dw_hh ? a.dw_hh->data : nullptr;
  p.db_ih = grad(a.db_ih, "db_ih", n1, a.b_ih, "b_ih");
  p.db_hh = grad(a.db_hh, "db_hh", n1, a.b_hh, "b_hh");
  p.dlnx_w = grad(a.dln_x_weight, "dln_x_weight", lnx, a.ln_x_weight, "ln_x_weight");
  p.dlnx_b = grad(a.dln_x_bias, "dln_x_bias", lnx, a.ln_x_bias, "ln_x_bias");
  p.dlnh_w = grad(a.dln_h_weight, "dln_h_weight", n1, a.ln_h_weight, "ln_h_weight");
  p.dlnh_b = grad(a.dln_h_bias, "dln_h_bias", n1, a.ln_h_bias, "ln_h_bias");
  p.dlnc_w = grad(a.dln_c_weight, "dln_c_weight", h1, a.ln_c_weight, "ln_c_weight");
  p.dlnc_b = grad(a.dln_c_bias, "dln_c_bias", h1, a.ln_c_bias, "ln_c_bias");
  p.workspace = a.workspace;
  p.workspace_bytes = a.workspace_bytes;
  dispatch_check_device(x, op);
  return p;
}

bool on_cuda(const TensorView& x) { return x.device == DeviceType::CUDA; }


// A [B, W] view as [1, B, W] (the *_cell calls).
TensorView as_seq(const TensorView& t) {
  TensorView v = t;
  if (t.ndim == 2) {
    v.ndim = 3;
    v.shape[0] = 1;
    v.shape[1] = t.shape[0];
    v.shape[2] = t.shape[1];
    v.strides[0] = t.shape[0] * t.strides[0];
    v.strides[1] = t.strides[0];
    v.strides[2] = t.strides[1];
  }
  return v;
}

}  // namespace

int rnn_gates(RnnCell cell) {
  return cell == RnnCell::LSTM ? 4 : cell == RnnCell::GRU ? 3 : 1;
}

int64_t rnn_reserve_size(RnnCell cell, int64_t T, int64_t B, int64_t H) {
  return detail::rnn_reserve_layout(cell, H).row * T * B;
}

// CUDA: the backend allocates its stream-ordered scratch itself (a caller's workspace is
// not used there): 0 bytes.
size_t rnn_forward_workspace_size(const RnnForwardArgs& a) {
  const detail::RnnProblem p = resolve_forward(a, "rnn_forward");
  return on_cuda(*a.x) ? 0 : detail::cpu_rnn_forward_workspace_size(p);
}

size_t rnn_backward_workspace_size(const RnnBackwardArgs& a) {
  const detail::RnnBackwardProblem p = resolve_backward(a, "rnn_backward");
  return on_cuda(*a.x) ? 0 : detail::cpu_rnn_backward_workspace_size(p);
}

void rnn_forward(const RnnForwardArgs& a, Stream stream) {
  const detail::RnnProblem p = resolve_forward(a, "rnn_forward");
  if (on_cuda(*a.x)) {
#if defined(NORMKIT_WITH_CUDA)
    detail::cuda::rnn_forward(p, stream);
#endif
    return;
  }
  (void)stream;
  detail::cpu_rnn_forward(p);
}

void rnn_backward(const RnnBackwardArgs& a, Stream stream) {
  const detail::RnnBackwardProblem p = resolve_backward(a, "rnn_backward");
  if (on_cuda(*a.x)) {
#if defined(NORMKIT_WITH_CUDA)
    detail::cuda::rnn_backward(p, stream);
#endif
    return;
  }
  (void)stream;
  detail::cpu_rnn_backward(p);
}

void rnn_cell_forward(const RnnForwardArgs& a, Stream stream) {
  const char* op = "rnn_cell_forward";
  if (a.x == nullptr || a.y == nullptr)
    fail(ErrorKind::Value, S(op, a.x == nullptr ? "x" : "h_out") + "is required");
  if (a.x->ndim != 2) fail(ErrorKind::Value, S(op, "x") + "expected 2 dims (B, input_size), got shape " + detail::shape_str(*a.x));
  if (a.y->ndim != 2) fail(ErrorKind::Value, S(op, "h_out") + "expected 2 dims (B, hidden_size), got shape " + detail::shape_str(*a.y));
  if (a.h_n) fail(ErrorKind::Value, S(op, "h_n") + "is not used by a cell (h_out is y)");
  RnnForwardArgs b = a;
  const TensorView x = as_seq(*a.x), y = as_seq(*a.y);
  TensorView mh, mc;
  b.x = &x;
  b.y = &y;
  if (a.zoneout_mask_h) mh = as_seq(*a.zoneout_mask_h), b.zoneout_mask_h = &mh;
  if (a.zoneout_mask_c) mc = as_seq(*a.zoneout_mask_c), b.zoneout_mask_c = &mc;
  rnn_forward(b, stream);
}

void rnn_cell_backward(const RnnBackwardArgs& a, Stream stream) {
  const char* op = "rnn_cell_backward";
  if (a.x == nullptr) fail(ErrorKind::Value, S(op, "x") + "is required");
  if (a.x->ndim != 2) fail(ErrorKind::Value, S(op, "x") + "expected 2 dims (B, input_size), got shape " + detail::shape_str(*a.x));
  if (a.dh_n) fail(ErrorKind::Value, S(op, "dh_n") + "is not used by a cell (dy is dh_out)");
  RnnBackwardArgs b = a;
  const TensorView x = as_seq(*a.x);
  TensorView dy, dx, mh, mc;
  b.x = &x;
  if (a.dy) dy = as_seq(*a.dy), b.dy = &dy;
  if (a.dx) dx = as_seq(*a.dx), b.dx = &dx;
  if (a.zoneout_mask_h) mh = as_seq(*a.zoneout_mask_h), b.zoneout_mask_h = &mh;
  if (a.zoneout_mask_c) mc = as_seq(*a.zoneout_mask_c), b.zoneout_mask_c = &mc;
  rnn_backward(b, stream);
}

}  // namespace normkit
