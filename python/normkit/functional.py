"""The functional API of the row norms: layer norm, RMS norm, fused residual add + norm.

Every function takes NumPy arrays, torch tensors or any DLPack array, and returns the same
kind (outputs allocated by the caller's library, on the caller's device, or written into
``out=``). The math and every argument check live in the C++ core; this module only decides
the normalized dims and hands the arrays to the ops declared in ``_row_norm_ops`` (which say
how every output is allocated). torch tensors go through ``normkit.torch`` (the lean eager
path, autograd when a tensor needs gradients, the custom ops under ``torch.compile``).
"""

from __future__ import annotations

import sys

import numpy as np

from . import _core
from . import _row_norm_ops as decl
from ._arrays import (BackwardOut, NumpyLib, detach, is_torch, lib_for, misaligned_numpy,
                      refuse_out_with_grad)

_LAYER, _RMS = _core.NormKind.layer, _core.NormKind.rms

__all__ = [
    "layer_norm",
    "layer_norm_forward",
    "layer_norm_backward",
    "rms_norm",
    "rms_norm_forward",
    "rms_norm_backward",
    "add_layer_norm",
    "add_layer_norm_forward",
    "add_layer_norm_backward",
    "add_rms_norm",
    "add_rms_norm_forward",
    "add_rms_norm_backward",
]


def _normalized_ndim(x, weight, normalized_shape) -> int:
    if normalized_shape is None:
        if weight is None:
            return 1
        if not 1 <= weight.ndim <= x.ndim:
            raise ValueError(
                f"weight: expected the shape of the trailing (normalized) dims of x "
                f"{tuple(x.shape)}, got {tuple(weight.shape)}"
            )
        return weight.ndim
    if isinstance(normalized_shape, int):
        normalized_shape = (normalized_shape,)
    try:
        ns = tuple(int(n) for n in normalized_shape)
    except TypeError:
        raise TypeError(
            f"normalized_shape: expected an int or a sequence of ints, got {normalized_shape!r}"
        ) from None
    nd = len(ns)
    shape = tuple(x.shape)
    if nd == 0 or nd > len(shape) or shape[len(shape) - nd :] != ns:
        raise ValueError(
            f"normalized_shape: expected the trailing dims of x {shape}, got {ns}"
        )
    return nd



_torch_ops_module = None
# (torch.Tensor, normkit.torch._ops) once torch is in use: the plain-tensor calls of
# layer_norm / rms_norm test one type instead of calling three helpers (~0.5 us of a ~6 us
# [1, 4096] call).
_FAST = (None, None)


def _torch_ops():
    """normkit.torch._ops, imported on first use (``import normkit`` does not import torch)."""
    global _torch_ops_module, _FAST
    if _torch_ops_module is None:
        from .torch import _ops

        _torch_ops_module = _ops
        _FAST = (sys.modules["torch"].Tensor, _ops)
    return _torch_ops_module


def _plain_torch(x, *others):
    """normkit.torch._ops when ``x`` and ``others`` (None allowed) are plain torch tensors
    that record no graph, else None: the training forwards and backwards of such tensors go
    through the ops' generated eager code (one frame, no registry plan: a [1, 4096] layer
    norm forward + backward ~42 -> ~12 us) instead of the general path, which detaches."""
    tensor, ops = _FAST
    if tensor is None:
        if not is_torch(x):
            return None
        ops = _torch_ops()
        tensor = _FAST[0]
    if type(x) is not tensor or x.requires_grad:
        return None
    for a in others:
        if a is not None and (type(a) is not tensor or a.requires_grad):
            return None
    return ops


# The declared ops behind each (norm kind, fused add) pair.
_FORWARD = {(_LAYER, False): decl.LAYER_NORM, (_RMS, False): decl.RMS_NORM,
            (_LAYER, True): decl.ADD_LAYER_NORM, (_RMS, True): decl.ADD_RMS_NORM}
