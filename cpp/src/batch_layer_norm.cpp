// Entry points of batch layer normalization (SPEC §7): validate every argument once with the
// shared toolkit (validate.hpp), resolve the call into a BlnProblem and dispatch on the
// device.
#include <string>

#include "channel_call.hpp"
#include "common/backends.hpp"
#include "common/batch_layer_norm_problem.hpp"
#include "normkit/batch_layer_norm.hpp"
#include "validate.hpp"

namespace normkit {
namespace {

using detail::BlnProblem;
using detail::Chan;
using detail::chan_of;
using detail::fail;
using detail::require_arg;
using detail::Role;

struct Call {
  const char* op;
  const TensorView& x;
  BlnProblem p;
  bool empty = false;

  Call(const char* op_, const TensorView* xp) : op(op_), x(*xp) {
    detail::check_view(x, op, "x");
    detail::check_float_dtype(x, op, "x");
    detail::check_aligned(x, op, "x");
    if (x.ndim < 2)
      fail(ErrorKind::Value, std::string(op) + ": x: expected at least 2 dims (B, *, F), got shape " +
                                 detail::shape_str(x));
    p.device_index = x.device_index;
    p.x_dtype = x.dtype;
    p.B = x.shape[0];
    p.F = x.shape[x.ndim - 1];
    p.P = 1;
    for (int i = 1; i + 1 < x.ndim; ++i) p.P *= x.shape[i];
    empty = x.numel() == 0;
  }

