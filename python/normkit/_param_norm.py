"""The parameter norms (SPEC §9–10): weight normalization and spectral normalization,
declared once each (normkit._registry), and their functional API.

Weight norm: ``w = g·v/‖v‖`` with one norm per index of ``dim`` (the norm over every other
dim), or one norm over everything (``dim=None``). The core computes it as a channel op (the
batch-norm kernels: a per-channel reduction, then an elementwise pass; for ``dim=0`` each
output unit is reduced and scaled while it is in cache): ``v`` is viewed as
``(prod(shape[:dim]), shape[dim], prod(shape[dim+1:]))``.

Spectral norm: ``W/σ`` with σ the largest singular value of W viewed as a matrix
``(shape[dim], rest)``, estimated by power iterations on persistent ``u``, ``v`` (torch's
order and eps rule). Each iteration is one read of W (both products from one pass), and σ
comes from the last one without another read (Note [One pass per power iteration] in
``cpp/src/cpu/spectral_norm_kernel.cpp``).

Every function takes NumPy arrays, torch tensors or any DLPack array and returns the same
kind; torch tensors that need gradients go through ``torch.ops.normkit`` (autograd,
``torch.compile``).
"""

from __future__ import annotations

import sys

import numpy as np

from . import _core
from ._arrays import BackwardOut, detach, is_torch, lib_for, refuse_out_with_grad
from ._registry import Float, Int, Like, Op, Out, Shaped, Tensor

__all__ = [
    "weight_norm", "weight_norm_forward", "weight_norm_backward", "wn_dim",
    "spectral_norm", "spectral_norm_forward", "spectral_norm_backward",
    "WEIGHT_NORM", "WEIGHT_NORM_BWD", "SPECTRAL_NORM", "SPECTRAL_NORM_BWD",
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
    return lib.contiguous(g).reshape(g.shape)  # (a 0-dim g stays 0-dim)


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


def weight_norm_backward(dw, v, g, norm, dim=0, *, out=None):
    """Gradients of :func:`weight_norm`: ``(dv, dg)`` with ``dg = Σ(dw·v)/‖v‖`` and
    ``dv = (g/‖v‖)·dw − (g·dg/‖v‖²)·v`` (every sum in a fixed order). ``out``: dv's
    buffer, or a tuple of buffers (or ``None`` entries) for ``(dv, dg)``."""
    names = ("dv", "dg")
    bo = BackwardOut("weight_norm_backward", out, names, (dw, v, g))
    d = wn_dim(v, dim)
    lib = lib_for(v)
    args = [detach(a) for a in (dw, v, g, norm)] + [d]
    res = WEIGHT_NORM_BWD.run(lib, args, tuple(bo.want(n) for n in names), lib.stream)
    return tuple(bo.finish(lib, n, t) for n, t in zip(names, res))


# ---------------------------------------------------------------------------------------
# Spectral norm
# ---------------------------------------------------------------------------------------


def _start(new, old):
    """The op's updated u / v start as the given ones (the core then iterates in place);
    ``new`` is ``old`` itself when the caller updates in place."""
    if new is None:
        return old
    if new is not old:
        new[...] = old
    return new


def _sn_forward(weight, u, v, n_power_iterations, eps, out, sigma, u_new, v_new, stream):
    uu, vv = _start(u_new, u), _start(v_new, v)
    _core.spectral_norm_forward(weight, uu.reshape(-1), vv.reshape(-1), out,
                                None if sigma is None else sigma.reshape(-1),
                                n_power_iterations, eps, stream)


SPECTRAL_NORM_BWD = Op(
    "spectral_norm_bwd",
    inputs=[Tensor("dout", rows=1), Tensor("weight", rows=1), Tensor("u_new", contiguous=True),
            Tensor("v_new", contiguous=True), Tensor("sigma", contiguous=True)],
    outputs=[Out("dweight", Like("weight"), grad_of="weight")],
    kernel=lambda dout, weight, u_new, v_new, sigma, dweight, stream: _core.spectral_norm_backward(
        dout, weight, u_new.reshape(-1), v_new.reshape(-1), sigma.reshape(-1), dweight, stream),
)

SPECTRAL_NORM = Op(
    "spectral_norm_fwd",
    inputs=[Tensor("weight", differentiable=True, rows=1), Tensor("u", contiguous=True),
            Tensor("v", contiguous=True), Int("n_power_iterations"), Float("eps")],
    outputs=[Out("out", Like("weight")),
             Out("sigma", Shaped("weight", lambda weight: (), stat=True), differentiable=False),
             Out("u_new", Like("u"), differentiable=False),
             Out("v_new", Like("v"), differentiable=False)],
    kernel=_sn_forward,
    backward=SPECTRAL_NORM_BWD,
    doc="Spectral norm (SPEC §10) of a matrix: n_power_iterations of u = normalize(W v), "
        "v = normalize(Wᵀu), then W/σ with σ = uᵀWv; returns W/σ, σ and the updated u, v.",
)


def _matrix(W, dim):
    """W as the (shape[dim], rest) matrix and the function that puts a matrix of that shape
    back in W's shape."""
    nd = len(W.shape)
    if nd == 0:
        raise ValueError("weight: expected at least 1 dim, got a 0-dim array")
    if isinstance(dim, bool) or not isinstance(dim, int):
        raise TypeError(f"dim: expected an int, got {type(dim).__name__}")
    if not -nd <= dim < nd:
        raise ValueError(f"dim: expected an int in [{-nd}, {nd}) for a {nd}-dim weight, got {dim}")
    dim %= nd
    shape = tuple(int(s) for s in W.shape)
    if dim == 0:
        return W.reshape(shape[0], -1), lambda m: m.reshape(shape)
    perm = (dim,) + tuple(i for i in range(nd) if i != dim)
    inv = tuple(int(i) for i in np.argsort(perm))
    moved = W.permute(*perm) if is_torch(W) else W.transpose(*perm)
    mshape = tuple(moved.shape)

    def back(m):
        t = m.reshape(mshape)
        return t.permute(*inv) if is_torch(t) else t.transpose(*inv)

    return moved.reshape(shape[dim], -1), back


def _check_iterations(n):
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"n_power_iterations: expected an int, got {type(n).__name__}")
    if n < 0:
        raise ValueError(f"n_power_iterations: expected >= 0, got {n}")
    return n


