"""``python -m normkit.bench.rnn``: the layer-normalized recurrent networks against torch.

Issue 8's targets, same run, same threads: ``B = 64, input 256, hidden 512, T = 100``,
float32. For LSTM and GRU, three implementations of one layer:

- ``normkit``: ``normkit.torch.LayerNormLSTM`` / ``LayerNormGRU`` (LN over the gates, our BPTT);
- ``torch nn``: torch's own ``nn.LSTM`` / ``nn.GRU`` (no LN at all: the speed to match);
- ``torch ops``: the same LN network written with torch ops, as users write it today: the
  input projection of all steps as one matmul, then a loop over steps of the recurrent
  matmul, ``F.layer_norm`` and the gate math (autograd through torch).

Passes: ``infer`` (forward under ``torch.inference_mode``) and ``train`` (forward + backward
of ``Σ y·dy``). Samples alternate between the implementations (load from other processes
falls on all alike); figures are medians. Also: where normkit's time goes (its BLAS products
vs its fused step kernels, from ``normkit._core.rnn_profile``), the GFLOP/s of its products
and OpenBLAS's own peak on this machine (one ``sgemm`` of 2048³ on the library's threads).
"""

from __future__ import annotations

import argparse
import ctypes
import os
import sys
import time

SHAPE = dict(T=100, B=64, I=256, H=512)


def _ops_lstm(torch, p, x, per_gate=False, eps=1e-5):
    """The LN-LSTM with torch ops (SPEC §12), p the module's parameters by name."""
    F = torch.nn.functional
    T, B, _ = x.shape
    H = p["weight_hh_l0"].shape[1]
    px = F.linear(x, p["weight_ih_l0"])  # one product for all steps
    b = p["bias_ih_l0"] + p["bias_hh_l0"]
    h = x.new_zeros(B, H)
    c = x.new_zeros(B, H)
    ys = []
    for t in range(T):
        a = (F.layer_norm(F.linear(h, p["weight_hh_l0"]), (4 * H,), p["ln_h_weight_l0"],
                          p["ln_h_bias_l0"], eps)
             + F.layer_norm(px[t], (4 * H,), p["ln_x_weight_l0"], p["ln_x_bias_l0"], eps) + b)
        i, f, g, o = a.chunk(4, dim=-1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(F.layer_norm(c, (H,), p["ln_c_weight_l0"],
                                                       p["ln_c_bias_l0"], eps))
        ys.append(h)
    return torch.stack(ys)


def _ops_gru(torch, p, x, eps=1e-5):
    F = torch.nn.functional
    T, B, _ = x.shape
    H = p["weight_hh_l0"].shape[1]
    px = F.layer_norm(F.linear(x, p["weight_ih_l0"]), (3 * H,), p["ln_x_weight_l0"],
                      p["ln_x_bias_l0"], eps) + p["bias_ih_l0"]
    h = x.new_zeros(B, H)
    ys = []
    for t in range(T):
        gh = F.layer_norm(F.linear(h, p["weight_hh_l0"]), (3 * H,), p["ln_h_weight_l0"],
                          p["ln_h_bias_l0"], eps) + p["bias_hh_l0"]
        xr, xz, xn = px[t].chunk(3, dim=-1)
        hr, hz, hn = gh.chunk(3, dim=-1)
        r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
        n = torch.tanh(xn + r * hn)
        h = (1 - z) * n + z * h
        ys.append(h)
    return torch.stack(ys)


def _median_compare(fns: dict, rounds: int) -> dict:
    from normkit.bench.models import _compare

    return _compare(fns, rounds, 0.0)


def _openblas_peak(threads: int):
    """GFLOP/s of one 2048³ sgemm of the scipy-openblas32 library on its own ``threads``."""
    import numpy as np
    import scipy_openblas32 as sob

    path = os.path.join(sob.get_lib_dir(), f"lib{sob.get_library()}.so")
    lib = ctypes.CDLL(path)
    sg = lib.scipy_cblas_sgemm
    sg.argtypes = [ctypes.c_int] * 6 + [ctypes.c_float, ctypes.c_void_p, ctypes.c_int,
                                        ctypes.c_void_p, ctypes.c_int, ctypes.c_float,
                                        ctypes.c_void_p, ctypes.c_int]
    n = 2048
    a = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)
    c = np.empty_like(a)
    lib.scipy_openblas_set_num_threads(threads)
    try:
        best = float("inf")
        for _ in range(4):
            t0 = time.perf_counter()
            sg(101, 111, 111, n, n, n, 1.0, a.ctypes.data, n, a.ctypes.data, n, 0.0,
               c.ctypes.data, n)
            best = min(best, time.perf_counter() - t0)
    finally:
        lib.scipy_openblas_set_num_threads(1)  # normkit's setting (Note [BLAS threads])
    return 2.0 * n ** 3 / best / 1e9


