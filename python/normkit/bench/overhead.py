"""``python -m normkit.bench.overhead``: normkit inside torch programs, next to torch itself.

What a torch user pays per call, not what the kernel costs: the functional call on torch
tensors, the modules without autograd (``torch.no_grad``), and the modules' forward + backward
through autograd, at a latency-bound shape ([1, 4096]: the call around the kernel is all
there is) and a transformer-sized one ([16, 128, 384]: kernel time and threading matter).
float32 on the CPU; torch and normkit run with the same thread count.

Timing: every row samples torch and normkit in alternation (torch, normkit, torch, ...) so
that load from other processes on a shared machine falls on both alike; a sample is the mean
of enough back-to-back calls to last ``--sample-us``; the figure is the median sample.
``ratio`` is normkit / torch (below 1: normkit is faster).

The backward rows call ``torch.autograd.grad`` (for torch and normkit alike) rather than
``.backward()``, so that no gradient accumulation into ``.grad`` is timed.
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import statistics
import sys
import time


def _sample(fn, inner: int) -> float:
    """Seconds per call over ``inner`` back-to-back calls."""
    clock = time.perf_counter
    t0 = clock()
    for _ in range(inner):
        fn()
    return (clock() - t0) / inner


def _per_call(fn, warm_s: float) -> float:
    """Calls ``fn`` for ``warm_s`` (warm-up: caches, allocator, thread pool); returns the
    time of one call."""
    fn()
    t0 = time.perf_counter()
    n = 0
    while time.perf_counter() - t0 < warm_s or n < 3:
        fn()
        n += 1
    return (time.perf_counter() - t0) / n


def compare(fns: dict, rounds: int, sample_s: float) -> dict:
    """Median seconds per call of each callable. Each round takes one sample of every
    callable in turn, so that drifting load from other processes falls on all of them alike."""
    inner = {k: max(1, math.ceil(sample_s / _per_call(f, 0.05))) for k, f in fns.items()}
    got = {k: [] for k in fns}
    was = gc.isenabled()
    gc.disable()  # a collection inside a loop that allocates would land on one library
    try:
        for _ in range(rounds):
            for k, f in fns.items():
                got[k].append(_sample(f, inner[k]))
    finally:
        if was:
            gc.enable()
    return {k: statistics.median(v) for k, v in got.items()}


def build_rows(torch, nk, nkt, shapes_small, shape_large):
    """(label, torch callable, normkit callable) for each row."""
    F = torch.nn.functional
    rows = []
    for shape in (shapes_small, shape_large):
        h = shape[-1]
        g = torch.Generator().manual_seed(0)
        x = torch.randn(shape, generator=g)
        dy = torch.randn(shape, generator=g)
        w = 1 + 0.1 * torch.randn(h, generator=g)
        b = 0.1 * torch.randn(h, generator=g)
        tag = "[" + ",".join(str(d) for d in shape) + "]"

        if shape is shapes_small:
            rows.append((f"layer_norm functional {tag} no grad",
                         lambda x=x, w=w, b=b, h=h: F.layer_norm(x, (h,), w, b),
                         lambda x=x, w=w, b=b: nk.layer_norm(x, w, b)))
            rows.append((f"rms_norm functional {tag} no grad",
                         lambda x=x, w=w, h=h: F.rms_norm(x, (h,), w, 1e-6),
                         lambda x=x, w=w: nk.rms_norm(x, w, 1e-6)))
            rows.append((f"normkit.torch.layer_norm {tag} no grad",
                         lambda x=x, w=w, b=b, h=h: F.layer_norm(x, (h,), w, b),
                         lambda x=x, w=w, b=b: nkt.layer_norm(x, w, b, 1e-5, 1)))

        for name, t_cls, n_cls in (("LayerNorm", torch.nn.LayerNorm, nkt.LayerNorm),
                                   ("RMSNorm", torch.nn.RMSNorm, nkt.RMSNorm)):
            if shape is shape_large and name == "RMSNorm":
                continue  # one large-shape module is enough to see threading
            tm, nm = t_cls(h), n_cls(h)
            nm.load_state_dict(tm.state_dict())

            def no_grad(m, x=x):
                with torch.no_grad():
                    return m(x)

            rows.append((f"{name} module {tag} no grad",
                         lambda m=tm, f=no_grad: f(m), lambda m=nm, f=no_grad: f(m)))

            xg = x.clone().requires_grad_(True)

            def fwd_bwd(m, xg=xg, dy=dy):
                y = m(xg)
                return torch.autograd.grad(y, (xg,) + tuple(m.parameters()), dy)

            rows.append((f"{name} module {tag} fwd+bwd",
                         lambda m=tm, f=fwd_bwd: f(m), lambda m=nm, f=fwd_bwd: f(m)))
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m normkit.bench.overhead", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=None,
                   help="threads for torch and normkit alike (default: os.cpu_count())")
    p.add_argument("--rounds", type=int, default=100,
                   help="samples per library and row, taken in alternation")
    p.add_argument("--sample-us", type=float, default=1000.0, help="length of one sample")
    p.add_argument("--filter", default="", help="only rows whose label contains this")
    args = p.parse_args(argv)

    import torch

    import normkit as nk
    import normkit.torch as nkt

    threads = args.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    nk.set_num_threads(threads)
    rows = build_rows(torch, nk, nkt, (1, 4096), (16, 128, 384))
    print(f"torch {torch.__version__}, normkit {nk.__version__} ({nk.cpu_isa()}), "
          f"{threads} threads, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')}, "
          f"float32 CPU; medians of {args.rounds} alternating samples of ~{args.sample_us:.0f} us")
    load = os.getloadavg()[0]
    if load > 0.5:
        print(f"note: load average {load:.1f} at start: other processes share these cores "
              "(figures are noisier, ratios less so)")
    print(f"{'row':44s} {'torch us':>10s} {'normkit us':>11s} {'ratio':>7s}")
    for label, t_fn, n_fn in rows:
        if args.filter and args.filter not in label:
            continue
        med = compare({"torch": t_fn, "normkit": n_fn}, args.rounds, args.sample_us * 1e-6)
        t, n = med["torch"] * 1e6, med["normkit"] * 1e6
        print(f"{label:44s} {t:10.2f} {n:11.2f} {n / t:7.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