def spectral_norm(W, u, v, n_power_iterations=1, eps=1e-12, training=True, dim=0, *, out=None):
    """Spectral normalization (Miyato et al. 2018): ``W/σ``, σ ≈ the largest singular value
    of W as the matrix ``(W.shape[dim], rest)``. In training, ``n_power_iterations`` of
    ``u = normalize(W v)``, ``v = normalize(Wᵀu)`` (torch's order; ``normalize(x) =
    x/max(‖x‖, eps)``) update ``u`` [W.shape[dim]] and ``v`` [rest] **in place**; in
    evaluation they are used as given. σ = uᵀ W v. The backward (torch autograd) treats u, v
    as constants: ``dW = dW_sn/σ − (⟨dW_sn, W⟩/σ²)·u vᵀ``. σ = 0 is a ValueError on the CPU.
    Returns ``W/σ`` in W's shape, or writes ``out``."""
    n = _check_iterations(n_power_iterations) if training else 0
    eps = float(eps)
    mat, back = _matrix(W, dim)
    if is_torch(W):
        if out is None and _needs_autograd(W):
            from .torch import _param_norm

            o, _, un, vn = _param_norm.SPECTRAL_NORM(mat, u, v, n, eps)
            if n > 0:
                torch = sys.modules["torch"]
                with torch.no_grad():
                    u.copy_(un.reshape(u.shape))
                    v.copy_(vn.reshape(v.shape))
            return back(o)
        if out is not None:
            refuse_out_with_grad("spectral_norm", (W,), (out,))
    lib = lib_for(W)
    into = None
    if out is not None:
        if tuple(out.shape) != tuple(W.shape):
            raise ValueError(f"out: expected W's shape {tuple(W.shape)}, got {tuple(out.shape)}")
        if dim % len(W.shape) == 0:
            into = out.reshape(mat.shape)
    want = [True if into is None else into, None, u if n > 0 else None, v if n > 0 else None]
    res = SPECTRAL_NORM.run(lib, [detach(mat), detach(u), detach(v), n, eps], want, lib.stream)[0]
    if into is not None:
        return out
    res = back(res)
    if out is not None:
        out[...] = res
        return out
    return lib.finish(res)


def spectral_norm_forward(W, u, v, n_power_iterations=1, eps=1e-12):
    """Spectral norm of the matrix ``W`` (2-D) for users who drive their own autograd:
    ``(W/σ, σ)``, updating ``u``, ``v`` in place (``n_power_iterations=0``: evaluation)."""
    n = _check_iterations(n_power_iterations)
    lib = lib_for(W)
    want = [True, True, u if n > 0 else None, v if n > 0 else None]
    o, sigma, _, _ = SPECTRAL_NORM.run(lib, [detach(W), detach(u), detach(v), n, float(eps)],
                                       want, lib.stream)
    return lib.finish(o), lib.finish(sigma)


def spectral_norm_backward(dout, W, u, v, sigma, *, out=None):
    """The gradient of :func:`spectral_norm_forward` with u, v (after its iterations) held
    constant: ``dW = dout/σ − (⟨dout, W⟩/σ²)·u vᵀ``; ``out``: dW's buffer."""
    bo = BackwardOut("spectral_norm_backward", out, ("dW",), (dout, W))
    lib = lib_for(W)
    args = [detach(a) for a in (dout, W, u, v, sigma)]
    dW = SPECTRAL_NORM_BWD.run(lib, args, (bo.want("dW"),), lib.stream)[0]
    return bo.finish(lib, "dW", dW)
