"""Batch layer normalization, BLN (SPEC §7; Ziaee & Çano 2022), declared once
(normkit._registry): batch statistics over the samples (one per position and feature) and
feature statistics over the features (one per sample and position), mixed by the inverse
batch size: ``y = γ·(w_f·x_f + w_b·x_b)/sqrt(F) + β``, ``w_f = 1/B − δ``, ``w_b = 1 − 1/B − δ``.

Features are the last dim (``axis=-1``, the paper's layout); ``axis=1`` takes channels-first
``(N, C, *)`` data, computed over the same memory when C has unit stride (a torch
``channels_last`` tensor), else over one channels-last copy.

**The authors' modes.** Their reference layer keeps moving batch and feature statistics and
chooses at inference, per statistic, the mini-batch's or the moving one
(``batch_moving_mean`` / ``batch_moving_var``, ``feature_moving_mean`` /
``feature_moving_var``; defaults True, True, False, False). Here:

- ``use_running_batch_stats`` = their ``batch_moving_mean`` and ``batch_moving_var`` together,
  ``use_running_feature_stats`` = their ``feature_moving_mean`` and ``feature_moving_var``
  (the defaults are theirs); the mixed settings (a moving mean with a mini-batch variance)
  are not offered.
- Their moving statistics are sums over an epoch divided at its end; ours are exponential
  averages with ``momentum`` (``momentum=None``: the cumulative average over every training
  batch, their epoch average when reset each epoch), updated in the same pass as the
  forward, as batch norm's.
- Running variances are stored unbiased: the batch variance with B/(B−1) (as theirs), the
  feature variance with F/(F−1) (theirs applies B/(B−1) to it too).
- Their moving feature statistics are kept per index within the batch (shape
  ``(batchsize, ..., 1)``), so inference depends on a sample's position and needs the
  training batch size; ours are averaged over the batch, one per position
  (``x.shape[1:-1]``).
- The mixing weights at inference use the training batch size (theirs: the constructor's
  ``batchsize``; ours: ``batch_size=``, which the module records in training).
"""

from __future__ import annotations


import numpy as np

from . import _core
from ._arrays import (BackwardOut, _rows_compact, detach, is_torch, lib_for, misaligned_numpy,
                      refuse_out_with_grad)
from ._batch_norm import _in_place_ok, _needs_autograd, start_running, update_factor
from ._registry import Bool, Float, Like, Op, OptionalTensor, Out, SliceStat, Tensor

__all__ = ["batch_layer_norm", "batch_layer_norm_forward", "batch_layer_norm_backward",
           "BATCH_LAYER_NORM", "BATCH_LAYER_NORM_BWD"]


def _x(lib, x):
    return lib.rows(x, len(x.shape) - 1)


def _dy(lib, dy, x):
    return lib.rows(dy, len(dy.shape) - 1)


BATCH_LAYER_NORM_BWD = Op(
    "batch_layer_norm_bwd",
    inputs=[Tensor("dy", prep=_dy), Tensor("x", prep=_x),
            OptionalTensor("weight", contiguous=True), OptionalTensor("bias", shape_only=True),
            Tensor("batch_mean"), Tensor("batch_rstd"), Tensor("feature_mean"),
            Tensor("feature_rstd"), Bool("batch_stats_of_input"),
            Bool("feature_stats_of_input"), Float("delta"), Float("batch_size"),
            Bool("need_dx"), Bool("need_dweight"), Bool("need_dbias")],
    outputs=[Out("dx", Like("x", strides="preserve"), grad_of="x"),
             Out("dweight", Like("weight"), grad_of="weight"),
             Out("dbias", Like("bias"), grad_of="bias")],
    kernel=lambda dy, x, weight, bias, batch_mean, batch_rstd, feature_mean, feature_rstd,
    batch_stats_of_input, feature_stats_of_input, delta, batch_size, need_dx, need_dweight,
    need_dbias, dx, dweight, dbias, stream: _core.batch_layer_norm_backward(
        dy, x, weight, batch_mean, batch_rstd, feature_mean, feature_rstd, dx, dweight, dbias,
        batch_stats_of_input, feature_stats_of_input, delta, batch_size, stream),
)


def _forward_kernel(x, weight, bias, running_batch_mean, running_batch_var,
                    running_feature_mean, running_feature_var, batch_stats_of_input,
                    feature_stats_of_input, momentum, eps, delta, batch_size, y, batch_mean,
                    batch_rstd, feature_mean, feature_rstd, new_running_batch_mean,
                    new_running_batch_var, new_running_feature_mean, new_running_feature_var,
                    stream):
    run = [running_batch_mean, running_batch_var, running_feature_mean, running_feature_var]
    new = [new_running_batch_mean, new_running_batch_var, new_running_feature_mean,
           new_running_feature_var]
    of_input = [batch_stats_of_input] * 2 + [feature_stats_of_input] * 2
    use = list(run)
    for k in range(4):
        if start_running(new[k], run[k]) is not None and of_input[k]:
            use[k] = new[k]
    _core.batch_layer_norm_forward(x, weight, bias, *use, y, batch_mean, batch_rstd,
                                   feature_mean, feature_rstd, batch_stats_of_input,
                                   feature_stats_of_input, momentum, eps, delta, batch_size,
                                   stream)


