"""Statistics across processes (torch.distributed): one all_gather of every process's
(count, mean, M2) triples, Chan-merged in rank order in double (``moments_merge``) — every
process gets the same bits. Synchronized batch norm and the Standardizer use it."""

from typing import Optional

import torch
import torch.distributed as dist

from normkit import _batch_norm as bn_decl
from normkit._moments import Moments
from normkit.torch._registry import register

__all__ = ["gather_moments", "all_gather_moments"]

MERGE = register(bn_decl.MOMENTS_MERGE)


def gather_moments(count, mean: torch.Tensor, m2: torch.Tensor, group=None,
                   world: Optional[int] = None):
    """All processes' triples, stacked in rank order: ``(counts [W], means [W, C], m2s
    [W, C])``, float64 on ``mean``'s device (``count`` a number: exact in float64 up to
    2^53)."""
    C = mean.numel()
    world = dist.get_world_size(group) if world is None else world
    packed = torch.cat([mean.reshape(-1).double(), m2.reshape(-1).double(),
                        torch.full((1,), float(count), dtype=torch.float64, device=mean.device)])
    gathered = [torch.empty_like(packed) for _ in range(world)]
    dist.all_gather(gathered, packed, group=group)
    table = torch.stack(gathered)
    return (table[:, 2 * C].contiguous(), table[:, :C].contiguous(),
            table[:, C:2 * C].contiguous())


def all_gather_moments(m, group=None) -> Moments:
    """The :class:`normkit.Moments` of the union of every process's data in ``group``:
    ``m`` is this process's (``normkit.moments`` of its shard, or a Standardizer's
    ``.moments``); every process returns the same merged moments. A Standardizer then takes
    them with ``s.load_state_dict(all_gather_moments(s.moments)._asdict())``."""
    count, mean, m2 = m
    if not isinstance(mean, torch.Tensor):
        mean, m2 = torch.as_tensor(mean), torch.as_tensor(m2)
    backend = dist.get_backend(group)
    if backend == "nccl" and not mean.is_cuda:
        mean, m2 = mean.cuda(), m2.cuda()
    shape = tuple(mean.shape)
    counts, means, m2s = gather_moments(int(count), mean, m2, group)
    mean_all, m2_all = MERGE(counts, means, m2s)
    total = int(round(float(counts.sum())))
    return Moments(torch.tensor(total, dtype=torch.int64), mean_all.reshape(shape),
                   m2_all.reshape(shape))