  void like_x(const TensorView* t, const char* name, Role role, const void** data,
              detail::RowIndex* idx) {
    detail::check_like(op, *t, name, x, role);
    detail::check_compact_tail(op, *t, name, 1, "the dims after the batch dim", role);
    if (!empty) {
      *data = t->data;
      *idx = detail::make_row_index(*t, 1, op, name);
    }
  }
  void out(const TensorView* t, const char* name) {
    const void* d = nullptr;
    like_x(t, name, Role::Out, &d, &p.out_idx);
    p.out = const_cast<void*>(d);
  }
  Chan feature_param(const TensorView* t, const char* name, Role role) {
    if (t) detail::check_param(op, *t, name, x, &p.F, 1, "one per feature, the last dim of x", role);
    return chan_of(t);
  }
  Chan running(const TensorView* t, const char* name, bool batch, Role role) {
    if (t) {
      const int nd = batch ? x.ndim - 1 : x.ndim - 2;
      detail::check_param(op, *t, name, x, x.shape + 1, nd,
                          batch ? "x.shape[1:], one per position and feature"
                                : "x.shape[1:-1], one per position",
                          role);
    }
    return chan_of(t);
  }
  Chan stat(const TensorView* t, const char* name, bool batch, Role role) {
    if (t)
      detail::check_stat(op, *t, name, x, batch ? p.columns() : p.feature_rows(),
                         batch ? "x.shape[1:], one per position and feature, of x"
                               : "x.shape[:-1], one per sample and position, of x",
                         role);
    return chan_of(t);
  }
  void weights(double delta, double batch_size) {
    detail::check_finite(delta, op, "delta", false);
    detail::check_finite(batch_size, op, "batch_size", true);
    const double Bw = batch_size > 0 ? batch_size : double(p.B);
    p.wf = Bw > 0 ? 1.0 / Bw - delta : 0.0;
    p.wb = Bw > 0 ? 1.0 - 1.0 / Bw - delta : 0.0;
  }
  void dispatch(Stream stream) const {
    if (x.device == DeviceType::CUDA) {
      detail::check_cuda_device(x, op, "x");
#if defined(NORMKIT_WITH_CUDA)
      detail::cuda::batch_layer_norm(p, stream);
#else
      (void)stream;
#endif
    } else {
      detail::cpu_batch_layer_norm(p);
    }
  }
};

}  // namespace

void batch_layer_norm_forward(const BatchLayerNormForwardArgs& a, Stream stream) {
  const char* op = "batch_layer_norm";
  require_arg(op, a.x, "x");
  require_arg(op, a.y, "out");
  Call c(op, a.x);
  c.like_x(a.x, "x", Role::In, &c.p.x, &c.p.x_idx);
  c.out(a.y, "out");
  c.p.weight = c.feature_param(a.weight, "weight", Role::In);
  c.p.bias = c.feature_param(a.bias, "bias", Role::In);
  detail::require_pair(op, a.running_batch_mean, "running_batch_mean", a.running_batch_var,
                  "running_batch_var");
  detail::require_pair(op, a.running_feature_mean, "running_feature_mean", a.running_feature_var,
                  "running_feature_var");
  if (!a.batch_stats_of_input && a.running_batch_mean == nullptr)
    fail(ErrorKind::Value, std::string(op) + ": running_batch_mean: required when the batch "
                                             "statistics are the running ones");
  if (!a.feature_stats_of_input && a.running_feature_mean == nullptr)
    fail(ErrorKind::Value, std::string(op) + ": running_feature_mean: required when the feature "
                                             "statistics are the running ones");
  const Role brole = a.batch_stats_of_input ? Role::Out : Role::In;
  const Role frole = a.feature_stats_of_input ? Role::Out : Role::In;
  c.p.run_bmean = c.running(a.running_batch_mean, "running_batch_mean", true, brole);
  c.p.run_bvar = c.running(a.running_batch_var, "running_batch_var", true, brole);
  c.p.run_fmean = c.running(a.running_feature_mean, "running_feature_mean", false, frole);
  c.p.run_fvar = c.running(a.running_feature_var, "running_feature_var", false, frole);
  c.p.batch_input = a.batch_stats_of_input;
  c.p.feature_input = a.feature_stats_of_input;
  detail::check_finite(a.momentum, op, "momentum", false);
  detail::check_finite(a.eps, op, "eps", true);
  c.p.momentum = a.momentum;
  c.p.eps = a.eps;
  c.weights(a.delta, a.batch_size);
  c.p.bmean = c.stat(a.batch_mean, "batch_mean", true, Role::Out);
  c.p.brstd = c.stat(a.batch_rstd, "batch_rstd", true, Role::Out);
  c.p.fmean = c.stat(a.feature_mean, "feature_mean", false, Role::Out);
  c.p.frstd = c.stat(a.feature_rstd, "feature_rstd", false, Role::Out);
  if (!c.empty && a.batch_stats_of_input && a.running_batch_mean && c.p.B <= 1)
    fail(ErrorKind::Value, std::string(op) + ": x: updating the running batch statistics needs "
                                             "more than one sample, got shape " + detail::shape_str(c.x));
  if (!c.empty && a.feature_stats_of_input && a.running_feature_mean && c.p.F <= 1)
    fail(ErrorKind::Value, std::string(op) + ": x: updating the running feature statistics needs "
                                             "more than one feature, got shape " + detail::shape_str(c.x));
  detail::Aliasing al(op);
  al.in(a.x, "x").in(a.weight, "weight").in(a.bias, "bias");
  if (!a.batch_stats_of_input) al.in(a.running_batch_mean, "running_batch_mean").in(a.running_batch_var, "running_batch_var");
  else al.out(a.running_batch_mean, "running_batch_mean").out(a.running_batch_var, "running_batch_var");
  if (!a.feature_stats_of_input) al.in(a.running_feature_mean, "running_feature_mean").in(a.running_feature_var, "running_feature_var");
  else al.out(a.running_feature_mean, "running_feature_mean").out(a.running_feature_var, "running_feature_var");
  al.out(a.y, "out").out(a.batch_mean, "batch_mean").out(a.batch_rstd, "batch_rstd")
      .out(a.feature_mean, "feature_mean").out(a.feature_rstd, "feature_rstd");
  al.check();
  if (c.empty) return;
  c.dispatch(stream);
}

void batch_layer_norm_backward(const BatchLayerNormBackwardArgs& a, Stream stream) {
  const char* op = "batch_layer_norm_backward";
  require_arg(op, a.x, "x");
  require_arg(op, a.dy, "dy");
  require_arg(op, a.batch_mean, "batch_mean");
  require_arg(op, a.batch_rstd, "batch_rstd");
  require_arg(op, a.feature_mean, "feature_mean");
  require_arg(op, a.feature_rstd, "feature_rstd");
  if (a.dweight != nullptr && a.weight == nullptr)
    fail(ErrorKind::Value, std::string(op) + ": dweight: needs weight");
  Call c(op, a.x);
  c.p.backward = true;
  c.like_x(a.x, "x", Role::In, &c.p.x, &c.p.x_idx);
  c.like_x(a.dy, "dy", Role::In, &c.p.dy, &c.p.dy_idx);
  if (a.dx) c.out(a.dx, "dx");
  c.p.weight = c.feature_param(a.weight, "weight", Role::In);
  c.p.dweight = c.feature_param(a.dweight, "dweight", Role::Out);
  c.p.dbias = c.feature_param(a.dbias, "dbias", Role::Out);
  c.p.bmean = c.stat(a.batch_mean, "batch_mean", true, Role::In);
  c.p.brstd = c.stat(a.batch_rstd, "batch_rstd", true, Role::In);
  c.p.fmean = c.stat(a.feature_mean, "feature_mean", false, Role::In);
  c.p.frstd = c.stat(a.feature_rstd, "feature_rstd", false, Role::In);
  c.p.batch_input = a.batch_stats_of_input;
  c.p.feature_input = a.feature_stats_of_input;
  c.weights(a.delta, a.batch_size);
  detail::Aliasing(op)
      .in(a.dy, "dy").in(a.x, "x").in(a.weight, "weight").in(a.batch_mean, "batch_mean")
      .in(a.batch_rstd, "batch_rstd").in(a.feature_mean, "feature_mean")
      .in(a.feature_rstd, "feature_rstd")
      .out(a.dx, "dx").out(a.dweight, "dweight").out(a.dbias, "dbias")
      .check();
  if (c.p.F == 0) return;
  c.dispatch(stream);
}

}  // namespace normkit
