"""Group and instance norm (SPEC §5) in torch: ``torch.ops.normkit.group_norm_fwd`` /
``instance_norm_fwd`` and their backwards (declared once in ``normkit._group_norm``), and the
``GroupNorm`` and ``InstanceNorm1d/2d/3d`` modules.

The modules subclass torch's (same constructor, defaults, parameters, buffers and state dict
keys; ``isinstance`` stays true); ``replace_norms`` swaps torch's for them. A
``torch.channels_last`` input is computed in place and the output keeps its memory format.
"""

from typing import Optional

import torch
from torch import Tensor

from normkit import _group_norm as decl
from normkit.torch._batch_norm import batch_norm
from normkit.torch._registry import register
from normkit.torch.modules import replaces

__all__ = ["group_norm", "instance_norm", "GroupNorm", "InstanceNorm1d", "InstanceNorm2d",
           "InstanceNorm3d"]

GROUP_NORM = register(decl.GROUP_NORM)
INSTANCE_NORM = register(decl.INSTANCE_NORM)

_Y_ONLY = (True, None, None)
_IN_EVAL_WANT = (True, None, None, None, None)


def group_norm(x: Tensor, num_groups: int, weight: Optional[Tensor], bias: Optional[Tensor],
               eps: float, channels_last: bool = False) -> Tensor:
    """SPEC §5, differentiable in x, weight and bias."""
    return GROUP_NORM(x, weight, bias, num_groups, eps, channels_last)[0]


def instance_norm(x: Tensor, running_mean: Optional[Tensor], running_var: Optional[Tensor],
                  weight: Optional[Tensor], bias: Optional[Tensor], momentum: float,
                  eps: float, channels_last: bool = False) -> Tensor:
    """Instance norm with each instance's statistics, differentiable in x, weight and bias;
    the running statistics (if given) are updated in place."""
    args = (x, weight, bias, running_mean, running_var, momentum, eps, channels_last)
    if running_mean is None:
        return INSTANCE_NORM.call(args, _IN_EVAL_WANT)[0]
    y, _, _, rm, rv = INSTANCE_NORM(*args)
    with torch.no_grad():
        running_mean.copy_(rm)
        running_var.copy_(rv)
    return y


@replaces(torch.nn.GroupNorm)
class GroupNorm(torch.nn.GroupNorm):
    """``torch.nn.GroupNorm`` computed by normkit: ``(N, C, *)``, either memory format."""

    def forward(self, input: Tensor) -> Tensor:
        if input.dim() < 2 or input.shape[1] != self.num_channels:
            raise ValueError(f"input: expected (N, {self.num_channels}, *), got shape "
                             f"{list(input.shape)}")
        return GROUP_NORM(input, self.weight, self.bias, self.num_groups, self.eps, False)[0]


def _instance_forward(m, input: Tensor) -> Tensor:
    m._check_input_dim(input)
    feature_dim = input.dim() - m._get_no_batch_dim()
    if input.size(feature_dim) != m.num_features:
        if m.affine:
            raise ValueError(f"input: expected input's size at dim={feature_dim} to match "
                             f"num_features ({m.num_features}), but got: "
                             f"{input.size(feature_dim)}.")
    if input.dim() == m._get_no_batch_dim():
        return _instance_forward(m, input.unsqueeze(0)).squeeze(0)
    momentum = m.momentum if m.momentum is not None else 0.0
    if m.training or not m.track_running_stats:
        keep = m.track_running_stats and m.training
        if input.numel() > 0 and input[0, 0].numel() <= 1:
            raise ValueError(f"input: instance norm needs more than 1 spatial element per "
                             f"channel, got shape {list(input.shape)}")
        return instance_norm(input, m.running_mean if keep else None,
                             m.running_var if keep else None, m.weight, m.bias, momentum,
                             m.eps)
    return batch_norm(input, m.running_mean, m.running_var, m.weight, m.bias, False, momentum,
                      m.eps)


@replaces(torch.nn.InstanceNorm1d)
class InstanceNorm1d(torch.nn.InstanceNorm1d):
    """``torch.nn.InstanceNorm1d`` computed by normkit: ``(N, C, L)`` or ``(C, L)``."""

    def forward(self, input: Tensor) -> Tensor:
        return _instance_forward(self, input)


@replaces(torch.nn.InstanceNorm2d)
class InstanceNorm2d(torch.nn.InstanceNorm2d):
    """``torch.nn.InstanceNorm2d`` computed by normkit: ``(N, C, H, W)`` or ``(C, H, W)``,
    either memory format (channels-last without torch's copy)."""

    def forward(self, input: Tensor) -> Tensor:
        return _instance_forward(self, input)


@replaces(torch.nn.InstanceNorm3d)
class InstanceNorm3d(torch.nn.InstanceNorm3d):
    """``torch.nn.InstanceNorm3d`` computed by normkit: ``(N, C, D, H, W)`` or
    ``(C, D, H, W)``, either memory format."""

    def forward(self, input: Tensor) -> Tensor:
        return _instance_forward(self, input)
