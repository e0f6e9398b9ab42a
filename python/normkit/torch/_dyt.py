"""DyT (SPEC §6) in torch: ``torch.ops.normkit.dyt_fwd`` / ``dyt_bwd`` (declared once in
``normkit._dyt``), the ``DyT`` module and ``layer_norm_to_dyt``."""

from typing import Optional, Sequence, Union

import torch
from torch import Tensor

from normkit import _dyt as decl
from normkit.torch._registry import register

__all__ = ["dyt", "DyT", "layer_norm_to_dyt"]

DYT = register(decl.DYT)


def dyt(x: Tensor, alpha: Tensor, weight: Optional[Tensor] = None,
        bias: Optional[Tensor] = None, channels_last: bool = True) -> Tensor:
    """SPEC §6: weight·tanh(alpha·x) + bias, differentiable in all four."""
    return DYT(x, alpha, weight, bias, channels_last)


class DyT(torch.nn.Module):
    """Dynamic Tanh (Zhu, Chen, He, LeCun, Liu 2025, "Transformers without Normalization"),
    a drop-in for ``nn.LayerNorm``: ``weight·tanh(alpha·x) + bias`` with a learnable scalar
    ``alpha`` (shape ``[1]``) and per-channel ``weight``, ``bias`` (shape ``[C]``) — the
    parameter names and shapes of the paper's ``DynamicTanh``, so its state dicts load.

    ``channels_last=True``: C is the last dim (transformers); ``False``: ``(N, C, *)`` data
    (convolutional nets; a ``torch.channels_last`` tensor is computed in place and the
    output keeps its memory format).
    """

    def __init__(self, normalized_shape: Union[int, Sequence[int]], channels_last: bool = True,
                 alpha_init_value: float = 0.5, device=None, dtype=None):
        super().__init__()
        if not isinstance(normalized_shape, int):
            shape = tuple(normalized_shape)
            if len(shape) != 1:
                raise ValueError(
                    f"normalized_shape: DyT has one weight per channel, expected an int or a "
                    f"1-element shape, got {list(shape)}")
            normalized_shape = int(shape[0])
        self.normalized_shape = normalized_shape
        self.alpha_init_value = alpha_init_value
        self.channels_last = channels_last
        kw = {"device": device, "dtype": dtype}
        self.alpha = torch.nn.Parameter(torch.empty(1, **kw))
        self.weight = torch.nn.Parameter(torch.empty(normalized_shape, **kw))
        self.bias = torch.nn.Parameter(torch.empty(normalized_shape, **kw))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.alpha.fill_(self.alpha_init_value)
            self.weight.fill_(1.0)
            self.bias.zero_()

    def forward(self, x: Tensor) -> Tensor:
        return DYT(x, self.alpha, self.weight, self.bias, self.channels_last)

    def extra_repr(self) -> str:
        return (f"normalized_shape={self.normalized_shape}, "
                f"alpha_init_value={self.alpha_init_value}, channels_last={self.channels_last}")


def layer_norm_to_dyt(model: torch.nn.Module, alpha_init_value: float = 0.5) -> torch.nn.Module:
    """Replaces every ``nn.LayerNorm`` in ``model`` (normkit's ``LayerNorm`` included) with a
    freshly initialised :class:`DyT` of the same width, on the same device and dtype — the
    paper's recipe (DyT is trained from its own initialisation, not converted from the norm's
    weights). Returns ``model``, or the new ``DyT`` when ``model`` itself is a LayerNorm.
    A LayerNorm over more than one dim has no DyT equivalent and raises ``ValueError``."""

    def convert(ln: torch.nn.LayerNorm) -> DyT:
        p = ln.weight if ln.weight is not None else None
        kw = {} if p is None else {"device": p.device, "dtype": p.dtype}
        return DyT(ln.normalized_shape, channels_last=True, alpha_init_value=alpha_init_value,
                   **kw).train(ln.training)

    if isinstance(model, torch.nn.LayerNorm):
        return convert(model)
    done = {}  # a LayerNorm shared by several parents becomes one shared DyT
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, torch.nn.LayerNorm):
                if id(child) not in done:
                    done[id(child)] = convert(child)
                setattr(parent, name, done[id(child)])
    return model
