"""The parameter norms (SPEC §9–10): weight normalization and spectral normalization,
declared once each (normkit._registry), and their functional API.

Weight norm: ``w = g·v/‖v‖`` with one norm per index of ``dim`` (the norm over every other
dim), or one norm over everything (``dim=None``). The core computes it as a channel op (the
batch-norm kernels: a per-channel reduction, then an elementwise pass; for ``dim=0`` each
output unit is reduced and scaled while it is in cache): ``v`` is viewed as
``(prod(shape[:dim]), shape[dim], prod(shape[dim+1:]))``.

Every function takes NumPy arrays, torch tensors or any DLPack array and returns the same
kind; torch tensors that need gradients go through ``torch.ops.normkit`` (autograd,
``torch.compile``).
"""

from __future__ import annotations

import sys

from . import _core
from ._arrays import detach, is_torch, lib_for, refuse_out_with_grad
from ._registry import Int, Like, Op, Out, Shaped, Tensor

__all__ = [
    "weight_norm", "weight_norm_forward", "weight_norm_backward", "wn_dim",
    "WEIGHT_NORM", "WEIGHT_NORM_BWD",
]

# The declarations' dim: a dim of v in [0, v.ndim), or ALL_DIMS (one norm over everything).
ALL_DIMS = -1


def wn_dim(v, dim) -> int:
    """``dim`` as the declarations take it: ``None`` → ALL_DIMS, a negative dim counted from
    the end (Python's rule), anything else a ValueError / TypeError naming ``dim``."""
    if dim is None:
        return ALL_DIMS
    if isinstance(dim, bool) or not isinstance(dim, int):
        raise TypeError(f"dim: expected an int or None, got {type(dim).__name__}")
    nd = len(v.shape)
    if not -nd <= dim < nd:
        raise ValueError(f"dim: expected None or an int in [{-nd}, {nd}) for a {nd}-dim v "
                         f"(shape {tuple(v.shape)}), got {dim}")
    return dim % nd


def _channels(shape, dim):
    """(N, C, S) of v's view for ``dim`` (C = 1 for ALL_DIMS)."""
    if dim == ALL_DIMS:
        lead = int(shape[0]) if len(shape) > 1 else 1  # planes reduced in parallel
        rest = 1
        for s in shape[1 if len(shape) > 1 else 0:]:
            rest *= int(s)
        return lead, 1, rest
    N = 1
    for s in shape[:dim]:
        N *= int(s)
    S = 1
    for s in shape[dim + 1:]:
        S *= int(s)
    return N, int(shape[dim]), S


def _view(t, dim):
    """A contiguous v-like array as the core's (N, C, S) channels-first view, or (N, C)
    channels last when S == 1; returns (view, channels_last)."""
    N, C, S = _channels(tuple(t.shape), dim)
    if S == 1 and N > 1:
        return t.reshape(N, C), True
    return t.reshape(N, C, S), False


def _g(lib, g, v, dim):
    """g as the core reads it: one value per channel of v's view, contiguous."""
    C = _channels(tuple(v.shape), dim)[1]
    n = 1
    for s in g.shape:
        n *= int(s)
    if n != C:
        what = "1 element (dim=None)" if dim == ALL_DIMS else f"{C} elements (v.shape[{dim}])"
        raise ValueError(f"g: expected {what}, got shape {tuple(g.shape)}")
    return lib.contiguous(g)


def _v(lib, v, dim):
    if dim != ALL_DIMS and not 0 <= dim < len(v.shape):
        raise ValueError(f"dim: expected -1 (all dims) or a dim of v in [0, {len(v.shape)}), "
                         f"got {dim}")
    return lib.contiguous(v)


def _dw(lib, dw, v, dim):
    if tuple(dw.shape) != tuple(v.shape):
        raise ValueError(f"dw: expected v's shape {tuple(v.shape)}, got {tuple(dw.shape)}")
    return lib.contiguous(dw)


def _wn_forward(v, g, dim, w, norm, stream):
    vv, cl = _view(v, dim)
    _core.weight_norm_forward(vv, g.reshape(-1), _view(w, dim)[0],
                              None if norm is None else norm.reshape(-1), cl, stream)


