"""``python -m normkit.bench.faults``: what fresh (newly mapped) outputs cost, and what keeps it.

A large output allocated per call is a new ``mmap`` (glibc serves every block over its mmap
threshold, 32 MB at most, that way and unmaps it on free), so the first write to each page
faults — for a 64 MB output thousands of faults that can cost more than the kernel. This
runs the same calls under each allocator setting, each in its own interpreter:

- ``default``: glibc's defaults;
- ``keep``: ``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_TRIM_THRESHOLD_`` raised so that large
  blocks come from the heap and freed memory stays mapped for the next call (the same as
  ``GLIBC_TUNABLES=glibc.malloc.mmap_threshold=...:glibc.malloc.trim_threshold=...``);

and prints medians of: normkit's layer norm into a fresh output and with ``out=`` (NumPy),
the same on torch tensors and torch's ``F.layer_norm`` (each allocates its output), and
``np.empty`` + ``fill`` of the same bytes (the fault cost alone, no kernel). ``fresh − out=``
is what the faults cost a call. No timing is asserted anywhere; it is a measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

SETTINGS = {
    "default": {},
    "keep": {"MALLOC_MMAP_THRESHOLD_": str(1 << 30), "MALLOC_TRIM_THRESHOLD_": str(1 << 32)},
}

_CHILD = r"""
import json, statistics, sys, time
import numpy as np, normkit as nk
rows, cols, threads, reps = map(int, sys.argv[1:5])
nk.set_num_threads(threads)
x = np.random.default_rng(0).standard_normal((rows, cols), dtype=np.float32)
w, b = np.ones(cols, np.float32), np.zeros(cols, np.float32)
out = np.empty_like(x)

def med(fn):
    fn()
    ts = []
    for _ in range(reps):
        t = time.perf_counter(); fn(); ts.append(time.perf_counter() - t)
    return statistics.median(ts) * 1e3

res = {"normkit fresh (NumPy)": med(lambda: nk.layer_norm(x, w, b)),
       "normkit out= (NumPy)": med(lambda: nk.layer_norm(x, w, b, out=out)),
       "np.empty + fill (faults only)": med(lambda: np.empty_like(x).fill(0.0))}
try:
    import torch
    torch.set_num_threads(threads)
    xt, wt, bt = (torch.from_numpy(a) for a in (x, w, b))
    res["normkit fresh (torch)"] = med(lambda: nk.layer_norm(xt, wt, bt))
    res["torch F.layer_norm"] = med(lambda: torch.nn.functional.layer_norm(xt, (cols,), wt, bt))
except ImportError:
    pass
print(json.dumps(res))
"""


def measure(rows: int, cols: int, threads: int, reps: int) -> dict:
    """{setting: {case: median ms}}, each setting in a fresh interpreter."""
    out = {}
    for name, env in SETTINGS.items():
        run = subprocess.run([sys.executable, "-c", _CHILD, str(rows), str(cols), str(threads),
                              str(reps)], env={**os.environ, **env}, capture_output=True,
                             text=True, timeout=600)
        if run.returncode != 0:
            raise SystemExit(f"the {name} run failed:\n{run.stderr}")
        out[name] = json.loads(run.stdout)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m normkit.bench.faults", description=__doc__.split("\n")[0])
    p.add_argument("--shape", default="4096x4096", help="RxC float32 (default 4096x4096: 64 MB)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--reps", type=int, default=40, help="timed calls per case (median)")
    p.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    a = p.parse_args(argv)
    rows, cols = (int(t) for t in a.shape.lower().split("x"))
    res = measure(rows, cols, a.threads, a.reps)
    cases = list(res["default"])
    print(f"[{rows}, {cols}] float32 layer norm, {a.threads} threads, median of {a.reps} calls (ms)")
    print(f"{'':32}" + "".join(f"{k:>10}" for k in SETTINGS))
    for c in cases:
        print(f"{c:32}" + "".join(f"{res[k].get(c, float('nan')):10.2f}" for k in SETTINGS))
    d = res["default"]
    print(f"\nfaults per fresh call (normkit fresh - out=, default malloc): "
          f"{d['normkit fresh (NumPy)'] - d['normkit out= (NumPy)']:.2f} ms")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"shape": [rows, cols], "threads": a.threads, "settings": SETTINGS,
                       "ms": res}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
