"""The channel-wise statistics norms in the benchmark: batch, group and instance norm on
``(N, C, H, W)`` activations, channels first (``nchw``: contiguous) and channels last
(``nhwc``: a ``torch.channels_last`` tensor, the same logical shape), normkit and torch both
given the same torch tensors.

Passes: ``fwd`` (training forward: statistics of the batch, running statistics updated for
batch norm), ``eval`` (batch norm with running statistics), ``fwd+bwd`` (training forward
with saved statistics, then the backward: dx, dweight, dbias). Modes: ``out`` (forward
outputs preallocated: normkit's ``out=``, torch's ``aten.native_*.out`` where it has one)
for ``fwd`` / ``eval``; ``fresh`` for ``fwd+bwd`` (no backward has ``out=``).

The roof counts the bytes each op must move, from its declaration (``Op.traffic`` /
``Op.training_traffic``): forward x read, y written (2A); training forward + backward 5A
(x, dy read and dx written again); the per-channel arrays are small next to A.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import numpy as np

OPS = ("batch_norm", "group_norm", "instance_norm")
LAYOUTS = ("nchw", "nhwc")
SHAPES = ((32, 256, 56, 56), (8, 512, 28, 28))
QUICK_SHAPES = ((8, 512, 28, 28),)
GROUPS = 32
EPS = 1e-5


def passes_of(op: str):
    return ("fwd", "eval", "fwd+bwd") if op == "batch_norm" else ("fwd", "fwd+bwd")


def mode_of(pass_: str) -> str:
    return "fresh" if pass_ == "fwd+bwd" else "out"


@dataclass(frozen=True)
class ChannelCase:
    op: str
    layout: str
    dtype: str
    shape: Tuple[int, int, int, int]
    pass_: str

    @property
    def mode(self) -> str:
        return mode_of(self.pass_)

    @property
    def name(self) -> str:
        return f"{self.op} {self.layout}"

    @property
    def label(self) -> str:
        return f"{self.name} {self.dtype} {list(self.shape)} {self.pass_} {self.mode}"


def bytes_moved(case: ChannelCase) -> int:
    from .. import _batch_norm, _group_norm
    from .cases import itemsize

    n, c, h, w = case.shape
    e = itemsize(case.dtype)
    A, P = n * c * h * w * e, c * e
    sizes = {"x": A, "weight": P, "bias": P}
    if case.op == "batch_norm":
        decl = _batch_norm.BATCH_NORM
        sizes.update(running_mean=P, running_var=P)
    elif case.op == "group_norm":
        decl = _group_norm.GROUP_NORM
    else:
        decl = _group_norm.INSTANCE_NORM
    if case.pass_ == "fwd+bwd":
        return decl.training_traffic(sizes)
    return decl.traffic(sizes)


class Tensors:
    """One case's torch tensors (both libraries get these)."""

    def __init__(self, torch, case: ChannelCase, seed: int = 0):
        rng = np.random.default_rng(seed)
        n, c, h, w = case.shape
        dt = getattr(torch, case.dtype)
        fmt = torch.channels_last if case.layout == "nhwc" else torch.contiguous_format

        def act(mean):
            a = rng.standard_normal((n, c, h, w), dtype=np.float32)
            a += np.float32(mean)
            return torch.from_numpy(a).to(dtype=dt).contiguous(memory_format=fmt)

        pdt = torch.float32  # 16-bit activations with float32 parameters (torch AMP's rule)
        self.x, self.dy = act(0.5), act(0.0)
        self.w = torch.from_numpy(1 + 0.1 * rng.standard_normal(c, dtype=np.float32)).to(pdt)
        self.b = torch.from_numpy(0.1 * rng.standard_normal(c, dtype=np.float32)).to(pdt)
        self.rm = torch.zeros(c, dtype=pdt)
        self.rv = torch.ones(c, dtype=pdt)
        self.y = torch.empty_like(self.x)


