"""``python -m normkit.bench``: normkit against torch, NumPy and a copy of the same bytes."""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import sys
import time
from typing import List, Optional

import numpy as np

from . import cases as C
from . import channels as CH
from . import report as R
from .machine import format_info, machine_info
from .roof import Roof
from .timing import FULL, QUICK, QUICK_ROOF, settle, time_each_call, time_fn

DTYPE_ALIASES = {
    "fp32": "float32", "float32": "float32", "f32": "float32",
    "bf16": "bfloat16", "bfloat16": "bfloat16",
}


def _csv(text: str) -> List[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _parse_shapes(text: str):
    shapes = []
    for t in _csv(text):
        dims = t.lower().strip("[]()").replace("x", " ").replace("*", " ").split()
        if len(dims) != 2:
            raise argparse.ArgumentTypeError(f"--shapes: expected NxH, got {t!r}")
        shapes.append((int(dims[0]), int(dims[1])))
    return shapes


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m normkit.bench",
        description="Benchmark normkit's norm kernels against torch and NumPy, with the "
        "bandwidth of a plain copy of the same bytes as the roof.",
    )
    p.add_argument("--quick", action="store_true",
                   help="a short run (< 1 min): shapes 4096x4096 and 1x4096, fresh outputs, fewer reps")
    p.add_argument("--threads", type=int, default=None,
                   help="threads for normkit and torch alike (default: os.cpu_count())")
    p.add_argument("--isa", default=None,
                   help="normkit's instruction set for the run (scalar, avx2, avx512, avx512bf16, neon: one "
                   "of normkit.available_cpu_isas(); default: the best this CPU has). The same "
                   "as NORMKIT_CPU_ISA; the machine block and the figures' footers record it")
    p.add_argument("--ops", type=_csv, default=list(C.OPS),
                   help=f"comma list of {', '.join(C.OPS)} ('none': only the --channel-ops)")
    p.add_argument("--dtypes", type=_csv, default=list(C.DTYPES), help="comma list: fp32,bf16")
    p.add_argument("--shapes", type=_parse_shapes, default=None,
                   help="comma list of NxH (default: all six; --quick: 4096x4096,1x4096)")
    p.add_argument("--passes", type=_csv, default=list(C.PASSES), help="comma list: fwd,fwd+bwd")
    p.add_argument("--modes", type=_csv, default=None,
                   help="comma list: fresh (allocate outputs each call), out (preallocated "
                   "out=, forward only); default both, --quick: fresh")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="cuda: torch CUDA tensors for both libraries, CUDA-event timing")
    p.add_argument("--frontend", choices=("numpy", "torch", "both"), default="numpy",
                   help="what normkit is given on the CPU: NumPy arrays, torch tensors, or both "
                   "(the torch-tensor figures then go in an extra column)")
    p.add_argument("--channel-ops", type=_csv, default=list(CH.OPS),
                   help=f"comma list of the (N, C, H, W) ops {', '.join(CH.OPS)} (both layouts; "
                   "'none' to skip them)")
    p.add_argument("--no-numpy", action="store_true", help="skip the plain NumPy peer")
    p.add_argument("--no-overhead", action="store_true", help="skip the per-call overhead test")
    p.add_argument("--json", metavar="PATH", help="write every measurement to PATH as JSON")
    p.add_argument("--render", metavar="PATH",
                   help="print the tables of a run saved with --json, without running")
    p.add_argument("--plot", metavar="DIR",
                   help="write the run's figures to DIR (speed-up over torch, fraction of the "
                   "copy roof, per op/shape/dtype; PNG, needs matplotlib); with --render, of "
                   "the saved run")
    p.add_argument("--markdown", action="store_true",
                   help="print markdown tables (for bench/RESULTS.md); progress goes to stderr")
    return p


def _import_torch():
    try:
        import torch
    except ImportError:
        return None
    return torch


def _log(msg: str, markdown: bool) -> None:
    print(msg, file=sys.stderr if markdown else sys.stdout, flush=True)