_BACKWARD = {(_LAYER, False): decl.LAYER_NORM_BWD, (_RMS, False): decl.RMS_NORM_BWD,
             (_LAYER, True): decl.ADD_LAYER_NORM_BWD, (_RMS, True): decl.ADD_RMS_NORM_BWD}
# The fused ops without `s`, for a torch call that records no graph and does not return it.
_WITHOUT_S = {kind: _FORWARD[kind, True].want(s=None) for kind in (_LAYER, _RMS)}


def _forward(kind, x, residual, weight, bias, x_bias, eps, weight_offset, residual_scale,
             normalized_shape, out, residual_out, want_stats, want_s):
    """Shared body of every forward. Returns (y, s, mean, rstd) with None for what was not asked."""
    if out is not None or residual_out is not None:
        name = ("add_" if residual is not None else "") + ("layer_norm" if kind == _LAYER else "rms_norm")
        refuse_out_with_grad(name, (x, residual, weight, bias, x_bias), (out, residual_out))
    nd = _normalized_ndim(x, weight, normalized_shape)
    lib = lib_for(x)
    # A byte-misaligned NumPy out= / residual_out= gets the result through an aligned copy.
    y_into = out if misaligned_numpy(out) else None
    s_into = residual_out if misaligned_numpy(residual_out) else None
    want_y = True if out is None or y_into is not None else out
    s_wanted = (residual_out if residual_out is not None and s_into is None
                else True if want_s or s_into is not None else None)
    stats = True if want_stats else None
    got = _FORWARD[kind, residual is not None].run_named(
        lib,
        dict(x=detach(x), residual=detach(residual), weight=detach(weight),
             bias=detach(bias), x_bias=detach(x_bias), eps=eps, weight_offset=weight_offset,
             residual_scale=residual_scale, normalized_ndim=nd),
        dict(y=want_y, s=s_wanted, mean=stats, rstd=stats, rrms=stats), lib.stream)
    f = lib.finish
    y, s = got["y"], got.get("s")
    if y_into is not None:
        y_into[...] = y
        y = y_into
    elif out is None:
        y = f(y)
    if s_into is not None:
        s_into[...] = s
        s = s_into
    elif residual_out is None:
        s = f(s)
    return y, s, f(got.get("mean")), f(got.get("rstd", got.get("rrms")))


# ---------------------------------------------------------------------------------------
# Layer norm
# ---------------------------------------------------------------------------------------


def layer_norm(x, weight=None, bias=None, eps=1e-5, *, normalized_shape=None, out=None):
    """Layer normalization (SPEC §1) over the trailing dims ``weight.shape`` covers, or the
    last dim without weight, or ``normalized_shape``. Returns ``y`` (or writes ``out``)."""
    if type(x) is np.ndarray and normalized_shape is None and x.flags.c_contiguous:
        # The fast path: a contiguous NumPy array (the per-call overhead benchmark).
        y = np.empty(x.shape, x.dtype) if out is None else out
        try:
            _core.row_norm_forward(_LAYER, 1 if weight is None else weight.ndim, eps, 0.0, 1.0,
                                   x, None, None, weight, bias, y, None, None, None, 0)
            return y
        except ValueError:
            pass  # e.g. a strided weight: the general path copies it, or names the problem
    tensor, ops = _FAST
    if out is None and type(x) is tensor and normalized_shape is None:
        nd = 1 if weight is None else weight.dim() if type(weight) is tensor else 0
        if nd:
            return ops.LAYER_NORM(x, weight, bias, eps, nd)[0]
    if out is None and is_torch(x):
        # torch: the lean eager path without autograd, autograd through our backward with it.
        nd = _normalized_ndim(x, weight, normalized_shape)
        return _torch_ops().LAYER_NORM(x, weight, bias, eps, nd)[0]
    return _forward(_LAYER, x, None, weight, bias, None, eps, 0.0, 1.0, normalized_shape, out,
                    None, False, False)[0]