def run(torch, nk, threads: int, cells=("lstm", "gru"), rounds: int = 7, log=print):
    """The records of one run: one per (cell, pass)."""
    import normkit.torch as nkt
    from normkit import _core

    torch.set_num_threads(threads)
    nk.set_num_threads(threads)
    T, B, I, H = SHAPE["T"], SHAPE["B"], SHAPE["I"], SHAPE["H"]
    torch.manual_seed(0)
    x = torch.randn(T, B, I)
    dy = torch.randn(T, B, H)
    records = []
    for cell in cells:
        G = 4 if cell == "lstm" else 3
        ref = (torch.nn.LSTM if cell == "lstm" else torch.nn.GRU)(I, H)
        ours = (nkt.LayerNormLSTM if cell == "lstm" else nkt.LayerNormGRU).from_torch(ref)
        with torch.no_grad():  # LN parameters off their identity, as after training
            for n, prm in ours.named_parameters():
                if n.startswith("ln_"):
                    prm.add_(0.05 * torch.randn_like(prm))
        params = dict(ours.named_parameters())
        loop = _ops_lstm if cell == "lstm" else _ops_gru
        with torch.no_grad():
            diff = float((ours(x)[0] - loop(torch, params, x)).abs().max())
        xg = x.clone().requires_grad_()

        def infer(f):
            def g():
                with torch.inference_mode():
                    return f()
            return g

        def train(f):
            def g():
                y = f()
                y.backward(dy)
            return g

        impls = {
            "normkit": lambda: ours(xg)[0],
            "torch nn": lambda: ref(xg)[0],
            "torch ops": lambda: loop(torch, params, xg),
        }
        for pass_, wrap in (("infer", infer), ("train", train)):
            times = _median_compare({k: wrap(f) for k, f in impls.items()}, rounds)
            # Where normkit's time goes (one more call, profiled).
            _core.rnn_profile(True)
            wrap(impls["normkit"])()
            gemm_s, step_s = _core.rnn_profile_read()
            _core.rnn_profile(False)
            flops = 2.0 * T * B * G * H * (I + H) * (1 if pass_ == "infer" else 3)
            rec = {"cell": cell, "pass": pass_, "shape": dict(SHAPE), "threads": threads,
                   "ms": {k: v * 1e3 for k, v in times.items()},
                   "gemm_ms": gemm_s * 1e3, "step_ms": step_s * 1e3,
                   "gemm_gflops": flops / gemm_s / 1e9 if gemm_s else 0.0,
                   "max_diff_vs_torch_ops": diff}
            records.append(rec)
            log(_row(rec))
    return records


HEADERS = ["cell", "pass", "normkit ms", "torch nn ms", "torch ops ms", "normkit / nn",
           "ops / normkit", "GEMM ms", "step ms", "GEMM GF/s"]


def _row(r) -> str:
    ms = r["ms"]
    cells = [r["cell"], r["pass"], f"{ms['normkit']:.1f}", f"{ms['torch nn']:.1f}",
             f"{ms['torch ops']:.1f}", f"{ms['normkit'] / ms['torch nn']:.2f}",
             f"{ms['torch ops'] / ms['normkit']:.2f}", f"{r['gemm_ms']:.1f}",
             f"{r['step_ms']:.1f}", f"{r['gemm_gflops']:.0f}"]
    return "| " + " | ".join(cells) + " |"


def table(records) -> str:
    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    return "\n".join(lines + [_row(r) for r in records])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m normkit.bench.rnn", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--rounds", type=int, default=7, help="alternating samples per variant")
    p.add_argument("--cells", default="lstm,gru")
    p.add_argument("--quick", action="store_true", help="3 rounds")
    args = p.parse_args(argv)
    try:
        import torch
    except ImportError:
        print("python -m normkit.bench.rnn needs torch", file=sys.stderr)
        return 2
    import normkit as nk

    print(f"normkit {nk.__version__}, torch {torch.__version__}, {args.threads} threads; "
          f"BLAS: {nk.cpu_blas_info()}")
    print(f"shape: T={SHAPE['T']} B={SHAPE['B']} input={SHAPE['I']} hidden={SHAPE['H']} "
          "float32; times are medians of alternating samples\n")
    print("| " + " | ".join(HEADERS) + " |\n|" + "---|" * len(HEADERS))
    recs = run(torch, nk, args.threads, tuple(args.cells.split(",")),
               3 if args.quick else args.rounds)
    peak = _openblas_peak(args.threads)
    print(f"\nOpenBLAS's own sgemm 2048³ on {args.threads} threads: {peak:.0f} GFLOP/s "
          f"(normkit's products above reach {min(r['gemm_gflops'] for r in recs):.0f}–"
          f"{max(r['gemm_gflops'] for r in recs):.0f})")
    print(f"largest |normkit − torch ops| of y: "
          f"{max(r['max_diff_vs_torch_ops'] for r in recs):.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