class Runner:
    def __init__(self, args, nk, torch):
        self.args = args
        self.nk = nk
        self.torch = torch
        self.device = args.device
        self.budget = QUICK if args.quick else FULL
        self.roof = Roof(nk, torch, self.device, QUICK_ROOF if args.quick else FULL)
        self.records: List[dict] = []
        self.nk_frontends = self._frontends()

    def _frontends(self):
        """(library name, array kind) pairs normkit is run with."""
        if self.device == "cuda":
            return [("normkit", "torch")]
        fe = self.args.frontend
        if self.torch is None:
            fe = "numpy"
        if fe == "numpy":
            return [("normkit", "numpy")]
        if fe == "torch":
            return [("normkit", "torch")]
        return [("normkit", "numpy"), ("normkit[torch in]", "torch")]

    def _time(self, fn, budget=None, first_call_s=None):
        return time_fn(fn, budget or self.budget, self.device, self.torch, first_call_s)

    def run_shape(self, ops, dtype: str, shape, passes, modes, data, emit) -> None:
        """Every op on one (dtype, shape): the inputs are converted once and shared."""
        arrays = {}
        convs = {}
        frontends = list(self.nk_frontends)
        for _, kind in frontends + ([("torch", "torch")] if self.torch else []):
            if kind in arrays:
                continue
            try:
                conv = C.Converter(kind, dtype, self.torch, self.device)
                arrays[kind] = C.convert(data, conv)
                convs[kind] = conv
            except ImportError as exc:  # bf16 NumPy arrays need ml_dtypes
                _log(f"  no NumPy {dtype} arrays ({exc})", self.args.markdown)
        if "numpy" not in arrays and ("normkit", "numpy") in frontends:
            if self.torch is not None:
                _log(f"  normkit gets torch {dtype} tensors instead", self.args.markdown)
                frontends = [("normkit", "torch")] + [f for f in frontends if f[0] != "normkit"]
                if "torch" not in arrays:
                    convs["torch"] = C.Converter("torch", dtype, self.torch, self.device)
                    arrays["torch"] = C.convert(data, convs["torch"])
        np_arrays = None
        if not self.args.no_numpy and self.device == "cpu" and dtype == "float32":
            np_arrays = arrays.get("numpy") or C.convert(data, C.Converter("numpy", dtype))

        for op in ops:
            op_arrays = {k: C.for_op(a, op) for k, a in arrays.items()}
            op_np = C.for_op(np_arrays, op) if np_arrays is not None else None
            for pass_ in passes:
                for mode in modes:
                    if mode == "out" and pass_ != "fwd":
                        continue
                    case = C.Case(op, dtype, tuple(shape), pass_, mode)
                    emit(self.run_case(case, frontends, op_arrays, convs, op_np))
        del arrays, convs, np_arrays
        gc.collect()

    def run_case(self, case: C.Case, frontends, arrays, convs, np_arrays) -> dict:
        nbytes = C.bytes_moved(case)
        roof = self.roof.for_bytes(nbytes)
        rec = {
            "op": case.op, "dtype": case.dtype, "shape": list(case.shape),
            "pass": case.pass_, "mode": case.mode, "bytes": nbytes,
            "roof": roof.to_dict(), "libs": {},
        }
        outputs = {}
        plan = []
        for name, kind in frontends:
            if kind in arrays:
                plan.append((name, lambda kind=kind: C.nk_callable(
                    self.nk, case, arrays[kind], convs[kind]), kind))
        if self.torch is not None and "torch" in arrays:
            plan.append(("torch", lambda: C.torch_callable(
                self.torch, case, arrays["torch"], convs["torch"]), "torch"))
        if np_arrays is not None:
            fn = C.numpy_callable(case, np_arrays)
            if fn is not None:
                plan.append(("numpy", lambda fn=fn: fn, "numpy"))

        for name, build, kind in plan:
            entry = {"inputs": kind}
            try:
                built = build()
                fn, note = built if isinstance(built, tuple) else (built, "")
                if note:
                    entry["note"] = note
                # One untimed call: checks it runs, gives the check value, and warms up.
                t0 = time.perf_counter()
                out = fn()
                first = time.perf_counter() - t0
                outputs[name] = (out, kind)
                budget = self.budget
                if name == "numpy" and self.args.quick:
                    budget = dataclasses.replace(budget, min_reps=3)  # a slow reference
                st = self._time(fn, budget, first)
                entry.update(st.to_dict())
                entry["gbps"] = nbytes / st.median_s / 1e9
                entry["roof_frac"] = entry["gbps"] / roof.best
            except Exception as exc:  # report and go on: one broken case must not end the run
                entry["error"] = f"{type(exc).__name__}: {exc}"
                _log(f"  {name} failed on {case.label}: {entry['error']}", self.args.markdown)
            rec["libs"][name] = entry
            settle()

        nk_rec, t_rec = rec["libs"].get("normkit", {}), rec["libs"].get("torch", {})
        if "median_s" in nk_rec and "median_s" in t_rec:
            rec["speedup_vs_torch"] = t_rec["median_s"] / nk_rec["median_s"]
        rec["check"] = self._check(outputs)
        return rec

    def run_channel_case(self, case: "CH.ChannelCase") -> dict:
        """One (N, C, H, W) case: normkit and torch on the same torch tensors."""
        nbytes = CH.bytes_moved(case)
        roof = self.roof.for_bytes(nbytes)
        rec = {
            "op": case.name, "dtype": case.dtype, "shape": list(case.shape),
            "pass": case.pass_, "mode": case.mode, "bytes": nbytes,
            "roof": roof.to_dict(), "libs": {},
        }
        tensors = CH.Tensors(self.torch, case)
        outputs = {}
        plan = [("normkit", lambda: CH.nk_callable(self.nk, case, tensors)),
                ("torch", lambda: CH.torch_callable(self.torch, case, tensors))]
        for name, build in plan:
            entry = {"inputs": "torch"}
            try:
                built = build()
                fn, note = built if isinstance(built, tuple) else (built, "")
                if note:
                    entry["note"] = note
                t0 = time.perf_counter()
                out = fn()
                first = time.perf_counter() - t0
                outputs[name] = (out.clone(), "torch")
                st = self._time(fn, self.budget, first)
                entry.update(st.to_dict())
                entry["gbps"] = nbytes / st.median_s / 1e9
                entry["roof_frac"] = entry["gbps"] / roof.best
            except Exception as exc:  # report and go on
                entry["error"] = f"{type(exc).__name__}: {exc}"
                _log(f"  {name} failed on {case.label}: {entry['error']}", self.args.markdown)
            rec["libs"][name] = entry
            settle()
        nk_rec, t_rec = rec["libs"].get("normkit", {}), rec["libs"].get("torch", {})
        if "median_s" in nk_rec and "median_s" in t_rec:
            rec["speedup_vs_torch"] = t_rec["median_s"] / nk_rec["median_s"]
        rec["check"] = self._check(outputs)
        del tensors, outputs
        gc.collect()
        return rec

    def _check(self, outputs) -> Optional[float]:
        if "normkit" not in outputs:
            return None
        ref_name = "torch" if "torch" in outputs else ("numpy" if "numpy" in outputs else None)
        if ref_name is None:
            return None
        try:
            # A few rows spread over the output are enough to catch a wrong kernel, and
            # keep the check cheap next to the timing (converting 16M bf16 values is not).
            def f32(item):
                out, kind = item
                rows = np.unique(np.linspace(0, out.shape[0] - 1, 16).astype(np.int64))
                if kind == "numpy":
                    return np.asarray(out)[rows].astype(np.float32)
                return out.detach()[self.torch.from_numpy(rows).to(out.device)].float().cpu().numpy()

            return C.max_rel_diff(f32(outputs["normkit"]), f32(outputs[ref_name]))
        except Exception:
            return float("nan")

    def overhead(self) -> dict:
        """One [1,4096] float32 layer norm round trip, call by call."""
        nk, torch = self.nk, self.torch
        calls = 3000 if self.args.quick else 20000
        warm = 300
        h = 4096
        rng = np.random.default_rng(1)
        x = rng.standard_normal((1, h), dtype=np.float32)
        w = np.ones(h, np.float32)
        b = np.zeros(h, np.float32)
        res = {}

        def measure(name, fn):
            try:
                fn()
                if self.device == "cuda":
                    sync = torch.cuda.synchronize

                    def fn_sync():
                        fn()
                        sync()

                    st = time_each_call(fn_sync, calls, warm)
                else:
                    st = time_each_call(fn, calls, warm)
                res[name] = st.to_dict()
            except Exception as exc:
                res[name] = {"error": f"{type(exc).__name__}: {exc}"}
            settle()

        if self.device == "cpu":
            y = np.empty_like(x)
            measure("normkit.layer_norm (NumPy in)", lambda: nk.layer_norm(x, w, b))
            measure("normkit.layer_norm (NumPy in, out=)", lambda: nk.layer_norm(x, w, b, out=y))
        if torch is not None:
            dev = self.device
            xt, wt, bt = (torch.from_numpy(a.copy()).to(dev) for a in (x, w, b))
            name = "normkit.layer_norm (torch in)" if dev == "cpu" else "normkit.layer_norm (CUDA torch in)"
            measure(name, lambda: nk.layer_norm(xt, wt, bt))
            F = torch.nn.functional
            measure("torch F.layer_norm", lambda: F.layer_norm(xt, (h,), wt, bt))
        if self.device == "cpu":
            y2 = np.empty_like(x)
            measure("np.copyto (same 16 KiB, floor)", lambda: np.copyto(y2, x))
        return res


