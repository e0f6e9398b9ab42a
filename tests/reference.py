"""Float64 NumPy reference for the row norms (SPEC.md §1–3) and what the tests share.

Sections:
  1. dtypes and the one tolerance table every test uses;
  2. the reference math, written straight from SPEC.md (forward with statistics, closed-form
     backward) — float64 in, float64 out;
  3. central finite differences (to check the reference backward, and the kernels in float64);
  4. the row-norm ops, defined once: how the reference and normkit are called for each of
     layer_norm, rms_norm, add_layer_norm, add_rms_norm, forward and backward;
  5. arrays: building NumPy / torch inputs of a dtype in a memory layout (strided, misaligned,
     transposed, ...), NaN-filled output buffers, conversion back to float64.

This module never imports normkit: the kernel-calling helpers take the module as an argument.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import ml_dtypes
import numpy as np

import emucuda

# ---------------------------------------------------------------------------------------------
# 1. dtypes and tolerances
# ---------------------------------------------------------------------------------------------

DTYPES = ("float32", "float64", "float16", "bfloat16")
HALF_DTYPES = ("float16", "bfloat16")
BF16 = np.dtype(ml_dtypes.bfloat16)
NP_DTYPES = {
    "float32": np.dtype(np.float32),
    "float64": np.dtype(np.float64),
    "float16": np.dtype(np.float16),
    "bfloat16": BF16,
}


def compute_dtype(dtype: str) -> str:
    """16-bit data accumulates in float32, float32 in float32, float64 in float64 (SPEC §0)."""
    return "float64" if dtype == "float64" else "float32"


stat_dtype = compute_dtype  # saved mean / rstd / rrms: float32, float64 for float64 x


@dataclass(frozen=True)
class Tol:
    atol: float
    rtol: float


# A kernel result is compared with the float64 reference evaluated on the *same* inputs (16-bit
# inputs are rounded first, and the reference sees the rounded values), so the only error left
# is the kernel's own arithmetic plus the rounding of its output:
#   float64: a few ulp of float64 (plus reduction error, see `scale` in assert_close);
#   float32: ~100 ulp of float32, room for reductions over 65536 elements;
#   float16 / bfloat16: one ulp of the output (rounding costs half an ulp, float32 compute a
#   little more), and an absolute floor of about one ulp at 1.0 for values near zero.
TOLERANCE = {
    "float64": Tol(atol=1e-12, rtol=1e-12),
    "float32": Tol(atol=1e-5, rtol=1e-5),
    "float16": Tol(atol=2.0**-10, rtol=2.0**-10),
    "bfloat16": Tol(atol=2.0**-7, rtol=2.0**-7),
}

# Unit roundoff of each dtype (half its machine epsilon).
UNIT_ROUNDOFF = {"float64": 2.0**-53, "float32": 2.0**-24, "float16": 2.0**-11, "bfloat16": 2.0**-8}

# A reduction in working precision (blocked sums over up to 65536 terms, Chan merges) may
# lose this many units of roundoff of the magnitude of its terms; see assert_close(scale=).
REDUCTION_GROWTH = 64


def round_to(a, dtype: str) -> np.ndarray:
    """float64 array holding the values of `a` rounded to `dtype` (round to nearest even)."""
    a = np.asarray(a, dtype=np.float64)
    if dtype == "float64":
        return a.copy()
    return a.astype(NP_DTYPES[dtype]).astype(np.float64)


def assert_close(actual, expected, dtype: str, what: str = "", *, scale=None, compute=None):
    """Assert |actual − expected| ≤ atol + rtol·|expected| (+ the reduction term) elementwise.

    `dtype` picks the TOLERANCE row (the dtype the kernel wrote). `scale`, when given, is the
    magnitude of the terms each element was reduced or cancelled from (e.g. Σ|dy·x̂| for
    dweight, or |x|·rstd for y of an input with a large mean): it adds
    REDUCTION_GROWTH·u·scale, u the unit roundoff of `compute` (default: compute_dtype(dtype)).
    NaN must match NaN and ±Inf must match exactly.
    """
    a = to_f64(actual)
    e = np.asarray(expected, dtype=np.float64)
    assert a.shape == e.shape, f"{what}: shape {a.shape} != expected {e.shape}"
    tol = TOLERANCE[dtype]
    bound = tol.atol + tol.rtol * np.abs(e)
    if scale is not None:
        u = UNIT_ROUNDOFF[compute or compute_dtype(dtype)]
        bound = bound + REDUCTION_GROWTH * u * np.abs(np.asarray(scale, dtype=np.float64))
    with np.errstate(invalid="ignore", over="ignore"):
        err = np.abs(a - e)
        ok = (err <= bound) | (np.isnan(a) & np.isnan(e)) | (a == e)
    if not ok.all():
        bad = np.argwhere(~ok)
        i = tuple(bad[0])
        with np.errstate(invalid="ignore"):
            worst = np.nanmax(np.where(ok, 0.0, err / np.maximum(bound, 1e-300)))
        raise AssertionError(
            f"{what} ({dtype}): {len(bad)} of {a.size} elements out of tolerance "
            f"(atol={tol.atol:g}, rtol={tol.rtol:g}); first at {i}: got {a[i]!r}, expected "
            f"{e[i]!r}, |err|={err[i]:.3g} > bound {np.broadcast_to(bound, e.shape)[i]:.3g}; "
            f"worst err/bound = {worst:.3g}"
        )


# ---------------------------------------------------------------------------------------------
# 2. the reference math (float64), SPEC.md §1–3
# ---------------------------------------------------------------------------------------------


def _row_axes(x: np.ndarray, nd: int):
    return tuple(range(x.ndim - nd, x.ndim))


def _per_row(stat: np.ndarray, nd: int) -> np.ndarray:
    """A [*lead] statistic broadcast against [*lead, *normalized]."""
    stat = np.asarray(stat, dtype=np.float64)
    return stat.reshape(stat.shape + (1,) * nd)


def _sum_rows(t: np.ndarray, nd: int, param_shape) -> np.ndarray:
    """Σ over rows: [*lead, *normalized] -> param_shape."""
    norm = t.shape[t.ndim - nd :]
    return t.reshape((-1,) + norm).sum(axis=0).reshape(param_shape)


def layer_norm_forward(x, weight=None, bias=None, eps=1e-5, nd=1):
    """SPEC §1: μ, σ² (biased), rstd = 1/sqrt(σ²+eps), x̂ = (x−μ)·rstd, y = x̂·γ + β.

    Returns (y, mean, rstd); mean and rstd have shape x.shape[:-nd]."""
    x = np.asarray(x, dtype=np.float64)
    ax = _row_axes(x, nd)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        mean = x.mean(axis=ax, keepdims=True)
        var = ((x - mean) ** 2).mean(axis=ax, keepdims=True)
        rstd = 1.0 / np.sqrt(var + eps)
        y = (x - mean) * rstd
        if weight is not None:
            y = y * np.asarray(weight, dtype=np.float64).reshape(x.shape[x.ndim - nd :])
        if bias is not None:
            y = y + np.asarray(bias, dtype=np.float64).reshape(x.shape[x.ndim - nd :])
    lead = x.shape[: x.ndim - nd]
    return y, mean.reshape(lead), rstd.reshape(lead)


def layer_norm_backward(dy, x, mean, rstd, weight=None, need_dbias=False):
    """SPEC §1: g = dy·γ; dx = rstd·(g − mean(g) − x̂·mean(g·x̂));
    dγ = Σ_rows dy·x̂; dβ = Σ_rows dy.

    The row dims are x.ndim − mean.ndim. Returns (dx, dweight or None, dbias or None)."""
    x = np.asarray(x, dtype=np.float64)
    dy = np.asarray(dy, dtype=np.float64)
    nd = x.ndim - np.ndim(mean)
    ax = _row_axes(x, nd)
    norm = x.shape[x.ndim - nd :]
    with np.errstate(invalid="ignore", over="ignore"):
        r = _per_row(rstd, nd)
        xhat = (x - _per_row(mean, nd)) * r
        g = dy if weight is None else dy * np.asarray(weight, dtype=np.float64).reshape(norm)
        dx = r * (
            g - g.mean(axis=ax, keepdims=True) - xhat * (g * xhat).mean(axis=ax, keepdims=True)
        )
        dweight = None if weight is None else _sum_rows(dy * xhat, nd, np.shape(weight))
        dbias = _sum_rows(dy, nd, norm) if need_dbias else None
    return dx, dweight, dbias


def rms_norm_forward(x, weight=None, eps=1e-6, weight_offset=0.0, bias=None, nd=1):
    """SPEC §2: rrms = 1/sqrt(mean(x²)+eps), x̂ = x·rrms, y = x̂·(γ+offset) (+ β).

    Without a weight there is no scale (the offset needs a weight). Returns (y, rrms)."""
    x = np.asarray(x, dtype=np.float64)
    ax = _row_axes(x, nd)
    norm = x.shape[x.ndim - nd :]
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        rrms = 1.0 / np.sqrt((x * x).mean(axis=ax, keepdims=True) + eps)
        y = x * rrms
        if weight is not None:
            y = y * (np.asarray(weight, dtype=np.float64).reshape(norm) + weight_offset)
        if bias is not None:
            y = y + np.asarray(bias, dtype=np.float64).reshape(norm)
    return y, rrms.reshape(x.shape[: x.ndim - nd])


def rms_norm_backward(dy, x, rrms, weight=None, need_dbias=False, weight_offset=0.0):
    """SPEC §2: g = dy·(γ+offset); dx = rrms·(g − x̂·mean(g·x̂));
    dγ = Σ_rows dy·x̂; dβ = Σ_rows dy."""
    x = np.asarray(x, dtype=np.float64)
    dy = np.asarray(dy, dtype=np.float64)
    nd = x.ndim - np.ndim(rrms)
    ax = _row_axes(x, nd)
    norm = x.shape[x.ndim - nd :]
    with np.errstate(invalid="ignore", over="ignore"):
        r = _per_row(rrms, nd)
        xhat = x * r
        g = (
            dy
            if weight is None
            else dy * (np.asarray(weight, dtype=np.float64).reshape(norm) + weight_offset)
        )
        dx = r * (g - xhat * (g * xhat).mean(axis=ax, keepdims=True))
        dweight = None if weight is None else _sum_rows(dy * xhat, nd, np.shape(weight))
        dbias = _sum_rows(dy, nd, norm) if need_dbias else None
    return dx, dweight, dbias


def fused_residual(x, residual, residual_scale=1.0, x_bias=None, dtype="float64"):
    """SPEC §3: s = x + x_bias + residual_scale·residual, rounded to x's dtype."""
    x = np.asarray(x, dtype=np.float64)
    s = x + residual_scale * np.asarray(residual, dtype=np.float64)
    if x_bias is not None:
        s = s + np.asarray(x_bias, dtype=np.float64).reshape(x.shape[x.ndim - np.ndim(x_bias) :])
    return round_to(s, dtype)


