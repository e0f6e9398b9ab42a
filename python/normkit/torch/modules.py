"""Drop-in torch modules for layer and RMS normalization, running normkit's kernels.

``LayerNorm`` and ``RMSNorm`` subclass ``torch.nn.LayerNorm`` / ``torch.nn.RMSNorm``: the same
constructor, defaults, parameters, ``state_dict`` keys, ``reset_parameters`` and
``extra_repr``, and ``isinstance(m, torch.nn.LayerNorm)`` stays true (code that picks norm
parameters out for weight decay or initialization keeps working). Only ``forward`` differs:
it runs normkit's ops (``normkit.torch._ops``: the kernels directly in eager mode, the
``torch.ops.normkit`` custom ops under ``torch.compile``), whose backward runs our kernels.

Mixed precision as torch allows it: 16-bit input with float32 parameters gives a 16-bit
output (SPEC §0).
"""

from typing import Tuple

import torch
from torch import Tensor

from normkit.torch import _ops

__all__ = ["LayerNorm", "RMSNorm", "replace_norms", "replaces"]


def _trailing_ok(x: Tensor, normalized_shape: Tuple[int, ...]) -> bool:
    """Whether x's last dims are normalized_shape. The one-dim case (almost every model)
    compares one int: slicing a torch.Size and comparing it costs ~0.6 us, a tenth of a
    [1, 4096] call."""
    if len(normalized_shape) == 1:
        return x.dim() >= 1 and x.shape[-1] == normalized_shape[0]
    nd = len(normalized_shape)
    # (A torch.Size slice equals the tuple of the same ints.)
    return x.dim() >= nd and x.shape[x.dim() - nd :] == normalized_shape


def _bad_trailing_shape(input: Tensor, normalized_shape: Tuple[int, ...]) -> ValueError:
    return ValueError(
        f"input: expected a tensor whose last {len(normalized_shape)} dims are "
        f"{list(normalized_shape)}, got shape {list(input.shape)}")


# forward() calls the op objects directly (not _ops.layer_norm): a module call is on every
# step's critical path, and each Python call in it costs about a tenth of a small kernel.


class LayerNorm(torch.nn.LayerNorm):
    """``torch.nn.LayerNorm`` computed by normkit (SPEC §1)."""

    def forward(self, input: Tensor) -> Tensor:
        ns = self.normalized_shape
        # Without weight and bias the core cannot know normalized_shape, only its length.
        if not _trailing_ok(input, ns):
            raise _bad_trailing_shape(input, ns)
        return _ops.LAYER_NORM(input, self.weight, self.bias, self.eps, len(ns))[0]


class RMSNorm(torch.nn.RMSNorm):
    """``torch.nn.RMSNorm`` computed by normkit (SPEC §2). ``eps=None`` means
    ``torch.finfo(input.dtype).eps`` at call time, as in torch."""

    def forward(self, x: Tensor) -> Tensor:
        ns = self.normalized_shape
        if not _trailing_ok(x, ns):
            raise _bad_trailing_shape(x, ns)
        eps = torch.finfo(x.dtype).eps if self.eps is None else self.eps
        return _ops.RMS_NORM(x, self.weight, None, eps, 0.0, len(ns))[0]


_REPLACEMENTS = {torch.nn.LayerNorm: LayerNorm, torch.nn.RMSNorm: RMSNorm}


def replaces(torch_class):
    """Class decorator of a family's module: ``replace_norms`` swaps ``torch_class`` for it
    (the family's registration; no central table)."""

    def register(cls):
        _REPLACEMENTS[torch_class] = cls
        return cls

    return register


def replace_norms(model: torch.nn.Module) -> torch.nn.Module:
    """Makes every torch norm normkit has a module for — ``LayerNorm``, ``RMSNorm``,
    ``BatchNorm1d/2d/3d``, ``SyncBatchNorm``, ``GroupNorm``, ``InstanceNorm1d/2d/3d`` as their
    families are imported (``normkit.torch`` imports them all) — in ``model`` (``model``
    itself included) run normkit, in place, and returns ``model``.

    The swap changes each module's class to our subclass and nothing else: the module object,
    its Parameter objects (device, dtype, optimizer state keyed on them), buffers, hooks and
    training flag are all kept, and a norm shared by several parents is swapped once for all.
    Only modules whose type is exactly torch's class are swapped: a user subclass may have
    its own ``forward``, which we must not bypass.
    """
    for module in model.modules():
        replacement = _REPLACEMENTS.get(type(module))
        if replacement is not None:
            module.__class__ = replacement
    return model