BATCH_LAYER_NORM = Op(
    "batch_layer_norm_fwd",
    inputs=[Tensor("x", differentiable=True, prep=_x),
            OptionalTensor("weight", differentiable=True, contiguous=True),
            OptionalTensor("bias", differentiable=True, contiguous=True),
            OptionalTensor("running_batch_mean", contiguous=True),
            OptionalTensor("running_batch_var", contiguous=True),
            OptionalTensor("running_feature_mean", contiguous=True),
            OptionalTensor("running_feature_var", contiguous=True),
            Bool("batch_stats_of_input"), Bool("feature_stats_of_input"), Float("momentum"),
            Float("eps"), Float("delta"), Float("batch_size")],
    outputs=[Out("y", Like("x", strides="preserve")),
             Out("batch_mean", SliceStat("x", 1), differentiable=False, backward_only=True),
             Out("batch_rstd", SliceStat("x", 1), differentiable=False, backward_only=True),
             Out("feature_mean", SliceStat("x", None, -1), differentiable=False,
                 backward_only=True),
             Out("feature_rstd", SliceStat("x", None, -1), differentiable=False,
                 backward_only=True),
             Out("new_running_batch_mean", Like("running_batch_mean"), differentiable=False),
             Out("new_running_batch_var", Like("running_batch_var"), differentiable=False),
             Out("new_running_feature_mean", Like("running_feature_mean"),
                 differentiable=False),
             Out("new_running_feature_var", Like("running_feature_var"),
                 differentiable=False)],
    kernel=_forward_kernel,
    backward=BATCH_LAYER_NORM_BWD,
    doc="Batch layer norm (SPEC §7); returns y, the statistics used (batch: x.shape[1:], "
        "feature: x.shape[:-1]) and the running statistics after this call.",
)


# ---------------------------------------------------------------------------------------
# The functional API
# ---------------------------------------------------------------------------------------


def features_last(x, axis):
    """x with its feature dim last (a view), and whether it was moved."""
    nd = len(x.shape)
    if nd < 2:
        raise ValueError(f"x: expected at least 2 dims, (B, *, F) or (N, C, *), got shape "
                         f"{tuple(x.shape)}")
    if isinstance(axis, bool) or not isinstance(axis, int):
        raise TypeError(f"axis: expected an int, got {type(axis).__name__}")
    if axis in (-1, nd - 1):
        return x, False
    if axis == 1:
        if is_torch(x):
            return x.movedim(1, -1), True
        if type(x) is np.ndarray:
            return np.moveaxis(x, 1, -1), True
        raise TypeError("axis: 1 needs a NumPy array or a torch tensor (pass features last)")
    raise ValueError(f"axis: expected -1 (features last) or 1 (channels first) for a {nd}-dim "
                     f"x, got {axis}")


def features_back(y, moved, like):
    """The output with its feature dim where the input had it, in the input's memory
    format (a torch tensor that was contiguous comes back contiguous)."""
    if not moved:
        return y
    if is_torch(y):
        y = y.movedim(-1, 1)
        return y.contiguous() if like.is_contiguous() and not y.is_contiguous() else y
    return np.moveaxis(y, -1, 1)


def _out_in_place(out) -> bool:
    """Whether the core can write ``out`` (features last) directly: aligned, the dims after
    the batch dim compact (else the result is computed into a temporary and copied in)."""
    if out is None:
        return True
    if misaligned_numpy(out):
        return False
    if is_torch(out):
        return _rows_compact(tuple(out.shape), tuple(out.stride()), 1, len(out.shape) - 1)
    if type(out) is np.ndarray:
        return _rows_compact(out.shape, out.strides, out.itemsize, out.ndim - 1)
    return True  # other libraries: the core names what it cannot use


def _modes(training, use_running_batch_stats, use_running_feature_stats):
    if training:
        return True, True
    return not use_running_batch_stats, not use_running_feature_stats


def _used(runs, training, b_in, f_in):
    """The running statistics a call passes on: all of them in training (updated), in
    evaluation only those it normalizes with (nothing is updated)."""
    if training:
        return list(runs)
    return [None if b_in else runs[0], None if b_in else runs[1],
            None if f_in else runs[2], None if f_in else runs[3]]