def add_norm_backward_from(dx_norm, residual_scale=1.0, ds=None, x_bias=None):
    """SPEC §3 backward, given dL/ds through the norm: dx = dL/ds (+ ds), dresidual =
    residual_scale·dx, dx_bias = Σ_rows dx (when the forward had an x_bias)."""
    dx = dx_norm if ds is None else dx_norm + np.asarray(ds, dtype=np.float64)
    dres = residual_scale * dx
    dxb = None
    if x_bias is not None:
        nd = np.ndim(x_bias)
        dxb = _sum_rows(dx, nd, np.shape(x_bias))
    return dx, dres, dxb


def ada_norm_forward(x, k=0.1, scale=2.0, eps=1e-5, nd=1):
    """SPEC §8: ŷ = (x − μ)/(s + eps), s the unbiased std; y = scale·(1 − k·ŷ)·ŷ.

    Returns (y, mean, rstd) with rstd = 1/(s + eps)."""
    x = np.asarray(x, dtype=np.float64)
    ax = _row_axes(x, nd)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        mean = x.mean(axis=ax, keepdims=True)
        s = x.std(axis=ax, ddof=1, keepdims=True)
        rstd = 1.0 / (s + eps)
        yh = (x - mean) * rstd
        y = scale * (1.0 - k * yh) * yh
    lead = x.shape[: x.ndim - nd]
    return y, mean.reshape(lead), rstd.reshape(lead)


def ada_norm_backward(dy, x, k=0.1, scale=2.0, eps=1e-5, nd=1):
    """SPEC §8 backward, φ = scale·(1 − k·ŷ) held constant: g = dy·φ and, by the chain rule
    through μ and s (∂s/∂x_i = (x_i − μ)/((H−1)·s)),
    dx = rstd·(g − mean(g)) − rstd²·Σ(g·(x − μ))·(x − μ)/((H−1)·s); a constant row (s = 0)
    drops the second term (s is held constant there)."""
    x = np.asarray(x, dtype=np.float64)
    dy = np.asarray(dy, dtype=np.float64)
    ax = _row_axes(x, nd)
    h = int(np.prod(x.shape[x.ndim - nd :]))
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        u = x - x.mean(axis=ax, keepdims=True)
        s = np.sqrt((u * u).sum(axis=ax, keepdims=True) / (h - 1))
        rstd = 1.0 / (s + eps)
        g = dy * scale * (1.0 - k * u * rstd)
        c = np.where(s > 0, rstd * rstd / ((h - 1) * np.where(s > 0, s, 1.0)), 0.0)
        dx = rstd * (g - g.mean(axis=ax, keepdims=True)) - c * (g * u).sum(axis=ax, keepdims=True) * u
    return dx


def _channel_shape(x: np.ndarray, channels_last: bool):
    """Broadcast shape of a per-channel parameter: the last dim, or dim 1 (channels first)."""
    if channels_last or x.ndim == 1:
        return (x.shape[-1],)
    return (x.shape[1],) + (1,) * (x.ndim - 2)


def dyt_forward(x, alpha, weight=None, bias=None, channels_last=True):
    """SPEC §6: y = γ·tanh(α·x) + β, γ and β per channel (last dim, or dim 1)."""
    x = np.asarray(x, dtype=np.float64)
    a = float(np.asarray(alpha, dtype=np.float64).reshape(()))
    cs = _channel_shape(x, channels_last)
    y = np.tanh(a * x)
    if weight is not None:
        y = y * np.asarray(weight, dtype=np.float64).reshape(cs)
    if bias is not None:
        y = y + np.asarray(bias, dtype=np.float64).reshape(cs)
    return y


