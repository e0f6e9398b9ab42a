// Entry points of batch norm (SPEC §4): validate every argument once with the shared toolkit
// (validate.hpp, channel_layout.hpp), resolve the call into a BnProblem and dispatch on the
// device. The fused forward / backward and the split phases resolve into the same problem;
// the backends compose the same kernels for all of them.
#include <cmath>
#include <string>

#include "channel_call.hpp"
#include "common/backends.hpp"
#include "common/batch_norm_problem.hpp"
#include "normkit/batch_norm.hpp"
#include "normkit/param_norm.hpp"
#include "validate.hpp"

namespace normkit {
namespace {

using detail::BnOp;
using detail::BnProblem;
using detail::Chan;
using detail::ChannelLayout;
using detail::fail;
using detail::Role;

using detail::require_arg;

struct Call : detail::ChannelCall<BnProblem> {
  Call(const char* op_, BnOp kind, const TensorView* xp, bool channels_last,
       const char* xn = "x")
      : ChannelCall(op_, xp, channels_last, xn) {
    p.op = kind;
  }
  void dispatch(Stream stream) const {
#if defined(NORMKIT_WITH_CUDA)
    ChannelCall::dispatch(stream, detail::cpu_batch_norm, detail::cuda::batch_norm);
#else
    ChannelCall::dispatch(stream, detail::cpu_batch_norm, nullptr);
#endif
  }
};

void check_training_count(const Call& c) {
  if (c.L.C > 0 && c.p.count() <= 1)
    fail(ErrorKind::Value, std::string(c.op) +
                               ": x: training needs more than one value per channel, got " +
                               std::to_string(c.p.count()) + " for shape " +
                               detail::shape_str(c.x));
}

}  // namespace

void batch_norm_forward(const BatchNormForwardArgs& a, Stream stream) {
  const char* op = "batch_norm";
  require_arg(op, a.x, "x");
  require_arg(op, a.y, "out");
  Call c(op, BnOp::Forward, a.x, a.channels_last);
  c.x_in();
  c.out(a.y, "out");
  c.p.weight = c.param(a.weight, "weight", Role::In);
  c.p.bias = c.param(a.bias, "bias", Role::In);
  detail::require_pair(op, a.running_mean, "running_mean", a.running_var, "running_var");
  if (!a.training && a.running_mean == nullptr)
    fail(ErrorKind::Value, std::string(op) +
                               ": running_mean: required when training=False (evaluation "
                               "normalizes with the running statistics)");
  const Role run_role = a.training ? Role::Out : Role::In;
  c.p.running_mean = c.param(a.running_mean, "running_mean", run_role);
  c.p.running_var = c.param(a.running_var, "running_var", run_role);
  detail::check_finite(a.momentum, op, "momentum", false);
  detail::check_finite(a.eps, op, "eps", true);
  c.p.save_mean = c.stat(a.save_mean, "save_mean", Role::Out, false);
  c.p.save_rstd = c.stat(a.save_rstd, "save_rstd", Role::Out, false);
  c.p.training = a.training;
  c.p.momentum = a.momentum;
  c.p.eps = a.eps;
  detail::Aliasing al(op);
  al.in(a.x, "x").in(a.weight, "weight").in(a.bias, "bias");
  if (!a.training) al.in(a.running_mean, "running_mean").in(a.running_var, "running_var");
  al.out(a.y, "out").out(a.save_mean, "save_mean").out(a.save_rstd, "save_rstd");
  if (a.training) al.out(a.running_mean, "running_mean").out(a.running_var, "running_var");
  al.check();
  if (a.training) check_training_count(c);
  if (c.L.C == 0) return;
  c.dispatch(stream);
}

void batch_norm_backward(const BatchNormBackwardArgs& a, Stream stream) {
  const char* op = "batch_norm_backward";
  require_arg(op, a.x, "x");
  require_arg(op, a.dy, "dy");
  require_arg(op, a.mean, "mean");
  require_arg(op, a.rstd, "rstd");
  if (a.dweight != nullptr && a.weight == nullptr)
    fail(ErrorKind::Value, std::string(op) + ": dweight: needs weight");
  Call c(op, BnOp::Backward, a.x, a.channels_last);
  c.x_in();
  c.dy_in(a.dy);
  if (a.dx) c.out(a.dx, "dx");
  c.p.mean = c.stat(a.mean, "mean", Role::In, true);
  c.p.rstd = c.stat(a.rstd, "rstd", Role::In, true);
  c.p.weight = c.param(a.weight, "weight", Role::In);
  c.p.dweight = c.param(a.dweight, "dweight", Role::Out);
  c.p.dbias = c.param(a.dbias, "dbias", Role::Out);
  c.p.training = a.training;
  detail::Aliasing(op)
      .in(a.dy, "dy").in(a.x, "x").in(a.mean, "mean").in(a.rstd, "rstd").in(a.weight, "weight")
      .out(a.dx, "dx").out(a.dweight, "dweight").out(a.dbias, "dbias")
      .check();
  if (c.L.C == 0) return;
  c.dispatch(stream);
}

int64_t batch_norm_stats(const BatchNormStatsArgs& a, Stream stream) {
  const char* op = "batch_norm_stats";
  require_arg(op, a.x, "x");
  require_arg(op, a.mean, "mean");
  require_arg(op, a.m2, "m2");
  Call c(op, BnOp::Stats, a.x, a.channels_last);
  c.x_in();
  c.p.stat_mean = c.stat(a.mean, "mean", Role::Out, true);
  c.p.stat_m2 = c.stat(a.m2, "m2", Role::Out, true);
  detail::Aliasing(op).in(a.x, "x").out(a.mean, "mean").out(a.m2, "m2").check();
  if (c.L.C > 0) c.dispatch(stream);
  return c.p.count();
}

void batch_norm_apply(const BatchNormApplyArgs& a, Stream stream) {
  const char* op = "batch_norm_apply";
  require_arg(op, a.x, "x");
  require_arg(op, a.mean, "mean");
  require_arg(op, a.rstd, "rstd");
  require_arg(op, a.y, "out");
  Call c(op, BnOp::Apply, a.x, a.channels_last);
  c.x_in();
  c.out(a.y, "out");
  c.p.mean = c.stat(a.mean, "mean", Role::In, true);
  c.p.rstd = c.stat(a.rstd, "rstd", Role::In, true);
  c.p.weight = c.param(a.weight, "weight", Role::In);
  c.p.bias = c.param(a.bias, "bias", Role::In);
  detail::Aliasing(op)
      .in(a.x, "x").in(a.mean, "mean").in(a.rstd, "rstd").in(a.weight, "weight")
      .in(a.bias, "bias").out(a.y, "out")
      .check();
  if (c.empty()) return;
  c.dispatch(stream);
}

void batch_norm_backward_reduce(const BatchNormBackwardReduceArgs& a, Stream stream) {
  const char* op = "batch_norm_backward_reduce";
  require_arg(op, a.dy, "dy");
  require_arg(op, a.x, "x");
  require_arg(op, a.mean, "mean");
  require_arg(op, a.rstd, "rstd");
  require_arg(op, a.sum_dy, "sum_dy");
  require_arg(op, a.sum_dy_xhat, "sum_dy_xhat");
  Call c(op, BnOp::BackwardReduce, a.x, a.channels_last);
  c.x_in();
  c.dy_in(a.dy);
  c.p.mean = c.stat(a.mean, "mean", Role::In, true);
  c.p.rstd = c.stat(a.rstd, "rstd", Role::In, true);
  c.p.red_dy = c.stat(a.sum_dy, "sum_dy", Role::Out, true);
  c.p.red_dy_xhat = c.stat(a.sum_dy_xhat, "sum_dy_xhat", Role::Out, true);
  detail::Aliasing(op)
      .in(a.dy, "dy").in(a.x, "x").in(a.mean, "mean").in(a.rstd, "rstd")
      .out(a.sum_dy, "sum_dy").out(a.sum_dy_xhat, "sum_dy_xhat")
      .check();
  if (c.L.C == 0) return;
  c.dispatch(stream);
}

void batch_norm_backward_apply(const BatchNormBackwardApplyArgs& a, Stream stream) {
  const char* op = "batch_norm_backward_apply";
  require_arg(op, a.dy, "dy");
  require_arg(op, a.x, "x");
  require_arg(op, a.mean, "mean");
  require_arg(op, a.rstd, "rstd");
  require_arg(op, a.sum_dy, "sum_dy");
  require_arg(op, a.sum_dy_xhat, "sum_dy_xhat");
  require_arg(op, a.dx, "dx");
  Call c(op, BnOp::BackwardApply, a.x, a.channels_last);
  c.x_in();
  c.dy_in(a.dy);
  c.out(a.dx, "dx");
  c.p.mean = c.stat(a.mean, "mean", Role::In, true);
  c.p.rstd = c.stat(a.rstd, "rstd", Role::In, true);
  c.p.weight = c.param(a.weight, "weight", Role::In);
  c.p.sum_dy = c.stat(a.sum_dy, "sum_dy", Role::In, true);
  c.p.sum_dy_xhat = c.stat(a.sum_dy_xhat, "sum_dy_xhat", Role::In, true);
  detail::check_finite(a.count, op, "count", true);
  if (!(a.count >= 1.0))
    fail(ErrorKind::Value, std::string(op) + ": count: expected >= 1 (the values per channel of "
                                             "the whole batch), got " + std::to_string(a.count));
  c.p.total = a.count;
  detail::Aliasing(op)
      .in(a.dy, "dy").in(a.x, "x").in(a.mean, "mean").in(a.rstd, "rstd").in(a.weight, "weight")
      .in(a.sum_dy, "sum_dy").in(a.sum_dy_xhat, "sum_dy_xhat").out(a.dx, "dx")
      .check();
  if (c.empty()) return;
  c.dispatch(stream);
}

// Weight norm (normkit/param_norm.hpp) is a per-channel reduction and an elementwise pass:
// the batch-norm problem and kernels serve it (BnOp::WeightNorm*).
void weight_norm_forward(const WeightNormArgs& a, Stream stream) {
  const char* op = "weight_norm";
  require_arg(op, a.v, "v");
  require_arg(op, a.g, "g");
  require_arg(op, a.w, "out");
  Call c(op, BnOp::WeightNorm, a.v, a.channels_last, "v");
  c.x_in();
  c.out(a.w, "out");
  c.p.weight = c.param(a.g, "g", Role::In);
  c.p.save_rstd = c.stat(a.norm, "norm", Role::Out, true);
  detail::Aliasing(op).in(a.v, "v").in(a.g, "g").out(a.w, "out").out(a.norm, "norm").check();
  if (c.L.C == 0) return;
  c.dispatch(stream);
}

void weight_norm_backward(const WeightNormBackwardArgs& a, Stream stream) {
  const char* op = "weight_norm_backward";
  require_arg(op, a.dw, "dw");
  require_arg(op, a.v, "v");
  require_arg(op, a.g, "g");
  require_arg(op, a.norm, "norm");
  Call c(op, BnOp::WeightNormBackward, a.v, a.channels_last, "v");
  c.x_in();
  c.dy_in(a.dw);
  if (a.dv) c.out(a.dv, "dv");
  c.p.weight = c.param(a.g, "g", Role::In);
  c.p.rstd = c.stat(a.norm, "norm", Role::In, true);
  c.p.dweight = c.param(a.dg, "dg", Role::Out);
  detail::Aliasing(op)
      .in(a.dw, "dw").in(a.v, "v").in(a.g, "g").in(a.norm, "norm")
      .out(a.dv, "dv").out(a.dg, "dg")
      .check();
  if (c.L.C == 0) return;
  c.dispatch(stream);
}

void moments_merge(const MomentsMergeArgs& a, Stream stream) {
  const char* op = "moments_merge";
  require_arg(op, a.counts, "counts");
  require_arg(op, a.means, "means");
  require_arg(op, a.m2s, "m2s");
  require_arg(op, a.mean, "mean");
  require_arg(op, a.m2, "m2");
  const TensorView& means = *a.means;
  auto f32_or_f64 = [&](const TensorView& t, const char* name, Role role) {
    detail::check_view(t, op, name);
    if (t.dtype != DType::Float32 && t.dtype != DType::Float64)
      fail(ErrorKind::Type, std::string(op) + ": " + name +
                                ": expected dtype float32 or float64, got " + dtype_name(t.dtype));
    detail::check_aligned(t, op, name);
    detail::check_same_device(t, means, op, name, "means");
    if (!detail::dims_compact(t, 0))
      fail(ErrorKind::Value, std::string(op) + ": " + name + ": expected a contiguous array");
    if (role == Role::Out) detail::check_writable(t, op, name);
  };
  f32_or_f64(means, "means", Role::In);
  if (means.ndim != 2)
    fail(ErrorKind::Value, std::string(op) + ": means: expected shape (K, C), got " +
                               detail::shape_str(means));
  const int64_t K = means.shape[0], C = means.shape[1];
  auto shaped = [&](const TensorView& t, const char* name, int64_t n, const char* what, Role role) {
    f32_or_f64(t, name, role);
    if (t.numel() != n || (t.ndim == 2 && (t.shape[0] != K || t.shape[1] != C) && n == K * C))
      fail(ErrorKind::Value, std::string(op) + ": " + name + ": expected " + what + ", got " +
                                 detail::shape_str(t));
  };
  const std::string kc = "shape " + detail::shape_str(means.shape, 2) + " (like means)";
  shaped(*a.counts, "counts", K, "K = means.shape[0] elements", Role::In);
  shaped(*a.m2s, "m2s", K * C, kc.c_str(), Role::In);
  shaped(*a.mean, "mean", C, "C = means.shape[1] elements", Role::Out);
  shaped(*a.m2, "m2", C, "C = means.shape[1] elements", Role::Out);
  if (a.count) shaped(*a.count, "count", 1, "one element", Role::Out);
  detail::Aliasing(op)
      .in(a.counts, "counts").in(a.means, "means").in(a.m2s, "m2s")
      .out(a.count, "count").out(a.mean, "mean").out(a.m2, "m2")
      .check();
  detail::MomentsMergeProblem p;
  p.device_index = means.device_index;
  p.K = K;
  p.C = C;
  p.counts = detail::chan_of(a.counts);
  p.means = detail::chan_of(a.means);
  p.m2s = detail::chan_of(a.m2s);
  p.count = detail::chan_of(a.count);
  p.mean = detail::chan_of(a.mean);
  p.m2 = detail::chan_of(a.m2);
  if (means.device == DeviceType::CUDA) {
    detail::check_cuda_device(means, op, "means");
#if defined(NORMKIT_WITH_CUDA)
    detail::cuda::moments_merge(p, stream);
#else
    (void)stream;
#endif
  } else {
    detail::cpu_moments_merge(p);
  }
}

}  // namespace normkit
