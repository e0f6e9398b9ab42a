"""Batch norm (SPEC §4): the fused training / evaluation op and the split phases of
synchronized (multi-process) batch norm, declared once each (normkit._registry).

Every function takes NumPy arrays, torch tensors or any DLPack array and returns the same
kind. Channels first ``(N, C, *)`` (``axis=1``, the default) or channels last ``(N, *, C)``
(``axis=-1``, as Keras' ``axis``) are used in place; a torch tensor in ``channels_last`` /
``channels_last_3d`` memory format is computed in place with ``axis=1`` and the output keeps
its memory format. Any other strided view is copied once.

The ops are functional (torch custom ops may not both mutate their inputs and have an
autograd formula): the training forward returns the updated running statistics, and the
functional API and the modules write them into the running buffers — for NumPy (and torch
without autograd) the core writes them in place, no copy.
"""

from __future__ import annotations

import sys

from . import _core
from ._arrays import BackwardOut, detach, is_torch, lib_for, misaligned_numpy, refuse_out_with_grad
from ._channels import like_layout, prepare
from ._registry import Bool, ChannelStat, Float, Like, Op, OptionalTensor, Out, Tensor

__all__ = [
    "batch_norm", "batch_norm_forward", "batch_norm_backward", "batch_norm_stats",
    "moments_merge", "batch_norm_apply", "batch_norm_backward_reduce",
    "batch_norm_backward_apply", "BATCH_NORM", "BATCH_NORM_BWD", "BATCH_NORM_STATS",
    "MOMENTS_MERGE", "BATCH_NORM_APPLY", "BATCH_NORM_BACKWARD_REDUCE",
    "BATCH_NORM_BACKWARD_APPLY",
]


def channels_last_of(x, axis) -> bool:
    """The core's layout flag for ``axis`` (1: channels first; -1 or ndim-1: channels last;
    a 2-D x is the same either way)."""
    nd = len(x.shape)
    if nd < 2:
        raise ValueError(f"x: expected at least 2 dims, (N, C, *) or (N, *, C), got shape "
                         f"{tuple(x.shape)}")
    if isinstance(axis, bool) or not isinstance(axis, int):
        raise TypeError(f"axis: expected an int, got {type(axis).__name__}")
    if axis == 1 or nd == 2 and axis == -1:
        return False
    if axis in (-1, nd - 1):
        return True
    raise ValueError(f"axis: expected 1 (channels first) or -1 (channels last) for a "
                     f"{nd}-dim x, got {axis}")


def _x(lib, x, channels_last):
    return prepare(x, channels_last)


def _dy(lib, dy, x, channels_last):
    return like_layout(prepare(dy, channels_last), x, lib)


# ---------------------------------------------------------------------------------------
# The declarations
# ---------------------------------------------------------------------------------------


def start_running(new, old):
    """A functional op's updated running statistic starts as the old one (the core then
    updates it in place); ``new`` is ``old`` itself when the caller updates in place."""
    if new is not None and new is not old:
        new[...] = old
    return new


def _forward_kernel(x, weight, bias, running_mean, running_var, training, momentum, eps,
                    channels_last, y, save_mean, save_rstd, new_running_mean, new_running_var,
                    stream):
    rm, rv = running_mean, running_var
    if new_running_mean is not None:
        start_running(new_running_mean, running_mean)
        start_running(new_running_var, running_var)
        if training:
            rm, rv = new_running_mean, new_running_var
    _core.batch_norm_forward(x, weight, bias, rm, rv, y, save_mean, save_rstd, training,
                             momentum, eps, channels_last, stream)


BATCH_NORM_BWD = Op(
    "batch_norm_bwd",
    inputs=[Tensor("dy", prep=_dy), Tensor("x", prep=_x), Tensor("save_mean"),
            Tensor("save_rstd"), OptionalTensor("weight", contiguous=True),
            OptionalTensor("bias", shape_only=True), Bool("training"), Bool("channels_last"),
            Bool("need_dx"), Bool("need_dweight"), Bool("need_dbias")],
    outputs=[Out("dx", Like("x", strides="preserve"), grad_of="x"),
             Out("dweight", Like("weight"), grad_of="weight"),
             Out("dbias", Like("bias"), grad_of="bias")],
    kernel=lambda dy, x, save_mean, save_rstd, weight, bias, training, channels_last, need_dx,
    need_dweight, need_dbias, dx, dweight, dbias, stream: _core.batch_norm_backward(
        dy, x, save_mean, save_rstd, weight, dx, dweight, dbias, training, channels_last,
        stream),
)

