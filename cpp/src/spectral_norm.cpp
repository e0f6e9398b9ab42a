// Entry points of spectral norm (SPEC §10, normkit/param_norm.hpp): validate every argument
// once with the shared toolkit (validate.hpp), resolve the call into an SnProblem and
// dispatch on the device.
#include <string>

#include "channel_call.hpp"
#include "common/backends.hpp"
#include "common/spectral_norm_problem.hpp"
#include "normkit/param_norm.hpp"
#include "validate.hpp"

namespace normkit {
namespace {

using detail::fail;
using detail::require_arg;
using detail::Role;

struct Call {
  const char* op;
  const TensorView& w;
  detail::SnProblem p;

  Call(const char* op_, const TensorView* wp) : op(op_), w(*wp) {
    detail::check_view(w, op, "weight");
    detail::check_float_dtype(w, op, "weight");
    detail::check_aligned(w, op, "weight");
    if (w.ndim != 2)
      fail(ErrorKind::Value, std::string(op) + ": weight: expected a 2-dim (out, in) matrix, got "
                                               "shape " + detail::shape_str(w));
    matrix(w, "weight", Role::In, &p.w_ld);
    p.device_index = w.device_index;
    p.dtype = w.dtype;
    p.rows = w.shape[0];
    p.cols = w.shape[1];
    p.w = w.data;
  }
  bool empty() const { return p.rows == 0 || p.cols == 0; }

  // A matrix like weight whose rows are contiguous; its row stride in elements.
  void matrix(const TensorView& t, const char* name, Role role, int64_t* ld) const {
    if (&t != &w) detail::check_like(op, t, name, w, role);
    if (t.shape[1] > 1 && t.strides[1] != 1)
      fail(ErrorKind::Value, std::string(op) + ": " + name +
                                 ": expected rows of unit stride (pass a contiguous copy)");
    *ld = t.shape[0] > 1 ? t.strides[0] : t.shape[1];
  }

  void vectors(const TensorView* u, const TensorView* v, bool written) {
    const int64_t nu[1] = {w.shape[0]}, nv[1] = {w.shape[1]};
    const Role role = written ? Role::Out : Role::In;
    detail::check_param(op, *u, "u", w, nu, 1, "weight.shape[0] elements", role);
    detail::check_param(op, *v, "v", w, nv, 1, "weight.shape[1] elements", role);
    if (u->dtype != v->dtype)
      fail(ErrorKind::Type, std::string(op) + ": v: expected u's dtype " + dtype_name(u->dtype) +
                                ", got " + dtype_name(v->dtype));
    p.vec_dtype = u->dtype;
    p.u = u->data;
    p.v = v->data;
  }

  void sigma(const TensorView* s, Role role) {
    detail::check_stat(op, *s, "sigma", w, 1, "one element", role, true);
    p.sigma = s->data;
    p.sigma_dtype = s->dtype;
  }

  void dispatch(Stream stream) const {
    if (w.device == DeviceType::CUDA) {
      detail::check_cuda_device(w, op, "weight");
#if defined(NORMKIT_WITH_CUDA)
      detail::cuda::spectral_norm(p, stream);
#else
      (void)stream;
#endif
    } else {
      detail::cpu_spectral_norm(p);
    }
  }
};

}  // namespace

void spectral_norm_forward(const SpectralNormArgs& a, Stream stream) {
  const char* op = "spectral_norm";
  require_arg(op, a.weight, "weight");
  require_arg(op, a.u, "u");
  require_arg(op, a.v, "v");
  Call c(op, a.weight);
  if (a.n_power_iterations < 0)
    fail(ErrorKind::Value, std::string(op) + ": n_power_iterations: expected >= 0, got " +
                               std::to_string(a.n_power_iterations));
  detail::check_finite(a.eps, op, "eps", true);
  const bool iterate = a.n_power_iterations > 0;
  c.vectors(a.u, a.v, iterate);
  if (a.out) c.matrix(*a.out, "out", Role::Out, &c.p.out_ld), c.p.out = a.out->data;
  if (a.sigma) c.sigma(a.sigma, Role::Out);
  c.p.n_iter = a.n_power_iterations;
  c.p.eps = a.eps;
  detail::Aliasing al(op);
  al.in(a.weight, "weight");
  if (iterate)
    al.out(a.u, "u").out(a.v, "v");
  else
    al.in(a.u, "u").in(a.v, "v");
  al.out(a.out, "out").out(a.sigma, "sigma").check();
  if (c.empty()) return;
  c.dispatch(stream);
}

void spectral_norm_backward(const SpectralNormBackwardArgs& a, Stream stream) {
  const char* op = "spectral_norm_backward";
  require_arg(op, a.dout, "dout");
  require_arg(op, a.weight, "weight");
  require_arg(op, a.u, "u");
  require_arg(op, a.v, "v");
  require_arg(op, a.sigma, "sigma");
  require_arg(op, a.dweight, "dweight");
  Call c(op, a.weight);
  c.p.backward = true;
  c.matrix(*a.dout, "dout", Role::In, &c.p.dy_ld);
  c.p.dy = a.dout->data;
  c.matrix(*a.dweight, "dweight", Role::Out, &c.p.dw_ld);
  c.p.dw = a.dweight->data;
  c.vectors(a.u, a.v, false);
  c.sigma(a.sigma, Role::In);
  detail::Aliasing(op)
      .in(a.dout, "dout").in(a.weight, "weight").in(a.u, "u").in(a.v, "v").in(a.sigma, "sigma")
      .out(a.dweight, "dweight")
      .check();
  if (c.empty()) return;
  c.dispatch(stream);
}

}  // namespace normkit
