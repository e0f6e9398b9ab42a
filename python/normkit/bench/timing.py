"""Timing loops: warm-up, many repeats, median and interquartile range.

One timing loop times one callable of one library; libraries are never interleaved inside
a loop. A *sample* is the mean time of ``inner`` back-to-back calls: calls shorter than
``min_sample_s`` are batched so the timer's own cost and resolution stay out of the
figure, while calls longer than it are timed one by one. The reported figure is the median
sample (robust on a shared, noisy machine); the IQR says how noisy the loop was.
"""

from __future__ import annotations

import gc
import math
import time
from dataclasses import asdict, dataclass
from typing import Callable, Optional


@dataclass(frozen=True)
class Budget:
    """How long one timing loop may run.

    The loop takes at least ``min_reps`` samples and keeps sampling until ``min_time_s`` of
    sampling has passed, but never more than ``max_reps`` samples; a call so slow that
    ``max_time_s`` has passed stops at ``floor_reps`` samples (a peer's slow path must not
    eat the run's time).
    """

    warmup_calls: int = 2
    warmup_time_s: float = 0.05
    min_reps: int = 7
    max_reps: int = 200
    min_time_s: float = 0.5
    max_time_s: float = 5.0
    floor_reps: int = 3
    # A sample shorter than this is dominated by the timer and by Python: batch calls.
    min_sample_s: float = 200e-6


# --quick: the harness's one untimed check call is the only warm-up of a long call.
QUICK = Budget(warmup_calls=0, warmup_time_s=0.02, min_reps=5, max_reps=40, min_time_s=0.1,
               max_time_s=0.3)
# The copy roof is measured for several buffer sizes; --quick keeps it short.
QUICK_ROOF = Budget(warmup_calls=1, warmup_time_s=0.01, min_reps=3, max_reps=20,
                    min_time_s=0.05, max_time_s=0.15)
FULL = Budget(warmup_calls=2, warmup_time_s=0.1, min_reps=11, max_reps=300, min_time_s=0.6,
              max_time_s=4.0)


def _done(n: int, elapsed: float, b: Budget) -> bool:
    if n >= b.max_reps:
        return True
    if n >= b.min_reps and elapsed >= b.min_time_s:
        return True
    return n >= b.floor_reps and elapsed >= b.max_time_s


@dataclass
class Stats:
    median_s: float
    q1_s: float
    q3_s: float
    reps: int  # samples taken
    inner: int  # calls per sample
    min_s: float = float("nan")

    @property
    def iqr_s(self) -> float:
        return self.q3_s - self.q1_s

    def to_dict(self) -> dict:
        d = asdict(self)
        d["iqr_s"] = self.iqr_s
        return d


def _quantile(sorted_xs: list, q: float) -> float:
    """Linear-interpolated quantile of an already sorted list (NumPy's default method)."""
    if len(sorted_xs) == 1:
        return sorted_xs[0]
    pos = q * (len(sorted_xs) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_xs) - 1)
    frac = pos - lo
    return sorted_xs[lo] * (1.0 - frac) + sorted_xs[hi] * frac


def summarize(samples: list, inner: int) -> Stats:
    xs = sorted(samples)
    return Stats(
        median_s=_quantile(xs, 0.5),
        q1_s=_quantile(xs, 0.25),
        q3_s=_quantile(xs, 0.75),
        reps=len(xs),
        inner=inner,
        min_s=xs[0],
    )


class _GcPaused:
    """The cyclic collector would otherwise fire at random inside a loop that allocates."""

    def __enter__(self):
        # No gc.collect() here: with torch imported, a full collection takes ~0.1-0.3 s.
        self._was = gc.isenabled()
        gc.disable()

    def __exit__(self, *exc):
        if self._was:
            gc.enable()


def _warm_up(fn, budget: Budget, clock, first_call_s: Optional[float]) -> float:
    """Calls ``fn`` until the warm-up is done; returns the estimated time of one call.

    Warm-up: first touch of caches and pages, thread pools waking up, lazy initialisation.
    ``first_call_s`` is the time of a call the caller already made (it counts as warm-up).
    """
    spent = first_call_s or 0.0
    t_start = clock()
    calls = 0
    while calls < budget.warmup_calls or (
        spent + (clock() - t_start) < budget.warmup_time_s and calls < 1000
    ):
        fn()
        calls += 1
    if calls:
        return (clock() - t_start) / calls
    return first_call_s if first_call_s else 0.0


def time_cpu(fn: Callable[[], object], budget: Budget,
             first_call_s: Optional[float] = None) -> Stats:
    """Times ``fn`` on the host with ``time.perf_counter``."""
    clock = time.perf_counter
    with _GcPaused():
        per_call = _warm_up(fn, budget, clock, first_call_s)
        inner = max(1, math.ceil(budget.min_sample_s / max(per_call, 1e-9)))

        samples = []
        t_loop = clock()
        while True:
            t0 = clock()
            for _ in range(inner):
                fn()
            samples.append((clock() - t0) / inner)
            if _done(len(samples), clock() - t_loop, budget):
                break
    return summarize(samples, inner)


def time_each_call(fn: Callable[[], object], calls: int, warmup: int) -> Stats:
    """Times every call on its own (for per-call overhead: one call is the unit)."""
    clock = time.perf_counter_ns
    with _GcPaused():
        for _ in range(warmup):
            fn()
        samples = []
        for _ in range(calls):
            t0 = clock()
            fn()
            samples.append((clock() - t0) * 1e-9)
    return summarize(samples, 1)


def time_cuda(fn: Callable[[], object], budget: Budget, torch_mod) -> Stats:
    """Times ``fn`` on the current CUDA stream with CUDA events (device time per call)."""
    cuda = torch_mod.cuda
    with _GcPaused():
        t_start = time.perf_counter()
        calls = 0
        while calls < budget.warmup_calls or (
            time.perf_counter() - t_start < budget.warmup_time_s and calls < 1000
        ):
            fn()
            calls += 1
        cuda.synchronize()
        # Estimate per-call device time to choose the batch size.
        start, end = cuda.Event(enable_timing=True), cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        per_call = start.elapsed_time(end) * 1e-3
        inner = max(1, math.ceil(budget.min_sample_s / max(per_call, 1e-9)))

        samples = []
        t_loop = time.perf_counter()
        while True:
            start.record()
            for _ in range(inner):
                fn()
            end.record()
            end.synchronize()
            samples.append(start.elapsed_time(end) * 1e-3 / inner)
            if _done(len(samples), time.perf_counter() - t_loop, budget):
                break
    return summarize(samples, inner)


def settle(seconds: float = 0.01) -> None:
    """Lets the previous library's spinning OpenMP workers go to sleep before the next loop.

    torch and normkit each run an OpenMP pool; on a machine with few cores, workers still
    spin-waiting after one library's loop steal cycles from the other's first samples.
    """
    time.sleep(seconds)


def time_fn(fn, budget: Budget, device: str, torch_mod=None,
            first_call_s: Optional[float] = None) -> Stats:
    if device == "cuda":
        return time_cuda(fn, budget, torch_mod)
    return time_cpu(fn, budget, first_call_s)