def _numpy_train_forward(kind, x, weight, bias, eps, weight_offset, normalized_shape):
    """The training forward of contiguous NumPy arrays straight into the core: ``(y, mean,
    rstd)`` (``mean`` None for RMS norm), or None where the general path must take the call
    (another array kind, a strided view, a bad argument: it copies, or names the problem).
    A [1, 4096] call costs half of what the general plan does (the kernel is ~1 us)."""
    if not (type(x) is np.ndarray and normalized_shape is None and x.flags.c_contiguous
            and (weight is None or type(weight) is np.ndarray) and 1 <= x.ndim):
        return None
    nd = 1 if weight is None else weight.ndim
    if nd > x.ndim:
        return None
    lead = x.shape[: x.ndim - nd]
    stat = np.float64 if x.dtype == np.float64 else np.float32
    y = np.empty(x.shape, x.dtype)
    mean = np.empty(lead, stat) if kind is _LAYER else None
    rstd = np.empty(lead, stat)
    try:
        _core.row_norm_forward(kind, nd, eps, weight_offset, 1.0, x, None, None, weight, bias,
                               y, None, mean, rstd, 0)
    except (ValueError, TypeError):
        return None
    return y, mean, rstd


def _numpy_backward(kind, dy, x, mean, rstd, weight, bias, weight_offset):
    """The backward of NumPy arrays straight into the core: ``(dx, dweight, dbias)``, or None
    for the general path (as :func:`_numpy_train_forward`)."""
    if not (type(x) is np.ndarray and type(dy) is np.ndarray and type(rstd) is np.ndarray
            and (mean is None or type(mean) is np.ndarray)
            and (weight is None or type(weight) is np.ndarray)
            and (bias is None or isinstance(bias, bool) or type(bias) is np.ndarray)):
        return None
    nd = x.ndim - rstd.ndim
    if nd < 1:
        return None
    pshape = x.shape[x.ndim - nd:]
    dx = np.empty(x.shape, x.dtype)
    dweight = _empty_param(NumpyLib, weight, x, pshape) if weight is not None else None
    dbias = _empty_param(NumpyLib, bias, x, pshape) if bias is not None else None
    try:
        _core.row_norm_backward(kind, nd, weight_offset, 1.0, dy, None, x, mean, rstd, weight,
                                dx, None, dweight, dbias, None, 0)
    except (ValueError, TypeError):
        return None
    return dx, dweight, dbias


def layer_norm_forward(x, weight=None, bias=None, eps=1e-5, *, normalized_shape=None):
    """Layer norm for training without autograd: returns ``(y, mean, rstd)``; ``mean`` and
    ``rstd`` have the leading shape of ``x`` and dtype float32 (float64 for float64 x)."""
    fast = _numpy_train_forward(_LAYER, x, weight, bias, eps, 0.0, normalized_shape)
    if fast is not None:
        return fast
    ops = _plain_torch(x, weight, bias)
    if ops is not None:
        nd = _normalized_ndim(x, weight, normalized_shape)
        return ops.LAYER_NORM.call((x, weight, bias, eps, nd), ops.LAYER_NORM.op.all_want)
    y, _, mean, rstd = _forward(_LAYER, x, None, weight, bias, None, eps, 0.0, 1.0,
                                normalized_shape, None, None, True, False)
    return y, mean, rstd


def _stat_nd(x, stat, name) -> int:
    nd = x.ndim - stat.ndim
    if nd < 1:
        raise ValueError(
            f"{name}: expected the leading dims of x {tuple(x.shape)} (one value per row), "
            f"got shape {tuple(stat.shape)}"
        )
    return nd


