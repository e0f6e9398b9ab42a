"""The parameter norms and streaming statistics against torch and NumPy, in one run:
``python -m normkit.bench.param [--threads N] [--quick]``.

Rows (float32, medians; every ratio is from the same run):

- ``weight_norm`` forward + backward of a [4096, 4096] weight (dim 0) against
  ``torch._weight_norm`` with autograd; bytes 5·A (v read, w written; dw, v read, dv written),
  against the same-run copy roof (normkit.bench.roof). Two modes: ``fresh`` (every call
  allocates its outputs, as in training) and ``out`` (outputs preallocated: the kernels).
- ``spectral_norm`` training forward, 1 power iteration, [4096, 4096]: normkit's
  parametrization against torch's (``weight`` of a parametrized ``nn.Linear``); and the
  products alone — normkit's one fused pass (both products from one read of W) against
  torch's two ``torch.mv`` (its BLAS).
- ``moments`` of [16384, 1024] over axis 0 against ``np.mean`` + ``np.var`` and
  ``torch.var_mean``; bytes A read, against the read roof: the best of ``np.sum``,
  ``torch.sum`` and ``torch.amax`` over the same bytes (a read-only pass).
- ``Standardizer.partial_fit`` over 1 GB in 64 MB chunks ([16384, 1024] float32 each),
  against the read roof.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

from .roof import Roof
from .timing import FULL, QUICK, QUICK_ROOF, Budget, settle, time_cpu

HEADERS = ["op", "shape", "mode", "normkit ms", "torch ms", "NumPy ms", "vs torch",
           "vs NumPy", "bytes MB", "roof GB/s", "of roof"]


def _median_of(fn, budget: Budget) -> float:
    settle()
    return time_cpu(fn, budget).median_s


def read_roof(torch, nbytes: int, budget: Budget) -> tuple:
    """The best read-only rate over ``nbytes`` of float32 (GB/s) and its method."""
    x = np.ones(nbytes // 4, np.float32)
    rates = {"np.sum": nbytes / _median_of(lambda: x.sum(), budget) / 1e9}
    if torch is not None:
        t = torch.from_numpy(x)
        rates["torch.sum"] = nbytes / _median_of(lambda: t.sum(), budget) / 1e9
        rates["torch.amax"] = nbytes / _median_of(lambda: t.amax(), budget) / 1e9
    best = max(rates, key=rates.get)
    return rates[best], best


def _row(op, shape, mode, nk_s, torch_s=None, np_s=None, nbytes=None, roof=None):
    r = {"op": op, "shape": "x".join(map(str, shape)), "mode": mode, "normkit_ms": nk_s * 1e3,
         "torch_ms": None if torch_s is None else torch_s * 1e3,
         "numpy_ms": None if np_s is None else np_s * 1e3,
         "vs_torch": None if torch_s is None else torch_s / nk_s,
         "vs_numpy": None if np_s is None else np_s / nk_s,
         "bytes_mb": None if nbytes is None else nbytes / 1e6,
         "roof_gbps": roof, "of_roof": None}
    if nbytes is not None and roof:
        r["of_roof"] = (nbytes / nk_s / 1e9) / roof
    return r


def weight_norm_rows(torch, nk, budget, roof):
    from normkit._arrays import NumpyLib
    from normkit._param_norm import WEIGHT_NORM, WEIGHT_NORM_BWD

    shape = (4096, 4096)
    rng = np.random.default_rng(0)
    v = rng.standard_normal(shape, dtype=np.float32)
    g = rng.random((shape[0], 1), dtype=np.float32) + 0.5
    dw = rng.standard_normal(shape, dtype=np.float32)
    A = v.nbytes
    nbytes = 5 * A
    rate = roof.for_bytes(nbytes).best

    def fresh():
        w, norm = nk.weight_norm_forward(v, g)
        return nk.weight_norm_backward(dw, v, g, norm)

    w, norm = np.empty_like(v), np.empty_like(g)
    dv, dg = np.empty_like(v), np.empty_like(g)
    w.fill(0), dv.fill(0)

    def out():
        WEIGHT_NORM.run(NumpyLib, [v, g, 0], [w, norm], 0)
        WEIGHT_NORM_BWD.run(NumpyLib, [dw, v, g, norm, 0], [dv, dg], 0)

    vt = torch.from_numpy(v).clone().requires_grad_(True)
    gt = torch.from_numpy(g).clone().requires_grad_(True)
    dwt = torch.from_numpy(dw)

    def torch_fb():
        vt.grad = gt.grad = None
        torch._weight_norm(vt, gt, 0).backward(dwt)

    t_torch = _median_of(torch_fb, budget)
    rows = [_row("weight_norm fwd+bwd", shape, "fresh", _median_of(fresh, budget), t_torch,
                 nbytes=nbytes, roof=rate),
            _row("weight_norm fwd+bwd", shape, "out", _median_of(out, budget), t_torch,
                 nbytes=nbytes, roof=rate)]
    return rows


def spectral_rows(torch, nk, budget, roof):
    import normkit.torch as nkt
    from normkit._arrays import NumpyLib
    from normkit._param_norm import SPECTRAL_NORM

    shape = (4096, 4096)
    torch.manual_seed(0)
    lin_t = torch.nn.utils.parametrizations.spectral_norm(torch.nn.Linear(*shape, bias=False))
    torch.manual_seed(0)
    lin_n = nkt.spectral_norm(torch.nn.Linear(*shape, bias=False))
    A = shape[0] * shape[1] * 4
    nbytes = 3 * A  # the iteration's read, then W read and W/σ written
    rate = roof.for_bytes(nbytes).best
    with torch.no_grad():
        t_torch = _median_of(lambda: lin_t.weight, budget)
        t_nk = _median_of(lambda: lin_n.weight, budget)
    W = lin_n.parametrizations.weight.original.detach().numpy()
    u = lin_n.parametrizations.weight[0]._u.numpy().copy()
    v = lin_n.parametrizations.weight[0]._v.numpy().copy()
    o = np.empty_like(W)
    o.fill(0)
    t_out = _median_of(lambda: SPECTRAL_NORM.run(NumpyLib, [W, u, v, 1, 1e-12], [o, None, u, v], 0),
                       budget)
    rows = [_row("spectral_norm train fwd", shape, "fresh", t_nk, t_torch, nbytes=nbytes,
                 roof=rate),
            _row("spectral_norm train fwd", shape, "out", t_out, t_torch, nbytes=nbytes,
                 roof=rate)]
    # The products alone: one fused pass against torch's two matrix-vector products.
    Wt, ut, vt = torch.from_numpy(W), torch.from_numpy(u), torch.from_numpy(v)
    t_mv = _median_of(lambda: (torch.mv(Wt, vt), torch.mv(Wt.t(), ut)), budget)
    t_pass = _median_of(lambda: SPECTRAL_NORM.run(NumpyLib, [W, u, v, 1, 1e-12],
                                                  [None, None, u, v], 0), budget)
    rows.append(_row("spectral power iteration", shape, "products", t_pass, t_mv, nbytes=A,
                     roof=None))
    return rows


def moments_rows(torch, nk, budget, quick):
    shape = (16384, 1024)
    x = np.random.default_rng(1).standard_normal(shape, dtype=np.float32)
    rate, _ = read_roof(torch, x.nbytes, budget)
    xt = torch.from_numpy(x)
    t_nk = _median_of(lambda: nk.moments(x, 0), budget)
    t_np = _median_of(lambda: (x.mean(0), x.var(0)), budget)
    t_torch = _median_of(lambda: torch.var_mean(xt, 0, correction=0), budget)
    rows = [_row("moments axis 0", shape, "-", t_nk, t_torch, t_np, x.nbytes, rate)]
    chunks = 4 if quick else 16
    data = [np.random.default_rng(k).standard_normal(shape, dtype=np.float32)
            for k in range(chunks)]
    total = sum(c.nbytes for c in data)

    def fit():
        s = nk.Standardizer()
        for c in data:
            s.partial_fit(c)
        return s

    fit()  # warm-up
    times = []
    for _ in range(3 if quick else 5):
        settle()
        t0 = time.perf_counter()
        fit()
        times.append(time.perf_counter() - t0)
    t_fit = float(np.median(times))
    skl = None
    try:
        from sklearn.preprocessing import StandardScaler

        def skfit():
            s = StandardScaler()
            for c in data[:2]:
                s.partial_fit(c)

        skl = _median_of(skfit, Budget(warmup_calls=0, min_reps=3, max_reps=3)) * chunks / 2
    except ImportError:
        pass
    rows.append(_row(f"Standardizer.partial_fit {total / 2**30:.2g} GB, 64 MB chunks", shape,
                     f"{chunks} chunks", t_fit, np_s=skl, nbytes=total, roof=rate))
    return rows


def _fmt(v, f="{:.2f}"):
    return "-" if v is None else f.format(v)


def table(rows) -> str:
    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    for r in rows:
        lines.append("| " + " | ".join([
            r["op"], r["shape"], r["mode"], _fmt(r["normkit_ms"]), _fmt(r["torch_ms"]),
            _fmt(r["numpy_ms"]), _fmt(r["vs_torch"], "{:.2f}x"), _fmt(r["vs_numpy"], "{:.2f}x"),
            _fmt(r["bytes_mb"], "{:.0f}"), _fmt(r["roof_gbps"], "{:.1f}"),
            _fmt(r["of_roof"], "{:.0%}")]) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m normkit.bench.param", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--quick", action="store_true", help="short budgets, 256 MB of chunks")
    args = p.parse_args(argv)
    try:
        import torch
    except ImportError:
        print("python -m normkit.bench.param needs torch", file=sys.stderr)
        return 2
    import normkit as nk

    nk.set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    budget = QUICK if args.quick else FULL
    roof = Roof(nk, torch, "cpu", QUICK_ROOF if args.quick else FULL)
    print(f"normkit {nk.__version__}, torch {torch.__version__}, numpy {np.__version__}, "
          f"{args.threads} threads, ISA {nk.cpu_isa()}; float32; medians; 'of roof': the "
          "same-run copy roof (read roof for moments)\n")
    rows = weight_norm_rows(torch, nk, budget, roof)
    rows += spectral_rows(torch, nk, budget, roof)
    rows += moments_rows(torch, nk, budget, args.quick)
    print(table(rows))
    print("\n'vs NumPy' of the Standardizer row: scikit-learn's StandardScaler.partial_fit "
          "over the same chunks (2 timed, scaled), where installed.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
