// Entry points of the row-norm family: validate every argument once, resolve the views into
// a RowNormProblem, and dispatch on the device (CPU / CUDA). Kernels never re-check.
#include <initializer_list>
#include <string>
#include <utility>

#include "common/backends.hpp"
#include "common/row_norm_problem.hpp"
#include "normkit/row_norm.hpp"
#include "validate.hpp"

namespace normkit {
namespace {

using detail::fail;
using detail::shape_str;

struct Ctx {
  const char* op;
  int nd;        // normalized dims
  int lead;      // x.ndim - nd
  int64_t rows;  // product of the leading dims
  int64_t H;     // product of the normalized dims
};

const char* fwd_op_name(const RowNormForwardArgs& a) {
  const bool add = a.residual != nullptr;
  if (a.kind == NormKind::Layer) return add ? "add_layer_norm" : "layer_norm";
  if (a.kind == NormKind::Ada) return "ada_norm";
  return add ? "add_rms_norm" : "rms_norm";
}

void check_kind(const char* op, NormKind kind) {
  if (kind != NormKind::Layer && kind != NormKind::RMS && kind != NormKind::Ada)
    fail(ErrorKind::Value, std::string(op) +
                               ": kind: expected NormKind::Layer, NormKind::RMS or NormKind::Ada, got " +
                               std::to_string(int(kind)));
}

// AdaNorm (SPEC §8) has no parameters and no fused add; the unbiased std needs two elements.
void check_ada(const char* op, double k, double scale, int64_t rows, int64_t H,
               std::initializer_list<std::pair<const void*, const char*>> absent) {
  detail::check_finite(k, op, "k", false);
  detail::check_finite(scale, op, "scale", false);
  for (const auto& [ptr, name] : absent)
    if (ptr != nullptr) fail(ErrorKind::Value, std::string(op) + ": " + name + ": AdaNorm has none");
  if (rows > 0 && H < 2)
    fail(ErrorKind::Value, std::string(op) +
                               ": x: AdaNorm needs at least 2 elements per row (the unbiased std), "
                               "got a row of " + std::to_string(H));
}

Ctx make_ctx(const char* op, const TensorView& x, int nd) {
  detail::check_view(x, op, "x");
  detail::check_float_dtype(x, op, "x");
  detail::check_aligned(x, op, "x");
  if (nd < 1 || nd > x.ndim)
    fail(ErrorKind::Value, std::string(op) + ": normalized_shape: expected 1.." +
                               std::to_string(x.ndim) + " trailing dims of x " + shape_str(x) +
                               ", got " + std::to_string(nd));
  Ctx c{op, nd, x.ndim - nd, 1, 1};
  for (int i = 0; i < c.lead; ++i) c.rows *= x.shape[i];
  for (int i = c.lead; i < x.ndim; ++i) c.H *= x.shape[i];
  return c;
}

// The family's three kinds of argument, on the shared toolkit (validate.hpp).
// Like x: same shape, dtype, device; compact rows.
void check_like_x(const Ctx& c, const TensorView& t, const TensorView& x, const char* name,
                  bool output) {
  const detail::Role role = output ? detail::Role::Out : detail::Role::In;
  detail::check_like(c.op, t, name, x, role);
  detail::check_compact_tail(c.op, t, name, c.lead, "the normalized (trailing) dims", role);
}

// A per-element parameter of the row: shape = the normalized dims of x.
void check_param(const Ctx& c, const TensorView& t, const TensorView& x, const char* name,
                 bool output) {
  detail::check_param(c.op, t, name, x, x.shape + c.lead, c.nd, "the normalized dims of x",
                      output ? detail::Role::Out : detail::Role::In);
}

// mean / rstd: one per row.
void check_stat(const Ctx& c, const TensorView& t, const TensorView& x, const char* name,
                bool output) {
  detail::check_stat(c.op, t, name, x, c.rows, "one per row of x",
                     output ? detail::Role::Out : detail::Role::In);
}

}  // namespace

void row_norm_forward(const RowNormForwardArgs& a, Stream stream) {
  const char* op = fwd_op_name(a);
  check_kind(op, a.kind);
  if (a.x == nullptr) fail(ErrorKind::Value, std::string(op) + ": x: is required");
  if (a.y == nullptr) fail(ErrorKind::Value, std::string(op) + ": out: is required");
  const TensorView& x = *a.x;
  const Ctx c = make_ctx(op, x, a.normalized_ndim);

  detail::check_finite(a.eps, op, "eps", /*nonneg=*/true);
  detail::check_finite(a.weight_offset, op, "weight_offset", false);
  detail::check_finite(a.residual_scale, op, "residual_scale", false);
  if (a.kind != NormKind::RMS && a.weight_offset != 0.0)
    fail(ErrorKind::Value, std::string(op) + ": weight_offset: only RMS norm has one");
  if (a.weight_offset != 0.0 && a.weight == nullptr)
    fail(ErrorKind::Value, std::string(op) + ": weight_offset: needs weight (y = x̂·(weight + offset))");
  if (a.kind == NormKind::RMS && a.mean != nullptr)
    fail(ErrorKind::Value, std::string(op) + ": mean: RMS norm has no mean");
  if (a.residual == nullptr && (a.x_bias != nullptr || a.residual_out != nullptr))
    fail(ErrorKind::Value, std::string(op) + ": " + (a.x_bias ? "x_bias" : "residual_out") +
                               ": only for the fused add (pass residual)");
  if (!detail::dims_compact(x, c.lead))
    fail(ErrorKind::Value, std::string(op) +
                               ": x: the normalized (trailing) dims must be contiguous (pass a "
                               "contiguous copy)");
  if (a.kind == NormKind::Ada)
    check_ada(op, a.ada_k, a.ada_scale, c.rows, c.H,
              {{a.residual, "residual"}, {a.x_bias, "x_bias"}, {a.residual_out, "residual_out"},
               {a.weight, "weight"}, {a.bias, "bias"}});

  check_like_x(c, *a.y, x, "out", true);
  if (a.residual) check_like_x(c, *a.residual, x, "residual", false);
  if (a.residual_out) check_like_x(c, *a.residual_out, x, "residual_out", true);
  if (a.weight) check_param(c, *a.weight, x, "weight", false);
  if (a.bias) check_param(c, *a.bias, x, "bias", false);
  if (a.x_bias) check_param(c, *a.x_bias, x, "x_bias", false);
  if (a.mean) check_stat(c, *a.mean, x, "mean", true);
  if (a.rstd) check_stat(c, *a.rstd, x, a.kind == NormKind::RMS ? "rrms" : "rstd", true);

  detail::Aliasing(op)
      .in(a.x, "x").in(a.residual, "residual").in(a.weight, "weight").in(a.bias, "bias")
      .in(a.x_bias, "x_bias")
      .out(a.y, "out").out(a.residual_out, "residual_out").out(a.mean, "mean")
      .out(a.rstd, a.kind == NormKind::RMS ? "rrms" : "rstd")
      .check();

  detail::RowNormProblem p;
  p.kind = a.kind;
  p.device_index = x.device_index;
  p.x_dtype = x.dtype;
  p.rows = c.rows;
  p.H = c.H;
  p.eps = a.eps;
  p.weight_offset = a.weight_offset;
  p.residual_scale = a.residual_scale;
  p.ada_k = a.ada_k;
  p.ada_scale = a.ada_scale;
  if (c.rows > 0 && c.H > 0) {
    p.x = x.data;
    p.x_idx = detail::make_row_index(x, c.lead, op, "x");
    p.y = a.y->data;
    p.y_idx = detail::make_row_index(*a.y, c.lead, op, "out");
    if (a.residual) {
      p.residual = a.residual->data;
      p.r_idx = detail::make_row_index(*a.residual, c.lead, op, "residual");
    }
    if (a.residual_out) {
      p.residual_out = a.residual_out->data;
      p.s_idx = detail::make_row_index(*a.residual_out, c.lead, op, "residual_out");
    }
  }
  if (a.weight) p.weight = a.weight->data, p.weight_dtype = a.weight->dtype;
  if (a.bias) p.bias = a.bias->data, p.bias_dtype = a.bias->dtype;
  if (a.x_bias) p.x_bias = a.x_bias->data, p.x_bias_dtype = a.x_bias->dtype;
  if (a.mean) p.mean = a.mean->data;
  if (a.rstd) p.rstd = a.rstd->data;

  if (x.device == DeviceType::CUDA) {
    detail::check_cuda_device(x, op, "x");
#if defined(NORMKIT_WITH_CUDA)
    detail::cuda::row_norm_forward(p, stream);
#else
    (void)stream;
    fail(ErrorKind::Runtime, std::string(op) + ": x: is on a CUDA device, but this build of normkit has no CUDA backend");
#endif
  } else {
    detail::cpu_row_norm_forward(p);
  }
}

namespace {

detail::RowNormBackwardProblem resolve_backward(const RowNormBackwardArgs& a, Ctx& c_out) {
  const bool fused = a.dresidual != nullptr || a.dx_bias != nullptr || a.ds != nullptr;
  const char* op = a.kind == NormKind::Layer ? (fused ? "add_layer_norm_backward" : "layer_norm_backward")
                   : a.kind == NormKind::Ada ? "ada_norm_backward"
                                             : (fused ? "add_rms_norm_backward" : "rms_norm_backward");
  check_kind(op, a.kind);
  if (a.x == nullptr) fail(ErrorKind::Value, std::string(op) + ": x: is required");
  if (a.dy == nullptr) fail(ErrorKind::Value, std::string(op) + ": dy: is required");
  if (a.dx == nullptr) fail(ErrorKind::Value, std::string(op) + ": dx: is required");
  if (a.rstd == nullptr) fail(ErrorKind::Value, std::string(op) + ": rstd: is required");
  if (a.kind != NormKind::RMS && a.mean == nullptr)
    fail(ErrorKind::Value, std::string(op) + ": mean: is required for " +
                               (a.kind == NormKind::Ada ? "AdaNorm" : "layer norm"));
  if (a.kind == NormKind::RMS && a.mean != nullptr)
    fail(ErrorKind::Value, std::string(op) + ": mean: RMS norm has no mean");
  const TensorView& x = *a.x;
  const Ctx c = make_ctx(op, x, a.normalized_ndim);
  c_out = c;
  detail::check_finite(a.weight_offset, op, "weight_offset", false);
  detail::check_finite(a.residual_scale, op, "residual_scale", false);
  if (a.kind != NormKind::RMS && a.weight_offset != 0.0)
    fail(ErrorKind::Value, std::string(op) + ": weight_offset: only RMS norm has one");
  if (a.weight_offset != 0.0 && a.weight == nullptr)
    fail(ErrorKind::Value, std::string(op) + ": weight_offset: needs weight");
  if (a.dweight != nullptr && a.weight == nullptr)
    fail(ErrorKind::Value, std::string(op) + ": dweight: needs weight");
  if (!detail::dims_compact(x, c.lead))
    fail(ErrorKind::Value, std::string(op) + ": x: the normalized (trailing) dims must be contiguous");
  if (a.kind == NormKind::Ada)
    check_ada(op, a.ada_k, a.ada_scale, c.rows, c.H,
              {{a.ds, "ds"}, {a.weight, "weight"}, {a.dresidual, "dresidual"},
               {a.dweight, "dweight"}, {a.dbias, "dbias"}, {a.dx_bias, "dx_bias"}});

  check_like_x(c, *a.dy, x, "dy", false);
  if (a.ds) check_like_x(c, *a.ds, x, "ds", false);
  check_like_x(c, *a.dx, x, "dx", true);
  if (a.dresidual) check_like_x(c, *a.dresidual, x, "dresidual", true);
  if (a.mean) check_stat(c, *a.mean, x, "mean", false);
  check_stat(c, *a.rstd, x, a.kind == NormKind::RMS ? "rrms" : "rstd", false);
  if (a.weight) check_param(c, *a.weight, x, "weight", false);
  if (a.dweight) check_param(c, *a.dweight, x, "dweight", true);
  if (a.dbias) check_param(c, *a.dbias, x, "dbias", true);
  if (a.dx_bias) check_param(c, *a.dx_bias, x, "dx_bias", true);

  detail::Aliasing(op)
      .in(a.dy, "dy").in(a.ds, "ds").in(a.x, "x").in(a.mean, "mean").in(a.rstd, "rstd")
      .in(a.weight, "weight")
      .out(a.dx, "dx").out(a.dresidual, "dresidual").out(a.dweight, "dweight")
      .out(a.dbias, "dbias").out(a.dx_bias, "dx_bias")
      .check();

  detail::RowNormBackwardProblem p;
  p.kind = a.kind;
  p.device_index = x.device_index;
  p.x_dtype = x.dtype;
  p.rows = c.rows;
  p.H = c.H;
  p.weight_offset = a.weight_offset;
  p.residual_scale = a.residual_scale;
  p.ada_k = a.ada_k;
  p.ada_scale = a.ada_scale;
  if (c.rows > 0 && c.H > 0) {
    p.x = x.data;
    p.x_idx = detail::make_row_index(x, c.lead, op, "x");
    p.dy = a.dy->data;
    p.dy_idx = detail::make_row_index(*a.dy, c.lead, op, "dy");
    p.dx = a.dx->data;
    p.dx_idx = detail::make_row_index(*a.dx, c.lead, op, "dx");
    if (a.ds) {
      p.ds = a.ds->data;
      p.ds_idx = detail::make_row_index(*a.ds, c.lead, op, "ds");
    }
    if (a.dresidual) {
      p.dresidual = a.dresidual->data;
      p.dr_idx = detail::make_row_index(*a.dresidual, c.lead, op, "dresidual");
    }
  }
  if (a.mean) p.mean = a.mean->data;
  p.rstd = a.rstd->data;
  if (a.weight) p.weight = a.weight->data, p.weight_dtype = a.weight->dtype;
  if (a.dweight) p.dweight = a.dweight->data, p.dweight_dtype = a.dweight->dtype;
  if (a.dbias) p.dbias = a.dbias->data, p.dbias_dtype = a.dbias->dtype;
  if (a.dx_bias) p.dx_bias = a.dx_bias->data, p.dx_bias_dtype = a.dx_bias->dtype;
  p.workspace = a.workspace;
  p.workspace_bytes = a.workspace_bytes;
  return p;
}

}  // namespace

size_t row_norm_backward_workspace_size(const RowNormBackwardArgs& a) {
  Ctx c{};
  const detail::RowNormBackwardProblem p = resolve_backward(a, c);
  if (a.x->device == DeviceType::CUDA) {
    detail::check_cuda_device(*a.x, c.op, "x");
#if defined(NORMKIT_WITH_CUDA)
    return detail::cuda::row_norm_backward_workspace_size(p);
#else
    return 0;
#endif
  }
  return detail::cpu_row_norm_backward_workspace_size(p);
}

void row_norm_backward(const RowNormBackwardArgs& a, Stream stream) {
  Ctx c{};
  const detail::RowNormBackwardProblem p = resolve_backward(a, c);
  if (a.x->device == DeviceType::CUDA) {
    detail::check_cuda_device(*a.x, c.op, "x");
#if defined(NORMKIT_WITH_CUDA)
    detail::cuda::row_norm_backward(p, stream);
#else
    (void)stream;
    fail(ErrorKind::Runtime, std::string(c.op) + ": x: is on a CUDA device, but this build of normkit has no CUDA backend");
#endif
  } else {
    detail::cpu_row_norm_backward(p);
  }
}

}  // namespace normkit
