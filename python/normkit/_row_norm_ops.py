"""The row norms (SPEC §1–3), declared once: layer norm, RMS norm, fused residual add + norm.

Eight ops, a forward and a backward per norm (``normkit._registry`` says what each field
means and what is derived from it):

    layer_norm_fwd      (x, weight?, bias?, eps, nd)                          -> (y, mean, rstd)
    rms_norm_fwd        (x, weight?, bias?, eps, weight_offset, nd)           -> (y, rrms)
    add_layer_norm_fwd  (x, residual, weight?, bias?, eps, residual_scale,
                         x_bias?, nd)                                         -> (y, s, mean, rstd)
    add_rms_norm_fwd    (x, residual, weight?, bias?, eps, weight_offset,
                         residual_scale, x_bias?, nd)                         -> (y, s, rrms)

Conventions:
  - ``nd`` (``normalized_ndim``): the last ``nd`` dims of ``x`` form a row; those dims are
    made contiguous (one copy) when they are not, the leading dims may have any strides.
  - ``y`` and ``s`` are C-contiguous, ``x``'s shape and dtype; ``mean`` / ``rstd`` (``rrms``
    for RMS) have shape ``x.shape[:-nd]``, dtype float32 (float64 for float64 ``x``), are not
    differentiable and are computed only when a backward will need them.
  - ``s = x + x_bias + residual_scale·residual`` in ``x``'s dtype: the new residual stream of a
    pre-norm transformer. The add backward accepts a gradient on ``s`` as well as on ``y``
    (``ds``; absent when ``s`` took no part in the loss) and returns ``dx`` = dL/ds.
  - ``bias`` (and ``x_bias``) in a backward only give the shape and dtype of their gradient.
  - A backward computes ``dx`` always (the kernel produces it on the way to everything
    else), the other gradients when their ``need_*`` flag is set and their input exists.
  - Validation (shapes, dtypes, devices, eps) happens in the core and raises
    ``ValueError``/``TypeError`` naming the argument.
"""

from __future__ import annotations

from . import _core
from ._registry import Bool, Float, Int, Like, Op, OptionalTensor, Out, SameGrad, Stat, Tensor

__all__ = ["LAYER_NORM", "RMS_NORM", "ADD_LAYER_NORM", "ADD_RMS_NORM"]

_LAYER, _RMS = _core.NormKind.layer, _core.NormKind.rms
ND = "normalized_ndim"


def _rows(name, **kw):
    """A tensor whose last ``nd`` dims form rows (dims after them contiguous)."""
    return Tensor(name, rows=ND, **kw)


def _param(name, **kw):
    return OptionalTensor(name, contiguous=True, **kw)


def _shape(name):
    """A backward's template for a gradient's shape and dtype (``dbias`` like ``bias``)."""
    return OptionalTensor(name, shape_only=True)


def _stat(name, of="x"):
    return Out(name, Stat(of, ND), differentiable=False, backward_only=True)


def _grads(of, *, residual):
    """dx (and dresidual), dweight, dbias (and dx_bias) of a backward whose row input is ``of``."""
    outs = [Out("dx", Like(of), grad_of="x")]
    if residual:
        outs.append(Out("dresidual", Like(of), grad_of="residual"))
    outs += [Out("dweight", Like("weight"), grad_of="weight"),
             Out("dbias", Like("bias"), grad_of="bias")]
    if residual:
        outs.append(Out("dx_bias", Like("x_bias"), grad_of="x_bias"))
    return outs


# ---------------------------------------------------------------------------------------
# Layer norm (SPEC §1)
# ---------------------------------------------------------------------------------------

LAYER_NORM_BWD = Op(
    "layer_norm_bwd",
    inputs=[_rows("dy"), _rows("x"), Tensor("mean", contiguous=True),
            Tensor("rstd", contiguous=True), _param("weight"), _shape("bias"), Int(ND),
            Bool("need_dweight"), Bool("need_dbias")],
    outputs=_grads("x", residual=False),
    kernel=lambda dy, x, mean, rstd, weight, bias, normalized_ndim, need_dweight, need_dbias,
    dx, dweight, dbias, stream: _core.row_norm_backward(
        _LAYER, normalized_ndim, 0.0, 1.0, dy, None, x, mean, rstd, weight, dx, None, dweight,
        dbias, None, stream),
)

LAYER_NORM = Op(
    "layer_norm_fwd",
    inputs=[_rows("x", differentiable=True), _param("weight", differentiable=True),
            _param("bias", differentiable=True), Float("eps"), Int(ND)],
    outputs=[Out("y", Like("x")), _stat("mean"), _stat("rstd")],
    kernel=lambda x, weight, bias, eps, normalized_ndim, y, mean, rstd, stream:
    _core.row_norm_forward(_LAYER, normalized_ndim, eps, 0.0, 1.0, x, None, None, weight, bias,
                           y, None, mean, rstd, stream),
    backward=LAYER_NORM_BWD,
    doc="SPEC §1 over the last normalized_ndim dims of x.",
)

# ---------------------------------------------------------------------------------------
# RMS norm (SPEC §2)
# ---------------------------------------------------------------------------------------

RMS_NORM_BWD = Op(
    "rms_norm_bwd",
    inputs=[_rows("dy"), _rows("x"), Tensor("rrms", contiguous=True), _param("weight"),
            _shape("bias"), Float("weight_offset"), Int(ND), Bool("need_dweight"),
            Bool("need_dbias")],
    outputs=_grads("x", residual=False),
    kernel=lambda dy, x, rrms, weight, bias, weight_offset, normalized_ndim, need_dweight,
    need_dbias, dx, dweight, dbias, stream: _core.row_norm_backward(
        _RMS, normalized_ndim, weight_offset, 1.0, dy, None, x, None, rrms, weight, dx, None,
        dweight, dbias, None, stream),
)