def _select(args):
    if args.ops == ["none"]:  # only the (N, C, H, W) cases
        args.ops = []
    unknown = [o for o in args.ops if o not in C.OPS]
    if unknown:
        raise SystemExit(f"--ops: unknown {unknown}; choose from {list(C.OPS)}")
    dtypes = []
    for d in args.dtypes:
        if d.lower() not in DTYPE_ALIASES:
            raise SystemExit(f"--dtypes: unknown {d!r}; choose from fp32, bf16")
        dtypes.append(DTYPE_ALIASES[d.lower()])
    for p in args.passes:
        if p not in C.PASSES:
            raise SystemExit(f"--passes: unknown {p!r}; choose from {list(C.PASSES)}")
    shapes = args.shapes or (list(C.QUICK_SHAPES) if args.quick else list(C.SHAPES))
    # --quick keeps to fresh outputs (the common call) unless --modes says otherwise.
    modes = args.modes or (["fresh"] if args.quick else list(C.MODES))
    for m in modes:
        if m not in C.MODES:
            raise SystemExit(f"--modes: unknown {m!r}; choose from {list(C.MODES)}")
    return args.ops, dtypes, shapes, args.passes, modes


def print_report(info: dict, records: List[dict], overhead: dict, wall: float,
                 argv: List[str], md: bool, extra: Optional[str] = None) -> None:
    """The tables after a run (or re-rendered from its JSON with ``--render``)."""
    head = R.headers(extra)
    summary = R.summary_rows(records)
    ov_rows = R.overhead_rows(overhead) if overhead else []
    title = "Summary: geometric means over shapes (× torch = torch time / normkit time)"
    if md:
        print("## Machine\n")
        for line in format_info(info):
            print(f"    {line}")
        print(f"\nCommand: `python -m normkit.bench {' '.join(argv)}` — wall time {wall:.0f} s\n")
        print("## Results\n")
        print(R.markdown_table(head, [R.row_cells(r, extra) for r in records]))
        print(f"\n## {title}\n")
        print(R.markdown_table(R.SUMMARY_HEADERS, summary))
        if ov_rows:
            print("\n## Per-call overhead\n")
            print(R.markdown_table(R.OVERHEAD_HEADERS, ov_rows))
    else:
        print(f"\n{title}")
        print(R.plain_table(R.SUMMARY_HEADERS, summary))
        if ov_rows:
            print("\nPer-call overhead")
            print(R.plain_table(R.OVERHEAD_HEADERS, ov_rows))
        print(f"\nwall time {wall:.1f} s")


