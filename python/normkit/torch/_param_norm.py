"""The parameter norms (SPEC §9–10) in torch: ``torch.ops.normkit.weight_norm_fwd`` / ``_bwd``
(declared once in ``normkit._param_norm``) and the parametrizations that put them on a
module's weight, as ``torch.nn.utils.parametrizations`` does."""

from typing import Optional

import torch
from torch import Tensor
import torch.nn.functional as F
from torch.nn.utils import parametrize

from normkit import _param_norm as decl
from normkit.torch._registry import register

__all__ = ["weight_norm", "WeightNorm", "spectral_norm", "SpectralNorm"]

WEIGHT_NORM = register(decl.WEIGHT_NORM)
SPECTRAL_NORM = register(decl.SPECTRAL_NORM)


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


class SpectralNorm(torch.nn.Module):
    """The parametrization ``weight = W/σ`` of torch's ``_SpectralNorm`` — the same buffers
    ``_u``, ``_v`` (drawn as torch draws them, then 15 warm-up power iterations), the same
    training / evaluation behaviour — computed by normkit's kernels: in training, the power
    iterations and σ in one read of W per iteration, then W/σ; in evaluation, σ = uᵀWv with
    the stored vectors."""

    def __init__(self, weight: Tensor, n_power_iterations: int = 1, dim: int = 0,
                 eps: float = 1e-12) -> None:
        super().__init__()
        ndim = weight.ndim
        if dim >= ndim or dim < -ndim:
            raise IndexError(f"dim: expected a dim of the {ndim}-dim weight in "
                             f"[-{ndim}, {ndim - 1}], got {dim}")
        if n_power_iterations <= 0:
            raise ValueError(f"n_power_iterations: expected a positive number, got "
                             f"{n_power_iterations}")
        if eps < 0:
            raise ValueError(f"eps: expected >= 0, got {eps}")
        self.dim = dim if dim >= 0 else dim + ndim
        self.eps = eps
        if ndim > 1:
            self.n_power_iterations = n_power_iterations
            weight_mat = self._reshape_weight_to_matrix(weight)
            h, w = weight_mat.size()
            u = weight_mat.new_empty(h).normal_(0, 1)
            v = weight_mat.new_empty(w).normal_(0, 1)
            self.register_buffer("_u", F.normalize(u, dim=0, eps=self.eps))
            self.register_buffer("_v", F.normalize(v, dim=0, eps=self.eps))
            self._power_method(weight_mat, 15)

    def _reshape_weight_to_matrix(self, weight: Tensor) -> Tensor:
        if self.dim != 0:
            weight = weight.permute(self.dim, *(d for d in range(weight.dim()) if d != self.dim))
        return weight.flatten(1)

    @torch.no_grad()
    def _power_method(self, weight_mat: Tensor, n_power_iterations: int) -> None:
        _, _, u, v = SPECTRAL_NORM(weight_mat.detach(), self._u, self._v, n_power_iterations,
                                   float(self.eps))
        self._u.copy_(u)
        self._v.copy_(v)

    def forward(self, weight: Tensor) -> Tensor:
        if weight.ndim == 1:
            return F.normalize(weight, dim=0, eps=self.eps)
        weight_mat = self._reshape_weight_to_matrix(weight)
        n = self.n_power_iterations if self.training else 0
        out, _, u, v = SPECTRAL_NORM(weight_mat, self._u, self._v, n, float(self.eps))
        if n > 0:
            with torch.no_grad():
                self._u.copy_(u)
                self._v.copy_(v)
        if self.dim == 0:
            return out.view(weight.shape)
        moved = weight.permute(self.dim, *(d for d in range(weight.dim()) if d != self.dim))
        return out.view(moved.shape).movedim(0, self.dim)

    def right_inverse(self, value: Tensor) -> Tensor:
        return value


def spectral_norm(module: torch.nn.Module, name: str = "weight", n_power_iterations: int = 1,
                  eps: float = 1e-12, dim: Optional[int] = None):
    """A drop-in for ``torch.nn.utils.parametrizations.spectral_norm``: registers the
    :class:`SpectralNorm` parametrization on ``module.<name>`` — the same ``state_dict``
    keys (``parametrizations.<name>.original`` and ``parametrizations.<name>.0._u`` /
    ``._v``) and random draws, so a module gives torch's results from the same seed, and
    checkpoints move both ways. ``dim`` defaults to 1 for ``ConvTranspose*d``, else 0.
    Returns ``module``."""
    weight = getattr(module, name, None)
    if not isinstance(weight, Tensor):
        raise ValueError(f"name: module {type(module).__name__} has no parameter or buffer "
                         f"with name {name!r}")
    if dim is None:
        dim = 1 if isinstance(module, (torch.nn.ConvTranspose1d, torch.nn.ConvTranspose2d,
                                       torch.nn.ConvTranspose3d)) else 0
    parametrize.register_parametrization(
        module, name, SpectralNorm(weight, n_power_iterations, dim, eps))
    return module
