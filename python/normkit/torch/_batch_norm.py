"""Batch norm (SPEC §4) in torch: ``torch.ops.normkit.batch_norm_fwd`` / ``batch_norm_bwd`` and
the split phases (declared once in ``normkit._batch_norm``), the ``BatchNorm1d/2d/3d`` modules
and ``SyncBatchNorm``, which all-reduces the split phases' per-channel moments and backward
sums over ``torch.distributed`` — on CUDA and on the CPU with gloo, where torch's own refuses.

The modules subclass torch's (same constructor, defaults, parameters, buffers and state dict
keys, ``num_batches_tracked`` included; ``isinstance`` stays true); ``replace_norms`` swaps
torch's for them. A ``torch.channels_last`` input is computed in place and the output keeps
its memory format.
"""

from typing import Optional

import torch
import torch.distributed as dist
from torch import Tensor

from normkit import _batch_norm as decl
from normkit.torch._distributed import gather_moments
from normkit.torch._registry import register
from normkit.torch.modules import replaces

__all__ = ["batch_norm", "BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "SyncBatchNorm"]

BATCH_NORM = register(decl.BATCH_NORM)
STATS = register(decl.BATCH_NORM_STATS)
MERGE = register(decl.MOMENTS_MERGE)
APPLY = register(decl.BATCH_NORM_APPLY)
BACKWARD_REDUCE = register(decl.BATCH_NORM_BACKWARD_REDUCE)
BACKWARD_APPLY = register(decl.BATCH_NORM_BACKWARD_APPLY)

_EVAL_WANT = (True, None, None, None, None)


def batch_norm(x: Tensor, running_mean: Optional[Tensor], running_var: Optional[Tensor],
               weight: Optional[Tensor], bias: Optional[Tensor], training: bool,
               momentum: float, eps: float, channels_last: bool = False) -> Tensor:
    """SPEC §4, differentiable in x, weight and bias; in training the running statistics (if
    given) are updated in place."""
    update = training and running_mean is not None
    args = (x, weight, bias, running_mean, running_var, training, momentum, eps, channels_last)
    if not update:
        return BATCH_NORM.call(args, _EVAL_WANT)[0]
    y, _, _, rm, rv = BATCH_NORM(*args)
    with torch.no_grad():
        running_mean.copy_(rm)
        running_var.copy_(rv)
    return y


def _factor(m) -> float:
    """torch's exponential_average_factor, counting the batch (num_batches_tracked)."""
    factor = 0.0 if m.momentum is None else m.momentum
    if m.training and m.track_running_stats and m.num_batches_tracked is not None:
        m.num_batches_tracked.add_(1)
        factor = 1.0 / float(m.num_batches_tracked) if m.momentum is None else m.momentum
    return factor


def _module_forward(m, input: Tensor) -> Tensor:
    m._check_input_dim(input)
    factor = _factor(m)
    bn_training = m.training or (m.running_mean is None and m.running_var is None)
    keep = not m.training or m.track_running_stats
    return batch_norm(input, m.running_mean if keep else None, m.running_var if keep else None,
                      m.weight, m.bias, bn_training, factor, m.eps)


@replaces(torch.nn.BatchNorm1d)
class BatchNorm1d(torch.nn.BatchNorm1d):
    """``torch.nn.BatchNorm1d`` computed by normkit: ``(N, C)`` or ``(N, C, L)``."""

    def forward(self, input: Tensor) -> Tensor:
        return _module_forward(self, input)


@replaces(torch.nn.BatchNorm2d)
class BatchNorm2d(torch.nn.BatchNorm2d):
    """``torch.nn.BatchNorm2d`` computed by normkit: ``(N, C, H, W)``, either memory format."""

    def forward(self, input: Tensor) -> Tensor:
        return _module_forward(self, input)


@replaces(torch.nn.BatchNorm3d)
class BatchNorm3d(torch.nn.BatchNorm3d):
    """``torch.nn.BatchNorm3d`` computed by normkit: ``(N, C, D, H, W)``, either memory format."""

    def forward(self, input: Tensor) -> Tensor:
        return _module_forward(self, input)


# ---------------------------------------------------------------------------------------
# SyncBatchNorm
# ---------------------------------------------------------------------------------------


class _SyncBatchNorm(torch.autograd.Function):
    """Training batch norm over the union of every process's batch: the split phases, with
    the per-channel (count, mean, M2) all-gathered and Chan-merged (moments_merge, in
    double, in rank order: every process gets the same bits) between stats and apply, and
    the backward's (Σdy, Σdy·x̂) all-reduced between reduce and apply. dweight and dbias are
    this process's own sums, as torch's SyncBatchNorm gives them (data parallelism averages
    parameter gradients itself)."""

    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, eps, factor, group, world):
        mean, m2 = STATS(x, False)
        C = mean.numel()
        n = x.numel() // C if C else 0
        counts, means, m2s = gather_moments(n, mean, m2, group, world)
        mean_all, m2_all = MERGE(counts, means, m2s)
        total = float(counts.sum())
        if total <= 1:
            raise ValueError(f"x: training needs more than one value per channel over all "
                             f"processes, got {total:g}")
        rstd = torch.rsqrt(m2_all / total + eps)
        y = APPLY(x, mean_all, rstd, weight, bias, False)
        if running_mean is not None:
            with torch.no_grad():
                running_mean.copy_((running_mean.double() * (1 - factor) + mean_all * factor)
                                   .to(running_mean.dtype))
                running_var.copy_((running_var.double() * (1 - factor)
                                   + m2_all / (total - 1) * factor).to(running_var.dtype))
        ctx.save_for_backward(x, weight, mean_all, rstd)
        ctx.nk = (total, group, bias is not None)
        return y

    @staticmethod
    def backward(ctx, dy):
        x, weight, mean, rstd = ctx.saved_tensors
        total, group, has_bias = ctx.nk
        dy = dy.contiguous() if not (dy.is_contiguous() or dy.is_contiguous(
            memory_format=torch.channels_last) or dy.is_contiguous(
            memory_format=torch.channels_last_3d)) else dy
        sum_dy, sum_dy_xhat = BACKWARD_REDUCE(dy, x, mean, rstd, False)
        dweight = dbias = dx = None
        if weight is not None and ctx.needs_input_grad[1]:
            dweight = sum_dy_xhat.to(weight.dtype)
        if has_bias and ctx.needs_input_grad[2]:
            dbias = sum_dy.to(weight.dtype if weight is not None else sum_dy.dtype)
        if ctx.needs_input_grad[0]:
            both = torch.cat([sum_dy, sum_dy_xhat])
            dist.all_reduce(both, group=group)
            C = sum_dy.numel()
            dx = BACKWARD_APPLY(dy, x, mean, rstd, weight, both[:C].contiguous(),
                                both[C:].contiguous(), total, False)
        return dx, dweight, dbias, None, None, None, None, None, None


