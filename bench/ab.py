#!/usr/bin/env python3
"""Interleaved A/B of two normkit builds on the same machine.

    python bench/ab.py OLD_DIR NEW_DIR [--rounds 5] [--threads 2] [--cases row,fused,channel]

OLD_DIR and NEW_DIR each hold an importable ``normkit`` package (a checkout's ``python/``
with the built ``_core`` copied in, or a ``pip install --target`` directory). Each round runs
one process per build — old first in even rounds, new first in odd ones — and every process
times every case (medians of ``--calls`` calls after warm-up). The table gives the medians
of the per-process medians and the median over rounds of the per-round ratio new / old (< 1:
the new build is faster). On a shared host whose bandwidth drifts by 2x within minutes, the
per-round ratio is what separates a 10% change from the drift; one full benchmark run each
cannot (bench/RESULTS.md).

Cases (NumPy arrays, 2 threads by default, float32 parameters; ``--shapes``):
  row      layer_norm / rms_norm forward into ``out=``, backward into ``out=`` buffers
           (``--bwd fresh``: fresh outputs, for builds older than the backwards' out=)
  fused    dyt, ada_norm, add_layer_norm, add_rms_norm: forward into ``out=``, and the
           functional forward + backward with fresh outputs
  channel  batch / group / instance norm on torch tensors (the normkit.bench.channels
           callables, ``--channel-shape``), needs torch
For fresh outputs without page faults, run with ``MALLOC_MMAP_THRESHOLD_=1073741824
MALLOC_TRIM_THRESHOLD_=4294967296`` (README, "Fresh outputs").
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time


def _row_cases(nk, F, np, dtypes, shapes):
    rng = np.random.default_rng(0)
    for R, H in shapes:
        for name, dt in dtypes:
            x = rng.standard_normal((R, H)).astype(dt)
            r = rng.standard_normal((R, H)).astype(dt)
            dy = rng.standard_normal((R, H)).astype(dt)
            w = (1 + 0.1 * rng.standard_normal(H)).astype(np.float32)
            b = (0.1 * rng.standard_normal(H)).astype(np.float32)
            yield name, (R, H), x, r, dy, w, b


def child(args):
    import numpy as np
    import ml_dtypes
    import normkit as nk
    from normkit import functional as F

    nk.set_num_threads(args.threads)
    dtypes = [(d, {"f32": np.float32, "bf16": ml_dtypes.bfloat16}[d])
              for d in args.dtypes.split(",")]
    shapes = [tuple(int(v) for v in s.split("x")) for s in args.shapes.split(",")]
    kinds = args.cases.split(",")
    res = {}

    def timed(label, f):
        for _ in range(2):
            f()
        ts = []
        for _ in range(args.calls):
            t0 = time.perf_counter()
            f()
            ts.append(time.perf_counter() - t0)
        res[label] = statistics.median(ts) * 1e3

    for dn, (R, H), x, r, dy, w, b in _row_cases(nk, F, np, dtypes, shapes):
        tag = f"{dn} {R}x{H}"
        y, s, dx = np.empty_like(x), np.empty_like(x), np.empty_like(x)
        dw, db = np.empty_like(w), np.empty_like(b)
        if "row" in kinds:
            _, mean, rstd = F.layer_norm_forward(x, w, b)
            _, rrms = F.rms_norm_forward(x, w)
            timed(f"layer_norm fwd out {tag}", lambda: F.layer_norm(x, w, b, out=y))
            ln_out = {"out": (dx, dw, db)} if args.bwd == "out" else {}
            rms_out = {"out": (dx, dw, None)} if args.bwd == "out" else {}
            timed(f"layer_norm bwd {args.bwd} {tag}",
                  lambda: F.layer_norm_backward(dy, x, mean, rstd, w, b, **ln_out))
            timed(f"rms_norm fwd out {tag}", lambda: F.rms_norm(x, w, out=y))
            timed(f"rms_norm bwd {args.bwd} {tag}",
                  lambda: F.rms_norm_backward(dy, x, rrms, w, **rms_out))
        if "fused" in kinds:
            al = np.array([0.5], np.float32)

            def add_ln():
                _, s_, m, sd = F.add_layer_norm_forward(x, r, w, b)
                return F.add_layer_norm_backward(dy, s_, m, sd, w, b)

            def add_rms():
                o = F.add_rms_norm_forward(x, r, w)
                return F.add_rms_norm_backward(dy, o[1], o[-1], w)

            def ada():
                _, m, sd = nk.ada_norm_forward(x)
                return nk.ada_norm_backward(dy, x, m, sd)

            timed(f"dyt fwd out {tag}", lambda: nk.dyt(x, al, w, b, out=y))
            timed(f"dyt fwd+bwd {tag}", lambda: (nk.dyt(x, al, w, b),
                                                 nk.dyt_backward(dy, x, al, w, b)))
            timed(f"ada_norm fwd out {tag}", lambda: nk.ada_norm(x, out=y))
            timed(f"ada_norm fwd+bwd {tag}", ada)
            timed(f"add_layer_norm fwd out {tag}",
                  lambda: F.add_layer_norm(x, r, w, b, out=y, residual_out=s))
            timed(f"add_layer_norm fwd+bwd {tag}", add_ln)
            timed(f"add_rms_norm fwd out {tag}",
                  lambda: F.add_rms_norm(x, r, w, out=y, residual_out=s))
            timed(f"add_rms_norm fwd+bwd {tag}", add_rms)
    if "channel" in kinds:
        import torch
        from normkit.bench import channels as ch

        torch.set_num_threads(args.threads)
        shape = tuple(int(v) for v in args.channel_shape.split(","))
        tdt = [{"f32": "float32", "bf16": "bfloat16"}[d] for d, _ in dtypes]
        for c in ch.cases(["batch_norm", "group_norm", "instance_norm"], tdt, [shape],
                          ["fwd", "fwd+bwd"]):
            timed(f"{c.op} {c.layout} {c.dtype} {c.pass_} {list(shape)}",
                  ch.nk_callable(nk, c, ch.Tensors(torch, c)))
    print(json.dumps(res))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("old", nargs="?")
    p.add_argument("new", nargs="?")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--calls", type=int, default=15)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--cases", default="row,fused,channel")
    p.add_argument("--dtypes", default="f32,bf16")
    p.add_argument("--shapes", default="4096x4096,16384x768,8192x1024")
    p.add_argument("--channel-shape", default="32,256,56,56")
    p.add_argument("--bwd", choices=["out", "fresh"], default="out",
                   help="row-norm backwards into out= buffers, or fresh outputs (builds "
                        "from before the backwards took out=, e.g. f114bdf)")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args)
    if not (args.old and args.new):
        p.error("OLD_DIR and NEW_DIR are required")
    passed = [a for a in sys.argv[1:] if a not in (args.old, args.new)]

    def run(path):
        env = dict(os.environ, PYTHONPATH=os.path.abspath(path))
        out = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", *passed],
                             env=env, capture_output=True, text=True)
        if out.returncode != 0:
            sys.exit(f"{path}: the child failed:\n{out.stderr[-2000:]}")
        return json.loads(out.stdout.strip().splitlines()[-1])

    olds, news = [], []
    for i in range(args.rounds):
        order = [(args.old, olds), (args.new, news)]
        for path, sink in order if i % 2 == 0 else order[::-1]:
            sink.append(run(path))
    print(f"| case | old ms | new ms | new / old (median of {args.rounds} rounds) |")
    print("|---|---:|---:|---:|")
    for k in olds[0]:
        ratios = [n[k] / o[k] for o, n in zip(olds, news)]
        print(f"| {k} | {statistics.median(o[k] for o in olds):.3f} | "
              f"{statistics.median(n[k] for n in news):.3f} | {statistics.median(ratios):.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