RMS_NORM = Op(
    "rms_norm_fwd",
    inputs=[_rows("x", differentiable=True), _param("weight", differentiable=True),
            _param("bias", differentiable=True), Float("eps"), Float("weight_offset"), Int(ND)],
    outputs=[Out("y", Like("x")), _stat("rrms")],
    kernel=lambda x, weight, bias, eps, weight_offset, normalized_ndim, y, rrms, stream:
    _core.row_norm_forward(_RMS, normalized_ndim, eps, weight_offset, 1.0, x, None, None,
                           weight, bias, y, None, None, rrms, stream),
    backward=RMS_NORM_BWD,
    doc="SPEC §2: y = x·rrms·(weight + weight_offset) (+ bias).",
)

# ---------------------------------------------------------------------------------------
# Fused residual add + norm (SPEC §3)
# ---------------------------------------------------------------------------------------

# With residual_scale == 1, dresidual == dx exactly: autograd gets the same tensor for both
# instead of a second copy being written.
_DRESIDUAL_IS_DX = SameGrad("residual", "x", when=lambda residual_scale: residual_scale == 1.0)

_ADD_BWD_FLAGS = [Bool("need_dresidual"), Bool("need_dweight"), Bool("need_dbias"),
                  Bool("need_dx_bias")]

ADD_LAYER_NORM_BWD = Op(
    "add_layer_norm_bwd",
    inputs=[_rows("dy"), OptionalTensor("ds", rows=ND), _rows("s"),
            Tensor("mean", contiguous=True), Tensor("rstd", contiguous=True), _param("weight"),
            _shape("bias"), _shape("x_bias"), Float("residual_scale"), Int(ND),
            *_ADD_BWD_FLAGS],
    outputs=_grads("s", residual=True),
    kernel=lambda dy, ds, s, mean, rstd, weight, bias, x_bias, residual_scale, normalized_ndim,
    need_dresidual, need_dweight, need_dbias, need_dx_bias, dx, dresidual, dweight, dbias,
    dx_bias, stream: _core.row_norm_backward(
        _LAYER, normalized_ndim, 0.0, residual_scale, dy, ds, s, mean, rstd, weight, dx,
        dresidual, dweight, dbias, dx_bias, stream),
)

ADD_LAYER_NORM = Op(
    "add_layer_norm_fwd",
    inputs=[_rows("x", differentiable=True), _rows("residual", differentiable=True),
            _param("weight", differentiable=True), _param("bias", differentiable=True),
            Float("eps"), Float("residual_scale"), _param("x_bias", differentiable=True),
            Int(ND)],
    outputs=[Out("y", Like("x")), Out("s", Like("x")), _stat("mean"), _stat("rstd")],
    kernel=lambda x, residual, weight, bias, eps, residual_scale, x_bias, normalized_ndim, y, s,
    mean, rstd, stream: _core.row_norm_forward(
        _LAYER, normalized_ndim, eps, 0.0, residual_scale, x, residual, x_bias, weight, bias, y,
        s, mean, rstd, stream),
    backward=ADD_LAYER_NORM_BWD,
    same_grad=[_DRESIDUAL_IS_DX],
    doc="SPEC §3: s = x + x_bias + residual_scale·residual; y = LayerNorm(s).",
)

ADD_RMS_NORM_BWD = Op(
    "add_rms_norm_bwd",
    inputs=[_rows("dy"), OptionalTensor("ds", rows=ND), _rows("s"),
            Tensor("rrms", contiguous=True), _param("weight"), _shape("bias"),
            _shape("x_bias"), Float("weight_offset"), Float("residual_scale"), Int(ND),
            *_ADD_BWD_FLAGS],
    outputs=_grads("s", residual=True),
    kernel=lambda dy, ds, s, rrms, weight, bias, x_bias, weight_offset, residual_scale,
    normalized_ndim, need_dresidual, need_dweight, need_dbias, need_dx_bias, dx, dresidual,
    dweight, dbias, dx_bias, stream: _core.row_norm_backward(
        _RMS, normalized_ndim, weight_offset, residual_scale, dy, ds, s, None, rrms, weight, dx,
        dresidual, dweight, dbias, dx_bias, stream),
)

ADD_RMS_NORM = Op(
    "add_rms_norm_fwd",
    inputs=[_rows("x", differentiable=True), _rows("residual", differentiable=True),
            _param("weight", differentiable=True), _param("bias", differentiable=True),
            Float("eps"), Float("weight_offset"), Float("residual_scale"),
            _param("x_bias", differentiable=True), Int(ND)],
    outputs=[Out("y", Like("x")), Out("s", Like("x")), _stat("rrms")],
    kernel=lambda x, residual, weight, bias, eps, weight_offset, residual_scale, x_bias,
    normalized_ndim, y, s, rrms, stream: _core.row_norm_forward(
        _RMS, normalized_ndim, eps, weight_offset, residual_scale, x, residual, x_bias, weight,
        bias, y, s, None, rrms, stream),
    backward=ADD_RMS_NORM_BWD,
    same_grad=[_DRESIDUAL_IS_DX],
    doc="SPEC §3: s = x + x_bias + residual_scale·residual; y = RMSNorm(s).",
)
