"""torch.library custom ops over the row-norm kernels (SPEC §1–3).

Eight operators in the ``normkit`` namespace, a forward and a backward per norm:

    layer_norm_fwd      (x, weight?, bias?, eps, nd)                          -> (y, mean, rstd)
    rms_norm_fwd        (x, weight?, bias?, eps, weight_offset, nd)           -> (y, rrms)
    add_layer_norm_fwd  (x, residual, weight?, bias?, eps, residual_scale,
                         x_bias?, nd)                                         -> (y, s, mean, rstd)
    add_rms_norm_fwd    (x, residual, weight?, bias?, eps, weight_offset,
                         residual_scale, x_bias?, nd)                         -> (y, s, rrms)

and ``*_bwd`` ops that run our backward kernels. Each forward has a fake (meta)
implementation, so ``torch.compile(fullgraph=True)`` traces it, and an autograd formula
(``register_autograd``) that calls the matching ``*_bwd`` op, so gradients come from our
kernels rather than from torch's math.

Conventions:
  - ``nd`` (``normalized_ndim``): the last ``nd`` dims of ``x`` form a row.
  - ``y`` and ``s`` are C-contiguous tensors of ``x``'s shape and dtype; ``mean``/``rstd``
    (``rrms`` for RMS) have shape ``x.shape[:-nd]`` and dtype float32, float64 for float64
    ``x``. They are saved for backward and are not differentiable.
  - ``s = x + x_bias + residual_scale·residual`` in ``x``'s dtype: the new residual stream of a
    pre-norm transformer. The add backward accepts a gradient on ``s`` as well as on ``y``.
  - Validation (shapes, dtypes, devices, eps) happens in the core and raises
    ``ValueError``/``TypeError`` naming the argument. Python only checks what the core cannot
    know: that ``nd`` leaves a valid statistics shape.

Custom-op outputs cannot be optional, so a backward op returns a zero-size placeholder for
each gradient that was not asked for (``need_*`` false or the parameter absent); the autograd
formulas turn those into ``None``.

The functional entry points at the bottom (``layer_norm``, ``rms_norm``, ``add_layer_norm``,
``add_rms_norm``) are what ``normkit``'s functional API and the modules call.
"""

import contextlib
from typing import Optional, Tuple

import torch
from torch import Tensor

from normkit import _core

__all__ = ["layer_norm", "rms_norm", "add_layer_norm", "add_rms_norm"]

_LAYER = _core.NormKind.layer
_RMS = _core.NormKind.rms


# ---------------------------------------------------------------------------------------------
# Helpers shared by the real and the fake implementations
# ---------------------------------------------------------------------------------------------


def _check_normalized_ndim(x: Tensor, normalized_ndim: int) -> None:
    # The core checks this too, but we need a valid `nd` before we can shape mean/rstd.
    if not 1 <= normalized_ndim <= x.dim():
        raise ValueError(
            f"normalized_ndim: expected 1 <= normalized_ndim <= x.dim() = {x.dim()}, "
            f"got {normalized_ndim}"
        )


