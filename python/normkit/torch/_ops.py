"""The row norms (SPEC §1–3) in torch: ``torch.ops.normkit.*`` and differentiable functions.

The eight ops are declared once, in ``normkit._row_norm_ops`` (schemas and conventions are
listed there); ``normkit.torch._registry`` makes each a torch custom op with a fake
implementation (``torch.compile(fullgraph=True)`` traces it) and an autograd formula that
runs our backward kernels, plus the lean eager path the functions below take.

The functions below (``layer_norm``, ``rms_norm``, ``add_layer_norm``, ``add_rms_norm``) are
what ``normkit``'s functional API and the modules call.
"""

from typing import Optional, Tuple

from torch import Tensor

from normkit import _core  # noqa: F401  (the kernels' module; tests patch it through here)
from normkit import _row_norm_ops as decl
from normkit.torch._registry import register

__all__ = ["layer_norm", "rms_norm", "add_layer_norm", "add_rms_norm"]

LAYER_NORM = register(decl.LAYER_NORM)
RMS_NORM = register(decl.RMS_NORM)
ADD_LAYER_NORM = register(decl.ADD_LAYER_NORM)
ADD_RMS_NORM = register(decl.ADD_RMS_NORM)


def layer_norm(x: Tensor, weight: Optional[Tensor] = None, bias: Optional[Tensor] = None,
               eps: float = 1e-5, normalized_ndim: int = 1) -> Tensor:
    """SPEC §1 over the last `normalized_ndim` dims of `x`."""
    return LAYER_NORM(x, weight, bias, eps, normalized_ndim)[0]


def rms_norm(x: Tensor, weight: Optional[Tensor] = None, bias: Optional[Tensor] = None,
             eps: float = 1e-6, weight_offset: float = 0.0, normalized_ndim: int = 1) -> Tensor:
    """SPEC §2: y = x·rrms·(weight + weight_offset) (+ bias)."""
    return RMS_NORM(x, weight, bias, eps, weight_offset, normalized_ndim)[0]


def add_layer_norm(x: Tensor, residual: Tensor, weight: Optional[Tensor] = None,
                   bias: Optional[Tensor] = None, eps: float = 1e-5,
                   residual_scale: float = 1.0, x_bias: Optional[Tensor] = None,
                   normalized_ndim: int = 1) -> Tuple[Tensor, Tensor]:
    """SPEC §3: s = x + x_bias + residual_scale·residual; returns (LayerNorm(s), s)."""
    y, s, _, _ = ADD_LAYER_NORM(x, residual, weight, bias, eps, residual_scale, x_bias,
                                normalized_ndim)
    return y, s


def add_rms_norm(x: Tensor, residual: Tensor, weight: Optional[Tensor] = None,
                 bias: Optional[Tensor] = None, eps: float = 1e-6, weight_offset: float = 0.0,
                 residual_scale: float = 1.0, x_bias: Optional[Tensor] = None,
                 normalized_ndim: int = 1) -> Tuple[Tensor, Tensor]:
    """SPEC §3: s = x + x_bias + residual_scale·residual; returns (RMSNorm(s), s)."""
    y, s, _ = ADD_RMS_NORM(x, residual, weight, bias, eps, weight_offset, residual_scale,
                           x_bias, normalized_ndim)
    return y, s
