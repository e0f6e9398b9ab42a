"""The parameter norms (SPEC §9–10) in torch: ``torch.ops.normkit.weight_norm_fwd`` / ``_bwd``
(declared once in ``normkit._param_norm``) and the parametrizations that put them on a
module's weight, as ``torch.nn.utils.parametrizations`` does."""

from typing import Optional

import torch
from torch import Tensor
from torch.nn.utils import parametrize

from normkit import _param_norm as decl
from normkit.torch._registry import register

__all__ = ["weight_norm", "WeightNorm"]

WEIGHT_NORM = register(decl.WEIGHT_NORM)


def _torch_dim(dim: Optional[int], ndim: int) -> int:
    """torch's weight-norm dim rule: ``None`` and ``-1`` mean one norm over everything
    (``torch._weight_norm``'s convention, kept so that modules behave alike); any other
    negative dim counts from the end."""
    if dim is None or dim == -1:
        return decl.ALL_DIMS
    if not -ndim <= dim < ndim:
        raise ValueError(f"dim: expected None or a dim in [{-ndim}, {ndim}) of the "
                         f"{ndim}-dim weight, got {dim}")
    return dim % ndim


class WeightNorm(torch.nn.Module):
    """The parametrization ``weight = g·v/‖v‖`` (``original0`` = g, ``original1`` = v, as
    torch's ``_WeightNorm``), computed by normkit's fused kernels with their backward."""

    def __init__(self, dim: Optional[int] = 0) -> None:
        super().__init__()
        self.dim = -1 if dim is None else dim

    def forward(self, weight_g: Tensor, weight_v: Tensor) -> Tensor:
        return WEIGHT_NORM(weight_v, weight_g, _torch_dim(self.dim, weight_v.dim()))[0]

    def right_inverse(self, weight: Tensor):
        _torch_dim(self.dim, weight.dim())  # a clear error for a bad dim, at registration
        return torch.norm_except_dim(weight, 2, self.dim), weight


def weight_norm(module: torch.nn.Module, name: str = "weight", dim: Optional[int] = 0):
    """A drop-in for ``torch.nn.utils.parametrizations.weight_norm``: registers the
    :class:`WeightNorm` parametrization on ``module.<name>`` — the same ``state_dict`` keys
    (``parametrizations.<name>.original0`` = g, ``original1`` = v), so checkpoints move
    between the two both ways, and old-style ``<name>_g`` / ``<name>_v`` checkpoints load.
    ``dim``: torch's rule (``None`` or ``-1``: one norm over the whole weight). Returns
    ``module``."""
    if not isinstance(getattr(module, name, None), Tensor):
        raise ValueError(f"name: module {type(module).__name__} has no tensor {name!r}")
    parametrize.register_parametrization(module, name, WeightNorm(dim), unsafe=True)

    def _compat_hook(state_dict, prefix, local_metadata, strict, missing_keys,
                     unexpected_keys, error_msgs):
        g_key, v_key = f"{prefix}{name}_g", f"{prefix}{name}_v"
        if g_key in state_dict and v_key in state_dict:
            state_dict[f"{prefix}parametrizations.{name}.original0"] = state_dict.pop(g_key)
            state_dict[f"{prefix}parametrizations.{name}.original1"] = state_dict.pop(v_key)

    module._register_load_state_dict_pre_hook(_compat_hook)
    return module