BATCH_NORM = Op(
    "batch_norm_fwd",
    inputs=[Tensor("x", differentiable=True, prep=_x),
            OptionalTensor("weight", differentiable=True, contiguous=True),
            OptionalTensor("bias", differentiable=True, contiguous=True),
            OptionalTensor("running_mean", contiguous=True),
            OptionalTensor("running_var", contiguous=True),
            Bool("training"), Float("momentum"), Float("eps"), Bool("channels_last")],
    outputs=[Out("y", Like("x", strides="preserve")),
             Out("save_mean", ChannelStat("x", "channels_last"), differentiable=False,
                 backward_only=True),
             Out("save_rstd", ChannelStat("x", "channels_last"), differentiable=False,
                 backward_only=True),
             Out("new_running_mean", Like("running_mean"), differentiable=False),
             Out("new_running_var", Like("running_var"), differentiable=False)],
    kernel=_forward_kernel,
    backward=BATCH_NORM_BWD,
    doc="Batch norm (SPEC §4); returns y, the saved mean and rstd, and the running "
        "statistics after this call (updated in training, as given in evaluation).",
)

BATCH_NORM_STATS = Op(
    "batch_norm_stats",
    inputs=[Tensor("x", prep=_x), Bool("channels_last")],
    outputs=[Out("mean", ChannelStat("x", "channels_last"), differentiable=False),
             Out("m2", ChannelStat("x", "channels_last"), differentiable=False)],
    kernel=lambda x, channels_last, mean, m2, stream: _core.batch_norm_stats(
        x, mean, m2, channels_last, stream),
)

MOMENTS_MERGE = Op(
    "moments_merge",
    inputs=[Tensor("counts", contiguous=True), Tensor("means", contiguous=True),
            Tensor("m2s", contiguous=True)],
    outputs=[Out("mean", ChannelStat("means", True), differentiable=False),
             Out("m2", ChannelStat("means", True), differentiable=False)],
    kernel=lambda counts, means, m2s, mean, m2, stream: _core.moments_merge(
        counts, means, m2s, None, mean, m2, stream),
)

BATCH_NORM_APPLY = Op(
    "batch_norm_apply",
    inputs=[Tensor("x", prep=_x), Tensor("mean", contiguous=True),
            Tensor("rstd", contiguous=True), OptionalTensor("weight", contiguous=True),
            OptionalTensor("bias", contiguous=True), Bool("channels_last")],
    outputs=[Out("y", Like("x", strides="preserve"))],
    kernel=lambda x, mean, rstd, weight, bias, channels_last, y, stream: _core.batch_norm_apply(
        x, mean, rstd, weight, bias, y, channels_last, stream),
)

BATCH_NORM_BACKWARD_REDUCE = Op(
    "batch_norm_backward_reduce",
    inputs=[Tensor("dy", prep=_dy), Tensor("x", prep=_x), Tensor("mean", contiguous=True),
            Tensor("rstd", contiguous=True), Bool("channels_last")],
    outputs=[Out("sum_dy", ChannelStat("x", "channels_last"), differentiable=False),
             Out("sum_dy_xhat", ChannelStat("x", "channels_last"), differentiable=False)],
    kernel=lambda dy, x, mean, rstd, channels_last, sum_dy, sum_dy_xhat, stream:
    _core.batch_norm_backward_reduce(dy, x, mean, rstd, sum_dy, sum_dy_xhat, channels_last,
                                     stream),
)

BATCH_NORM_BACKWARD_APPLY = Op(
    "batch_norm_backward_apply",
    inputs=[Tensor("dy", prep=_dy), Tensor("x", prep=_x), Tensor("mean", contiguous=True),
            Tensor("rstd", contiguous=True), OptionalTensor("weight", contiguous=True),
            Tensor("sum_dy", contiguous=True), Tensor("sum_dy_xhat", contiguous=True),
            Float("count"), Bool("channels_last")],
    outputs=[Out("dx", Like("x", strides="preserve"))],
    kernel=lambda dy, x, mean, rstd, weight, sum_dy, sum_dy_xhat, count, channels_last, dx,
    stream: _core.batch_norm_backward_apply(dy, x, mean, rstd, weight, sum_dy, sum_dy_xhat,
                                            count, dx, channels_last, stream),
)


# ---------------------------------------------------------------------------------------
# The functional API
# ---------------------------------------------------------------------------------------


