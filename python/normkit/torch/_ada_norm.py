"""AdaNorm (SPEC §8) in torch: ``torch.ops.normkit.ada_norm_fwd`` / ``ada_norm_bwd`` (declared
once in ``normkit._ada_norm``), the ``AdaNorm`` module and the ``ada_norm`` function."""

from typing import Sequence, Union

import torch
from torch import Tensor

from normkit import _ada_norm as decl
from normkit.torch._registry import register
from normkit.torch.modules import _bad_trailing_shape, _trailing_ok

__all__ = ["ada_norm", "AdaNorm"]

ADA_NORM = register(decl.ADA_NORM)


def ada_norm(x: Tensor, k: float = 0.1, scale: float = 2.0, eps: float = 1e-5,
             normalized_ndim: int = 1) -> Tensor:
    """SPEC §8 over the last `normalized_ndim` dims of `x`: scale·(1 − k·ŷ)·ŷ, differentiable
    in x with scale·(1 − k·ŷ) held constant."""
    return ADA_NORM(x, k, scale, eps, normalized_ndim)[0]


class AdaNorm(torch.nn.Module):
    """AdaNorm (Xu, Sun, Zhang, Zhao, Lin 2019, "Understanding and Improving Layer
    Normalization"): ``scale·(1 − k·ŷ)·ŷ`` with ``ŷ = (x − μ)/(s + eps)`` over the trailing
    ``normalized_shape`` dims, ``s`` the unbiased std. No learnable parameters (the paper
    replaces LayerNorm's gain and bias with the adaptive ``scale·(1 − k·ŷ)``); in the
    backward that factor is a constant, as the paper prescribes."""

    def __init__(self, normalized_shape: Union[int, Sequence[int]], k: float = 0.1,
                 scale: float = 2.0, eps: float = 1e-5):
        super().__init__()
        if isinstance(normalized_shape, int):
            normalized_shape = (normalized_shape,)
        self.normalized_shape = tuple(int(n) for n in normalized_shape)
        if not self.normalized_shape:
            raise ValueError("normalized_shape: expected at least one dim, got ()")
        self.k, self.scale, self.eps = float(k), float(scale), float(eps)

    def forward(self, x: Tensor) -> Tensor:
        ns = self.normalized_shape
        if not _trailing_ok(x, ns):
            raise _bad_trailing_shape(x, ns)
        return ADA_NORM(x, self.k, self.scale, self.eps, len(ns))[0]

    def extra_repr(self) -> str:
        return f"{self.normalized_shape}, k={self.k}, scale={self.scale}, eps={self.eps}"
