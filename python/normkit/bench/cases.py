"""What is benchmarked: the ops, their minimal memory traffic, and one callable per library.

Every case is (op, dtype, shape, pass, mode):

- op: ``layer_norm``, ``rms_norm``, ``add_layer_norm``, ``add_rms_norm`` over the last dim
  of a 2-D ``[N, H]`` input, weight (and bias for layer norm) of shape ``[H]`` in the
  input's dtype; ``dyt`` (SPEC §6, ``weight·tanh(alpha·x) + bias``, channels last, alpha
  one element, weight and bias ``[H]``); ``ada_norm`` (SPEC §8, ``scale·(1 − k·ŷ)·ŷ`` with the
  unbiased std, k = 0.1, scale = 2, no parameters; torch's peer is the paper's formula as a
  composite, the gradient stopped through ``scale·(1 − k·ŷ)``);
- pass: ``fwd`` (inference forward: y only; for add+norm also the new residual stream s)
  or ``fwd+bwd`` (training forward with saved statistics, then the backward giving the
  input and parameter gradients);
- mode: ``fresh`` (every call allocates its outputs, page faults included) or ``out``
  (forward outputs preallocated once and passed as ``out=``; ``fwd`` only, since the
  backward functions have no ``out=``).

What each library runs is spelled out in the ``_nk_*``, ``_torch_*`` and ``_numpy_*``
builders below, and summarised in bench/README.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Optional, Tuple

import numpy as np

OPS = ("layer_norm", "rms_norm", "add_layer_norm", "add_rms_norm", "dyt", "ada_norm")
DTYPES = ("float32", "bfloat16")
PASSES = ("fwd", "fwd+bwd")
MODES = ("fresh", "out")
SHAPES = ((4096, 4096), (16384, 768), (8192, 1024), (256, 65536), (32, 4096), (1, 4096))
QUICK_SHAPES = ((4096, 4096), (1, 4096))

LN_EPS = 1e-5
RMS_EPS = 1e-6
ADA_K, ADA_SCALE, ADA_EPS = 0.1, 2.0, 1e-5
STAT_BYTES = 4  # mean / rstd / rrms are float32 for 16- and 32-bit inputs (SPEC §0)


@dataclass(frozen=True)
class Case:
    op: str
    dtype: str
    shape: Tuple[int, int]
    pass_: str
    mode: str

    @property
    def label(self) -> str:
        n, h = self.shape
        return f"{self.op} {self.dtype} [{n},{h}] {self.pass_} {self.mode}"


def itemsize(dtype: str) -> int:
    return {"float32": 4, "bfloat16": 2, "float16": 2, "float64": 8}[dtype]


def declaration(op: str):
    """The forward op declaration (normkit._registry) each benchmarked op runs."""
    from .. import _ada_norm, _dyt, _row_norm_ops

    return {
        "layer_norm": _row_norm_ops.LAYER_NORM, "rms_norm": _row_norm_ops.RMS_NORM,
        "add_layer_norm": _row_norm_ops.ADD_LAYER_NORM,
        "add_rms_norm": _row_norm_ops.ADD_RMS_NORM, "dyt": _dyt.DYT, "ada_norm": _ada_norm.ADA_NORM,
    }[op]


def bytes_moved(case: Case) -> int:
    """The bytes the op must move at least, counted from its declaration (``Op.traffic``,
    ``Op.training_traffic`` in normkit._registry): every input read once, every output
    written once.

    With ``A = N*H*itemsize`` (one activation-sized array), ``P = H*itemsize`` (one
    parameter vector) and ``S = N*4`` (one per-row float32 statistic) this gives:

    ==================  =========================================  ==========================
    op                  fwd                                        fwd+bwd
    ==================  =========================================  ==========================
    layer_norm          x, y; gamma, beta: 2A + 2P                 fwd (+ mean, rstd written)
                                                                   + dy, x, mean, rstd, gamma
                                                                   read, dx, dgamma, dbeta
                                                                   written: 5A + 4S + 5P
    rms_norm            x, y; gamma: 2A + P                        5A + 2S + 3P
    add_layer_norm      x, r, y, s; gamma, beta: 4A + 2P           fwd + dy, s read, dx
                                                                   written: 7A + 4S + 5P
    add_rms_norm        4A + P                                     7A + 2S + 3P
    dyt                 x, y; alpha, gamma, beta: 2A + 2P + e      fwd (y written, nothing
                                                                   saved) + dy, x, alpha,
                                                                   gamma read, dx, dalpha,
                                                                   dgamma, dbeta written:
                                                                   5A + 5P + 3e
    ada_norm            x, y: 2A                                   fwd (+ mean, rstd written)
                                                                   + dy, x, mean, rstd read,
                                                                   dx written: 5A + 4S
    ==================  =========================================  ==========================

    (``e``: one element, DyT's alpha.) ``dresidual`` is not counted: with residual_scale = 1
    it *is* ``dx`` (the declaration's SameGrad: no second array is written).
    """
    n, h = case.shape
    e = itemsize(case.dtype)
    sizes = {"x": n * h * e}
    if has_residual(case.op):
        sizes["residual"] = n * h * e
    if case.op != "ada_norm":
        sizes["weight"] = h * e
    if has_bias(case.op):
        sizes["bias"] = h * e
    if case.op == "dyt":
        sizes["alpha"] = e
    decl = declaration(case.op)
    if case.pass_ == "fwd":
        return decl.traffic(sizes, n * STAT_BYTES)
    return decl.training_traffic(sizes, n * STAT_BYTES, scalars={"residual_scale": 1.0})


def has_bias(op: str) -> bool:
    return op in ("layer_norm", "add_layer_norm", "dyt")


def has_residual(op: str) -> bool:
    return op.startswith("add_")


# ---------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------


@dataclass
class HostData:
    """float32 master copies; every library gets its own converted copy of these."""

    x: np.ndarray
    r: Optional[np.ndarray]
    w: np.ndarray
    b: Optional[np.ndarray]
    dy: np.ndarray
    alpha: np.ndarray  # DyT's α, one element


def make_data(shape: Tuple[int, int], seed: int = 0) -> HostData:
    """Every input any op needs for ``shape`` (made once per shape and shared by the ops)."""
    rng = np.random.default_rng(seed)
    n, h = shape
    f32 = np.float32
    # A non-zero mean keeps the centring step honest; the weights are near one.
    x = rng.standard_normal((n, h), dtype=f32)
    x += f32(0.5)
    r = rng.standard_normal((n, h), dtype=f32)
    w = (1.0 + 0.1 * rng.standard_normal(h, dtype=f32)).astype(f32)
    b = (0.1 * rng.standard_normal(h, dtype=f32)).astype(f32)
    dy = rng.standard_normal((n, h), dtype=f32)
    return HostData(x, r, w, b, dy, np.array([0.5], dtype=f32))


class Converter:
    """Turns float32 master arrays into one library's arrays of the benchmarked dtype."""

    def __init__(self, kind: str, dtype: str, torch_mod=None, device: str = "cpu"):
        self.kind = kind  # "numpy" or "torch"
        self.dtype = dtype
        self.torch = torch_mod
        self.device = device
        if kind == "numpy":
            self.np_dtype = numpy_dtype(dtype)
        else:
            self.t_dtype = getattr(torch_mod, dtype)

    def __call__(self, a: Optional[np.ndarray]):
        if a is None:
            return None
        if self.kind == "numpy":
            # float32: the master array itself (NumPy and normkit only read it).
            return a if a.dtype == self.np_dtype else a.astype(self.np_dtype)
        t = self.torch.from_numpy(a)
        # torch gets its own buffer (a copy even for float32), on its device.
        t = t.to(device=self.device, dtype=self.t_dtype, copy=True)
        return t.contiguous()

    def empty(self, shape, dtype: Optional[str] = None):
        if self.kind == "numpy":
            dt = self.np_dtype if dtype is None else numpy_dtype(dtype)
            out = np.empty(shape, dtype=dt)
            out.fill(0)  # first-touch now, not inside the timed loop
            return out
        dt = self.t_dtype if dtype is None else getattr(self.torch, dtype)
        return self.torch.zeros(shape, dtype=dt, device=self.device)

    def to_f32(self, a) -> np.ndarray:
        if self.kind == "numpy":
            return np.asarray(a).astype(np.float32)
        return a.detach().float().cpu().numpy()


def numpy_dtype(dtype: str):
    if dtype == "bfloat16":
        import ml_dtypes  # bfloat16 for NumPy; raises ImportError if absent

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(dtype)


@dataclass
class Arrays:
    x: object
    r: object
    w: object
    b: object
    dy: object
    alpha: object


def convert(data: HostData, conv: Converter) -> Arrays:
    return Arrays(conv(data.x), conv(data.r), conv(data.w), conv(data.b), conv(data.dy),
                  conv(data.alpha))


def for_op(a: Arrays, op: str) -> Arrays:
    """The inputs ``op`` takes: no residual for the plain norms, no bias for RMS norm, no
    parameters for AdaNorm."""
    return Arrays(a.x, a.r if has_residual(op) else None, None if op == "ada_norm" else a.w,
                  a.b if has_bias(op) else None, a.dy, a.alpha if op == "dyt" else None)


# ---------------------------------------------------------------------------------------
# Callables. Each builder returns fn() -> the main output (y for fwd, dx for fwd+bwd), so
# that one call outside the timing loop can be compared across libraries.
# ---------------------------------------------------------------------------------------

Fn = Callable[[], object]


def nk_callable(nk, case: Case, a: Arrays, conv: Converter) -> Fn:
    """normkit through its functional API (NumPy arrays or torch tensors in, same kind out)."""
    op, n_h = case.op, case.shape
    x, r, w, b, dy = a.x, a.r, a.w, a.b, a.dy
    if case.pass_ == "fwd":
        if case.mode == "out":
            y = conv.empty(n_h)
            s = conv.empty(n_h) if has_residual(op) else None
        if op == "dyt":
            if case.mode == "out":
                return lambda: nk.dyt(x, a.alpha, w, b, out=y)
            return lambda: nk.dyt(x, a.alpha, w, b)
        if op == "ada_norm":
            if case.mode == "out":
                return lambda: nk.ada_norm(x, ADA_K, ADA_SCALE, ADA_EPS, out=y)
            return lambda: nk.ada_norm(x, ADA_K, ADA_SCALE, ADA_EPS)
        if op == "layer_norm":
            if case.mode == "out":
                return lambda: nk.layer_norm(x, w, b, eps=LN_EPS, out=y)
            return lambda: nk.layer_norm(x, w, b, eps=LN_EPS)
        if op == "rms_norm":
            if case.mode == "out":
                return lambda: nk.rms_norm(x, w, eps=RMS_EPS, out=y)
            return lambda: nk.rms_norm(x, w, eps=RMS_EPS)
        if op == "add_layer_norm":
            if case.mode == "out":
                return lambda: nk.add_layer_norm(
                    x, r, w, b, eps=LN_EPS, return_residual=True, out=y, residual_out=s
                )[0]
            return lambda: nk.add_layer_norm(x, r, w, b, eps=LN_EPS, return_residual=True)[0]
        if op == "add_rms_norm":
            if case.mode == "out":
                return lambda: nk.add_rms_norm(
                    x, r, w, eps=RMS_EPS, return_residual=True, out=y, residual_out=s
                )[0]
            return lambda: nk.add_rms_norm(x, r, w, eps=RMS_EPS, return_residual=True)[0]
    else:
        if op == "dyt":

            def f():
                nk.dyt_forward(x, a.alpha, w, b)
                return nk.dyt_backward(dy, x, a.alpha, w, b)[0]

            return f
        if op == "ada_norm":

            def f():
                _, mean, rstd = nk.ada_norm_forward(x, ADA_K, ADA_SCALE, ADA_EPS)
                return nk.ada_norm_backward(dy, x, mean, rstd, ADA_K, ADA_SCALE)

            return f
        if op == "layer_norm":

            def f():
                _, mean, rstd = nk.layer_norm_forward(x, w, b, eps=LN_EPS)
                return nk.layer_norm_backward(dy, x, mean, rstd, w, b)[0]

            return f
        if op == "rms_norm":

            def f():
                _, rrms = nk.rms_norm_forward(x, w, eps=RMS_EPS)
                return nk.rms_norm_backward(dy, x, rrms, w, None)[0]

            return f
        if op == "add_layer_norm":

            def f():
                _, s_, mean, rstd = nk.add_layer_norm_forward(x, r, w, b, eps=LN_EPS)
                return nk.add_layer_norm_backward(dy, s_, mean, rstd, w, b)[0]

            return f
        if op == "add_rms_norm":

            def f():
                _, s_, rrms = nk.add_rms_norm_forward(x, r, w, eps=RMS_EPS)
                return nk.add_rms_norm_backward(dy, s_, rrms, w, None)[0]

            return f
    raise ValueError(f"unknown case {case}")


def torch_callable(torch, case: Case, a: Arrays, conv: Converter) -> Tuple[Fn, str]:
    """torch's own kernels, called without autograd: the ATen ops autograd itself calls.

    Returns (fn, note); note says where torch has no ``out=`` variant and so allocates
    even in ``out`` mode (its CPU allocator then reuses the block freed by the previous
    call, so pages are warm after the first call either way).
    """
    F = torch.nn.functional
    aten = torch.ops.aten
    op, (n, h) = case.op, case.shape
    x, r, w, b, dy = a.x, a.r, a.w, a.b, a.dy
    shape = [h]
    note = ""
    if op == "dyt":
        # torch has no DyT: the paper's module is this composite (and its autograd).
        al = a.alpha
        if case.pass_ == "fwd":
            if case.mode == "out":
                y = conv.empty((n, h))

                def f():
                    torch.mul(al, x, out=y)
                    torch.tanh(y, out=y)
                    return torch.addcmul(b, y, w, out=y)

                return f, "composite mul/tanh/addcmul with out="
            return lambda: w * torch.tanh(al * x) + b, "composite w*tanh(a*x)+b"
        xg = x.detach().requires_grad_(True)
        ag, wg, bg = (t.detach().requires_grad_(True) for t in (al, w, b))

        def f():
            xg.grad = ag.grad = wg.grad = bg.grad = None
            (wg * torch.tanh(ag * xg) + bg).backward(dy)
            return xg.grad

        return f, "composite w*tanh(a*x)+b through autograd"
    if op == "ada_norm":
        # torch has no AdaNorm: the paper's formula as a composite (and its autograd).
        def ada(v):
            mu = v.mean(dim=-1, keepdim=True)
            yh = (v - mu) / (v.std(dim=-1, keepdim=True) + ADA_EPS)
            return (ADA_SCALE * (1 - ADA_K * yh)).detach() * yh

        if case.pass_ == "fwd":
            return lambda: ada(x), "composite mean/std/div/mul" + (
                " (no out= variant: fresh y)" if case.mode == "out" else "")
        xg = x.detach().requires_grad_(True)

        def f():
            xg.grad = None
            ada(xg).backward(dy)
            return xg.grad

        return f, "composite (scale·(1−k·ŷ)).detach()·ŷ through autograd"
    if case.pass_ == "fwd":
        if case.mode == "out":
            y = conv.empty((n, h))
            s = conv.empty((n, h)) if has_residual(op) else None
            # torch's CPU kernel keeps 16-bit statistics, its CUDA kernel float32: ask it.
            probe = aten.native_layer_norm(x[:1], shape, w, b, LN_EPS)[1]
            mean = torch.empty((n, 1), dtype=probe.dtype, device=probe.device)
            rstd = torch.empty((n, 1), dtype=probe.dtype, device=probe.device)
        if op == "layer_norm":
            if case.mode == "out":
                return (
                    lambda: aten.native_layer_norm.out(
                        x, shape, w, b, LN_EPS, out0=y, out1=mean, out2=rstd
                    )[0],
                    "aten.native_layer_norm.out",
                )
            return lambda: F.layer_norm(x, (h,), w, b, LN_EPS), note
        if op == "rms_norm":
            if case.mode == "out":
                note = "no out= in torch: fresh y"
            return lambda: F.rms_norm(x, (h,), w, RMS_EPS), note
        if op == "add_layer_norm":
            if case.mode == "out":

                def f():
                    torch.add(x, r, out=s)
                    return aten.native_layer_norm.out(
                        s, shape, w, b, LN_EPS, out0=y, out1=mean, out2=rstd
                    )[0]

                return f, "add(out=) + native_layer_norm.out"
            return lambda: F.layer_norm(x + r, (h,), w, b, LN_EPS), note
        if op == "add_rms_norm":
            if case.mode == "out":

                def f():
                    torch.add(x, r, out=s)
                    return F.rms_norm(s, (h,), w, RMS_EPS)

                return f, "add(out=s); no out= for rms_norm: fresh y"
            return lambda: F.rms_norm(x + r, (h,), w, RMS_EPS), note
    else:
        # Forward + backward through the ATen ops that autograd records, so that the
        # figure is the kernels' and not the autograd engine's bookkeeping.
        mask3 = [True, True, True]
        if op in ("layer_norm", "add_layer_norm"):

            def f():
                s_ = x + r if r is not None else x
                _, mean, rstd = aten.native_layer_norm(s_, shape, w, b, LN_EPS)
                # For s = x + r, autograd hands this same ds to both x and r.
                return aten.native_layer_norm_backward(
                    dy, s_, shape, mean, rstd, w, b, mask3
                )[0]

            return f, "aten.native_layer_norm(_backward)"
        if op in ("rms_norm", "add_rms_norm"):
            if _has_fused_rms_backward(torch, x):

                def f():
                    s_ = x + r if r is not None else x
                    _, rrms = aten._fused_rms_norm(s_, shape, w, RMS_EPS)
                    return aten._fused_rms_norm_backward(dy, s_, shape, rrms, w, [True, True])[
                        0
                    ]

                return f, "aten._fused_rms_norm(_backward)"

            xg = x.detach().requires_grad_(True)
            rg = r.detach().requires_grad_(True) if r is not None else None
            wg = w.detach().requires_grad_(True)

            def f():
                xg.grad = wg.grad = None
                if rg is not None:
                    rg.grad = None
                s_ = xg + rg if rg is not None else xg
                F.rms_norm(s_, (h,), wg, RMS_EPS).backward(dy)
                return xg.grad

            return f, "autograd (torch has no fused RMS norm backward here)"
    raise ValueError(f"unknown case {case}")


def _has_fused_rms_backward(torch, like) -> bool:
    """Whether aten._fused_rms_norm_backward has a kernel for ``like``'s device and dtype.

    torch 2.8+ has one on CUDA; on the CPU, F.rms_norm's autograd goes through its
    composite (unfused) formula instead.
    """
    aten = torch.ops.aten
    if not (hasattr(aten, "_fused_rms_norm") and hasattr(aten, "_fused_rms_norm_backward")):
        return False
    try:
        t = torch.ones((1, 8), dtype=like.dtype, device=like.device)
        w = torch.ones(8, dtype=like.dtype, device=like.device)
        _, rrms = aten._fused_rms_norm(t, [8], w, RMS_EPS)
        aten._fused_rms_norm_backward(t, t, [8], rrms, w, [True, True])
        return True
    except (RuntimeError, NotImplementedError):
        return False


def numpy_callable(case: Case, a: Arrays) -> Optional[Fn]:
    """Plain NumPy, float32 forward only: what one writes without a kernel library.

    bfloat16 arithmetic in NumPy (ml_dtypes) is scalar emulation, and NumPy has no
    autograd, so other cases have no meaningful NumPy peer.
    """
    if case.dtype != "float32" or case.pass_ != "fwd" or case.mode != "fresh":
        return None
    x, r, w, b = a.x, a.r, a.w, a.b
    op = case.op
    if op == "dyt":
        al = a.alpha
        return lambda: w * np.tanh(al * x) + b
    if op == "ada_norm":

        def ada(v):
            c = v - v.mean(axis=-1, keepdims=True)
            c /= v.std(axis=-1, ddof=1, keepdims=True) + np.float32(ADA_EPS)
            return np.float32(ADA_SCALE) * (np.float32(1) - np.float32(ADA_K) * c) * c

        return lambda: ada(x)

    def layer_norm(v):
        mu = v.mean(axis=-1, keepdims=True)
        c = v - mu
        var = np.mean(c * c, axis=-1, keepdims=True)
        c *= 1.0 / np.sqrt(var + np.float32(LN_EPS))
        c *= w
        c += b
        return c

    def rms_norm(v):
        ms = np.mean(v * v, axis=-1, keepdims=True)
        out = v * (1.0 / np.sqrt(ms + np.float32(RMS_EPS)))
        out *= w
        return out

    if op == "layer_norm":
        return lambda: layer_norm(x)
    if op == "rms_norm":
        return lambda: rms_norm(x)
    if op == "add_layer_norm":
        return lambda: layer_norm(x + r)
    if op == "add_rms_norm":
        return lambda: rms_norm(x + r)
    return None


def max_rel_diff(a: np.ndarray, ref: np.ndarray) -> float:
    """max |a - ref| / max(1, max |ref|), NaN-aware: the check column, not an assertion."""
    a = a.astype(np.float64)
    ref = ref.astype(np.float64)
    if a.shape != ref.shape:
        return float("inf")
    scale = max(1.0, float(np.nanmax(np.abs(ref))) if ref.size else 1.0)
    d = np.abs(a - ref)
    if np.isnan(d).any():
        return float("nan")
    return float(d.max()) / scale if d.size else 0.0


# Above these, the check column shows "!" (bf16 has 8 mantissa bits: two correct
# roundings of the same value can differ by an ulp, ~0.03 near 4).
CHECK_TOL: Dict[str, float] = {"float32": 1e-3, "bfloat16": 6e-2, "float16": 1e-2}