def _backward(kind, dy, x, mean, rstd, weight, bias, weight_offset, residual_scale, ds,
              want_dresidual, want_dx_bias, stat_name, bo):
    nd = _stat_nd(x, rstd, stat_name)
    lib = lib_for(x)
    # Parameter gradients are allocated here (unless out= gives them): `bias` / `x_bias` may
    # be mere flags (True).
    pshape = tuple(x.shape)[x.ndim - nd :]

    def param(name, like):
        w = bo.want(name, None if like is None else True)
        return _empty_param(lib, like, x, pshape) if w is True else w

    dweight = param("dweight", weight)
    dbias = param("dbias", bias)
    dxb = param("dx_bias", want_dx_bias) if "dx_bias" in bo.names else None
    x = detach(x)
    got = _BACKWARD[kind, want_dresidual].run_named(
        lib,
        dict(dy=detach(dy), ds=detach(ds), x=x, s=x, mean=detach(mean), rstd=detach(rstd),
             rrms=detach(rstd), weight=detach(weight), bias=None, x_bias=None,
             weight_offset=weight_offset, residual_scale=residual_scale, normalized_ndim=nd,
             need_dresidual=True, need_dweight=True, need_dbias=True, need_dx_bias=True),
        dict(dx=bo.want("dx"),
             dresidual=bo.want("dresidual") if want_dresidual else None,
             dweight=dweight, dbias=dbias, dx_bias=dxb), lib.stream)
    return tuple(bo.finish(lib, n, got.get(n)) for n in bo.names)


def _empty_param(lib, like, x, shape):
    """A gradient shaped and typed like parameter ``like`` (or like x's rows if ``like`` is
    not an array)."""
    if like is None or like is True or isinstance(like, bool):
        return lib.empty_like_x(x, shape)
    if lib is NumpyLib:
        return np.empty(like.shape, like.dtype)
    if is_torch(like):
        torch = sys.modules["torch"]
        return torch.empty(like.shape, dtype=like.dtype, device=like.device)
    return lib.empty_like_x(like)


_ROW_GRADS = ("dx", "dweight", "dbias")
_ADD_GRADS = ("dx", "dresidual", "dweight", "dbias", "dx_bias")


def layer_norm_backward(dy, x, mean, rstd, weight=None, bias=None, *, out=None):
    """Gradients of :func:`layer_norm_forward`: returns ``(dx, dweight, dbias)``, ``None``
    for an absent parameter. ``bias`` only says whether ``dbias`` is wanted. ``out=``: a
    tuple of three buffers (or ``None`` entries) to write the gradients into."""
    if out is None:
        fast = _numpy_backward(_LAYER, dy, x, mean, rstd, weight, bias, 0.0)
        if fast is not None:
            return fast
        ops = _plain_torch(x, dy, mean, rstd, weight, None if bias is True else bias)
        if ops is not None and not isinstance(bias, bool):
            bwd = ops.LAYER_NORM.backward
            return bwd.call((dy, x, mean, rstd, weight, bias, _stat_nd(x, rstd, "mean"),
                             weight is not None, bias is not None), bwd.op.all_want)
    bo = BackwardOut("layer_norm_backward", out, _ROW_GRADS, (dy, x, weight))
    return _backward(_LAYER, dy, x, mean, rstd, weight, bias, 0.0, 1.0, None, False, None,
                     "mean", bo)


# ---------------------------------------------------------------------------------------
# RMS norm
# ---------------------------------------------------------------------------------------


def rms_norm(x, weight=None, eps=1e-6, weight_offset=0.0, *, bias=None, normalized_shape=None,
             out=None):
    """RMS normalization (SPEC §2): ``y = x·rrms·(weight + weight_offset) (+ bias)``;
    ``weight_offset=1`` is the zero-centred (Gemma) form."""
    if type(x) is np.ndarray and normalized_shape is None and x.flags.c_contiguous:
        y = np.empty(x.shape, x.dtype) if out is None else out
        try:
            _core.row_norm_forward(_RMS, 1 if weight is None else weight.ndim, eps,
                                   weight_offset, 1.0, x, None, None, weight, bias, y, None,
                                   None, None, 0)
            return y
        except ValueError:
            pass  # the general path copies strided parameters, or names the problem
    tensor, ops = _FAST
    if out is None and type(x) is tensor and normalized_shape is None:
        nd = 1 if weight is None else weight.dim() if type(weight) is tensor else 0
        if nd:
            return ops.RMS_NORM(x, weight, bias, eps, weight_offset, nd)[0]
    if out is None and is_torch(x):
        nd = _normalized_ndim(x, weight, normalized_shape)
        return _torch_ops().RMS_NORM(x, weight, bias, eps, weight_offset, nd)[0]
    return _forward(_RMS, x, None, weight, bias, None, eps, weight_offset, 1.0, normalized_shape,
                    out, None, False, False)[0]


