"""The functional API of AdaNorm (SPEC §8; Xu et al. 2019, "Understanding and Improving Layer
Normalization"): ``ŷ = (x − μ)/(s + eps)`` with ``s`` the unbiased std of the row, then
``z = scale·(1 − k·ŷ)·ŷ``. No weight or bias. In the backward ``scale·(1 − k·ŷ)`` is a
constant (the gradient stop the paper prescribes).

Every function takes NumPy arrays, torch tensors or any DLPack array and returns the same
kind. The two ops are declared once below (ADA_NORM, ADA_NORM_BWD); the functional API
allocates through them, and ``normkit.torch`` registers them as custom ops with autograd
(torch tensors go there, so ``torch.compile`` works). AdaNorm is a kind of the row-norm
kernels (``NormKind::Ada`` in the core): rows are the last ``normalized_ndim`` dims, and a
row needs at least 2 elements (the unbiased std).
"""

from __future__ import annotations

from . import _core
from ._arrays import BackwardOut, detach, is_torch, lib_for, misaligned_numpy, refuse_out_with_grad
from ._registry import Float, Int, Like, Op, Out, Stat, Tensor

__all__ = ["ada_norm", "ada_norm_forward", "ada_norm_backward", "ADA_NORM", "ADA_NORM_BWD"]

ND = "normalized_ndim"

ADA_NORM_BWD = Op(
    "ada_norm_bwd",
    inputs=[Tensor("dy", rows=ND), Tensor("x", rows=ND), Tensor("mean", contiguous=True),
            Tensor("rstd", contiguous=True), Float("k"), Float("scale"), Int(ND)],
    outputs=[Out("dx", Like("x"), grad_of="x")],
    kernel=lambda dy, x, mean, rstd, k, scale, normalized_ndim, dx, stream:
    _core.ada_norm_backward(normalized_ndim, k, scale, dy, x, mean, rstd, dx, stream),
)

ADA_NORM = Op(
    "ada_norm_fwd",
    inputs=[Tensor("x", differentiable=True, rows=ND), Float("k"), Float("scale"),
            Float("eps"), Int(ND)],
    outputs=[Out("y", Like("x")),
             Out("mean", Stat("x", ND), differentiable=False, backward_only=True),
             Out("rstd", Stat("x", ND), differentiable=False, backward_only=True)],
    kernel=lambda x, k, scale, eps, normalized_ndim, y, mean, rstd, stream:
    _core.ada_norm_forward(normalized_ndim, eps, k, scale, x, y, mean, rstd, stream),
    backward=ADA_NORM_BWD,
    doc="SPEC §8: z = scale·(1 − k·ŷ)·ŷ, ŷ = (x − μ)/(s + eps), s the unbiased std.",
)


def _nd(x, normalized_shape) -> int:
    from .functional import _normalized_ndim

    return _normalized_ndim(x, None, normalized_shape)



def ada_norm(x, k=0.1, scale=2.0, eps=1e-5, *, normalized_shape=None, out=None):
    """AdaNorm (SPEC §8) over the last dim, or the trailing dims ``normalized_shape`` names:
    ``scale·(1 − k·ŷ)·ŷ`` with ``ŷ = (x − μ)/(s + eps)``, ``s`` the unbiased std (``eps`` is
    added to the std). Returns ``y``, or writes ``out`` (``out=x`` is in place). A torch
    tensor that needs gradients gets them through the paper's gradient stop."""
    nd = _nd(x, normalized_shape)
    if is_torch(x):
        if out is None:
            from .torch import _ada_norm

            return _ada_norm.ADA_NORM(x, k, scale, eps, nd)[0]
        refuse_out_with_grad("ada_norm", (x,), (out,))
    lib = lib_for(x)
    into = out if misaligned_numpy(out) else None  # computed aligned, then copied in
    want = dict(y=True if out is None or into is not None else out, mean=None, rstd=None)
    y = ADA_NORM.run_named(lib, dict(x=detach(x), k=k, scale=scale, eps=eps,
                                     normalized_ndim=nd), want, lib.stream)["y"]
    if into is not None:
        into[...] = y
        return into
    return lib.finish(y) if out is None else y


def ada_norm_forward(x, k=0.1, scale=2.0, eps=1e-5, *, normalized_shape=None):
    """AdaNorm for users who drive their own autograd: returns ``(y, mean, rstd)``, ``mean``
    and ``rstd = 1/(s + eps)`` with the leading shape of ``x``, float32 (float64 for float64
    x)."""
    nd = _nd(x, normalized_shape)
    lib = lib_for(x)
    got = ADA_NORM.run_named(lib, dict(x=detach(x), k=k, scale=scale, eps=eps,
                                       normalized_ndim=nd),
                             dict(y=True, mean=True, rstd=True), lib.stream)
    f = lib.finish
    return f(got["y"]), f(got["mean"]), f(got["rstd"])


def ada_norm_backward(dy, x, mean, rstd, k=0.1, scale=2.0, *, out=None):
    """The gradient of :func:`ada_norm_forward` with respect to ``x``, ``scale·(1 − k·ŷ)``
    held constant (SPEC §8). The row dims are ``x.ndim − mean.ndim``; ``out``: dx's
    buffer."""
    bo = BackwardOut("ada_norm_backward", out, ("dx",), (dy, x))
    nd = x.ndim - rstd.ndim
    if nd < 1:
        raise ValueError(
            f"rstd: expected the leading dims of x {tuple(x.shape)} (one value per row), got "
            f"shape {tuple(rstd.shape)}")
    lib = lib_for(x)
    got = ADA_NORM_BWD.run_named(
        lib, dict(dy=detach(dy), x=detach(x), mean=detach(mean), rstd=detach(rstd), k=k,
                  scale=scale, normalized_ndim=nd), dict(dx=bo.want("dx")), lib.stream)
    return bo.finish(lib, "dx", got["dx"])
