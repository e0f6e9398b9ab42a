"""``python -m normkit.bench.profile``: where a row-norm kernel's time goes.

For each op, dtype, shape and pass (forward into ``out=``; backward into ``out=`` buffers)
it measures, in the same run and with the same threads:

- ``op``: the call at the full shape (warm buffers, median);
- ``roof``: a copy of exactly the op's bytes (half read, half written) on normkit's threads,
  with plain and with non-temporal stores (``_core._bench_copy``, the faster one counts),
  timed in rounds *interleaved* with the op: the fraction is the median over rounds of
  roof time / op time, so that bandwidth that drifts during a run (a shared host: 55-160
  GB/s on the test machine within minutes) shifts both alike;
- ``arith``: the same call on rows that stay in L2 (two row counts, each big enough for the
  whole team of threads; the slope between them, scaled to the full shape, leaves out the
  call's fixed costs) — what the kernel's instructions cost when memory is not waiting
  (plain stores there: streaming ones start only above 16 MiB);

and names the limit: ``memory`` (the op is within 15% of the roof), ``arithmetic`` (the
in-cache time alone is at least 85% of the op's: cut instructions), or ``overlap`` (both are
well below the op's time: memory and arithmetic take turns instead of overlapping; prefetch
further ahead, keep more loads in flight).

``--perf`` adds per-pass timings: each case runs again in a child process under
``perf record -e cpu-clock`` (software sampling: it needs no hardware counters, which
virtual machines often lack) and the samples are split by function. In the row-norm kernels
the passes are separate functions or loops: ``layer_stats`` / ``rms_mean_sq`` (the
statistics pass, one read of the row from memory), the ``forward_impl`` body (the
normalize pass over the row in cache, with the next row's prefetch), ``backward_impl``
(both backward passes) and ``finish_column_sums`` (the fixed-order parameter-gradient
reduction); libgomp's share is the threads' fork, join and waiting, the kernel's page
faults. ``perf annotate`` on the same data shows the instructions of each loop.
No timing is asserted anywhere; it is a measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from typing import Dict, List, Optional

import numpy as np

from .timing import QUICK, Budget, time_cpu

OPS = ("layer_norm", "rms_norm")
PASSES = ("fwd", "bwd")
SHAPES = ((4096, 4096), (16384, 768), (8192, 1024))
# A kernel uses all its threads from this many elements per thread on (Note [Threads for
# small work], cpu/dispatch.cpp): the in-cache cases are at least that big.
TEAM_ELEMENTS = 1 << 15


def l2_bytes() -> int:
    """cpu0's L2 size from sysfs (512 KiB where it cannot be read)."""
    base = "/sys/devices/system/cpu/cpu0/cache"
    for i in range(8):
        try:
            with open(f"{base}/index{i}/level") as f:
                level = f.read().strip()
            with open(f"{base}/index{i}/size") as f:
                size = f.read().strip()
        except OSError:
            continue
        if level == "2" and size.endswith("K"):
            return int(size[:-1]) * 1024
    return 512 * 1024


L2_BYTES = l2_bytes()  # per core, for the in-cache (arithmetic) time


def _dtype(name: str):
    if name == "bfloat16":
        import ml_dtypes  # NumPy has no bfloat16 of its own

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


class Case:
    """One op × dtype × pass on [rows, cols] NumPy arrays, with every output preallocated."""

    def __init__(self, nk, op: str, dtype: str, rows: int, cols: int, pass_: str):
        self.nk, self.op, self.pass_ = nk, op, pass_
        dt = _dtype(dtype)
        rng = np.random.default_rng(0)
        self.x = rng.standard_normal((rows, cols), dtype=np.float32).astype(dt)
        self.dy = rng.standard_normal((rows, cols), dtype=np.float32).astype(dt)
        self.w = np.ones(cols, np.float32)
        self.b = np.zeros(cols, np.float32)
        self.y = np.empty_like(self.x)
        if op == "layer_norm":
            _, self.mean, self.rstd = nk.layer_norm_forward(self.x, self.w, self.b)
        else:
            _, self.rstd = nk.rms_norm_forward(self.x, self.w)
            self.mean = None
        self.grads = (np.empty_like(self.x), np.empty_like(self.w), np.empty_like(self.b))
        es = dt.itemsize
        # Bytes the op must move: x in, y out (forward); dy, x in, dx out (backward).
        self.nbytes = rows * cols * es * (2 if pass_ == "fwd" else 3)

    def fn(self):
        nk, x, w, b = self.nk, self.x, self.w, self.b
        if self.pass_ == "fwd":
            if self.op == "layer_norm":
                return lambda: nk.layer_norm(x, w, b, out=self.y)
            return lambda: nk.rms_norm(x, w, out=self.y)
        if self.op == "layer_norm":
            return lambda: nk.layer_norm_backward(self.dy, x, self.mean, self.rstd, w, b,
                                                  out=self.grads)
        return lambda: nk.rms_norm_backward(self.dy, x, self.rstd, w, b, out=self.grads)


