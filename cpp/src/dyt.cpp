// Entry points of DyT (SPEC §6): validate every argument once with the shared toolkit,
// resolve the layout (channels last / first / channels-last memory) into a DytProblem, and
// dispatch on the device.
#include <string>

#include "common/backends.hpp"
#include "channel_layout.hpp"
#include "common/dyt_problem.hpp"
#include "normkit/dyt.hpp"
#include "validate.hpp"

namespace normkit {
namespace {

using detail::fail;
using detail::Role;

using detail::ChannelLayout;

// An array shaped like x, walked the same way (channel_layout.hpp).
TensorView like_x(const char* op, const ChannelLayout& L, const TensorView& t,
                  const TensorView& x, const char* name, Role role) {
  return detail::channel_like_x(op, L, t, x, name, role);
}

void check_alpha(const char* op, const TensorView& t, const char* name, const TensorView& x,
                 Role role) {
  detail::check_param(op, t, name, x, nullptr, 0, "one element", role);
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
  const ChannelLayout L = detail::resolve_channel_layout(op, x, a.channels_last);
  const TensorView xv = like_x(op, L, x, x, "x", Role::In);
  const TensorView dyv = like_x(op, L, *a.dy, x, "dy", Role::In);
  const TensorView dxv = like_x(op, L, *a.dx, x, "dx", Role::Out);
  check_alpha(op, *a.alpha, "alpha", x, Role::In);
  if (a.weight) detail::check_channel_param(op, L, *a.weight, "weight", x, Role::In);
  if (a.dalpha) {
    check_alpha(op, *a.dalpha, "dalpha", x, Role::Out);
    if (a.dalpha->dtype != a.alpha->dtype)
      fail(ErrorKind::Type, std::string(op) + ": dalpha: expected dtype " +
                                dtype_name(a.alpha->dtype) + " (the dtype of alpha), got " +
                                dtype_name(a.dalpha->dtype));
  }
  if (a.dweight) detail::check_channel_param(op, L, *a.dweight, "dweight", x, Role::Out);
  if (a.dbias) detail::check_channel_param(op, L, *a.dbias, "dbias", x, Role::Out);
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
  const ChannelLayout L = detail::resolve_channel_layout(op, x, a.channels_last);
  const TensorView xv = like_x(op, L, x, x, "x", Role::In);
  const TensorView yv = like_x(op, L, *a.y, x, "out", Role::Out);
  check_alpha(op, *a.alpha, "alpha", x, Role::In);
  if (a.weight) detail::check_channel_param(op, L, *a.weight, "weight", x, Role::In);
  if (a.bias) detail::check_channel_param(op, L, *a.bias, "bias", x, Role::In);
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
