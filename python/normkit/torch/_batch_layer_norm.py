"""Batch layer norm (SPEC §7) in torch: ``torch.ops.normkit.batch_layer_norm_fwd`` / ``_bwd``
(declared once in ``normkit._batch_layer_norm``, whose docstring maps the options to the
authors' reference implementation) and the ``BatchLayerNorm`` module."""

from typing import Optional

import torch
from torch import Tensor

from normkit import _batch_layer_norm as decl
from normkit.torch._registry import register

__all__ = ["batch_layer_norm", "BatchLayerNorm"]

BATCH_LAYER_NORM = register(decl.BATCH_LAYER_NORM)

_Y_ONLY = (True,) + (None,) * 8


def batch_layer_norm(x: Tensor, weight: Optional[Tensor], bias: Optional[Tensor],
                     running_batch_mean: Optional[Tensor], running_batch_var: Optional[Tensor],
                     running_feature_mean: Optional[Tensor],
                     running_feature_var: Optional[Tensor], batch_stats_of_input: bool,
                     feature_stats_of_input: bool, momentum: float, eps: float, delta: float,
                     batch_size: float) -> Tensor:
    """SPEC §7 with features last, differentiable in x, weight and bias; the running
    statistics of the input (if given) are updated in place."""
    args = (x, weight, bias, running_batch_mean, running_batch_var, running_feature_mean,
            running_feature_var, batch_stats_of_input, feature_stats_of_input, momentum, eps,
            delta, batch_size)
    upd = [(running_batch_mean, batch_stats_of_input), (running_batch_var, batch_stats_of_input),
           (running_feature_mean, feature_stats_of_input),
           (running_feature_var, feature_stats_of_input)]
    if not any(r is not None and u for r, u in upd):
        return BATCH_LAYER_NORM.call(args, _Y_ONLY)[0]
    res = BATCH_LAYER_NORM(*args)
    with torch.no_grad():
        for (r, u), new in zip(upd, res[5:]):
            if r is not None and u:
                r.copy_(new)
    return res[0]


class BatchLayerNorm(torch.nn.Module):
    """Batch layer normalization (Ziaee & Çano 2022; SPEC §7) over ``num_features`` features.

    Input ``(B, *, F)`` (``axis=-1``, the paper's layout: an RNN's ``(B, T, F)``, an MLP's
    ``(B, F)``) or channels first ``(N, C, *)`` (``axis=1``; a ``torch.channels_last`` tensor is
    computed without a copy). Parameters ``weight`` (1) and ``bias`` (0), ``[F]``. Training
    normalizes with this batch's statistics and updates the running ones (``momentum``;
    ``None``: the cumulative average); evaluation uses the running batch statistics when
    ``use_running_batch_stats`` and the running feature statistics when
    ``use_running_feature_stats`` (the authors' defaults: True, False), this batch's
    otherwise. The running statistics' shapes follow the first training input's positions
    (``x.shape[1:]`` and ``x.shape[1:-1]``, features last) and are materialized then (or by
    ``load_state_dict``). ``batch_size`` (a buffer) records the training batch size, which
    the mixing weights use at inference. See ``normkit._batch_layer_norm`` for how the
    options map to the authors' reference implementation.
    """

    def __init__(self, num_features: int, eps: float = 1e-3, momentum: Optional[float] = 0.1,
                 use_running_batch_stats: bool = True, use_running_feature_stats: bool = False,
                 *, axis: int = -1, delta: float = 1e-4, device=None, dtype=None):
        super().__init__()
        kw = {"device": device, "dtype": dtype}
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.use_running_batch_stats = use_running_batch_stats
        self.use_running_feature_stats = use_running_feature_stats
        self.axis, self.delta = axis, delta
        self.weight = torch.nn.Parameter(torch.ones(num_features, **kw))
        self.bias = torch.nn.Parameter(torch.zeros(num_features, **kw))
        for name in ("running_batch_mean", "running_batch_var", "running_feature_mean",
                     "running_feature_var"):
            self.register_buffer(name, torch.zeros(0, **kw))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long,
                                                                 device=device))
        self.register_buffer("batch_size", torch.tensor(0, dtype=torch.long, device=device))

    _RUNNING = ("running_batch_mean", "running_batch_var", "running_feature_mean",
                "running_feature_var")

    def reset_running_stats(self) -> None:
        for name in self._RUNNING:
            setattr(self, name, torch.zeros(0, dtype=getattr(self, name).dtype,
                                            device=getattr(self, name).device))
        self.num_batches_tracked.zero_()
        self.batch_size.zero_()

    def reset_parameters(self) -> None:
        self.reset_running_stats()
        torch.nn.init.ones_(self.weight)
        torch.nn.init.zeros_(self.bias)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        for name in self._RUNNING:  # materialize to the saved shapes
            key = prefix + name
            if key in state_dict and getattr(self, name).numel() == 0:
                setattr(self, name, torch.empty_like(state_dict[key], dtype=self.weight.dtype,
                                                     device=self.weight.device))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _materialize(self, xl: Tensor) -> None:
        shapes = (tuple(xl.shape[1:]),) * 2 + (tuple(xl.shape[1:-1]),) * 2
        for name, shape, fill in zip(self._RUNNING, shapes, (0.0, 1.0, 0.0, 1.0)):
            cur = getattr(self, name)
            if cur.numel() == 0 or tuple(cur.shape) != shape:
                if cur.numel() != 0:
                    raise ValueError(f"input: positions {list(xl.shape[1:-1])} differ from the "
                                     f"running statistics' {list(cur.shape[: len(shape)])}")
                setattr(self, name, torch.full(shape, fill, dtype=self.weight.dtype,
                                               device=self.weight.device))

    def forward(self, input: Tensor) -> Tensor:
        xl, moved = decl.features_last(input, self.axis)
        if xl.shape[-1] != self.num_features:
            raise ValueError(f"input: expected {self.num_features} features in dim "
                             f"{self.axis}, got shape {list(input.shape)}")
        if self.training:
            self._materialize(xl)
            self.num_batches_tracked.add_(1)
            self.batch_size.fill_(xl.shape[0])
            factor = (1.0 / float(self.num_batches_tracked) if self.momentum is None
                      else self.momentum)
            y = batch_layer_norm(xl, self.weight, self.bias, self.running_batch_mean,
                                 self.running_batch_var, self.running_feature_mean,
                                 self.running_feature_var, True, True, factor, self.eps,
                                 self.delta, float(xl.shape[0]))
            return decl.features_back(y, moved, input)
        b_in = not self.use_running_batch_stats
        f_in = not self.use_running_feature_stats
        if (not b_in and self.running_batch_mean.numel() == 0) or \
                (not f_in and self.running_feature_mean.numel() == 0):
            raise ValueError("input: evaluation with running statistics needs a training step "
                             "(or load_state_dict) first")
        y = batch_layer_norm(xl, self.weight, self.bias,
                             None if b_in else self.running_batch_mean,
                             None if b_in else self.running_batch_var,
                             None if f_in else self.running_feature_mean,
                             None if f_in else self.running_feature_var, b_in, f_in, 0.0,
                             self.eps, self.delta, float(self.batch_size))
        return decl.features_back(y, moved, input)

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"use_running_batch_stats={self.use_running_batch_stats}, "
                f"use_running_feature_stats={self.use_running_feature_stats}, axis={self.axis}")