def in_cache_rows(cols: int, itemsize: int, arrays: int, threads: int):
    """Two row counts (r1 < r2, or r1 == r2 when only one fits) whose arrays stay in cache
    (three quarters of L2 per thread) and that still give every thread its share of the work:
    the slope between their times is the arithmetic cost per row, without a call's fixed
    costs (parameter-gradient reduction, the fork). Where L2 cannot hold two full teams'
    work, r2 is that size (then L3 serves it)."""
    per_row = max(cols * itemsize * arrays, 1)
    fit = (L2_BYTES * 3 // 4 * threads) // per_row
    team = -(-threads * TEAM_ELEMENTS // max(cols, 1))  # rows for a full team
    r2 = max(fit, 2 * team, threads)
    r1 = max(team, threads, r2 // 2)
    return min(r1, r2), r2


def verdict(t_op: float, t_roof: float, t_arith: float) -> str:
    if t_op <= 1.15 * t_roof:
        return "memory"
    if t_arith >= 0.85 * t_op:
        return "arithmetic"
    return "overlap"


def _median(v):
    return float(np.median(np.asarray(v)))


def measure(nk, op, dtype, shape, pass_, threads, budget, rounds) -> dict:
    rows, cols = shape
    case = Case(nk, op, dtype, rows, cols, pass_)
    fn = case.fn()
    n = max(case.nbytes // 8, 1)  # float32 elements of each copy buffer: nbytes/2 bytes
    src = np.ones(n, np.float32)
    dst = np.empty(n, np.float32)
    dst.fill(0.0)
    copy = nk._core._bench_copy
    ops, roofs, fractions, methods = [], [], [], []
    for _ in range(rounds):
        t_op = time_cpu(fn, budget).median_s
        plain = time_cpu(lambda: copy(src, dst, False), budget).median_s
        nt = time_cpu(lambda: copy(src, dst, True), budget).median_s
        t_roof = min(plain, nt)
        ops.append(t_op)
        roofs.append(t_roof)
        fractions.append(t_roof / t_op)
        methods.append("nk.copy_nt" if nt < plain else "nk.copy")
    t_op, t_roof = _median(ops), _median(roofs)
    arrays = 2 if pass_ == "fwd" else 3
    r1, r2 = (min(rows, r) for r in in_cache_rows(cols, case.x.itemsize, arrays, threads))
    t2 = time_cpu(Case(nk, op, dtype, r2, cols, pass_).fn(), budget).median_s
    if r1 < r2:
        t1 = time_cpu(Case(nk, op, dtype, r1, cols, pass_).fn(), budget).median_s
        per_row = (t2 - t1) / (r2 - r1)
        if per_row <= 0:  # noise larger than the difference: the plain scaling
            per_row = t2 / r2
    else:
        per_row = t2 / r2
    t_arith = per_row * rows
    small_rows = [r1, r2]
    of_roof = _median(fractions)
    return {"op": op, "dtype": dtype, "shape": [rows, cols], "pass": pass_,
            "bytes": case.nbytes, "op_s": t_op, "roof_s": t_roof,
            "roof_method": max(set(methods), key=methods.count), "fractions": fractions,
            "arith_s": t_arith, "arith_rows": small_rows, "of_roof": of_roof,
            "limit": verdict(t_roof / of_roof, t_roof, t_arith)}


# --- per-pass timings by sampling (perf) -------------------------------------------------

_CHILD = r"""
import os, sys, time
import normkit as nk
from normkit.bench.profile import Case
op, dtype, rows, cols, pass_, threads, seconds = sys.argv[1:8]
nk.set_num_threads(int(threads))
fn = Case(nk, op, dtype, int(rows), int(cols), pass_).fn()
fn()
ctl = os.environ.get("NK_PERF_CTL")
if ctl:  # perf record started with sampling off: switch it on now that the setup is done
    with open(ctl + ".ctl", "w") as c:
        c.write("enable\n")
    with open(ctl + ".ack") as a:
        a.readline()
end = time.perf_counter() + float(seconds)
while time.perf_counter() < end:
    fn()
"""

# Function name patterns -> what part of the work they are (first match wins), then shared
# object patterns for samples without a normkit symbol.
CATEGORIES = (
    (r"layer_stats|rms_mean_sq|row_shifted_sums|chunk_moments|row_dev_sums|row_sum",
     "statistics pass"),
    (r"forward_impl", "normalize pass"),
    (r"backward_impl|backward_row", "backward passes"),
    (r"finish_column_sums", "parameter-gradient reduction"),
    (r"normkit::", "normkit (other)"),
)
DSO_CATEGORIES = (
    (r"^_core\.", "normkit (no symbols: a stripped build)"),
    (r"libgomp", "OpenMP fork/join/wait"),
    (r"kernel", "kernel (page faults, scheduling)"),
    (r"python|^_", "Python and extension modules"),
)


def categorize(dso: str, symbol: str) -> str:
    for pattern, name in CATEGORIES:
        if re.search(pattern, symbol):
            return name
    for pattern, name in DSO_CATEGORIES:
        if re.search(pattern, dso):
            return name
    return "other"


def parse_perf_report(text: str) -> List[tuple]:
    """``perf report --stdio --sort dso,symbol`` lines -> [(percent, dso, symbol)] (the
    symbol without its ``[.]`` / ``[k]`` mark)."""
    rows = []
    for line in text.splitlines():
        m = re.match(r"\s*([0-9.]+)%\s+(\S+)\s+(\[.\])\s+(.*?)(\s+-\s+-)?\s*$", line)
        if m:
            sym = m.group(4).strip()
            rows.append((float(m.group(1)), m.group(2), sym))
    return rows


def perf_profile(op, dtype, shape, pass_, threads, seconds=2.0) -> Optional[dict]:
    perf = shutil.which("perf")
    if perf is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "perf.data")
        child = [sys.executable, "-c", _CHILD, op, dtype, str(shape[0]), str(shape[1]), pass_,
                 str(threads), str(seconds)]
        base = [perf, "record", "-q", "-e", "cpu-clock", "-F", "2000", "-o", data]
        # Sampling starts disabled and the child enables it after its setup (perf >= 5.10's
        # --control); an older perf samples the setup too.
        ctl = os.path.join(tmp, "perf")
        os.mkfifo(ctl + ".ctl")
        os.mkfifo(ctl + ".ack")
        rec = subprocess.run(base + ["-D", "-1", f"--control=fifo:{ctl}.ctl,{ctl}.ack", "--"]
                             + child, capture_output=True, text=True,
                             env=dict(os.environ, NK_PERF_CTL=ctl), timeout=120 + seconds)
        if rec.returncode != 0:
            rec = subprocess.run(base + ["--"] + child, capture_output=True, text=True,
                                 timeout=120 + seconds)
        if rec.returncode != 0 or not os.path.exists(data):
            return {"error": (rec.stderr or rec.stdout).strip().splitlines()[-1:] or ["perf failed"]}
        rep = subprocess.run([perf, "report", "-i", data, "--stdio", "--sort", "dso,symbol"],
                             capture_output=True, text=True)
    rows = parse_perf_report(rep.stdout)
    by_cat: Dict[str, float] = {}
    for pct, dso, sym in rows:
        cat = categorize(dso, sym)
        by_cat[cat] = by_cat.get(cat, 0.0) + pct
    top = [{"percent": p, "dso": d, "symbol": _short(s), "part": categorize(d, s)}
           for p, d, s in rows[:8]]
    return {"parts": dict(sorted(by_cat.items(), key=lambda kv: -kv[1])), "top": top}


def _short(symbol: str) -> str:
    s = re.sub(r"\(normkit::detail::[^)]*\)", "(...)", symbol)
    s = re.sub(r"normkit::cpu::(\w+)::\(anonymous namespace\)::", r"\1::", s)
    return s if len(s) <= 110 else s[:107] + "..."


# --- command line --------------------------------------------------------------------------

def _shape(s: str):
    r, c = s.lower().split("x")
    return int(r), int(c)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m normkit.bench.profile", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ops", default=",".join(OPS))
    p.add_argument("--dtypes", default="float32,bfloat16")
    p.add_argument("--shapes", default=",".join(f"{r}x{c}" for r, c in SHAPES))
    p.add_argument("--passes", default=",".join(PASSES))
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--isa", default=None, help="normkit's instruction set (as NORMKIT_CPU_ISA)")
    p.add_argument("--perf", action="store_true",
                   help="per-pass timings by perf record -e cpu-clock (needs perf)")
    p.add_argument("--quick", action="store_true", help="fewer repetitions")
    p.add_argument("--json", default=None, help="write the records here")
    args = p.parse_args(argv)

    import normkit as nk

    try:
        import torch
    except ImportError:
        torch = None
    # Called in-process (the tests, a notebook): the settings it changes are put back.
    saved = (os.environ.get("NORMKIT_CPU_ISA"), nk.cpu_isa(), nk.get_num_threads(),
             torch.get_num_threads() if torch is not None else None)
    try:
        return _run(args, nk, torch)
    finally:
        env, isa, threads, torch_threads = saved
        if env is None:
            os.environ.pop("NORMKIT_CPU_ISA", None)
        else:
            os.environ["NORMKIT_CPU_ISA"] = env
        nk.set_cpu_isa(isa)
        nk.set_num_threads(threads)
        if torch is not None:
            torch.set_num_threads(torch_threads)


def _run(args, nk, torch) -> int:
    if args.isa:
        os.environ["NORMKIT_CPU_ISA"] = args.isa  # children (--perf) too
        nk.set_cpu_isa(args.isa)
    nk.set_num_threads(args.threads)
    if torch is not None:
        torch.set_num_threads(args.threads)
    budget = QUICK if args.quick else Budget(min_reps=9, min_time_s=0.1)
    rounds = 3 if args.quick else 7
    print(f"normkit {nk.__version__}, ISA {nk.cpu_isa()}, {args.threads} threads; medians. "
          "op: the call (out=); roof: a copy of its bytes, interleaved with it (of roof: the "
          "median over rounds); arith: in-L2 time "
          "scaled to the shape; limit: memory / arithmetic / overlap (see --help)\n")
    print("| op | dtype | shape | pass | MB | op ms | roof ms | of roof | arith ms | limit |")
    print("|---|---|---|---|---:|---:|---:|---:|---:|---|")
    records = []
    for op in args.ops.split(","):
        for dtype in args.dtypes.split(","):
            for shape in map(_shape, args.shapes.split(",")):
                for pass_ in args.passes.split(","):
                    r = measure(nk, op, dtype, shape, pass_, args.threads, budget, rounds)
                    print(f"| {op} | {dtype} | {shape[0]}x{shape[1]} | {pass_} | "
                          f"{r['bytes'] / 1e6:.0f} | {r['op_s'] * 1e3:.3f} | "
                          f"{r['roof_s'] * 1e3:.3f} | {r['of_roof']:.0%} | "
                          f"{r['arith_s'] * 1e3:.3f} | {r['limit']} |", flush=True)
                    if args.perf:
                        r["perf"] = perf_profile(op, dtype, shape, pass_, args.threads,
                                                 1.0 if args.quick else 2.0)
                        _print_perf(r["perf"])
                    records.append(r)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"isa": nk.cpu_isa(), "threads": args.threads, "records": records}, f,
                      indent=1)
    return 0


def _print_perf(prof) -> None:
    if prof is None:
        print("|  | perf not found: no per-pass timings | | | | | | | | |")
        return
    if "error" in prof:
        print(f"|  | perf failed: {' '.join(prof['error'])} | | | | | | | | |")
        return
    parts = ", ".join(f"{name} {pct:.0f}%" for name, pct in prof["parts"].items() if pct >= 1)
    print(f"|  | samples: {parts} | | | | | | | | |", flush=True)


if __name__ == "__main__":
    sys.exit(main())
