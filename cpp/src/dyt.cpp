// Entry points of DyT (SPEC §6): validate every argument once with the shared toolkit,
// resolve the layout (channels last / first / channels-last memory) into a DytProblem, and
// dispatch on the device.
#include <string>

#include "common/backends.hpp"
#include "common/dyt_problem.hpp"
#include "normkit/dyt.hpp"
#include "validate.hpp"

namespace normkit {
namespace {

using detail::fail;
using detail::Role;

// How the arrays shaped like x are walked (see dyt_problem.hpp).
struct Layout {
  bool per_row = false;  // channels first, one (n, c) plane per row
  bool permuted = false;  // channels first computed as channels last (dim 1 moved last)
  int lead = 0;           // the row dims are [0, lead) of the (permuted) view
  int64_t rows = 0, width = 0, C = 0;
};

// Moves dim 1 to the end: a logical (N, C, *) view whose channel dim has unit stride is
// then a channels-last (N, *, C) view of the same memory.
TensorView channel_last_view(const TensorView& t) {
  TensorView v = t;
  for (int i = 1; i + 1 < t.ndim; ++i) {
    v.shape[i] = t.shape[i + 1];
    v.strides[i] = t.strides[i + 1];
  }
  v.shape[t.ndim - 1] = t.shape[1];
  v.strides[t.ndim - 1] = t.strides[1];
  return v;
}

Layout resolve_layout(const char* op, const TensorView& x, bool channels_last) {
  Layout L;
  if (x.ndim < (channels_last ? 1 : 2))
    fail(ErrorKind::Value, std::string(op) + ": x: expected " +
                               (channels_last ? "at least 1 dim (*, C)"
                                              : "at least 2 dims (N, C, *) for channels_last=False") +
                               ", got shape " + detail::shape_str(x));
  const int nd = x.ndim;
  if (channels_last || nd == 2) {
    L.lead = nd - 1;
    L.C = L.width = x.shape[nd - 1];
  } else {
    L.C = x.shape[1];
    int64_t spatial = 1;
    for (int i = 2; i < nd; ++i) spatial *= x.shape[i];
    const bool planes = detail::dims_compact(x, 2);
    const bool chan_unit = x.shape[1] == 1 || x.strides[1] == 1 || x.numel() == 0;
    if (!planes && !chan_unit)
      fail(ErrorKind::Value, std::string(op) +
                                 ": x: for channels_last=False the dims after C must be "
                                 "contiguous, or C must have unit stride (channels-last memory); "
                                 "got neither (pass a contiguous copy)");
    // Both readings work for some shapes ((N, C, 1, 1), or C == 1): take the longer rows.
    if (planes && (!chan_unit || spatial >= L.C)) {
      L.per_row = true;
      L.lead = 2;
      L.width = spatial;
    } else {
      L.permuted = true;
      L.lead = nd - 1;
      L.width = L.C;
    }
  }
  L.rows = 1;
  const TensorView v = L.permuted ? channel_last_view(x) : x;
  for (int i = 0; i < L.lead; ++i) L.rows *= v.shape[i];
  return L;
}

// An array shaped like x, walked the same way: the view the kernels index (permuted like x).
TensorView like_x(const char* op, const Layout& L, const TensorView& t, const TensorView& x,
                  const char* name, Role role) {
  detail::check_like(op, t, name, x, role);
  const TensorView v = L.permuted ? channel_last_view(t) : t;
  detail::check_compact_tail(op, v, name, L.lead,
                             L.per_row ? "the dims after C" : "the channel dim (C)", role);
  return v;
}

void check_alpha(const char* op, const TensorView& t, const char* name, const TensorView& x,
                 Role role) {
  detail::check_param(op, t, name, x, nullptr, 0, "one element", role);
}

void check_channel_param(const char* op, const Layout& L, const TensorView& t, const char* name,
                         const TensorView& x, Role role) {
  detail::check_param(op, t, name, x, &L.C, 1, "one per channel of x", role);
}

void dispatch_forward(const detail::DytProblem& p, const TensorView& x, Stream stream) {
  if (x.device == DeviceType::CUDA) {
    detail::check_cuda_device(x, "dyt", "x");
#if defined(NORMKIT_WITH_CUDA)
    detail::cuda::dyt_forward(p, stream);
#else
    (void)stream;
#endif
  } else {
    detail::cpu_dyt_forward(p);
  }
}

detail::DytBackwardProblem resolve_backward(const DytBackwardArgs& a) {
  const char* op = "dyt_backward";
  if (a.x == nullptr) fail(ErrorKind::Value, std::string(op) + ": x: is required");
  if (a.dy == nullptr) fail(ErrorKind::Value, std::string(op) + ": dy: is required");
  if (a.alpha == nullptr) fail(ErrorKind::Value, std::string(op) + ": alpha: is required");
  if (a.dx == nullptr) fail(ErrorKind::Value, std::string(op) + ": dx: is required");
  if (a.dweight != nullptr && a.weight == nullptr)
    fail(ErrorKind::Value, std::string(op) + ": dweight: needs weight");
  const TensorView& x = *a.x;
  detail::check_view(x, op, "x");
  detail::check_float_dtype(x, op, "x");
  detail::check_aligned(x, op, "x");
  const Layout L = resolve_layout(op, x, a.channels_last);
  const TensorView xv = like_x(op, L, x, x, "x", Role::In);
  const TensorView dyv = like_x(op, L, *a.dy, x, "dy", Role::In);
  const TensorView dxv = like_x(op, L, *a.dx, x, "dx", Role::Out);
  check_alpha(op, *a.alpha, "alpha", x, Role::In);
  if (a.weight) check_channel_param(op, L, *a.weight, "weight", x, Role::In);
  if (a.dalpha) {
    check_alpha(op, *a.dalpha, "dalpha", x, Role::Out);
    if (a.dalpha->dtype != a.alpha->dtype)
      fail(ErrorKind::Type, std::string(op) + ": dalpha: expected dtype " +
                                dtype_name(a.alpha->dtype) + " (the dtype of alpha), got " +
                                dtype_name(a.dalpha->dtype));
  }
  if (a.dweight) check_channel_param(op, L, *a.dweight, "dweight", x, Role::Out);
  if (a.dbias) check_channel_param(op, L, *a.dbias, "dbias", x, Role::Out);
  detail::Aliasing(op)
      .in(a.dy, "dy").in(a.x, "x").in(a.alpha, "alpha").in(a.weight, "weight")
      .out(a.dx, "dx").out(a.dalpha, "dalpha").out(a.dweight, "dweight").out(a.dbias, "dbias")
      .check();

  detail::DytBackwardProblem p;
  p.device_index = x.device_index;
  p.x_dtype = x.dtype;
  p.per_row = L.per_row;
  p.rows = L.rows;
  p.width = L.width;
  p.C = L.C;
  if (L.rows > 0 && L.width > 0) {
    p.x = x.data;
    p.x_idx = detail::make_row_index(xv, L.lead, op, "x");
    p.dy = a.dy->data;
    p.dy_idx = detail::make_row_index(dyv, L.lead, op, "dy");
    p.dx = a.dx->data;
    p.dx_idx = detail::make_row_index(dxv, L.lead, op, "dx");
  }
  p.alpha = a.alpha->data;
  p.alpha_dtype = a.alpha->dtype;
  if (a.weight) p.weight = a.weight->data, p.weight_dtype = a.weight->dtype;
  if (a.dalpha) p.dalpha = a.dalpha->data;
  if (a.dweight) p.dweight = a.dweight->data, p.dweight_dtype = a.dweight->dtype;
  if (a.dbias) p.dbias = a.dbias->data, p.dbias_dtype = a.dbias->dtype;
  p.workspace = a.workspace;
  p.workspace_bytes = a.workspace_bytes;
  return p;
}

}  // namespace

void dyt_forward(const DytForwardArgs& a, Stream stream) {
  const char* op = "dyt";
  if (a.x == nullptr) fail(ErrorKind::Value, std::string(op) + ": x: is required");
  if (a.alpha == nullptr) fail(ErrorKind::Value, std::string(op) + ": alpha: is required");
  if (a.y == nullptr) fail(ErrorKind::Value, std::string(op) + ": out: is required");
  const TensorView& x = *a.x;
  detail::check_view(x, op, "x");
  detail::check_float_dtype(x, op, "x");
  detail::check_aligned(x, op, "x");
  const Layout L = resolve_layout(op, x, a.channels_last);
  const TensorView xv = like_x(op, L, x, x, "x", Role::In);
  const TensorView yv = like_x(op, L, *a.y, x, "out", Role::Out);
  check_alpha(op, *a.alpha, "alpha", x, Role::In);
  if (a.weight) check_channel_param(op, L, *a.weight, "weight", x, Role::In);
  if (a.bias) check_channel_param(op, L, *a.bias, "bias", x, Role::In);
  detail::Aliasing(op)
      .in(a.x, "x").in(a.alpha, "alpha").in(a.weight, "weight").in(a.bias, "bias")
      .out(a.y, "out")
      .check();

  detail::DytProblem p;
  p.device_index = x.device_index;
  p.x_dtype = x.dtype;
  p.per_row = L.per_row;
  p.rows = L.rows;
  p.width = L.width;
  p.C = L.C;
  if (L.rows > 0 && L.width > 0) {
    p.x = x.data;
    p.x_idx = detail::make_row_index(xv, L.lead, op, "x");
    p.y = a.y->data;
    p.y_idx = detail::make_row_index(yv, L.lead, op, "out");
  }
  p.alpha = a.alpha->data;
  p.alpha_dtype = a.alpha->dtype;
  if (a.weight) p.weight = a.weight->data, p.weight_dtype = a.weight->dtype;
  if (a.bias) p.bias = a.bias->data, p.bias_dtype = a.bias->dtype;
  if (x.device == DeviceType::CUDA) detail::check_cuda_device(x, op, "x");
  if (p.rows == 0 || p.width == 0) return;
  dispatch_forward(p, x, stream);
}

size_t dyt_backward_workspace_size(const DytBackwardArgs& a) {
  const detail::DytBackwardProblem p = resolve_backward(a);
  if (a.x->device == DeviceType::CUDA) {
    detail::check_cuda_device(*a.x, "dyt_backward", "x");
#if defined(NORMKIT_WITH_CUDA)
    return detail::cuda::dyt_backward_workspace_size(p);
#else
    return 0;
#endif
  }
  return detail::cpu_dyt_backward_workspace_size(p);
}

void dyt_backward(const DytBackwardArgs& a, Stream stream) {
  const detail::DytBackwardProblem p = resolve_backward(a);
  if (a.x->device == DeviceType::CUDA) {
    detail::check_cuda_device(*a.x, "dyt_backward", "x");
#if defined(NORMKIT_WITH_CUDA)
    detail::cuda::dyt_backward(p, stream);
#else
    (void)stream;
#endif
  } else {
    detail::cpu_dyt_backward(p);
  }
}

}  // namespace normkit