def dyt_backward(dy, x, alpha, weight=None, need_dbias=False, channels_last=True):
    """SPEC §6 backward: (dx, dalpha [1], dweight or None, dbias or None)."""
    dy = np.asarray(dy, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    a = float(np.asarray(alpha, dtype=np.float64).reshape(()))
    cs = _channel_shape(x, channels_last)
    w = np.ones(cs) if weight is None else np.asarray(weight, dtype=np.float64).reshape(cs)
    t = np.tanh(a * x)
    with np.errstate(over="ignore"):
        s = 1.0 / np.cosh(a * x) ** 2  # sech²: 1 − t² would lose every digit where |t| → 1
    red = _channel_axes(x, channels_last)
    dx = dy * w * a * s
    dalpha = np.array([np.sum(dy * w * x * s)])
    dweight = None if weight is None else np.sum(dy * t, axis=red).reshape(np.shape(weight))
    dbias = np.sum(dy, axis=red).reshape(-1) if need_dbias else None
    return dx, dalpha, dweight, dbias


def _channel_axes(x: np.ndarray, channels_last: bool):
    """The axes a per-channel sum runs over."""
    c = x.ndim - 1 if channels_last or x.ndim == 1 else 1
    return tuple(i for i in range(x.ndim) if i != c)


def batch_norm_forward(x, weight=None, bias=None, running_mean=None, running_var=None,
                       training=True, momentum=0.1, eps=1e-5, channels_last=False):
    """SPEC §4: per channel over N and the spatial dims (channel dim 1, or the last). Returns
    (y, mean, rstd, new_running_mean, new_running_var); the running statistics are None when
    absent, and unchanged in evaluation."""
    x = np.asarray(x, dtype=np.float64)
    axes = _channel_axes(x, channels_last and x.ndim > 2)
    shape = _channel_shape(x, channels_last or x.ndim == 2)
    M = x.size // x.shape[-1 if channels_last or x.ndim == 2 else 1]
    if training:
        mean = x.mean(axis=axes)
        var = ((x - mean.reshape(shape)) ** 2).mean(axis=axes)
    else:
        mean, var = np.asarray(running_mean, np.float64), np.asarray(running_var, np.float64)
    rstd = 1.0 / np.sqrt(var + eps)
    y = (x - mean.reshape(shape)) * rstd.reshape(shape)
    if weight is not None:
        y = y * np.asarray(weight, np.float64).reshape(shape)
    if bias is not None:
        y = y + np.asarray(bias, np.float64).reshape(shape)
    rm = rv = None
    if running_mean is not None:
        rm, rv = np.asarray(running_mean, np.float64), np.asarray(running_var, np.float64)
        if training:
            rm = (1 - momentum) * rm + momentum * mean
            rv = (1 - momentum) * rv + momentum * var * M / (M - 1)
    return y, mean, rstd, rm, rv


def batch_norm_backward(dy, x, mean, rstd, weight=None, training=True, channels_last=False):
    """SPEC §4 backward: (dx, dweight, dbias); dx = γ·rstd·(dy − mean(dy) − x̂·mean(dy·x̂))
    in training, γ·rstd·dy in evaluation."""
    x = np.asarray(x, np.float64)
    dy = np.asarray(dy, np.float64)
    axes = _channel_axes(x, channels_last and x.ndim > 2)
    shape = _channel_shape(x, channels_last or x.ndim == 2)
    xhat = (x - np.asarray(mean, np.float64).reshape(shape)) * np.asarray(rstd, np.float64).reshape(shape)
    w = 1.0 if weight is None else np.asarray(weight, np.float64).reshape(shape)
    r = np.asarray(rstd, np.float64).reshape(shape)
    if training:
        dx = w * r * (dy - dy.mean(axis=axes, keepdims=True)
                      - xhat * (dy * xhat).mean(axis=axes, keepdims=True))
    else:
        dx = w * r * dy
    return dx, (dy * xhat).sum(axis=axes), dy.sum(axis=axes)


def _groups_view(x: np.ndarray, G: int, channels_last: bool):
    """x as (N, G, C/G, S) (channels to the front for channels-last data), and the inverse."""
    cl = channels_last or x.ndim == 2
    xc = np.moveaxis(x, -1, 1) if cl else x
    N, C = xc.shape[0], xc.shape[1]
    g = xc.reshape(N, G, C // G, -1)

    def back(a):
        a = a.reshape(xc.shape)
        return np.moveaxis(a, 1, -1) if cl else a

    return g, back


def group_norm_forward(x, num_groups, weight=None, bias=None, eps=1e-5, channels_last=False):
    """SPEC §5: per sample and group of C/G channels, over the group's channels and every
    spatial position. Returns (y, mean [N, G], rstd [N, G])."""
    x = np.asarray(x, np.float64)
    g, back = _groups_view(x, num_groups, channels_last)
    mean = g.mean(axis=(2, 3))
    var = ((g - mean[:, :, None, None]) ** 2).mean(axis=(2, 3))
    rstd = 1.0 / np.sqrt(var + eps)
    y = back((g - mean[:, :, None, None]) * rstd[:, :, None, None])
    shape = _channel_shape(x, channels_last or x.ndim == 2)
    if weight is not None:
        y = y * np.asarray(weight, np.float64).reshape(shape)
    if bias is not None:
        y = y + np.asarray(bias, np.float64).reshape(shape)
    return y, mean, rstd


def group_norm_backward(dy, x, mean, rstd, num_groups, weight=None, channels_last=False):
    """SPEC §5 backward: (dx, dweight, dbias); per group, g = dy·γ,
    dx = rstd·(g − mean(g) − x̂·mean(g·x̂))."""
    x = np.asarray(x, np.float64)
    dy = np.asarray(dy, np.float64)
    cl = channels_last or x.ndim == 2
    shape = _channel_shape(x, cl)
    axes = _channel_axes(x, cl)
    mean = np.asarray(mean, np.float64)
    rstd = np.asarray(rstd, np.float64)
    xg, back = _groups_view(x, num_groups, channels_last)
    xhat = back((xg - mean[:, :, None, None]) * rstd[:, :, None, None])
    w = 1.0 if weight is None else np.asarray(weight, np.float64).reshape(shape)
    gg, _ = _groups_view(dy * w, num_groups, channels_last)
    xh, _ = _groups_view(xhat, num_groups, channels_last)
    dx = back(rstd[:, :, None, None] * (gg - gg.mean(axis=(2, 3), keepdims=True)
                                        - xh * (gg * xh).mean(axis=(2, 3), keepdims=True)))
    return dx, (dy * xhat).sum(axis=axes), dy.sum(axis=axes)


def instance_norm_forward(x, weight=None, bias=None, running_mean=None, running_var=None,
                          momentum=0.1, eps=1e-5, channels_last=False):
    """SPEC §5: group norm with G = C; running statistics (if given) updated with the batch
    mean of each instance's mean and unbiased variance (torch's InstanceNorm*d). Returns
    (y, mean [N, C], rstd [N, C], new_running_mean, new_running_var)."""
    x = np.asarray(x, np.float64)
    C = x.shape[-1] if channels_last or x.ndim == 2 else x.shape[1]
    y, mean, rstd = group_norm_forward(x, C, weight, bias, eps, channels_last)
    rm = rv = None
    if running_mean is not None:
        S = x.size // (x.shape[0] * C)
        g, _ = _groups_view(x, C, channels_last)
        var_u = ((g - mean[:, :, None, None]) ** 2).sum(axis=(2, 3)) / (S - 1)
        rm = (1 - momentum) * np.asarray(running_mean, np.float64) + momentum * mean.mean(axis=0)
        rv = (1 - momentum) * np.asarray(running_var, np.float64) + momentum * var_u.mean(axis=0)
    return y, mean, rstd, rm, rv


def batch_layer_norm_forward(x, weight=None, bias=None, running=None, batch_input=True,
                             feature_input=True, momentum=0.1, eps=1e-3, delta=1e-4,
                             batch_size=None):
    """SPEC §7 (features last): batch statistics over axis 0, feature statistics over the last
    axis; `running` = (batch mean, batch var, feature mean, feature var) or None, used where a
    statistic is not of the input and updated where it is (unbiased variances). Returns
    (y, batch_mean, batch_rstd, feature_mean, feature_rstd, new_running or None)."""
    x = np.asarray(x, np.float64)
    B, F = x.shape[0], x.shape[-1]
    if batch_input:
        mb = x.mean(axis=0)
        vb = ((x - mb) ** 2).mean(axis=0)
    else:
        mb, vb = np.asarray(running[0], np.float64), np.asarray(running[1], np.float64)
    if feature_input:
        mf = x.mean(axis=-1)
        vf = ((x - mf[..., None]) ** 2).mean(axis=-1)
    else:
        mf = np.broadcast_to(np.asarray(running[2], np.float64), x.shape[:-1])
        vf = np.broadcast_to(np.asarray(running[3], np.float64), x.shape[:-1])
    rb, rf = 1 / np.sqrt(vb + eps), 1 / np.sqrt(vf + eps)
    Bw = batch_size or B
    wf, wb = 1 / Bw - delta, 1 - 1 / Bw - delta
    xb = (x - mb) * rb
    xf = (x - mf[..., None]) * rf[..., None]
    y = (wf * xf + wb * xb) / np.sqrt(F)
    if weight is not None:
        y = y * np.asarray(weight, np.float64)
    if bias is not None:
        y = y + np.asarray(bias, np.float64)
    new = None
    if running is not None:
        new = [np.asarray(r, np.float64) for r in running]
        if batch_input:
            new[0] = (1 - momentum) * new[0] + momentum * mb
            with np.errstate(divide="ignore", invalid="ignore"):  # (B = 1: never updated)
                new[1] = (1 - momentum) * new[1] + momentum * vb * B / (B - 1)
        if feature_input:
            new[2] = (1 - momentum) * new[2] + momentum * mf.mean(axis=0)
            with np.errstate(divide="ignore", invalid="ignore"):  # (F = 1: never updated)
                new[3] = (1 - momentum) * new[3] + momentum * (vf * F / (F - 1)).mean(axis=0)
    return y, mb, rb, np.ascontiguousarray(mf), np.ascontiguousarray(rf), new


def batch_layer_norm_backward(dy, x, batch_mean, batch_rstd, feature_mean, feature_rstd,
                              weight=None, batch_input=True, feature_input=True, delta=1e-4,
                              batch_size=None):
    """SPEC §7 backward: (dx, dweight, dbias), through the statistics of the input only."""
    x = np.asarray(x, np.float64)
    dy = np.asarray(dy, np.float64)
    B, F = x.shape[0], x.shape[-1]
    Bw = batch_size or B
    wf, wb = 1 / Bw - delta, 1 - 1 / Bw - delta
    mb, rb = np.asarray(batch_mean, np.float64), np.asarray(batch_rstd, np.float64)
    mf, rf = np.asarray(feature_mean, np.float64)[..., None], np.asarray(feature_rstd, np.float64)[..., None]
    w = 1.0 if weight is None else np.asarray(weight, np.float64)
    g = dy * w / np.sqrt(F)
    xb, xf = (x - mb) * rb, (x - mf) * rf
    if batch_input:
        dxb = rb * (g - g.mean(axis=0) - xb * (g * xb).mean(axis=0))
    else:
        dxb = rb * g
    if feature_input:
        dxf = rf * (g - g.mean(axis=-1, keepdims=True) - xf * (g * xf).mean(axis=-1, keepdims=True))
    else:
        dxf = rf * g
    axes = tuple(range(x.ndim - 1))
    return (wf * dxf + wb * dxb, (dy * (wf * xf + wb * xb) / np.sqrt(F)).sum(axis=axes),
            dy.sum(axis=axes))


# SPEC §12: layer-normalized recurrent cells. Weights as torch.nn.LSTM / GRU / RNN store
# them (gates stacked along dim 0: LSTM i, f, g, o; GRU r, z, n); `ln` holds the LN gains and
# shifts ({"x": (γ, β), "h": (γ, β), "c": (γ, β)} over 4H / 3H / H values, or per gate with
# per_gate=True), or is None for the plain cell (torch's own, which the tests check the
# layout conventions against).


def _rnn_ln(v, gb, eps, per_gate, gates):
    if gb is None:
        return v
    g, b = (np.asarray(a, np.float64) for a in gb)
    if per_gate:
        parts = np.split(v, gates, axis=-1)
        v = np.concatenate([(p - p.mean(-1, keepdims=True))
                            / np.sqrt(p.var(-1, keepdims=True) + eps) for p in parts], axis=-1)
    else:
        v = (v - v.mean(-1, keepdims=True)) / np.sqrt(v.var(-1, keepdims=True) + eps)
    return v * g + b


def _sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def ln_lstm_cell(x, h, c, w_ih, w_hh, b, ln=None, eps=1e-5, per_gate=False):
    """a = LN_h(W_hh·h) + LN_x(W_ih·x) + b (b: torch's b_ih + b_hh); i, f, g, o =
    σ, σ, tanh, σ; c' = f·c + i·g; h' = o·tanh(LN_c(c')). Returns (h', c')."""
    x, h, c = (np.asarray(a, np.float64) for a in (x, h, c))
    ln = ln or {}
    a = (_rnn_ln(x @ np.asarray(w_ih, np.float64).T, ln.get("x"), eps, per_gate, 4)
         + _rnn_ln(h @ np.asarray(w_hh, np.float64).T, ln.get("h"), eps, per_gate, 4))
    if b is not None:
        a = a + np.asarray(b, np.float64)
    i, f, g, o = np.split(a, 4, axis=-1)
    c2 = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
    return _sigmoid(o) * np.tanh(_rnn_ln(c2, ln.get("c"), eps, False, 1)), c2


def ln_gru_cell(x, h, w_ih, w_hh, b_ih=None, b_hh=None, ln=None, eps=1e-5, per_gate=False):
    """gx = LN_x(W_ih·x) + b_ih, gh = LN_h(W_hh·h) + b_hh; r = σ(gx_r + gh_r),
    z = σ(gx_z + gh_z), n = tanh(gx_n + r·gh_n), h' = (1 − z)·n + z·h."""
    x, h = (np.asarray(a, np.float64) for a in (x, h))
    ln = ln or {}
    gx = _rnn_ln(x @ np.asarray(w_ih, np.float64).T, ln.get("x"), eps, per_gate, 3)
    gh = _rnn_ln(h @ np.asarray(w_hh, np.float64).T, ln.get("h"), eps, per_gate, 3)
    if b_ih is not None:
        gx = gx + np.asarray(b_ih, np.float64)
    if b_hh is not None:
        gh = gh + np.asarray(b_hh, np.float64)
    xr, xz, xn = np.split(gx, 3, axis=-1)
    hr, hz, hn = np.split(gh, 3, axis=-1)
    r, z = _sigmoid(xr + hr), _sigmoid(xz + hz)
    n = np.tanh(xn + r * hn)
    return (1.0 - z) * n + z * h


def ln_rnn_cell(x, h, w_ih, w_hh, b=None, ln=None, eps=1e-5, nonlinearity="tanh"):
    """h' = act(LN(W_ih·x + W_hh·h + b)) (b: torch's b_ih + b_hh), act = tanh or relu."""
    x, h = (np.asarray(a, np.float64) for a in (x, h))
    a = x @ np.asarray(w_ih, np.float64).T + h @ np.asarray(w_hh, np.float64).T
    if b is not None:
        a = a + np.asarray(b, np.float64)
    a = _rnn_ln(a, (ln or {}).get("x"), eps, False, 1)
    return np.tanh(a) if nonlinearity == "tanh" else np.maximum(a, 0.0)


def _rnn_ln_backward(v, gb, eps, per_gate, gates, dy):
    """Backward of _rnn_ln: (dv, dγ, dβ) (None, None for an absent LN: dv = dy)."""
    if gb is None:
        return dy, None, None
    g = np.asarray(gb[0], np.float64)
    parts_v = np.split(v, gates, axis=-1) if per_gate else [v]
    parts_dy = np.split(dy * g, gates, axis=-1) if per_gate else [dy * g]
    xh_all, dv_all = [], []
    for pv, pg in zip(parts_v, parts_dy):
        rstd = 1.0 / np.sqrt(pv.var(-1, keepdims=True) + eps)
        xh = (pv - pv.mean(-1, keepdims=True)) * rstd
        dv_all.append(rstd * (pg - pg.mean(-1, keepdims=True)
                              - xh * (pg * xh).mean(-1, keepdims=True)))
        xh_all.append(xh)
    xh = np.concatenate(xh_all, axis=-1)
    lead = tuple(range(dy.ndim - 1))
    return np.concatenate(dv_all, axis=-1), (dy * xh).sum(axis=lead), dy.sum(axis=lead)


def ln_lstm_cell_backward(x, h, c, w_ih, w_hh, b, ln, dh2, dc2, eps=1e-5, per_gate=False):
    """Gradients of ln_lstm_cell given dh' and dc' (the gradient reaching c' from later
    steps): {"x", "h", "c", "w_ih", "w_hh", "b", and "ln_x", "ln_h", "ln_c" as (dγ, dβ)}."""
    x, h, c, w_ih, w_hh = (np.asarray(a, np.float64) for a in (x, h, c, w_ih, w_hh))
    ln = ln or {}
    px, ph = x @ w_ih.T, h @ w_hh.T
    a = _rnn_ln(px, ln.get("x"), eps, per_gate, 4) + _rnn_ln(ph, ln.get("h"), eps, per_gate, 4)
    if b is not None:
        a = a + np.asarray(b, np.float64)
    ai, af, ag, ao = np.split(a, 4, axis=-1)
    i, f, g, o = _sigmoid(ai), _sigmoid(af), np.tanh(ag), _sigmoid(ao)
    c2 = f * c + i * g
    tc = np.tanh(_rnn_ln(c2, ln.get("c"), eps, False, 1))
    do = dh2 * tc
    dcn = dh2 * o * (1.0 - tc * tc)
    dc2_ln, dgc, dbc = _rnn_ln_backward(c2, ln.get("c"), eps, False, 1, dcn)
    dc2 = np.asarray(dc2, np.float64) + dc2_ln
    da = np.concatenate([dc2 * g * i * (1 - i), dc2 * c * f * (1 - f), dc2 * i * (1 - g * g),
                         do * o * (1 - o)], axis=-1)
    dpx, dgx, dbx = _rnn_ln_backward(px, ln.get("x"), eps, per_gate, 4, da)
    dph, dgh, dbh = _rnn_ln_backward(ph, ln.get("h"), eps, per_gate, 4, da)
    return {"x": dpx @ w_ih, "h": dph @ w_hh, "c": dc2 * f, "w_ih": dpx.T @ x,
            "w_hh": dph.T @ h, "b": da.sum(axis=0), "ln_x": (dgx, dbx), "ln_h": (dgh, dbh),
            "ln_c": (dgc, dbc)}


def ln_gru_cell_backward(x, h, w_ih, w_hh, b_ih, b_hh, ln, dh2, eps=1e-5, per_gate=False):
    """Gradients of ln_gru_cell given dh': {"x", "h", "w_ih", "w_hh", "b_ih", "b_hh", "ln_x",
    "ln_h"}."""
    x, h, w_ih, w_hh = (np.asarray(a, np.float64) for a in (x, h, w_ih, w_hh))
    ln = ln or {}
    px, ph = x @ w_ih.T, h @ w_hh.T
    gx = _rnn_ln(px, ln.get("x"), eps, per_gate, 3)
    gh = _rnn_ln(ph, ln.get("h"), eps, per_gate, 3)
    if b_ih is not None:
        gx = gx + np.asarray(b_ih, np.float64)
    if b_hh is not None:
        gh = gh + np.asarray(b_hh, np.float64)
    xr, xz, xn = np.split(gx, 3, axis=-1)
    hr, hz, hn = np.split(gh, 3, axis=-1)
    r, z = _sigmoid(xr + hr), _sigmoid(xz + hz)
    n = np.tanh(xn + r * hn)
    dan = dh2 * (1.0 - z) * (1.0 - n * n)
    dar = dan * hn * r * (1.0 - r)
    daz = dh2 * (h - n) * z * (1.0 - z)
    dgx = np.concatenate([dar, daz, dan], axis=-1)
    dgh = np.concatenate([dar, daz, dan * r], axis=-1)
    dpx, dgmx, dbx = _rnn_ln_backward(px, ln.get("x"), eps, per_gate, 3, dgx)
    dph, dgmh, dbh = _rnn_ln_backward(ph, ln.get("h"), eps, per_gate, 3, dgh)
    return {"x": dpx @ w_ih, "h": dph @ w_hh + dh2 * z, "w_ih": dpx.T @ x, "w_hh": dph.T @ h,
            "b_ih": dgx.sum(axis=0), "b_hh": dgh.sum(axis=0), "ln_x": (dgmx, dbx),
            "ln_h": (dgmh, dbh)}


def ln_rnn_cell_backward(x, h, w_ih, w_hh, b, ln, dh2, eps=1e-5, nonlinearity="tanh"):
    """Gradients of ln_rnn_cell given dh': {"x", "h", "w_ih", "w_hh", "b", "ln_x"}."""
    x, h, w_ih, w_hh = (np.asarray(a, np.float64) for a in (x, h, w_ih, w_hh))
    a = x @ w_ih.T + h @ w_hh.T
    if b is not None:
        a = a + np.asarray(b, np.float64)
    u = _rnn_ln(a, (ln or {}).get("x"), eps, False, 1)
    du = dh2 * (1.0 - np.tanh(u) ** 2) if nonlinearity == "tanh" else dh2 * (u > 0)
    da, dg, dbl = _rnn_ln_backward(a, (ln or {}).get("x"), eps, False, 1, du)
    return {"x": da @ w_ih, "h": da @ w_hh, "w_ih": da.T @ x, "w_hh": da.T @ h,
            "b": da.sum(axis=0), "ln_x": (dg, dbl)}


def rnn_sequence(step, xs, state, reverse=False):
    """Runs `step(x_t, state) -> state` over xs (T, B, I) in time order (or reversed);
    `state` is h or a tuple whose first element is h. Returns (hs (T, B, H) in xs's time
    order, the final state)."""
    xs = np.asarray(xs, np.float64)
    hs = [None] * xs.shape[0]
    order = range(xs.shape[0] - 1, -1, -1) if reverse else range(xs.shape[0])
    for t in order:
        state = step(xs[t], state)
        hs[t] = state[0] if isinstance(state, tuple) else state
    return np.stack(hs), state


RNN_CELLS = ("lstm", "gru", "rnn_tanh", "rnn_relu")
RNN_GATES = {"lstm": 4, "gru": 3, "rnn_tanh": 1, "rnn_relu": 1}


def _zoneout_at(m, t):
    """The zoneout mask of step t: an array [T, B, H], a constant, or None (0)."""
    if m is None:
        return 0.0
    return np.asarray(m, np.float64)[t] if np.ndim(m) == 3 else float(m)


def _ln_params(cell, p):
    ln = {"x": (p.get("ln_x_weight"), p.get("ln_x_bias"))}
    if cell in ("lstm", "gru"):
        ln["h"] = (p.get("ln_h_weight"), p.get("ln_h_bias"))
    if cell == "lstm":
        ln["c"] = (p.get("ln_c_weight"), p.get("ln_c_bias"))
    width = {"x": p["w_ih"].shape[0] if cell in ("lstm", "gru") else p["w_hh"].shape[1],
             "h": p["w_hh"].shape[0], "c": p["w_hh"].shape[1]}
    return {k: (np.ones(width[k]) if g is None else np.asarray(g, np.float64),
                np.zeros(width[k]) if b is None else np.asarray(b, np.float64))
            for k, (g, b) in ln.items()}


def _bias_sum(p):
    n = p["w_hh"].shape[0]
    return sum(np.asarray(p[k], np.float64) if p.get(k) is not None else np.zeros(n)
               for k in ("b_ih", "b_hh"))


def _cell_step(cell, p, ln, x, h, c, eps, per_gate):
    """(h̃, c̃) of one step without zoneout (c̃ None except for LSTM)."""
    if cell == "lstm":
        return ln_lstm_cell(x, h, c, p["w_ih"], p["w_hh"], _bias_sum(p), ln, eps, per_gate)
    if cell == "gru":
        return ln_gru_cell(x, h, p["w_ih"], p["w_hh"], p.get("b_ih"), p.get("b_hh"), ln, eps,
                           per_gate), None
    return ln_rnn_cell(x, h, p["w_ih"], p["w_hh"], _bias_sum(p), ln, eps,
                       "tanh" if cell == "rnn_tanh" else "relu"), None


def ln_rnn_sequence(cell, x, p, h0=None, c0=None, eps=1e-5, per_gate=False, reverse=False,
                    zoneout_h=None, zoneout_c=None):
    """SPEC §12 over a whole sequence, float64: x (T, B, I); p holds w_ih, w_hh and optionally
    b_ih, b_hh, ln_{x,h,c}_{weight,bias}; zoneout (Krueger et al.): h' = m·h + (1 − m)·h̃,
    c' = m_c·c + (1 − m_c)·c̃ with h̃ from c̃, m a mask [T, B, H] or a constant. Returns
    (y (T, B, H), h_n, c_n (None but for LSTM))."""
    x = np.asarray(x, np.float64)
    T, B = x.shape[:2]
    H = p["w_hh"].shape[1]
    ln = _ln_params(cell, p)
    h = np.zeros((B, H)) if h0 is None else np.asarray(h0, np.float64)
    c = np.zeros((B, H)) if c0 is None else np.asarray(c0, np.float64)
    y = np.zeros((T, B, H))
    for t in (range(T - 1, -1, -1) if reverse else range(T)):
        ht, ct = _cell_step(cell, p, ln, x[t], h, c, eps, per_gate)
        mh = _zoneout_at(zoneout_h, t)
        h = mh * h + (1.0 - mh) * ht
        if cell == "lstm":
            mc = _zoneout_at(zoneout_c, t)
            c = mc * c + (1.0 - mc) * ct
        y[t] = h
    return y, h, (c if cell == "lstm" else None)


def ln_rnn_sequence_backward(cell, x, p, dy=None, dh_n=None, dc_n=None, h0=None, c0=None,
                             eps=1e-5, per_gate=False, reverse=False, zoneout_h=None,
                             zoneout_c=None):
    """Backpropagation through time of ln_rnn_sequence, composed from the cell backwards:
    {"x", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh", "ln_x_weight", "ln_x_bias", ...}."""
    x = np.asarray(x, np.float64)
    T, B = x.shape[:2]
    H = p["w_hh"].shape[1]
    ln = _ln_params(cell, p)
    h = np.zeros((B, H)) if h0 is None else np.asarray(h0, np.float64)
    c = np.zeros((B, H)) if c0 is None else np.asarray(c0, np.float64)
    order = list(range(T - 1, -1, -1) if reverse else range(T))
    prev = {}
    for t in order:
        prev[t] = (h, c)
        ht, ct = _cell_step(cell, p, ln, x[t], h, c, eps, per_gate)
        mh = _zoneout_at(zoneout_h, t)
        h = mh * h + (1.0 - mh) * ht
        if cell == "lstm":
            mc = _zoneout_at(zoneout_c, t)
            c = mc * c + (1.0 - mc) * ct
    g = {"x": np.zeros_like(x), "w_ih": np.zeros(p["w_ih"].shape),
         "w_hh": np.zeros(p["w_hh"].shape), "b_ih": 0.0, "b_hh": 0.0}
    for k in ln:
        g[f"ln_{k}_weight"], g[f"ln_{k}_bias"] = 0.0, 0.0
    dh = np.zeros((B, H)) if dh_n is None else np.asarray(dh_n, np.float64).copy()
    dc = np.zeros((B, H)) if dc_n is None else np.asarray(dc_n, np.float64).copy()
    for t in reversed(order):
        if dy is not None:
            dh = dh + np.asarray(dy, np.float64)[t]
        hp, cp = prev[t]
        mh = _zoneout_at(zoneout_h, t)
        dht = (1.0 - mh) * dh
        if cell == "lstm":
            mc = _zoneout_at(zoneout_c, t)
            r = ln_lstm_cell_backward(x[t], hp, cp, p["w_ih"], p["w_hh"], _bias_sum(p), ln,
                                      dht, (1.0 - mc) * dc, eps, per_gate)
            dc = r["c"] + mc * dc
            r["b_ih"] = r["b_hh"] = r["b"]
        elif cell == "gru":
            r = ln_gru_cell_backward(x[t], hp, p["w_ih"], p["w_hh"], p.get("b_ih"),
                                     p.get("b_hh"), ln, dht, eps, per_gate)
        else:
            r = ln_rnn_cell_backward(x[t], hp, p["w_ih"], p["w_hh"], _bias_sum(p), ln, dht, eps,
                                     "tanh" if cell == "rnn_tanh" else "relu")
            r["b_ih"] = r["b_hh"] = r["b"]
        dh = r["h"] + mh * dh
        g["x"][t] = r["x"]
        for k in ("w_ih", "w_hh", "b_ih", "b_hh"):
            g[k] = g[k] + r[k]
        for k in ln:
            g[f"ln_{k}_weight"] = g[f"ln_{k}_weight"] + r[f"ln_{k}"][0]
            g[f"ln_{k}_bias"] = g[f"ln_{k}_bias"] + r[f"ln_{k}"][1]
    g["h0"], g["c0"] = dh, (dc if cell == "lstm" else None)
    n = p["w_hh"].shape[0]
    for k in ("b_ih", "b_hh"):
        if np.ndim(g[k]) == 0:
            g[k] = np.zeros(n)
    return g


# ---------------------------------------------------------------------------------------------
# Parameter norms (SPEC §9–10) and streaming standardization (SPEC §11)
# ---------------------------------------------------------------------------------------------


def _wn_axes(v: np.ndarray, dim):
    """The axes weight norm reduces: all but ``dim`` (None or -1 from the declarations: all)."""
    if dim is None or dim == -1:
        return tuple(range(v.ndim))
    return tuple(i for i in range(v.ndim) if i != dim % v.ndim)


def weight_norm_forward(v, g, dim=0):
    """SPEC §9: w = g·v/‖v‖ (norm over every dim but ``dim``); returns (w, ‖v‖ in g's shape)."""
    v = np.asarray(v, np.float64)
    axes = _wn_axes(v, dim)
    n = np.sqrt(np.sum(v * v, axis=axes, keepdims=True))
    gk = np.asarray(g, np.float64).reshape(n.shape)
    return gk * v / n, n.reshape(np.shape(g))


def weight_norm_backward(dw, v, g, dim=0):
    """dg = Σ(dw·v)/‖v‖, dv = (g/‖v‖)·dw − (g·dg/‖v‖²)·v; (dv, dg in g's shape)."""
    v, dw = np.asarray(v, np.float64), np.asarray(dw, np.float64)
    axes = _wn_axes(v, dim)
    n = np.sqrt(np.sum(v * v, axis=axes, keepdims=True))
    gk = np.asarray(g, np.float64).reshape(n.shape)
    dg = np.sum(dw * v, axis=axes, keepdims=True) / n
    dv = gk / n * dw - gk * dg / n**2 * v
    return dv, dg.reshape(np.shape(g))


def _normalize(x, eps):
    return x / max(np.linalg.norm(x), eps)


def spectral_norm_forward(W, u, v, n_power_iterations=1, eps=1e-12):
    """SPEC §10 for a matrix W: n iterations of u = normalize(W v), v = normalize(Wᵀu); σ =
    uᵀWv; returns (W/σ, σ, u, v)."""
    W = np.asarray(W, np.float64)
    u, v = np.asarray(u, np.float64).copy(), np.asarray(v, np.float64).copy()
    for _ in range(n_power_iterations):
        u = _normalize(W @ v, eps)
        v = _normalize(W.T @ u, eps)
    sigma = float(u @ W @ v)
    return W / sigma, sigma, u, v


def spectral_norm_backward(dout, W, u, v, sigma):
    """u, v constants: dW = dout/σ − (⟨dout, W⟩/σ²)·u vᵀ."""
    dout, W = np.asarray(dout, np.float64), np.asarray(W, np.float64)
    return dout / sigma - np.sum(dout * W) / sigma**2 * np.outer(u, v)


def moments_reference(x, axis=None):
    """(count, mean, m2) over ``axis`` in float64, by two passes."""
    x = np.asarray(x, np.float64)
    n = x.size // max(1, np.mean(x, axis=axis).size) if x.size else 0
    mean = np.mean(x, axis=axis)
    m2 = np.sum((x - np.mean(x, axis=axis, keepdims=True)) ** 2, axis=axis)
    return n, mean, m2


# ---------------------------------------------------------------------------------------------
# 3. finite differences
# ---------------------------------------------------------------------------------------------


def numerical_grad(loss, arrays: dict, wrt: str, h: float = 1e-6) -> np.ndarray:
    """Central differences of the scalar `loss(**arrays)` w.r.t. arrays[wrt] (float64).

    Error O(h²·f''') + O(u·|loss|/h): about 1e-8 relative for well-scaled inputs."""
    base = {k: (None if v is None else np.array(v, dtype=np.float64)) for k, v in arrays.items()}
    target = base[wrt]
    grad = np.zeros_like(target)
    flat = target.reshape(-1)
    gflat = grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + h
        fp = loss(**base)
        flat[i] = old - h
        fm = loss(**base)
        flat[i] = old
        gflat[i] = (fp - fm) / (2.0 * h)
    return grad


# ---------------------------------------------------------------------------------------------
# 4. the ops, defined once
# ---------------------------------------------------------------------------------------------
#
# A case is a dict of float64 NumPy arrays (already rounded to the dtype they will be stored
# in) under the names  x, residual, weight, bias, x_bias, dy, ds  (absent: None), and the
# scalars  eps, weight_offset, residual_scale, normalized_shape (None: let the op infer it),
# nd (the number of normalized dims).


@dataclass(frozen=True)
class RowOp:
    name: str  # normkit's function name
    kind: str  # "layer" or "rms"
    fused: bool  # residual add in front of the norm
    eps: float  # the functional API's default eps

    @property
    def stats(self):
        return ("mean", "rstd") if self.kind == "layer" else ("rrms",)

    def __str__(self):
        return self.name


OPS = {
    "layer_norm": RowOp("layer_norm", "layer", False, 1e-5),
    "rms_norm": RowOp("rms_norm", "rms", False, 1e-6),
    "add_layer_norm": RowOp("add_layer_norm", "layer", True, 1e-5),
    "add_rms_norm": RowOp("add_rms_norm", "rms", True, 1e-6),
}
OP_NAMES = tuple(OPS)


def reference_norm(op: RowOp, case: dict, xin) -> dict:
    """The norm part of op on input `xin` (x, or s for the fused ops): y and statistics."""
    nd = case["nd"]
    if op.kind == "layer":
        y, mean, rstd = layer_norm_forward(xin, case["weight"], case["bias"], case["eps"], nd)
        return {"y": y, "mean": mean, "rstd": rstd}
    y, rrms = rms_norm_forward(
        xin, case["weight"], case["eps"], case["weight_offset"], case["bias"], nd
    )
    return {"y": y, "rrms": rrms}


def reference_forward(op: RowOp, case: dict, dtype: str) -> dict:
    """Reference outputs of op: y, the statistics, and s for the fused ops (rounded to dtype)."""
    if not op.fused:
        return reference_norm(op, case, case["x"])
    s = fused_residual(case["x"], case["residual"], case["residual_scale"], case["x_bias"], dtype)
    out = reference_norm(op, case, s)
    out["s"] = s
    return out


def reference_backward(op: RowOp, case: dict, xin, stats: dict) -> dict:
    """Reference gradients of op given the saved input (x, or s) and statistics.

    Returns dx, dweight, dbias (None when the parameter is absent) and, for the fused ops,
    dresidual and dx_bias."""
    need_db = case["bias"] is not None
    if op.kind == "layer":
        dx, dw, db = layer_norm_backward(
            case["dy"], xin, stats["mean"], stats["rstd"], case["weight"], need_db
        )
    else:
        dx, dw, db = rms_norm_backward(
            case["dy"], xin, stats["rrms"], case["weight"], need_db, case["weight_offset"]
        )
    out = {"dx": dx, "dweight": dw, "dbias": db}
    if op.fused:
        dx, dres, dxb = add_norm_backward_from(
            dx, case["residual_scale"], case["ds"], case["x_bias"]
        )
        out.update(dx=dx, dresidual=dres, dx_bias=dxb)
    return out


def reference_loss(op: RowOp, case: dict, **arrays) -> float:
    """L = Σ y·dy (+ Σ s·ds for the fused ops), with `arrays` replacing entries of case."""
    c = dict(case, **arrays)
    out = reference_forward(op, c, "float64")
    loss = float(np.sum(out["y"] * c["dy"]))
    if op.fused and c["ds"] is not None:
        loss += float(np.sum(out["s"] * c["ds"]))
    return loss


def grad_inputs(op: RowOp, case: dict):
    """The inputs op differentiates with respect to, and the name of each gradient."""
    names = [("x", "dx")]
    if op.fused:
        names.append(("residual", "dresidual"))
    for p, g in (("weight", "dweight"), ("bias", "dbias"), ("x_bias", "dx_bias")):
        if case.get(p) is not None:
            names.append((p, g))
    return names


def _kw(case: dict, arrays: dict, names):
    return {k: arrays[k] for k in names if arrays.get(k) is not None}


def _shape_kw(case: dict):
    ns = case.get("normalized_shape")
    return {} if ns is None else {"normalized_shape": ns}


def kernel_forward(nk, op: RowOp, case: dict, arrays: dict) -> dict:
    """Call normkit's <op>_forward on library arrays; returns a dict like reference_forward."""
    kw = _kw(case, arrays, ("weight", "bias"))
    kw.update(_shape_kw(case), eps=case["eps"])
    if op.kind == "rms" and case["weight_offset"] != 0.0:
        kw["weight_offset"] = case["weight_offset"]
    if op.fused:
        kw.update(_kw(case, arrays, ("x_bias",)))
        if case["residual_scale"] != 1.0:
            kw["residual_scale"] = case["residual_scale"]
        res = getattr(nk, op.name + "_forward")(arrays["x"], arrays["residual"], **kw)
        names = ("y", "s") + op.stats
    else:
        res = getattr(nk, op.name + "_forward")(arrays["x"], **kw)
        names = ("y",) + op.stats
    assert isinstance(res, tuple) and len(res) == len(names), f"{op}_forward returned {type(res)}"
    return dict(zip(names, res))


def kernel_call(
    nk, op: RowOp, case: dict, arrays: dict, *, out=None, residual_out=None, return_residual=False
):
    """Call the plain normkit.<op> (y only, or (y, s) with return_residual)."""
    kw = _kw(case, arrays, ("weight", "bias"))
    kw.update(_shape_kw(case), eps=case["eps"])
    if out is not None:
        kw["out"] = out
    if op.kind == "rms" and case["weight_offset"] != 0.0:
        kw["weight_offset"] = case["weight_offset"]
    if op.fused:
        kw.update(_kw(case, arrays, ("x_bias",)))
        if case["residual_scale"] != 1.0:
            kw["residual_scale"] = case["residual_scale"]
        if residual_out is not None:
            kw["residual_out"] = residual_out
        if return_residual:
            kw["return_residual"] = True
        return getattr(nk, op.name)(arrays["x"], arrays["residual"], **kw)
    return getattr(nk, op.name)(arrays["x"], **kw)


def kernel_backward(nk, op: RowOp, case: dict, arrays: dict, saved: dict) -> dict:
    """Call normkit's <op>_backward. `saved` holds the forward's x or s and its statistics
    (library arrays); `arrays` holds dy, ds and the parameters."""
    fn = getattr(nk, op.name + "_backward")
    w, b = arrays.get("weight"), arrays.get("bias")
    if op.kind == "layer":
        args = (arrays["dy"], saved["s" if op.fused else "x"], saved["mean"], saved["rstd"])
        kw = {"weight": w, "bias": b}
    else:
        args = (arrays["dy"], saved["s" if op.fused else "x"], saved["rrms"])
        kw = {"weight": w, "bias": b}
        if case["weight_offset"] != 0.0:
            kw["weight_offset"] = case["weight_offset"]
    if op.fused:
        if case["residual_scale"] != 1.0:
            kw["residual_scale"] = case["residual_scale"]
        if arrays.get("ds") is not None:
            kw["ds"] = arrays["ds"]
        if arrays.get("x_bias") is not None:
            kw["x_bias"] = arrays["x_bias"]
        res = fn(*args, **kw)
        names = ("dx", "dresidual", "dweight", "dbias", "dx_bias")
    else:
        res = fn(*args, **kw)
        names = ("dx", "dweight", "dbias")
    assert isinstance(res, tuple) and len(res) == len(names), f"{op}_backward returned {type(res)}"
    return dict(zip(names, res))


@dataclass(frozen=True)
class Config:
    """Which optional features a case uses."""

    weight: bool = True
    bias: bool = True
    mixed: bool = False  # float32 weight / bias / x_bias with 16-bit x
    weight_offset: float = 0.0  # RMS only
    residual_scale: float = 1.0  # fused only
    x_bias: bool = False  # fused only
    ds: bool = False  # fused only: an incoming gradient on s
    normalized_shape: object = None  # passed explicitly when not None

    def label(self):
        parts = ["w" if self.weight else "", "b" if self.bias else ""]
        parts = ["".join(parts) or "noaffine"]
        if self.mixed:
            parts.append("mixed")
        if self.weight_offset:
            parts.append(f"off{self.weight_offset:g}")
        if self.residual_scale != 1.0:
            parts.append(f"rs{self.residual_scale:g}")
        if self.x_bias:
            parts.append("xb")
        if self.ds:
            parts.append("ds")
        return "-".join(parts)


def config_variants(op: RowOp, dtype: str):
    """A small set of Configs that together use every feature of op at least once."""
    rms, fused, half = op.kind == "rms", op.fused, dtype in HALF_DTYPES
    v = [
        Config(
            True,
            True,
            mixed=half,
            weight_offset=1.0 if rms else 0.0,
            residual_scale=2.0 if fused else 1.0,
            x_bias=fused,
            ds=fused,
        ),
        Config(False, False),
        Config(True, False, residual_scale=0.5 if fused else 1.0, ds=fused),
        Config(False, True, mixed=half, x_bias=fused),
    ]
    return v


def param_dtype(dtype: str, cfg: Config) -> str:
    return "float32" if (cfg.mixed and dtype in HALF_DTYPES) else dtype


def make_case(
    op: RowOp, shape, nd: int, dtype: str, cfg: Config, seed=0, *, x_mean=0.25, x_std=1.0
) -> dict:
    """Random inputs for op, float64 values already rounded to their storage dtype.

    x ~ x_mean + x_std·N(0,1); residual, dy, ds ~ N(0,1); weight ~ 1 + 0.5·N(0,1) (N(0,0.5)
    with weight_offset=1, the zero-centred form); bias, x_bias ~ 0.5·N(0,1)."""
    rng = np.random.default_rng(seed)
    shape = tuple(shape)
    norm = shape[len(shape) - nd :]
    pdt = param_dtype(dtype, cfg)
    big = lambda: rng.standard_normal(shape)  # noqa: E731
    case = {
        "x": round_to(x_mean + x_std * rng.standard_normal(shape), dtype),
        "residual": round_to(big(), dtype) if op.fused else None,
        "weight": None,
        "bias": None,
        "x_bias": None,
        "dy": round_to(big(), dtype),
        "ds": round_to(big(), dtype) if (op.fused and cfg.ds) else None,
        "eps": op.eps,
        "weight_offset": cfg.weight_offset if op.kind == "rms" else 0.0,
        "residual_scale": cfg.residual_scale if op.fused else 1.0,
        "normalized_shape": cfg.normalized_shape,
        "nd": nd,
        "dtype": dtype,
        "param_dtype": pdt,
    }
    if case["normalized_shape"] is None and nd != 1 and not cfg.weight:
        case["normalized_shape"] = norm  # without a weight the op would normalize the last dim
    if cfg.weight:
        w = 0.5 * rng.standard_normal(norm) + (0.0 if case["weight_offset"] else 1.0)
        case["weight"] = round_to(w, pdt)
    if cfg.bias:
        case["bias"] = round_to(0.5 * rng.standard_normal(norm), pdt)
    if cfg.x_bias and op.fused:
        case["x_bias"] = round_to(0.5 * rng.standard_normal(norm), pdt)
    return case


# ---------------------------------------------------------------------------------------------
# 5. arrays: NumPy / torch, layouts, conversions
# ---------------------------------------------------------------------------------------------

LAYOUTS = (
    "contiguous",
    "row_stride",  # every leading dim has step 2 (x[::2])
    "padded_rows",  # rows contiguous, row stride H + 5, start misaligned by 3 elements
    "transposed_lead",  # leading dims swapped (strides not in decreasing order)
    "misaligned",  # flat[1 : 1 + n].reshape(shape): the data pointer is off by one element
    "negative_stride",  # x[::-1] over reversed data (NumPy only; torch: row_stride)
    "trailing_noncontig",  # the normalized dims are not contiguous: the library copies x once
)


def is_torch(a) -> bool:
    return type(a).__module__.startswith("torch")


def dtype_of(a) -> str:
    """normkit dtype name of a NumPy array or torch tensor."""
    if is_torch(a):
        return str(a.dtype).replace("torch.", "")
    dt = np.asarray(a).dtype
    return "bfloat16" if dt == BF16 else dt.name


def to_f64(a) -> np.ndarray:
    """A float64 NumPy copy of a NumPy array, torch tensor (any device) or DLPack array."""
    if is_torch(a):
        import torch

        return a.detach().to(device="cpu", dtype=torch.float64).numpy()
    return np.array(a, dtype=np.float64)


class Lib:
    """Builds arrays of one array library (NumPy, or torch on `device`) from float64 values.

    ``Lib("emu", "cuda")`` is the emulation build's CUDA library: every array is a NumPy
    array built as NumPy's and then presented as device memory (``emucuda.EmuCudaArray``)."""

    def __new__(cls, name: str = "numpy", device: str = "cpu"):
        if cls is Lib and name == "emu":
            return super().__new__(EmuLib)
        return super().__new__(cls)

    def __init__(self, name: str = "numpy", device: str = "cpu"):
        assert name in ("numpy", "torch", "emu")
        assert name == "torch" or device == "cpu" or (name == "emu" and device == "cuda")
        self.name, self.device = name, device

    def __repr__(self):
        return f"Lib({self.name}, {self.device})"

    # -- basic constructors --------------------------------------------------------------
    def torch_dtype(self, dtype: str):
        import torch

        return getattr(torch, dtype)

    def asarray(self, a64, dtype: str):
        """Contiguous array of dtype holding the float64 values a64 (exact if representable)."""
        a64 = np.ascontiguousarray(a64, dtype=np.float64)
        if self.name == "numpy":
            return a64.astype(NP_DTYPES[dtype])
        import torch

        return torch.from_numpy(a64).to(dtype=self.torch_dtype(dtype), device=self.device)

    def full(self, shape, value, dtype: str):
        if self.name == "numpy":
            return np.full(shape, value, dtype=NP_DTYPES[dtype])
        import torch

        return torch.full(tuple(shape), value, dtype=self.torch_dtype(dtype), device=self.device)

    def is_array(self, a) -> bool:
        if self.name == "numpy":
            return isinstance(a, np.ndarray)
        import torch

        return isinstance(a, torch.Tensor) and a.device.type == self.device.split(":")[0]

    def shares_memory(self, a, b) -> bool:
        if self.name == "numpy":
            return np.shares_memory(a, b)
        return a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()

    def _set(self, view, a64, dtype):
        if self.name == "numpy":
            view[...] = a64.astype(NP_DTYPES[dtype])
        else:
            view.copy_(self.asarray(a64, dtype))

    # -- layouts -----------------------------------------------------------------------
    def layout(self, a64, dtype: str, layout: str, nd: int, *, fill=float("nan")):
        """An array of dtype with values a64 whose memory follows `layout`. Memory that is not
        part of the view is filled with `fill` (NaN: reading it would show)."""
        a64 = np.asarray(a64, dtype=np.float64)
        shape = a64.shape
        lead, norm = shape[: len(shape) - nd], shape[len(shape) - nd :]
        if layout == "negative_stride" and self.name == "torch":
            layout = "row_stride"
        if layout == "transposed_lead" and len(lead) < 2:
            layout = "row_stride"
        if layout in ("row_stride", "negative_stride") and len(lead) == 0:
            layout = "misaligned"
        if layout == "contiguous":
            return self.asarray(a64, dtype)
        if layout == "row_stride":
            buf = self.full(tuple(2 * d for d in lead) + norm, fill, dtype)
            view = buf[(slice(None, None, 2),) * len(lead)]
            self._set(view, a64, dtype)
            return view
        if layout == "negative_stride":
            buf = self.asarray(a64[::-1], dtype)
            return buf[::-1]
        if layout == "padded_rows":
            H = int(np.prod(norm))
            rows = int(np.prod(lead)) if lead else 1
            buf = self.full((rows, H + 5), fill, dtype)
            view = buf[:, 3 : 3 + H]
            view = view.reshape(shape) if self.name == "numpy" else view.view(shape)
            self._set(view, a64, dtype)
            return view
        if layout == "transposed_lead":
            perm = (1, 0) + tuple(range(2, len(shape)))
            buf = self.asarray(np.transpose(a64, perm), dtype)
            return buf.transpose(perm) if self.name == "numpy" else buf.permute(perm)
        if layout == "misaligned":
            n = a64.size
            flat = self.full((n + 1,), fill, dtype)
            view = flat[1 : 1 + n].reshape(shape)
            self._set(view, a64, dtype)
            return view
        if layout == "trailing_noncontig":
            buf = self.full(shape[:-1] + (2 * shape[-1],), fill, dtype)
            view = buf[..., ::2]
            self._set(view, a64, dtype)
            return view
        raise ValueError(layout)

    def nan_out(self, shape, dtype: str, nd: int):
        """A NaN-filled output view with padding around every row (row stride H + 5, start off
        by 3 elements) and its buffer; see padding_intact."""
        shape = tuple(shape)
        lead, norm = shape[: len(shape) - nd], shape[len(shape) - nd :]
        H = int(np.prod(norm))
        rows = int(np.prod(lead)) if lead else 1
        buf = self.full((rows, H + 5), float("nan"), dtype)
        view = buf[:, 3 : 3 + H]
        view = view.reshape(shape) if self.name == "numpy" else view.view(shape)
        return view, buf

    @staticmethod
    def padding_intact(buf, view) -> bool:
        """True when every element of buf outside view is still NaN (and view is all written,
        i.e. holds no NaN — callers check that separately when NaN is a legal value)."""
        b = to_f64(buf)
        return int(np.isnan(b).sum()) == b.size - int(np.prod(view.shape))


def ids(values, name=""):
    """pytest ids such as 'H17'."""
    return [f"{name}{v}" for v in values]


def row_count(shape, nd):
    return int(math.prod(shape[: len(shape) - nd]))


class EmuLib(Lib):
    """NumPy arrays presented as CUDA memory for the emulation build (tests/emucuda.py): the
    same layouts as NumPy's, each array wrapped after it is built."""

    def __init__(self, name: str = "emu", device: str = "cuda"):
        super().__init__("emu", "cuda")
        self._np = Lib("numpy")

    def __repr__(self):
        return "Lib(emulated cuda)"

    def asarray(self, a64, dtype: str):
        return emucuda.wrap(self._np.asarray(a64, dtype))

    def full(self, shape, value, dtype: str):
        return emucuda.wrap(self._np.full(shape, value, dtype))

    def is_array(self, a) -> bool:
        return isinstance(a, emucuda.EmuCudaArray)

    def shares_memory(self, a, b) -> bool:
        return np.shares_memory(np.asarray(a), np.asarray(b))

    def layout(self, a64, dtype: str, layout: str, nd: int, *, fill=float("nan")):
        return emucuda.wrap(self._np.layout(a64, dtype, layout, nd, fill=fill))

    def nan_out(self, shape, dtype: str, nd: int):
        view, buf = self._np.nan_out(shape, dtype, nd)
        return emucuda.wrap(view), emucuda.wrap(buf)