def render(path: str, md: bool) -> dict:
    """Prints the tables of a run saved with ``--json``, without running anything."""
    with open(path) as f:
        saved = json.load(f)
    records = saved["cases"]
    extra = "normkit[torch in]" if any("normkit[torch in]" in r["libs"] for r in records) else None
    if not md:
        head = R.headers(extra)
        widths = R.TEXT_WIDTHS[: len(head)]
        for line in format_info(saved["machine"]):
            print(line)
        print()
        print(R.text_row(head, widths))
        for r in records:
            print(R.text_row(R.row_cells(r, extra), widths))
    print_report(saved["machine"], records, saved.get("overhead") or {}, saved["wall_s"],
                 saved.get("argv", []), md, extra)
    return saved


def _plot(directory: str, saved: dict, md: bool) -> None:
    from . import plot
    for path in plot.write(directory, saved):
        _log(f"wrote {path}", md)


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.render:
        saved = render(args.render, args.markdown)
        if args.plot:
            _plot(args.plot, saved, args.markdown)
        return 0
    if args.plot:  # fail now, not after the run
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise SystemExit("--plot needs matplotlib: pip install 'normkit[bench]'") from None
    t_start = time.perf_counter()
    ops, dtypes, shapes, passes, modes = _select(args)

    import normkit as nk

    torch = _import_torch()
    threads = args.threads or os.cpu_count() or 1
    nk.set_num_threads(threads)
    if args.isa is not None:
        if args.isa not in nk.available_cpu_isas():
            raise SystemExit(f"--isa: {args.isa!r} is not available here; choose from "
                             f"{nk.available_cpu_isas()}")
        nk.set_cpu_isa(args.isa)
    if torch is not None:
        torch.set_num_threads(threads)

    if args.device == "cuda":
        if torch is None or not torch.cuda.is_available():
            print("--device cuda needs torch with a CUDA GPU", file=sys.stderr)
            return 2
        if not nk.cuda_available():
            print("--device cuda: normkit was built without CUDA or sees no GPU", file=sys.stderr)
            return 2

    md = args.markdown
    info = machine_info(nk, torch, threads, args.device)
    for line in format_info(info):
        _log(line, md)
    if torch is None:
        _log("torch is not installed: running normkit, NumPy and the copy roof only "
             "(pip install 'normkit[bench]' for torch)", md)
    _log("", md)

    runner = Runner(args, nk, torch)
    extra = "normkit[torch in]" if any(n == "normkit[torch in]" for n, _ in runner.nk_frontends) else None
    head = R.headers(extra)
    widths = R.TEXT_WIDTHS[: len(head)]
    _log(R.text_row(head, widths), md)

    def emit(rec):
        runner.records.append(rec)
        _log(R.text_row(R.row_cells(rec, extra), widths), md)

    for shape in (shapes if ops else []):
        data = C.make_data(shape)
        for dtype in dtypes:
            runner.run_shape(ops, dtype, shape, passes, modes, data, emit)
        del data

    # The tables list cases by op, dtype, shape (the run goes shape by shape to make and
    # convert each shape's inputs once).
    def order(rec):
        return (C.OPS.index(rec["op"]), C.DTYPES.index(rec["dtype"]),
                shapes.index(tuple(rec["shape"])), C.PASSES.index(rec["pass"]),
                C.MODES.index(rec["mode"]))

    runner.records.sort(key=order)
    channel_ops = [o for o in args.channel_ops if o != "none"]
    bad = [o for o in channel_ops if o not in CH.OPS]
    if bad:
        raise SystemExit(f"--channel-ops: unknown {bad}; choose from {list(CH.OPS)} or none")
    if channel_ops and torch is not None and args.device == "cpu":
        ch_shapes = list(CH.QUICK_SHAPES) if args.quick else list(CH.SHAPES)
        for case in CH.cases(channel_ops, dtypes, ch_shapes, passes):
            emit(runner.run_channel_case(case))

    overhead = {} if args.no_overhead else runner.overhead()
    wall = time.perf_counter() - t_start

    argv_list = sys.argv[1:] if argv is None else list(argv)
    print_report(info, runner.records, overhead, wall, argv_list, md, extra)
    saved = {
        "machine": info,
        "argv": argv_list,
        "budget": vars(runner.budget),
        "wall_s": wall,
        "roof": [p.to_dict() for p in runner.roof.points.values()],
        "cases": runner.records,
        "overhead": overhead,
    }
    if args.json:
        R.write_json(args.json, saved)
        _log(f"wrote {args.json}", md)
    if args.plot:
        _plot(args.plot, saved, md)
    return 0