def rms_norm_forward(x, weight=None, eps=1e-6, weight_offset=0.0, *, bias=None,
                     normalized_shape=None):
    """RMS norm for training without autograd: returns ``(y, rrms)``."""
    fast = _numpy_train_forward(_RMS, x, weight, bias, eps, weight_offset, normalized_shape)
    if fast is not None:
        return fast[0], fast[2]
    ops = _plain_torch(x, weight, bias)
    if ops is not None:
        nd = _normalized_ndim(x, weight, normalized_shape)
        return ops.RMS_NORM.call((x, weight, bias, eps, weight_offset, nd),
                                 ops.RMS_NORM.op.all_want)
    y, _, _, rrms = _forward(_RMS, x, None, weight, bias, None, eps, weight_offset, 1.0,
                             normalized_shape, None, None, True, False)
    return y, rrms


def rms_norm_backward(dy, x, rrms, weight=None, bias=None, weight_offset=0.0, *, out=None):
    """Gradients of :func:`rms_norm_forward`: returns ``(dx, dweight, dbias)``; ``out=`` as
    :func:`layer_norm_backward`'s."""
    if out is None:
        fast = _numpy_backward(_RMS, dy, x, None, rrms, weight, bias, weight_offset)
        if fast is not None:
            return fast
        ops = _plain_torch(x, dy, rrms, weight, None if bias is True else bias)
        if ops is not None and not isinstance(bias, bool):
            bwd = ops.RMS_NORM.backward
            return bwd.call((dy, x, rrms, weight, bias, weight_offset,
                             _stat_nd(x, rrms, "rrms"), weight is not None, bias is not None),
                            bwd.op.all_want)
    bo = BackwardOut("rms_norm_backward", out, _ROW_GRADS, (dy, x, weight))
    return _backward(_RMS, dy, x, None, rrms, weight, bias, weight_offset, 1.0, None, False,
                     None, "rrms", bo)


# ---------------------------------------------------------------------------------------
# Fused residual add + norm
# ---------------------------------------------------------------------------------------


def _add_norm(kind, x, residual, weight, bias, eps, weight_offset, residual_scale,
              return_residual, x_bias, normalized_shape, out, residual_out):
    if (type(x) is np.ndarray and type(residual) is np.ndarray and normalized_shape is None
            and out is None and residual_out is None and x.flags.c_contiguous
            and (weight is None or type(weight) is np.ndarray)):
        # The NumPy fast path, as layer_norm's: a [1, 4096] call ~8.6 -> ~3 us.
        y = np.empty(x.shape, x.dtype)
        s = np.empty(x.shape, x.dtype) if return_residual else None
        try:
            _core.row_norm_forward(kind, 1 if weight is None else weight.ndim, eps,
                                   weight_offset, residual_scale, x, residual, x_bias, weight,
                                   bias, y, s, None, None, 0)
            return (y, s) if return_residual else y
        except (ValueError, TypeError):
            pass  # the general path copies strided arrays, or names the problem
    if out is None and residual_out is None and is_torch(x):
        nd = _normalized_ndim(x, weight, normalized_shape)
        ops = _torch_ops()
        if kind == _LAYER:
            op, args = ops.ADD_LAYER_NORM, (x, residual, weight, bias, eps, residual_scale,
                                            x_bias, nd)
        else:
            op, args = ops.ADD_RMS_NORM, (x, residual, weight, bias, eps, weight_offset,
                                          residual_scale, x_bias, nd)
        # Without autograd, `s` is written only when it is returned.
        outs = op.call(args, op.op.no_grad_want if return_residual else _WITHOUT_S[kind])
        return (outs[0], outs[1]) if return_residual else outs[0]
    y, s, _, _ = _forward(kind, x, residual, weight, bias, x_bias, eps, weight_offset,
                          residual_scale, normalized_shape, out, residual_out, False,
                          return_residual)
    return (y, s) if return_residual else y