def nk_callable(nk, case: ChannelCase, t: Tensors):
    x, dy, w, b, rm, rv, y = t.x, t.dy, t.w, t.b, t.rm, t.rv, t.y
    C = case.shape[1]
    if case.op == "batch_norm":
        if case.pass_ == "fwd":
            return lambda: nk.batch_norm(x, rm, rv, w, b, True, 0.1, EPS, out=y)
        if case.pass_ == "eval":
            return lambda: nk.batch_norm(x, rm, rv, w, b, False, 0.1, EPS, out=y)

        def f():
            _, sm, sr = nk.batch_norm_forward(x, rm, rv, w, b, True, 0.1, EPS)
            return nk.batch_norm_backward(dy, x, sm, sr, w, b, training=True)[0]

        return f
    G = GROUPS if case.op == "group_norm" else C
    if case.pass_ == "fwd":
        if case.op == "group_norm":
            return lambda: nk.group_norm(x, G, w, b, EPS, out=y)
        return lambda: nk.instance_norm(x, None, None, w, b, True, 0.1, EPS, out=y)

    def g():  # instance norm is the group-norm kernels with G = C
        _, sm, sr = nk.group_norm_forward(x, G, w, b, EPS)
        return nk.group_norm_backward(dy, x, sm, sr, G, w, b)[0]

    return g


def torch_callable(torch, case: ChannelCase, t: Tensors):
    """torch's own kernels, without autograd where ATen has the forward and backward ops."""
    aten = torch.ops.aten
    F = torch.nn.functional
    x, dy, w, b, rm, rv, y = t.x, t.dy, t.w, t.b, t.rm, t.rv, t.y
    n, c, h, wd = case.shape
    C = c
    if case.op == "batch_norm":
        sm = torch.empty(C, dtype=torch.float32)
        si = torch.empty(C, dtype=torch.float32)
        if case.pass_ in ("fwd", "eval"):
            training = case.pass_ == "fwd"
            return (lambda: aten.native_batch_norm.out(x, w, b, rm, rv, training, 0.1, EPS,
                                                       out=y, save_mean=sm, save_invstd=si)[0],
                    "aten.native_batch_norm.out")

        def f():
            _, m, s = aten.native_batch_norm(x, w, b, rm, rv, True, 0.1, EPS)
            return aten.native_batch_norm_backward(dy, x, w, rm, rv, m, s, True, EPS,
                                                   [True, True, True])[0]

        return f, "aten.native_batch_norm(_backward)"
    if case.op == "group_norm":
        if case.pass_ == "fwd":
            m = torch.empty((n, GROUPS), dtype=torch.float32)
            s = torch.empty((n, GROUPS), dtype=torch.float32)

            def f():
                try:
                    return aten.native_group_norm.out(x, w, b, n, C, h * wd, GROUPS, EPS,
                                                      out0=y, out1=m, out2=s)[0]
                except RuntimeError:  # (a dtype the .out overload refuses)
                    return F.group_norm(x, GROUPS, w, b, EPS)

            return f, "aten.native_group_norm.out"

        def g():
            _, m, s = aten.native_group_norm(x, w, b, n, C, h * wd, GROUPS, EPS)
            return aten.native_group_norm_backward(dy, x, m, s, w, n, C, h * wd, GROUPS,
                                                   [True, True, True])[0]

        return g, "aten.native_group_norm(_backward)"
    if case.pass_ == "fwd":
        return (lambda: F.instance_norm(x, None, None, w, b, True, 0.1, EPS),
                "F.instance_norm (no out= variant: fresh y)")
    xg = x.detach().requires_grad_(True)
    wg, bg = w.detach().requires_grad_(True), b.detach().requires_grad_(True)

    def k():
        xg.grad = wg.grad = bg.grad = None
        F.instance_norm(xg, None, None, wg, bg, True, 0.1, EPS).backward(dy)
        return xg.grad

    return k, "F.instance_norm through autograd"


def cases(ops, dtypes, shapes, passes):
    out = []
    for shape in shapes:
        for dtype in dtypes:
            for op in ops:
                for layout in LAYOUTS:
                    for p in passes_of(op):
                        if p in passes or (p == "eval" and "fwd" in passes):
                            out.append(ChannelCase(op, layout, dtype, tuple(shape), p))
    return out
