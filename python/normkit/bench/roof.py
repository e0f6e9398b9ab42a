"""The memory-bandwidth roof: how fast a plain copy moves the same number of bytes.

A norm kernel cannot beat a copy of the bytes it must move, so the best copy rate is its
roof. For an op that moves ``B`` bytes, the roof is a copy of a ``B/2``-byte buffer into
another (``B/2`` read + ``B/2`` written), rounded to the nearest power of two so that the
many cases share a few measurements (cache effects change with size by far more than a
factor of sqrt(2) only across a cache boundary). Rates are read+write bytes per second.

CPU candidates (the best one is the roof):

- ``np.copyto``       NumPy's copy, one thread;
- ``torch.copy_``     torch's copy, parallel over torch's threads;
- ``nk.copy``         ``normkit._core._bench_copy(src, dst, False)``: normkit's threads and
                      ordinary stores;
- ``nk.copy_nt``      the same with non-temporal (streaming) stores, which skip the
                      read-for-ownership of the destination lines on large buffers.

On CUDA the roof is a device-to-device ``Tensor.copy_`` timed with CUDA events.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict

import numpy as np

from .timing import Budget, settle, time_cpu, time_cuda

MIN_BUCKET = 4096


def bucket(op_bytes: int) -> int:
    half = max(op_bytes / 2.0, MIN_BUCKET)
    return 1 << int(round(math.log2(half)))


@dataclass
class RoofPoint:
    copy_bytes: int  # one buffer's size; a copy moves twice this
    gbps: Dict[str, float] = field(default_factory=dict)  # method -> GB/s

    @property
    def best(self) -> float:
        return max(self.gbps.values()) if self.gbps else float("nan")

    @property
    def best_method(self) -> str:
        return max(self.gbps, key=self.gbps.get) if self.gbps else "-"

    def to_dict(self) -> dict:
        return {
            "copy_bytes": self.copy_bytes,
            "gbps": dict(self.gbps),
            "best_gbps": self.best,
            "best_method": self.best_method,
        }


class Roof:
    def __init__(self, nk, torch_mod, device: str, budget: Budget):
        self.nk = nk
        self.torch = torch_mod
        self.device = device
        self.budget = budget
        self.points: Dict[int, RoofPoint] = {}
        core = getattr(nk, "_core", None)
        self._bench_copy = getattr(core, "_bench_copy", None)

    def for_bytes(self, op_bytes: int) -> RoofPoint:
        size = bucket(op_bytes)
        if size not in self.points:
            self.points[size] = self._measure(size)
        return self.points[size]

    def _measure(self, size: int) -> RoofPoint:
        point = RoofPoint(size)
        moved = 2.0 * size
        if self.device == "cuda":
            t = self.torch
            src = t.ones(size, dtype=t.uint8, device="cuda")
            dst = t.zeros(size, dtype=t.uint8, device="cuda")
            st = time_cuda(lambda: dst.copy_(src), self.budget, t)
            point.gbps["cuda.copy_"] = moved / st.median_s / 1e9
            return point

        n = size // 4
        src = np.ones(n, dtype=np.float32)
        dst = np.empty(n, dtype=np.float32)
        dst.fill(0.0)  # first-touched here (np.zeros may not be): the roof is a warm copy
        st = time_cpu(lambda: np.copyto(dst, src), self.budget)
        point.gbps["np.copyto"] = moved / st.median_s / 1e9
        settle()
        if self._bench_copy is not None:
            bc = self._bench_copy
            for name, nt in (("nk.copy", False), ("nk.copy_nt", True)):
                st = time_cpu(lambda: bc(src, dst, nt), self.budget)
                point.gbps[name] = moved / st.median_s / 1e9
                settle()
        if self.torch is not None:
            t = self.torch
            tsrc = t.ones(n, dtype=t.float32)
            tdst = t.zeros(n, dtype=t.float32)
            st = time_cpu(lambda: tdst.copy_(tsrc), self.budget)
            point.gbps["torch.copy_"] = moved / st.median_s / 1e9
            settle()
        return point
