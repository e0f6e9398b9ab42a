// Entry points of group and instance norm (SPEC §5): validate every argument once with the
// shared toolkit (channel_call.hpp), resolve the call into a GnProblem and dispatch on the
// device.
#include <string>

#include "channel_call.hpp"
#include "common/backends.hpp"
#include "common/group_norm_problem.hpp"
#include "normkit/group_norm.hpp"

namespace normkit {
namespace {

using detail::fail;
using detail::GnProblem;
using detail::require_arg;
using detail::Role;

struct Call : detail::ChannelCall<GnProblem> {
  std::string stat_what;

  Call(const char* op_, const TensorView* xp, bool channels_last, int64_t G)
      : ChannelCall(op_, xp, channels_last) {
    if (x.ndim < 2)
      fail(ErrorKind::Value, std::string(op) + ": x: expected at least 2 dims, (N, C, *) or "
                                               "(N, *, C), got shape " + detail::shape_str(x));
    if (G < 1)
      fail(ErrorKind::Value, std::string(op) + ": num_groups: expected >= 1, got " +
                                 std::to_string(G));
    if (L.C % G != 0)
      fail(ErrorKind::Value, std::string(op) + ": num_groups: expected a divisor of the " +
                                 std::to_string(L.C) + " channels of x, got " + std::to_string(G));
    p.N = x.shape[0];
    p.G = G;
    stat_what = "one per sample and group, N x num_groups = " + std::to_string(p.N) + " x " +
                std::to_string(G) + ", of x";
  }
  detail::Chan group_stat(const TensorView* t, const char* name, Role role) {
    return stat(t, name, role, false, p.N * p.G, stat_what.c_str());
  }
  void dispatch(Stream stream) const {
#if defined(NORMKIT_WITH_CUDA)
    ChannelCall::dispatch(stream, detail::cpu_group_norm, detail::cuda::group_norm);
#else
    ChannelCall::dispatch(stream, detail::cpu_group_norm, nullptr);
#endif
  }
};

}  // namespace

void group_norm_forward(const GroupNormForwardArgs& a, Stream stream) {
  const char* op = "group_norm";
  require_arg(op, a.x, "x");
  require_arg(op, a.y, "out");
  Call c(op, a.x, a.channels_last, a.num_groups);
  c.x_in();
  c.out(a.y, "out");
  c.p.weight = c.param(a.weight, "weight", Role::In);
  c.p.bias = c.param(a.bias, "bias", Role::In);
  detail::check_finite(a.eps, op, "eps", true);
  c.p.eps = a.eps;
  c.p.save_mean = c.group_stat(a.save_mean, "save_mean", Role::Out);
  c.p.save_rstd = c.group_stat(a.save_rstd, "save_rstd", Role::Out);
  detail::require_pair(op, a.running_mean, "running_mean", a.running_var, "running_var");
  if (a.running_mean != nullptr) {
    if (a.num_groups != c.L.C)
      fail(ErrorKind::Value, std::string(op) + ": running_mean: running statistics are instance "
                                               "norm's (num_groups == C), got num_groups " +
                                 std::to_string(a.num_groups) + " for " + std::to_string(c.L.C) +
                                 " channels");
    c.p.running_mean = c.param(a.running_mean, "running_mean", Role::Out);
    c.p.running_var = c.param(a.running_var, "running_var", Role::Out);
    detail::check_finite(a.momentum, op, "momentum", false);
    c.p.momentum = a.momentum;
    if (c.L.C > 0 && c.p.N > 0 && c.p.spatial() <= 1)
      fail(ErrorKind::Value, std::string(op) +
                                 ": x: updating running statistics needs more than one spatial "
                                 "element per channel, got shape " + detail::shape_str(c.x));
  }
  detail::Aliasing(op)
      .in(a.x, "x").in(a.weight, "weight").in(a.bias, "bias")
      .out(a.y, "out").out(a.save_mean, "save_mean").out(a.save_rstd, "save_rstd")
      .out(a.running_mean, "running_mean").out(a.running_var, "running_var")
      .check();
  if (c.L.C == 0 || c.p.N == 0) return;
  c.dispatch(stream);
}

void group_norm_backward(const GroupNormBackwardArgs& a, Stream stream) {
  const char* op = "group_norm_backward";
  require_arg(op, a.x, "x");
  require_arg(op, a.dy, "dy");
  require_arg(op, a.mean, "mean");
  require_arg(op, a.rstd, "rstd");
  if (a.dweight != nullptr && a.weight == nullptr)
    fail(ErrorKind::Value, std::string(op) + ": dweight: needs weight");
  Call c(op, a.x, a.channels_last, a.num_groups);
  c.p.backward = true;
  c.x_in();
  c.dy_in(a.dy);
  if (a.dx) c.out(a.dx, "dx");
  c.p.mean = c.group_stat(a.mean, "mean", Role::In);
  c.p.rstd = c.group_stat(a.rstd, "rstd", Role::In);
  c.p.weight = c.param(a.weight, "weight", Role::In);
  c.p.dweight = c.param(a.dweight, "dweight", Role::Out);
  c.p.dbias = c.param(a.dbias, "dbias", Role::Out);
  detail::Aliasing(op)
      .in(a.dy, "dy").in(a.x, "x").in(a.mean, "mean").in(a.rstd, "rstd").in(a.weight, "weight")
      .out(a.dx, "dx").out(a.dweight, "dweight").out(a.dbias, "dbias")
      .check();
  if (c.L.C == 0) return;
  c.dispatch(stream);
}

}  // namespace normkit