def _needs_autograd(*arrays) -> bool:
    torch = sys.modules["torch"]
    if torch.compiler.is_compiling():
        return True
    return torch.is_grad_enabled() and any(getattr(a, "requires_grad", False) for a in arrays)


def update_factor(momentum, training: bool, num_batches_tracked=None) -> float:
    """The running statistics' update factor: ``momentum``, or for ``momentum=None`` torch's
    cumulative average, 1/batches — ``num_batches_tracked`` (a one-element integer array) is
    then incremented first, in training."""
    if momentum is not None:
        if isinstance(momentum, bool) or not isinstance(momentum, (int, float)) and \
                not hasattr(momentum, "__float__"):
            raise TypeError(f"momentum: expected a float or None, got {type(momentum).__name__}")
        return float(momentum)
    if not training:
        return 0.0
    if num_batches_tracked is None:
        raise ValueError("momentum: None (a cumulative average) needs num_batches_tracked, the "
                         "count of batches seen so far")
    num_batches_tracked += 1
    return 1.0 / float(num_batches_tracked.reshape(-1)[0])


def _in_place_ok(a) -> bool:
    """Whether the core can update running statistics in place: a C-contiguous NumPy array
    or torch tensor (others get the result copied in)."""
    if is_torch(a):
        return a.is_contiguous() and not a.requires_grad
    # (A read-only array goes to the core, which names it.)
    return type(a).__name__ == "ndarray" and a.flags.c_contiguous and a.flags.aligned


def batch_norm(x, running_mean=None, running_var=None, weight=None, bias=None, training=False,
               momentum=0.1, eps=1e-5, *, axis=1, out=None, num_batches_tracked=None):
    """Batch normalization (Ioffe & Szegedy 2015), torch's ``F.batch_norm`` argument order.

    ``training=True``: statistics of the batch per channel (over N and every spatial
    position); ``running_mean`` / ``running_var``, if given, are updated in place in the same
    call (``momentum``; ``None`` = cumulative average with ``num_batches_tracked``; the
    unbiased variance is stored, the biased one normalizes). ``training=False``: normalizes
    with the running statistics. ``axis``: 1 for ``(N, C, *)``, -1 for ``(N, *, C)``.
    Returns ``y``, or writes ``out``."""
    cl = channels_last_of(x, axis)
    factor = update_factor(momentum, training, num_batches_tracked)
    training = bool(training)
    if is_torch(x):
        if out is None and _needs_autograd(x, weight, bias):
            from .torch import _batch_norm

            return _batch_norm.batch_norm(x, running_mean, running_var, weight, bias, training,
                                          factor, eps, cl)
        if out is not None:
            refuse_out_with_grad("batch_norm", (x, weight, bias), (out,))
    lib = lib_for(x)
    into = out if misaligned_numpy(out) else None
    update = training and running_mean is not None and running_var is not None
    in_place = update and _in_place_ok(running_mean) and _in_place_ok(running_var)
    want = [True if out is None or into is not None else out, None, None,
            (running_mean if in_place else True) if update else None,
            (running_var if in_place else True) if update else None]
    args = [detach(a) for a in (x, weight, bias, running_mean, running_var)] + [
        training, factor, float(eps), cl]
    y, _, _, rm, rv = BATCH_NORM.run(lib, args, want, lib.stream)
    if update and not in_place:
        running_mean[...] = rm
        running_var[...] = rv
    if into is not None:
        into[...] = y
        return into
    return lib.finish(y) if out is None else y


def batch_norm_forward(x, running_mean=None, running_var=None, weight=None, bias=None,
                       training=False, momentum=0.1, eps=1e-5, *, axis=1, out=None):
    """Batch norm for users who drive their own autograd: ``(y, save_mean, save_rstd)``, what
    :func:`batch_norm_backward` needs; running statistics are updated as by
    :func:`batch_norm` (``momentum`` must be a number here); ``out``: y's buffer."""
    cl = channels_last_of(x, axis)
    lib = lib_for(x)
    factor = update_factor(momentum, training)
    update = bool(training) and running_mean is not None
    args = [detach(a) for a in (x, weight, bias, running_mean, running_var)] + [
        bool(training), factor, float(eps), cl]
    y, sm, sr, rm, rv = BATCH_NORM.run(lib, args, (True if out is None else out, True, True,
                                                   update or None, update or None), lib.stream)
    if update:
        running_mean[...] = rm
        running_var[...] = rv
    f = lib.finish
    return (f(y) if out is None else y), f(sm), f(sr)