@replaces(torch.nn.SyncBatchNorm)
class SyncBatchNorm(torch.nn.SyncBatchNorm):
    """``torch.nn.SyncBatchNorm`` computed by normkit, on CUDA and on the CPU (gloo): in
    training within an initialized process group of more than one process, statistics are
    those of every process's batch together (unequal batch sizes included); otherwise it is
    :class:`BatchNorm2d` (any ``(N, C, *)`` input)."""

    def forward(self, input: Tensor) -> Tensor:
        self._check_input_dim(input)
        self._check_non_zero_input_channels(input)
        factor = _factor(self)
        bn_training = self.training or (self.running_mean is None and self.running_var is None)
        keep = not self.training or self.track_running_stats
        rm = self.running_mean if keep else None
        rv = self.running_var if keep else None
        group = world = None
        if bn_training and self.training and dist.is_available() and dist.is_initialized():
            group = self.process_group or dist.group.WORLD
            world = dist.get_world_size(group)
        if not world or world <= 1:
            return batch_norm(input, rm, rv, self.weight, self.bias, bn_training, factor, self.eps)
        return _SyncBatchNorm.apply(input, self.weight, self.bias, rm, rv, self.eps, factor,
                                    group, world)

    @classmethod
    def convert_sync_batchnorm(cls, module: torch.nn.Module, process_group=None):
        """torch's ``convert_sync_batchnorm``, giving normkit's SyncBatchNorm: every batch
        norm in ``module`` (``module`` itself included) becomes one, with the same parameters
        (the Parameter objects themselves), buffers and training flag."""
        out = module
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm) and \
                not isinstance(module, cls):
            out = cls(module.num_features, module.eps, module.momentum, module.affine,
                      module.track_running_stats, process_group)
            if module.affine:
                with torch.no_grad():
                    out.weight = module.weight
                    out.bias = module.bias
            out.running_mean = module.running_mean
            out.running_var = module.running_var
            out.num_batches_tracked = module.num_batches_tracked
            out.training = module.training
            if hasattr(module, "qconfig"):
                out.qconfig = module.qconfig
        for name, child in module.named_children():
            out.add_module(name, cls.convert_sync_batchnorm(child, process_group))
        del module
        return out