def batch_layer_norm(x, weight=None, bias=None, running_batch_mean=None, running_batch_var=None,
                     running_feature_mean=None, running_feature_var=None, training=True,
                     momentum=0.1, eps=1e-3, *, use_running_batch_stats=True,
                     use_running_feature_stats=False, delta=1e-4, batch_size=None, axis=-1,
                     out=None, num_batches_tracked=None):
    """Batch layer normalization (SPEC §7). ``training=True``: both statistics of this batch;
    the running ones, if given, updated in place (``momentum``; ``None`` = cumulative average
    with ``num_batches_tracked``). ``training=False``: the batch statistics are the running
    ones when ``use_running_batch_stats`` (else this batch's), the feature statistics the
    running ones when ``use_running_feature_stats``. ``batch_size``: B of the mixing weights
    (default: x's batch). Running shapes: batch ``x.shape[1:]``, feature ``x.shape[1:-1]``
    (features last). Returns ``y``, or writes ``out``."""
    xl, moved = features_last(x, axis)
    if out is not None and moved:
        out_l = features_last(out, axis)[0]
    else:
        out_l = out
    b_in, f_in = _modes(training, use_running_batch_stats, use_running_feature_stats)
    factor = update_factor(momentum, training, num_batches_tracked)
    bsize = float(batch_size) if batch_size is not None else 0.0
    if is_torch(x):
        if out is None and _needs_autograd(x, weight, bias):
            from .torch import _batch_layer_norm

            y = _batch_layer_norm.batch_layer_norm(
                xl, weight, bias, *_used([running_batch_mean, running_batch_var,
                                          running_feature_mean, running_feature_var],
                                         training, b_in, f_in),
                b_in, f_in, factor, eps, delta, bsize)
            return features_back(y, moved, x)
        if out is not None:
            refuse_out_with_grad("batch_layer_norm", (x, weight, bias), (out,))
    lib = lib_for(x)
    into = None if _out_in_place(out_l) else out_l
    runs = _used([running_batch_mean, running_batch_var, running_feature_mean,
                  running_feature_var], training, b_in, f_in)
    updates = [b_in, b_in, f_in, f_in]
    want = [True if out is None or into is not None else out_l, None, None, None, None]
    for r, up in zip(runs, updates):
        if r is None or not up:
            want.append(None)
        else:
            want.append(r if _in_place_ok(r) else True)
    args = [detach(a) for a in [xl, weight, bias] + runs] + [
        b_in, f_in, factor, float(eps), float(delta), bsize]
    res = BATCH_LAYER_NORM.run(lib, args, want, lib.stream)
    for r, w, new in zip(runs, want[5:], res[5:]):
        if w is True:
            r[...] = new
    y = res[0]
    if into is not None:
        into[...] = y
        return out
    if out is not None:
        return out
    return features_back(lib.finish(y), moved, x)


def batch_layer_norm_forward(x, weight=None, bias=None, running_batch_mean=None,
                             running_batch_var=None, running_feature_mean=None,
                             running_feature_var=None, training=True, momentum=0.1, eps=1e-3,
                             *, use_running_batch_stats=True, use_running_feature_stats=False,
                             delta=1e-4, batch_size=None):
    """BLN for users who drive their own autograd (features last): ``(y, batch_mean,
    batch_rstd, feature_mean, feature_rstd)``, what :func:`batch_layer_norm_backward` needs;
    running statistics are updated as by :func:`batch_layer_norm`."""
    features_last(x, -1)
    lib = lib_for(x)
    b_in, f_in = _modes(training, use_running_batch_stats, use_running_feature_stats)
    runs = _used([running_batch_mean, running_batch_var, running_feature_mean,
                  running_feature_var], training, b_in, f_in)
    updates = [b_in, b_in, f_in, f_in]
    want = [True] * 5 + [True if r is not None and up else None for r, up in zip(runs, updates)]
    args = [detach(a) for a in [x, weight, bias] + runs] + [
        b_in, f_in, update_factor(momentum, training), float(eps), float(delta),
        float(batch_size) if batch_size is not None else 0.0]
    res = BATCH_LAYER_NORM.run(lib, args, want, lib.stream)
    for r, w, new in zip(runs, want[5:], res[5:]):
        if w is True:
            r[...] = new
    return tuple(lib.finish(a) for a in res[:5])


def batch_layer_norm_backward(dy, x, batch_mean, batch_rstd, feature_mean, feature_rstd,
                              weight=None, bias=None, *, training=True,
                              use_running_batch_stats=True, use_running_feature_stats=False,
                              delta=1e-4, batch_size=None, out=None):
    """Gradients of :func:`batch_layer_norm` (features last): ``(dx, dweight, dbias)``,
    ``None`` for an absent parameter, through the statistics of the input (the modes as in
    the forward). ``out``: dx's buffer, or a tuple of buffers (or ``None`` entries) for
    ``(dx, dweight, dbias)``."""
    names = ("dx", "dweight", "dbias")
    bo = BackwardOut("batch_layer_norm_backward", out, names, (dy, x, weight))
    features_last(x, -1)
    lib = lib_for(x)
    b_in, f_in = _modes(training, use_running_batch_stats, use_running_feature_stats)
    args = [detach(a) for a in (dy, x, weight, bias, batch_mean, batch_rstd, feature_mean,
                                feature_rstd)] + [
        b_in, f_in, float(delta), float(batch_size) if batch_size is not None else 0.0,
        True, True, True]
    res = BATCH_LAYER_NORM_BWD.run(lib, args, tuple(bo.want(n) for n in names), lib.stream)
    return tuple(bo.finish(lib, n, g) for n, g in zip(names, res))
