"""The functional API of DyT (SPEC §6): ``y = weight·tanh(alpha·x) + bias``.

Every function takes NumPy arrays, torch tensors or any DLPack array and returns the same
kind; outputs keep the input's memory layout (DyT is elementwise: a torch.channels_last
tensor gives a channels_last result). The two ops are declared once below (DYT, DYT_BWD);
the functional API allocates through them, and ``normkit.torch`` registers them as custom
ops with autograd (torch tensors that need gradients go there, so ``torch.compile`` works).
"""

from __future__ import annotations

import sys

import numpy as np

from . import _core
from ._arrays import BackwardOut, detach, is_torch, lib_for, misaligned_numpy, refuse_out_with_grad
from ._channels import like_layout as _like_layout, prepare as _prepare
from ._registry import Bool, Like, Op, OptionalTensor, Out, Tensor

__all__ = ["dyt", "dyt_forward", "dyt_backward", "DYT", "DYT_BWD"]


# ---------------------------------------------------------------------------------------
# The declarations (normkit._registry): the torch ops and every allocation come from here.
# ---------------------------------------------------------------------------------------


def _dyt_layout(lib, x, channels_last):
    return _prepare(x, channels_last)


def _dy_like_x(lib, dy, x, channels_last):
    return _like_layout(_prepare(dy, channels_last), x, lib)


DYT_BWD = Op(
    "dyt_bwd",
    inputs=[Tensor("dy", prep=_dy_like_x), Tensor("x", prep=_dyt_layout),
            Tensor("alpha", contiguous=True), OptionalTensor("weight", contiguous=True),
            OptionalTensor("bias", shape_only=True), Bool("channels_last"), Bool("need_dalpha"),
            Bool("need_dweight"), Bool("need_dbias")],
    outputs=[Out("dx", Like("x", strides="preserve"), grad_of="x"),
             Out("dalpha", Like("alpha"), grad_of="alpha"),
             Out("dweight", Like("weight"), grad_of="weight"),
             Out("dbias", Like("bias"), grad_of="bias")],
    kernel=lambda dy, x, alpha, weight, bias, channels_last, need_dalpha, need_dweight,
    need_dbias, dx, dalpha, dweight, dbias, stream: _core.dyt_backward(
        dy, x, alpha, weight, dx, dalpha, dweight, dbias, channels_last, stream),
)

DYT = Op(
    "dyt_fwd",
    inputs=[Tensor("x", differentiable=True, prep=_dyt_layout),
            Tensor("alpha", differentiable=True, contiguous=True),
            OptionalTensor("weight", differentiable=True, contiguous=True),
            OptionalTensor("bias", differentiable=True, contiguous=True),
            Bool("channels_last")],
    outputs=[Out("y", Like("x", strides="preserve"))],
    kernel=lambda x, alpha, weight, bias, channels_last, y, stream: _core.dyt_forward(
        x, alpha, weight, bias, y, channels_last, stream),
    backward=DYT_BWD,
)



def _needs_autograd(*arrays) -> bool:
    torch = sys.modules["torch"]
    if torch.compiler.is_compiling():
        return True
    return torch.is_grad_enabled() and any(getattr(a, "requires_grad", False) for a in arrays)


def dyt(x, alpha, weight=None, bias=None, *, channels_last=True, out=None):
    """Dynamic Tanh (Zhu et al. 2025): ``y = weight·tanh(alpha·x) + bias`` with ``alpha`` one
    element and ``weight``, ``bias`` per channel — the last dim (``channels_last=True``) or
    dim 1 of ``(N, C, *)`` data. Returns ``y``, or writes ``out`` (``out=x`` is in place)."""
    if is_torch(x):
        if out is None and _needs_autograd(x, alpha, weight, bias):
            from .torch import _dyt

            return _dyt.dyt(x, alpha, weight, bias, channels_last)
        if out is not None:
            refuse_out_with_grad("dyt", (x, alpha, weight, bias), (out,))
    lib = lib_for(x)
    into = out if misaligned_numpy(out) else None  # computed aligned, then copied in
    want = [True if out is None or into is not None else out]
    args = [detach(a) for a in (x, alpha, weight, bias)] + [channels_last]
    y = DYT.run(lib, args, want, lib.stream)[0]
    if into is not None:
        into[...] = y
        return into
    return lib.finish(y) if out is None else y


def dyt_forward(x, alpha, weight=None, bias=None, *, channels_last=True):
    """DyT for users who drive their own autograd: returns ``y`` (the backward needs only
    ``x``, not saved statistics)."""
    lib = lib_for(x)
    args = [detach(a) for a in (x, alpha, weight, bias)] + [channels_last]
    return lib.finish(DYT.run(lib, args, DYT.all_want, lib.stream)[0])


def dyt_backward(dy, x, alpha, weight=None, bias=None, *, channels_last=True, out=None):
    """Gradients of :func:`dyt`: ``(dx, dalpha, dweight, dbias)``, ``None`` for an absent
    parameter; ``bias`` only says whether ``dbias`` is wanted. ``dalpha`` has alpha's shape
    and dtype. Every sum is reduced in a fixed order (the same bits for any thread count).
    ``out``: dx's buffer, or a tuple of buffers (or ``None`` entries) for the four."""
    names = ("dx", "dalpha", "dweight", "dbias")
    bo = BackwardOut("dyt_backward", out, names, (dy, x, alpha, weight))
    lib = lib_for(x)
    args = [detach(a) for a in (dy, x, alpha, weight, bias)] + [channels_last, True, True, True]
    res = DYT_BWD.run(lib, args, tuple(bo.want(n) for n in names), lib.stream)
    return tuple(bo.finish(lib, n, g) for n, g in zip(names, res))