def _stat_dtype(x: Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _new_stat(x: Tensor, normalized_ndim: int) -> Tensor:
    return x.new_empty(x.shape[: x.dim() - normalized_ndim], dtype=_stat_dtype(x))


def _new_like_rows(x: Tensor) -> Tensor:
    # Always C-contiguous (never empty_like's stride-preserving layout), so the real and the
    # fake implementations agree on strides for any input layout.
    return x.new_empty(x.shape)


# ---------------------------------------------------------------------------------------------
# Calling the core
# ---------------------------------------------------------------------------------------------


def _rows_compact(t: Optional[Tensor], normalized_ndim: int) -> Optional[Tensor]:
    """`t` itself when its last `normalized_ndim` dims are C-contiguous among themselves
    (the leading dims may have any strides: the core finds each row by its offset), else one
    contiguous copy. Size-1 dims place no constraint on their stride."""
    if t is None:
        return None
    expected = 1
    for size, stride in zip(reversed(t.shape[t.dim() - normalized_ndim :]),
                            reversed(t.stride()[t.dim() - normalized_ndim :])):
        if size != 1 and stride != expected:
            return t.contiguous()
        expected *= size
    return t


def _arg(t: Optional[Tensor]) -> Optional[Tensor]:
    # detach(): a tensor that requires grad refuses DLPack export; the custom-op layer has
    # already taken care of autograd, the core only reads memory.
    return None if t is None else t.detach()


def _stream(x: Tensor) -> int:
    if x.device.type == "cuda":
        return torch.cuda.current_stream(x.device).cuda_stream
    return 0


def _device_guard(x: Tensor):
    if x.device.type == "cuda":
        return torch.cuda.device(x.device)
    return contextlib.nullcontext()


def _forward(kind, nd, eps, weight_offset, residual_scale, x, residual, x_bias, weight, bias):
    """Runs the core forward; returns (y, s or None, mean or None, rstd)."""
    _check_normalized_ndim(x, nd)
    x = _rows_compact(x, nd)
    residual = _rows_compact(residual, nd)
    y = _new_like_rows(x)
    s = _new_like_rows(x) if residual is not None else None
    mean = _new_stat(x, nd) if kind == _LAYER else None
    rstd = _new_stat(x, nd)
    with _device_guard(x):
        _core.row_norm_forward(
            kind, nd, float(eps), float(weight_offset), float(residual_scale),
            _arg(x), _arg(residual), _arg(x_bias), _arg(weight), _arg(bias),
            y, s, mean, rstd, _stream(x),
        )
    return y, s, mean, rstd


def _wanted_grads(weight, bias, x_bias, need_dresidual, need_dweight, need_dbias,
                  need_dx_bias) -> Tuple[bool, ...]:
    """Which of (dx, dresidual, dweight, dbias, dx_bias) a backward computes. dx always: the
    kernel produces it on the way to everything else."""
    return (True, need_dresidual, weight is not None and need_dweight,
            bias is not None and need_dbias, x_bias is not None and need_dx_bias)


def _alloc_grads(x, weight, bias, x_bias, wanted) -> Tuple[Tensor, ...]:
    # new_empty is C-contiguous whatever the template's strides; x.new_empty((0,)) is the
    # "not computed" placeholder.
    return tuple(t.new_empty(t.shape) if w else x.new_empty((0,))
                 for t, w in zip((x, x, weight, bias, x_bias), wanted))


def _backward(kind, nd, weight_offset, residual_scale, dy, ds, x, mean, rstd, weight, bias,
              x_bias, need_dresidual, need_dweight, need_dbias, need_dx_bias):
    """Runs the core backward; returns (dx, dresidual, dweight, dbias, dx_bias), each one not
    asked for a zero-size placeholder."""
    _check_normalized_ndim(x, nd)
    dy = _rows_compact(dy, nd)
    ds = _rows_compact(ds, nd)
    x = _rows_compact(x, nd)
    wanted = _wanted_grads(weight, bias, x_bias, need_dresidual, need_dweight, need_dbias,
                           need_dx_bias)
    grads = _alloc_grads(x, weight, bias, x_bias, wanted)
    dx, dresidual, dweight, dbias, dx_bias = (g if w else None for g, w in zip(grads, wanted))
    with _device_guard(x):
        _core.row_norm_backward(
            kind, nd, float(weight_offset), float(residual_scale),
            _arg(dy), _arg(ds), _arg(x), _arg(mean), _arg(rstd), _arg(weight),
            dx, dresidual, dweight, dbias, dx_bias, _stream(x),
        )
    return grads


def _fake_backward(nd, x, weight, bias, x_bias, need_dresidual, need_dweight, need_dbias,
                   need_dx_bias):
    _check_normalized_ndim(x, nd)
    wanted = _wanted_grads(weight, bias, x_bias, need_dresidual, need_dweight, need_dbias,
                           need_dx_bias)
    return _alloc_grads(x, weight, bias, x_bias, wanted)


def _grad_or_none(t: Tensor, wanted: bool) -> Optional[Tensor]:
    return t if wanted else None


# ---------------------------------------------------------------------------------------------
# Layer norm (SPEC §1)
# ---------------------------------------------------------------------------------------------


@torch.library.custom_op("normkit::layer_norm_fwd", mutates_args=())
def layer_norm_fwd(x: Tensor, weight: Optional[Tensor], bias: Optional[Tensor], eps: float,
                   normalized_ndim: int) -> Tuple[Tensor, Tensor, Tensor]:
    y, _, mean, rstd = _forward(_LAYER, normalized_ndim, eps, 0.0, 1.0, x, None, None,
                                weight, bias)
    return y, mean, rstd


@layer_norm_fwd.register_fake
def _(x, weight, bias, eps, normalized_ndim):
    _check_normalized_ndim(x, normalized_ndim)
    return _new_like_rows(x), _new_stat(x, normalized_ndim), _new_stat(x, normalized_ndim)


@torch.library.custom_op("normkit::layer_norm_bwd", mutates_args=())
def layer_norm_bwd(dy: Tensor, x: Tensor, mean: Tensor, rstd: Tensor, weight: Optional[Tensor],
                   bias: Optional[Tensor], normalized_ndim: int, need_dweight: bool,
                   need_dbias: bool) -> Tuple[Tensor, Tensor, Tensor]:
    """`bias` is only the template (shape, dtype) of dbias; the backward does not read it."""
    dx, _, dweight, dbias, _ = _backward(
        _LAYER, normalized_ndim, 0.0, 1.0, dy, None, x, mean, rstd, weight, bias, None,
        False, need_dweight, need_dbias, False)
    return dx, dweight, dbias


@layer_norm_bwd.register_fake
def _(dy, x, mean, rstd, weight, bias, normalized_ndim, need_dweight, need_dbias):
    dx, _, dweight, dbias, _ = _fake_backward(normalized_ndim, x, weight, bias, None, False,
                                              need_dweight, need_dbias, False)
    return dx, dweight, dbias


def _layer_norm_setup(ctx, inputs, output):
    x, weight, bias, _eps, normalized_ndim = inputs
    _y, mean, rstd = output
    ctx.mark_non_differentiable(mean, rstd)
    ctx.save_for_backward(x, mean, rstd, weight, bias)
    ctx.normalized_ndim = normalized_ndim


def _layer_norm_backward(ctx, dy, _dmean, _drstd):
    x, mean, rstd, weight, bias = ctx.saved_tensors
    _, need_dweight, need_dbias, _, _ = ctx.needs_input_grad
    dx, dweight, dbias = torch.ops.normkit.layer_norm_bwd(
        dy, x, mean, rstd, weight, bias, ctx.normalized_ndim, need_dweight, need_dbias)
    return (_grad_or_none(dx, ctx.needs_input_grad[0]), _grad_or_none(dweight, need_dweight),
            _grad_or_none(dbias, need_dbias), None, None)


layer_norm_fwd.register_autograd(_layer_norm_backward, setup_context=_layer_norm_setup)


# ---------------------------------------------------------------------------------------------
# RMS norm (SPEC §2)
# ---------------------------------------------------------------------------------------------


@torch.library.custom_op("normkit::rms_norm_fwd", mutates_args=())
def rms_norm_fwd(x: Tensor, weight: Optional[Tensor], bias: Optional[Tensor], eps: float,
                 weight_offset: float, normalized_ndim: int) -> Tuple[Tensor, Tensor]:
    y, _, _, rrms = _forward(_RMS, normalized_ndim, eps, weight_offset, 1.0, x, None, None,
                             weight, bias)
    return y, rrms


@rms_norm_fwd.register_fake
def _(x, weight, bias, eps, weight_offset, normalized_ndim):
    _check_normalized_ndim(x, normalized_ndim)
    return _new_like_rows(x), _new_stat(x, normalized_ndim)


@torch.library.custom_op("normkit::rms_norm_bwd", mutates_args=())
def rms_norm_bwd(dy: Tensor, x: Tensor, rrms: Tensor, weight: Optional[Tensor],
                 bias: Optional[Tensor], weight_offset: float, normalized_ndim: int,
                 need_dweight: bool, need_dbias: bool) -> Tuple[Tensor, Tensor, Tensor]:
    """`bias` is only the template (shape, dtype) of dbias; the backward does not read it."""
    dx, _, dweight, dbias, _ = _backward(
        _RMS, normalized_ndim, weight_offset, 1.0, dy, None, x, None, rrms, weight, bias, None,
        False, need_dweight, need_dbias, False)
    return dx, dweight, dbias


@rms_norm_bwd.register_fake
def _(dy, x, rrms, weight, bias, weight_offset, normalized_ndim, need_dweight, need_dbias):
    dx, _, dweight, dbias, _ = _fake_backward(normalized_ndim, x, weight, bias, None, False,
                                              need_dweight, need_dbias, False)
    return dx, dweight, dbias


def _rms_norm_setup(ctx, inputs, output):
    x, weight, bias, _eps, weight_offset, normalized_ndim = inputs
    _y, rrms = output
    ctx.mark_non_differentiable(rrms)
    ctx.save_for_backward(x, rrms, weight, bias)
    ctx.weight_offset = weight_offset
    ctx.normalized_ndim = normalized_ndim


def _rms_norm_backward(ctx, dy, _drrms):
    x, rrms, weight, bias = ctx.saved_tensors
    need_dx, need_dweight, need_dbias = ctx.needs_input_grad[:3]
    dx, dweight, dbias = torch.ops.normkit.rms_norm_bwd(
        dy, x, rrms, weight, bias, ctx.weight_offset, ctx.normalized_ndim, need_dweight,
        need_dbias)
    return (_grad_or_none(dx, need_dx), _grad_or_none(dweight, need_dweight),
            _grad_or_none(dbias, need_dbias), None, None, None)


rms_norm_fwd.register_autograd(_rms_norm_backward, setup_context=_rms_norm_setup)


# ---------------------------------------------------------------------------------------------
# Fused residual add + norm (SPEC §3)
# ---------------------------------------------------------------------------------------------


@torch.library.custom_op("normkit::add_layer_norm_fwd", mutates_args=())
def add_layer_norm_fwd(x: Tensor, residual: Tensor, weight: Optional[Tensor],
                       bias: Optional[Tensor], eps: float, residual_scale: float,
                       x_bias: Optional[Tensor], normalized_ndim: int
                       ) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    y, s, mean, rstd = _forward(_LAYER, normalized_ndim, eps, 0.0, residual_scale, x, residual,
                                x_bias, weight, bias)
    return y, s, mean, rstd


@add_layer_norm_fwd.register_fake
def _(x, residual, weight, bias, eps, residual_scale, x_bias, normalized_ndim):
    _check_normalized_ndim(x, normalized_ndim)
    return (_new_like_rows(x), _new_like_rows(x), _new_stat(x, normalized_ndim),
            _new_stat(x, normalized_ndim))


@torch.library.custom_op("normkit::add_layer_norm_bwd", mutates_args=())
def add_layer_norm_bwd(dy: Tensor, ds: Optional[Tensor], s: Tensor, mean: Tensor, rstd: Tensor,
                       weight: Optional[Tensor], bias: Optional[Tensor],
                       x_bias: Optional[Tensor], residual_scale: float, normalized_ndim: int,
                       need_dresidual: bool, need_dweight: bool, need_dbias: bool,
                       need_dx_bias: bool) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Returns (dx, dresidual, dweight, dbias, dx_bias); dx = dL/ds including `ds`.
    `bias`, `x_bias` are only the templates (shape, dtype) of their gradients."""
    return _backward(_LAYER, normalized_ndim, 0.0, residual_scale, dy, ds, s, mean, rstd,
                     weight, bias, x_bias, need_dresidual, need_dweight, need_dbias,
                     need_dx_bias)


@add_layer_norm_bwd.register_fake
def _(dy, ds, s, mean, rstd, weight, bias, x_bias, residual_scale, normalized_ndim,
      need_dresidual, need_dweight, need_dbias, need_dx_bias):
    return _fake_backward(normalized_ndim, s, weight, bias, x_bias, need_dresidual,
                          need_dweight, need_dbias, need_dx_bias)


# ---------------------------------------------------------------------------------------------
# Fused add + RMS norm
# ---------------------------------------------------------------------------------------------


@torch.library.custom_op("normkit::add_rms_norm_fwd", mutates_args=())
def add_rms_norm_fwd(x: Tensor, residual: Tensor, weight: Optional[Tensor],
                     bias: Optional[Tensor], eps: float, weight_offset: float,
                     residual_scale: float, x_bias: Optional[Tensor], normalized_ndim: int
                     ) -> Tuple[Tensor, Tensor, Tensor]:
    y, s, _, rrms = _forward(_RMS, normalized_ndim, eps, weight_offset, residual_scale, x,
                             residual, x_bias, weight, bias)
    return y, s, rrms


@add_rms_norm_fwd.register_fake
def _(x, residual, weight, bias, eps, weight_offset, residual_scale, x_bias, normalized_ndim):
    _check_normalized_ndim(x, normalized_ndim)
    return _new_like_rows(x), _new_like_rows(x), _new_stat(x, normalized_ndim)


@torch.library.custom_op("normkit::add_rms_norm_bwd", mutates_args=())
def add_rms_norm_bwd(dy: Tensor, ds: Optional[Tensor], s: Tensor, rrms: Tensor,
                     weight: Optional[Tensor], bias: Optional[Tensor], x_bias: Optional[Tensor],
                     weight_offset: float, residual_scale: float, normalized_ndim: int,
                     need_dresidual: bool, need_dweight: bool, need_dbias: bool,
                     need_dx_bias: bool) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Returns (dx, dresidual, dweight, dbias, dx_bias); dx = dL/ds including `ds`.
    `bias`, `x_bias` are only the templates (shape, dtype) of their gradients."""
    return _backward(_RMS, normalized_ndim, weight_offset, residual_scale, dy, ds, s, None, rrms,
                     weight, bias, x_bias, need_dresidual, need_dweight, need_dbias,
                     need_dx_bias)


@add_rms_norm_bwd.register_fake
def _(dy, ds, s, rrms, weight, bias, x_bias, weight_offset, residual_scale, normalized_ndim,
      need_dresidual, need_dweight, need_dbias, need_dx_bias):
    return _fake_backward(normalized_ndim, s, weight, bias, x_bias, need_dresidual,
                          need_dweight, need_dbias, need_dx_bias)


# Autograd for both fused ops. Inputs: (x, residual, weight, bias, eps, [weight_offset,]
# residual_scale, x_bias, nd); outputs: (y, s, [mean,] rstd).
#
# Gradients are not materialized: an output that took no part in the loss arrives as None,
# so a pre-norm block whose `s` feeds nothing costs no zero-filled `ds` read. A missing `dy`
# (only `s` used) becomes zeros — rare, and the kernel needs one.
#
# With residual_scale == 1, dresidual == dx exactly; we hand autograd the same tensor for both
# (as torch's own AddBackward does) instead of writing a second copy.


def _add_setup(ctx, kind, weight, bias, weight_offset, residual_scale, x_bias, normalized_ndim,
               s, mean, rstd):
    ctx.set_materialize_grads(False)
    ctx.mark_non_differentiable(*(t for t in (mean, rstd) if t is not None))
    ctx.save_for_backward(s, mean, rstd, weight, bias, x_bias)
    ctx.kind = kind
    ctx.weight_offset = weight_offset
    ctx.residual_scale = residual_scale
    ctx.normalized_ndim = normalized_ndim


def _add_backward(ctx, dy, ds):
    s, mean, rstd, weight, bias, x_bias = ctx.saved_tensors
    need_dx, need_dres, need_dweight, need_dbias = ctx.needs_input_grad[:4]
    need_dx_bias = ctx.needs_input_grad[-2]
    if dy is None:
        dy = torch.zeros_like(s)
    separate_dres = need_dres and ctx.residual_scale != 1.0
    common = (ctx.residual_scale, ctx.normalized_ndim, separate_dres, need_dweight, need_dbias,
              need_dx_bias)
    if ctx.kind == _LAYER:
        dx, dres, dweight, dbias, dx_bias = torch.ops.normkit.add_layer_norm_bwd(
            dy, ds, s, mean, rstd, weight, bias, x_bias, *common)
    else:
        dx, dres, dweight, dbias, dx_bias = torch.ops.normkit.add_rms_norm_bwd(
            dy, ds, s, rstd, weight, bias, x_bias, ctx.weight_offset, *common)
    if need_dres and not separate_dres:
        dres = dx
    return (_grad_or_none(dx, need_dx), _grad_or_none(dres, need_dres),
            _grad_or_none(dweight, need_dweight), _grad_or_none(dbias, need_dbias),
            _grad_or_none(dx_bias, need_dx_bias))


def _add_layer_norm_setup(ctx, inputs, output):
    _x, _residual, weight, bias, _eps, residual_scale, x_bias, normalized_ndim = inputs
    _y, s, mean, rstd = output
    _add_setup(ctx, _LAYER, weight, bias, 0.0, residual_scale, x_bias, normalized_ndim, s, mean,
               rstd)


def _add_layer_norm_backward(ctx, dy, ds, _dmean, _drstd):
    dx, dres, dweight, dbias, dx_bias = _add_backward(ctx, dy, ds)
    #      x,  residual, weight,  bias,  eps,  residual_scale, x_bias,  nd
    return dx, dres, dweight, dbias, None, None, dx_bias, None


def _add_rms_norm_setup(ctx, inputs, output):
    (_x, _residual, weight, bias, _eps, weight_offset, residual_scale, x_bias,
     normalized_ndim) = inputs
    _y, s, rrms = output
    _add_setup(ctx, _RMS, weight, bias, weight_offset, residual_scale, x_bias, normalized_ndim,
               s, None, rrms)


def _add_rms_norm_backward(ctx, dy, ds, _drrms):
    dx, dres, dweight, dbias, dx_bias = _add_backward(ctx, dy, ds)
    #      x,  residual, weight,  bias,  eps,  offset, residual_scale, x_bias, nd
    return dx, dres, dweight, dbias, None, None, None, dx_bias, None


add_layer_norm_fwd.register_autograd(_add_layer_norm_backward,
                                     setup_context=_add_layer_norm_setup)
add_rms_norm_fwd.register_autograd(_add_rms_norm_backward, setup_context=_add_rms_norm_setup)


# ---------------------------------------------------------------------------------------------
# Functional entry points (differentiable; what normkit.layer_norm & co. route torch tensors to)
# ---------------------------------------------------------------------------------------------


def layer_norm(x: Tensor, weight: Optional[Tensor] = None, bias: Optional[Tensor] = None,
               eps: float = 1e-5, normalized_ndim: int = 1) -> Tensor:
    """SPEC §1 over the last `normalized_ndim` dims of `x`."""
    return torch.ops.normkit.layer_norm_fwd(x, weight, bias, eps, normalized_ndim)[0]


def rms_norm(x: Tensor, weight: Optional[Tensor] = None, bias: Optional[Tensor] = None,
             eps: float = 1e-6, weight_offset: float = 0.0, normalized_ndim: int = 1) -> Tensor:
    """SPEC §2: y = x·rrms·(weight + weight_offset) (+ bias)."""
    return torch.ops.normkit.rms_norm_fwd(x, weight, bias, eps, weight_offset,
                                          normalized_ndim)[0]


def add_layer_norm(x: Tensor, residual: Tensor, weight: Optional[Tensor] = None,
                   bias: Optional[Tensor] = None, eps: float = 1e-5,
                   residual_scale: float = 1.0, x_bias: Optional[Tensor] = None,
                   normalized_ndim: int = 1) -> Tuple[Tensor, Tensor]:
    """SPEC §3: s = x + x_bias + residual_scale·residual; returns (LayerNorm(s), s)."""
    y, s, _, _ = torch.ops.normkit.add_layer_norm_fwd(x, residual, weight, bias, eps,
                                                      residual_scale, x_bias, normalized_ndim)
    return y, s


def add_rms_norm(x: Tensor, residual: Tensor, weight: Optional[Tensor] = None,
                 bias: Optional[Tensor] = None, eps: float = 1e-6, weight_offset: float = 0.0,
                 residual_scale: float = 1.0, x_bias: Optional[Tensor] = None,
                 normalized_ndim: int = 1) -> Tuple[Tensor, Tensor]:
    """SPEC §3: s = x + x_bias + residual_scale·residual; returns (RMSNorm(s), s)."""
    y, s, _ = torch.ops.normkit.add_rms_norm_fwd(x, residual, weight, bias, eps, weight_offset,
                                                 residual_scale, x_bias, normalized_ndim)
    return y, s
