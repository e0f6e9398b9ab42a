"""The channel-wise statistics norms in the benchmark: batch, group and instance norm on
``(N, C, H, W)`` activations, channels first (``nchw``: contiguous) and channels last
(``nhwc``: a ``torch.channels_last`` tensor, the same logical shape), normkit and torch both
given the same torch tensors.

Passes: ``fwd`` (training forward: statistics of the batch, running statistics updated for
batch norm), ``eval`` (batch norm with running statistics), ``fwd+bwd`` (training forward
with saved statistics, then the backward: dx, dweight, dbias). Mode ``out``: y and dx
preallocated once (normkit's ``out=``, torch's ``aten.native_*.out`` overloads), so that the
figures are the kernels' and not the page faults of 100 MB fresh outputs (which cost both
libraries the same; the row-norm cases measure ``fresh`` too). torch has no instance-norm
op of its own: it runs ``native_batch_norm`` on the ``(1, N·C, H·W)`` view, after a copy
for channels-last input, which is what ``F.instance_norm`` does.

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
    return "out"


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
        self.dx = torch.empty_like(self.x)


def nk_callable(nk, case: ChannelCase, t: Tensors):
    x, dy, w, b, rm, rv, y, dx = t.x, t.dy, t.w, t.b, t.rm, t.rv, t.y, t.dx
    C = case.shape[1]
    if case.op == "batch_norm":
        if case.pass_ == "fwd":
            return lambda: nk.batch_norm(x, rm, rv, w, b, True, 0.1, EPS, out=y)
        if case.pass_ == "eval":
            return lambda: nk.batch_norm(x, rm, rv, w, b, False, 0.1, EPS, out=y)

        def f():
            _, sm, sr = nk.batch_norm_forward(x, rm, rv, w, b, True, 0.1, EPS, out=y)
            return nk.batch_norm_backward(dy, x, sm, sr, w, b, training=True, out=dx)[0]

        return f
    G = GROUPS if case.op == "group_norm" else C
    if case.pass_ == "fwd":
        if case.op == "group_norm":
            return lambda: nk.group_norm(x, G, w, b, EPS, out=y)
        return lambda: nk.instance_norm(x, None, None, w, b, True, 0.1, EPS, out=y)

    def g():  # instance norm is the group-norm kernels with G = C
        _, sm, sr = nk.group_norm_forward(x, G, w, b, EPS, out=y)
        return nk.group_norm_backward(dy, x, sm, sr, G, w, b, out=dx)[0]

    return g


def torch_callable(torch, case: ChannelCase, t: Tensors):
    """torch's own kernels without autograd: the ATen ops autograd records, ``.out``
    overloads into the same preallocated y and dx."""
    aten = torch.ops.aten
    x, dy, w, b, rm, rv, y, dx = t.x, t.dy, t.w, t.b, t.rm, t.rv, t.y, t.dx
    n, c, h, wd = case.shape
    f32 = torch.float32
    mask = [True, True, True]
    if case.op == "batch_norm":
        sm, si = torch.empty(c, dtype=f32), torch.empty(c, dtype=f32)
        dw, db = torch.empty(c, dtype=f32), torch.empty(c, dtype=f32)
        if case.pass_ in ("fwd", "eval"):
            training = case.pass_ == "fwd"
            return (lambda: aten.native_batch_norm.out(x, w, b, rm, rv, training, 0.1, EPS,
                                                       out=y, save_mean=sm, save_invstd=si)[0],
                    "aten.native_batch_norm.out")

        def f():
            aten.native_batch_norm.out(x, w, b, rm, rv, True, 0.1, EPS, out=y, save_mean=sm,
                                       save_invstd=si)
            return aten.native_batch_norm_backward.out(dy, x, w, rm, rv, sm, si, True, EPS, mask,
                                                       out0=dx, out1=dw, out2=db)[0]

        return f, "aten.native_batch_norm(_backward).out"
    if case.op == "group_norm":
        m, s = torch.empty((n, GROUPS), dtype=f32), torch.empty((n, GROUPS), dtype=f32)
        dw, db = torch.empty(c, dtype=f32), torch.empty(c, dtype=f32)

        def fwd():
            return aten.native_group_norm.out(x, w, b, n, c, h * wd, GROUPS, EPS, out0=y,
                                              out1=m, out2=s)[0]

        if case.pass_ == "fwd":
            return fwd, "aten.native_group_norm.out"

        def g():
            fwd()
            return aten.native_group_norm_backward.out(dy, x, m, s, w, n, c, h * wd, GROUPS, mask,
                                                       out0=dx, out1=dw, out2=db)[0]

        return g, "aten.native_group_norm(_backward).out"
    # Instance norm as torch computes it: batch norm over the (1, N·C, H·W) view, weight and
    # bias repeated per sample; a channels-last x is made contiguous first.
    wr, br = w.repeat(n), b.repeat(n)
    sm, si = torch.empty(n * c, dtype=f32), torch.empty(n * c, dtype=f32)
    dw, db = torch.empty(n * c, dtype=f32), torch.empty(n * c, dtype=f32)
    yv = torch.empty((1, n * c, h * wd), dtype=x.dtype)
    dxv = torch.empty((1, n * c, h * wd), dtype=x.dtype)

    def view(a):
        return a.contiguous().view(1, n * c, h * wd)

    def fwd_in():
        aten.native_batch_norm.out(view(x), wr, br, None, None, True, 0.1, EPS, out=yv,
                                   save_mean=sm, save_invstd=si)
        return yv.view(n, c, h, wd)

    note = "native_batch_norm on the (1, N·C, H·W) view" + (
        " (after x.contiguous(), as F.instance_norm)" if case.layout == "nhwc" else "")
    if case.pass_ == "fwd":
        return fwd_in, note

    def k():
        xv = view(x)
        aten.native_batch_norm.out(xv, wr, br, None, None, True, 0.1, EPS, out=yv, save_mean=sm,
                                   save_invstd=si)
        aten.native_batch_norm_backward.out(view(dy), xv, wr, None, None, sm, si, True, EPS, mask,
                                            out0=dxv, out1=dw, out2=db)
        return dxv.view(n, c, h, wd)

    return k, note + ", and its backward"


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