def _wn_backward(dw, v, g, norm, dim, dv, dg, stream):
    vv, cl = _view(v, dim)
    _core.weight_norm_backward(_view(dw, dim)[0], vv, g.reshape(-1), norm.reshape(-1),
                               None if dv is None else _view(dv, dim)[0],
                               None if dg is None else dg.reshape(-1), cl, stream)


WEIGHT_NORM_BWD = Op(
    "weight_norm_bwd",
    inputs=[Tensor("dw", prep=_dw), Tensor("v", prep=_v), Tensor("g", prep=_g),
            Tensor("norm", contiguous=True), Int("dim")],
    outputs=[Out("dv", Like("v"), grad_of="v"), Out("dg", Like("g"), grad_of="g")],
    kernel=_wn_backward,
)

WEIGHT_NORM = Op(
    "weight_norm_fwd",
    inputs=[Tensor("v", differentiable=True, prep=_v),
            Tensor("g", differentiable=True, prep=_g), Int("dim")],
    outputs=[Out("w", Like("v")),
             Out("norm", Shaped("v", lambda g: tuple(g.shape), stat=True),
                 differentiable=False, backward_only=True)],
    kernel=_wn_forward,
    backward=WEIGHT_NORM_BWD,
    doc="Weight norm (SPEC §9): w = g·v/‖v‖ per index of dim (-1: one norm over all); "
        "returns w and the norms (float32, float64 for float64 v; g's shape).",
)


def _needs_autograd(*arrays) -> bool:
    torch = sys.modules["torch"]
    if torch.compiler.is_compiling():
        return True
    return torch.is_grad_enabled() and any(getattr(a, "requires_grad", False) for a in arrays)


def weight_norm(v, g, dim=0, *, out=None):
    """Weight normalization (Salimans & Kingma 2016): ``w = g·v/‖v‖``, one norm per index of
    ``dim`` (the norm over every other dim; ``dim=0``: one per output unit of a Linear or Conv
    weight), or one norm over everything (``dim=None``). Negative dims count from the end.
    ``g`` holds one value per norm (any shape of that many elements: torch's ``(C, 1, ...)``
    works), v's dtype or float32 for 16-bit ``v``. A zero-norm index is a ValueError (on
    the CPU). Returns ``w`` (``v``'s shape and dtype), or writes ``out``."""
    d = wn_dim(v, dim)
    if is_torch(v):
        if out is None and _needs_autograd(v, g):
            from .torch import _param_norm

            return _param_norm.WEIGHT_NORM(v, g, d)[0]
        if out is not None:
            refuse_out_with_grad("weight_norm", (v, g), (out,))
    lib = lib_for(v)
    w = WEIGHT_NORM.run(lib, [detach(v), detach(g), d],
                        [True if out is None else out, None], lib.stream)[0]
    return lib.finish(w) if out is None else w


def weight_norm_forward(v, g, dim=0):
    """Weight norm for users who drive their own autograd: ``(w, norm)`` — ``norm`` (‖v‖
    per index of ``dim``, g's shape, float32 or float64) is what the backward needs."""
    d = wn_dim(v, dim)
    lib = lib_for(v)
    w, norm = WEIGHT_NORM.run(lib, [detach(v), detach(g), d], WEIGHT_NORM.all_want, lib.stream)
    return lib.finish(w), lib.finish(norm)


def weight_norm_backward(dw, v, g, norm, dim=0):
    """Gradients of :func:`weight_norm`: ``(dv, dg)`` with ``dg = Σ(dw·v)/‖v‖`` and
    ``dv = (g/‖v‖)·dw − (g·dg/‖v‖²)·v`` (every sum in a fixed order)."""
    d = wn_dim(v, dim)
    lib = lib_for(v)
    args = [detach(a) for a in (dw, v, g, norm)] + [d]
    f = lib.finish
    return tuple(f(t) for t in WEIGHT_NORM_BWD.run(lib, args, WEIGHT_NORM_BWD.all_want, lib.stream))