_GRADS = ("dx", "dweight", "dbias")


def batch_norm_backward(dy, x, save_mean, save_rstd, weight=None, bias=None, *, training=True,
                        axis=1, out=None):
    """Gradients of :func:`batch_norm`: ``(dx, dweight, dbias)``, ``None`` for an absent
    parameter (``bias`` only says whether ``dbias`` is wanted), from the forward's
    ``save_mean`` and ``save_rstd``; ``training`` as in the forward; ``out``: dx's buffer,
    or a tuple of buffers (or ``None`` entries) for ``(dx, dweight, dbias)``.
    Per-channel sums are reduced in a fixed order (the same bits for any thread count)."""
    bo = BackwardOut("batch_norm_backward", out, _GRADS, (dy, x, weight))
    cl = channels_last_of(x, axis)
    lib = lib_for(x)
    args = [detach(a) for a in (dy, x, save_mean, save_rstd, weight, bias)] + [
        bool(training), cl, True, True, True]
    res = BATCH_NORM_BWD.run(lib, args, tuple(bo.want(n) for n in _GRADS), lib.stream)
    return tuple(bo.finish(lib, n, g) for n, g in zip(_GRADS, res))


def batch_norm_stats(x, *, axis=1):
    """Split phase 1 of synchronized batch norm: ``(count, mean, m2)`` per channel — count
    the values per channel (an int), ``m2 = Σ(x − mean)²`` (exact moments, two-pass in cache,
    Chan-merged in a fixed order)."""
    cl = channels_last_of(x, axis)
    lib = lib_for(x)
    mean, m2 = BATCH_NORM_STATS.run(lib, [detach(x), cl], BATCH_NORM_STATS.all_want, lib.stream)
    C = x.shape[-1] if cl else x.shape[1]
    n = 1
    for s in x.shape:
        n *= int(s)
    return (n // C if C else 0), lib.finish(mean), lib.finish(m2)


def moments_merge(counts, means, m2s):
    """Chan et al.'s merge of K per-channel ``(count, mean, m2)`` triples (``counts`` [K],
    ``means`` and ``m2s`` [K, C]) in order k = 0, 1, ..., in double: ``(count, mean, m2)``
    of the union — the merge every normkit statistic uses."""
    lib = lib_for(means)
    mean, m2 = MOMENTS_MERGE.run(lib, [detach(counts), detach(means), detach(m2s)],
                                 MOMENTS_MERGE.all_want, lib.stream)
    return counts.sum(), lib.finish(mean), lib.finish(m2)


def batch_norm_apply(x, mean, rstd, weight=None, bias=None, *, axis=1, out=None):
    """Split phase 2: ``y = (x − mean)·rstd·weight + bias`` per channel."""
    cl = channels_last_of(x, axis)
    lib = lib_for(x)
    args = [detach(a) for a in (x, mean, rstd, weight, bias)] + [cl]
    y = BATCH_NORM_APPLY.run(lib, args, [True if out is None else out], lib.stream)[0]
    return lib.finish(y) if out is None else y


def batch_norm_backward_reduce(dy, x, mean, rstd, *, axis=1):
    """Backward phase 1: ``(sum_dy, sum_dy_xhat)`` per channel over this x, with
    ``x̂ = (x − mean)·rstd`` (also the local ``dbias`` and ``dweight``)."""
    cl = channels_last_of(x, axis)
    lib = lib_for(x)
    args = [detach(a) for a in (dy, x, mean, rstd)] + [cl]
    s, sx = BATCH_NORM_BACKWARD_REDUCE.run(lib, args, BATCH_NORM_BACKWARD_REDUCE.all_want,
                                           lib.stream)
    return lib.finish(s), lib.finish(sx)


def batch_norm_backward_apply(dy, x, mean, rstd, weight, sum_dy, sum_dy_xhat, count, *,
                              axis=1, out=None):
    """Backward phase 2: ``dx = weight·rstd·(dy − sum_dy/count − x̂·sum_dy_xhat/count)``, the
    sums and ``count`` those of the whole batch (all processes)."""
    cl = channels_last_of(x, axis)
    lib = lib_for(x)
    args = [detach(a) for a in (dy, x, mean, rstd, weight, sum_dy, sum_dy_xhat)] + [
        float(count), cl]
    dx = BATCH_NORM_BACKWARD_APPLY.run(lib, args, [True if out is None else out], lib.stream)[0]
    return lib.finish(dx) if out is None else dx