def add_layer_norm(x, residual, weight=None, bias=None, eps=1e-5, residual_scale=1.0,
                   return_residual=False, *, x_bias=None, normalized_shape=None, out=None,
                   residual_out=None):
    """``s = x (+ x_bias) + residual_scale·residual``; ``y = layer_norm(s)`` in one pass.
    Returns ``y``, or ``(y, s)`` with ``return_residual=True`` (the new residual stream of a
    pre-norm transformer; ``residual_out=residual`` writes it in place)."""
    return _add_norm(_LAYER, x, residual, weight, bias, eps, 0.0, residual_scale,
                     return_residual, x_bias, normalized_shape, out, residual_out)


def add_rms_norm(x, residual, weight=None, eps=1e-6, weight_offset=0.0, residual_scale=1.0,
                 return_residual=False, *, bias=None, x_bias=None, normalized_shape=None,
                 out=None, residual_out=None):
    """``s = x (+ x_bias) + residual_scale·residual``; ``y = rms_norm(s)`` in one pass."""
    return _add_norm(_RMS, x, residual, weight, bias, eps, weight_offset, residual_scale,
                     return_residual, x_bias, normalized_shape, out, residual_out)


def add_layer_norm_forward(x, residual, weight=None, bias=None, eps=1e-5, residual_scale=1.0, *,
                           x_bias=None, normalized_shape=None, residual_out=None):
    """Returns ``(y, s, mean, rstd)``: ``s`` is what the backward takes."""
    return _forward(_LAYER, x, residual, weight, bias, x_bias, eps, 0.0, residual_scale,
                    normalized_shape, None, residual_out, True, True)


def add_rms_norm_forward(x, residual, weight=None, eps=1e-6, weight_offset=0.0,
                         residual_scale=1.0, *, bias=None, x_bias=None, normalized_shape=None,
                         residual_out=None):
    """Returns ``(y, s, rrms)``."""
    y, s, _, rrms = _forward(_RMS, x, residual, weight, bias, x_bias, eps, weight_offset,
                             residual_scale, normalized_shape, None, residual_out, True, True)
    return y, s, rrms


def add_layer_norm_backward(dy, s, mean, rstd, weight=None, bias=None, residual_scale=1.0, *,
                            ds=None, x_bias=None, out=None):
    """Gradients of :func:`add_layer_norm_forward`: ``(dx, dresidual, dweight, dbias,
    dx_bias)``. ``ds`` is a gradient arriving on ``s`` (pre-norm); ``dx`` is the total
    gradient of ``s``, ``dresidual = residual_scale·dx``, ``dx_bias = Σ_rows dx`` (only
    when ``x_bias`` is given). ``out=``: a tuple of five buffers (or ``None`` entries)."""
    bo = BackwardOut("add_layer_norm_backward", out, _ADD_GRADS, (dy, s, weight, ds))
    return _backward(_LAYER, dy, s, mean, rstd, weight, bias, 0.0, residual_scale, ds, True,
                     x_bias, "mean", bo)


def add_rms_norm_backward(dy, s, rrms, weight=None, bias=None, weight_offset=0.0,
                          residual_scale=1.0, *, ds=None, x_bias=None, out=None):
    """Gradients of :func:`add_rms_norm_forward`: ``(dx, dresidual, dweight, dbias, dx_bias)``;
    ``out=`` as :func:`add_layer_norm_backward`'s."""
    bo = BackwardOut("add_rms_norm_backward", out, _ADD_GRADS, (dy, s, weight, ds))
    return _backward(_RMS, dy, s, None, rrms, weight, bias, weight_offset, residual_scale, ds,
                     True, x_bias, "rrms", bo)
