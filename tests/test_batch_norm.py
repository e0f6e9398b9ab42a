"""Batch norm (SPEC §4): the kernels against the float64 reference for every dtype and CPU
ISA (autouse cpu_isa) and the CUDA backend (`lib`), channels first / last and channels-last
memory, spatial dims none to 3-D, odd channel counts, large means, the split phases composed
against the fused op, running statistics, NaN-padded outputs, bad input, the torch modules
against torch.nn's, and SyncBatchNorm over two gloo processes against one process."""

import copy
import os
import socket

import numpy as np
import pytest

import reference as R
from reference import DTYPES, HALF_DTYPES, Lib, assert_close

NUMPY = Lib("numpy")

# (N, C, spatial) cases of the issue: spatial none, 1, 3, 7x7, 17x5; C = 1, 3, 64, 257.
CASES = [(2, 3, ()), (33, 1, (3,)), (2, 64, (7, 7)), (2, 257, (1,)), (33, 3, (17, 5)),
         (3, 5, (2, 3, 2)), (1, 4, (3,))]
DTYPE_MIXES = [(d, False) for d in DTYPES] + [(d, True) for d in HALF_DTYPES]


def _shape(n, c, sp, channels_last):
    return (n,) + sp + (c,) if channels_last else (n, c) + sp


def _make(shape, c, dtype, pdt, seed, mean=0.5):
    rng = np.random.default_rng(seed)
    return {
        "x": R.round_to(rng.normal(mean, 1.5, shape), dtype),
        "dy": R.round_to(rng.normal(0.0, 1.0, shape), dtype),
        "weight": R.round_to(rng.normal(1.0, 0.5, (c,)), pdt),
        "bias": R.round_to(rng.normal(0.0, 0.5, (c,)), pdt),
        "rm": R.round_to(rng.normal(0.2, 0.3, (c,)), pdt),
        "rv": R.round_to(rng.uniform(0.5, 2.0, (c,)), pdt),
    }


def _axes(x, cl):
    return R._channel_axes(x, cl and x.ndim > 2)


def _check_case(nk, lib, case, dtype, pdt, cl, training, x=None):
    x64 = case["x"]
    if training and x64.size // x64.shape[-1 if cl else 1] <= 1:
        return
    xa = x if x is not None else lib.asarray(x64, dtype)
    w, b = lib.asarray(case["weight"], pdt), lib.asarray(case["bias"], pdt)
    rm, rv = lib.asarray(case["rm"], pdt), lib.asarray(case["rv"], pdt)
    axis = -1 if cl else 1
    y, sm, sr = nk.batch_norm_forward(xa, rm, rv, w, b, training, 0.1, 1e-5, axis=axis)
    ry, rmean, rrstd, rrm, rrv = R.batch_norm_forward(x64, case["weight"], case["bias"],
                                                      case["rm"], case["rv"], training, 0.1,
                                                      1e-5, cl)
    comp = R.compute_dtype(dtype)
    shape = R._channel_shape(x64, cl or x64.ndim == 2)
    assert R.dtype_of(y) == dtype and tuple(y.shape) == x64.shape
    assert_close(y, ry, dtype, "y", scale=np.abs((x64 - rmean.reshape(shape))
                                                 * (rrstd * case["weight"]).reshape(shape)))
    assert_close(sm, rmean, comp, "save_mean", scale=np.max(np.abs(x64), axis=_axes(x64, cl)))
    assert_close(sr, rrstd, comp, "save_rstd", scale=rrstd)
    assert_close(rm, rrm, pdt, "running_mean", scale=np.abs(rrm) + 1)
    assert_close(rv, rrv, pdt, "running_var", scale=np.abs(rrv) + 1)
    dya = lib.asarray(case["dy"], dtype)
    dx, dw, db = nk.batch_norm_backward(dya, xa, sm, sr, w, b, training=training, axis=axis)
    rdx, rdw, rdb = R.batch_norm_backward(case["dy"], x64, R.to_f64(sm), R.to_f64(sr),
                                          case["weight"], training, cl)
    g = np.abs(case["dy"])
    red = np.sum(g, axis=_axes(x64, cl))
    assert_close(dx, rdx, dtype, "dx", scale=np.abs(rdx) + (red / g[..., :].size * 0 + 1).max()
                 * np.abs(case["weight"]).max() * R.to_f64(sr).max())
    assert_close(dw, rdw, pdt, "dweight", scale=np.sum(np.abs(case["dy"] * (x64 - R.to_f64(sm).reshape(shape))
                                                         * R.to_f64(sr).reshape(shape)), axis=_axes(x64, cl)),
                 compute=comp)
    assert_close(db, rdb, pdt, "dbias", scale=red, compute=comp)


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("cl", [False, True], ids=["first", "last"])
@pytest.mark.parametrize("dtype,mixed", DTYPE_MIXES,
                         ids=[f"{d}-{'mixed' if m else 'same'}" for d, m in DTYPE_MIXES])
@pytest.mark.parametrize("n,c,sp", CASES, ids=str)
def test_kernels(nk, lib, n, c, sp, dtype, mixed, cl, training):
    pdt = "float32" if mixed else dtype
    shape = _shape(n, c, sp, cl)
    case = _make(shape, c, dtype, pdt, seed=n * 1000 + c + len(sp))
    _check_case(nk, lib, case, dtype, pdt, cl, training)


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_strided_views(nk, training):
    """Views the core walks in place (a batch slice; channels last with a row stride) and
    one it must copy (spatial dims not compact): each against the reference."""
    rng = np.random.default_rng(12)
    base = rng.normal(0, 1, (6, 8, 5, 9))
    for view in (lambda a: a[::2], lambda a: a[:, :, :, 1:8:2], lambda a: a[1:5]):
        x64 = np.ascontiguousarray(view(base))
        case = _make(x64.shape, 8, "float64", "float64", seed=3)
        case["x"] = x64
        _check_case(nk, NUMPY, case, "float64", "float64", False, training, x=view(base))
    xl = rng.normal(0, 1, (4, 10, 6))
    x64 = np.ascontiguousarray(xl[:, ::2])
    case = _make(x64.shape, 6, "float64", "float64", seed=4)
    case["x"] = x64
    _check_case(nk, NUMPY, case, "float64", "float64", True, training, x=xl[:, ::2])


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_torch_channels_last_memory(nk, device, training):
    torch = pytest.importorskip("torch")
    lib = Lib("torch", device) if device == "cpu" else None
    if lib is None:
        pytest.skip("torch CUDA tensors need a GPU")
    for shape, fmt in (((2, 5, 7, 3), torch.channels_last), ((2, 4, 3, 5, 2), torch.channels_last_3d)):
        case = _make(shape, shape[1], "float32", "float32", seed=7)
        x = torch.from_numpy(case["x"]).float().to(memory_format=fmt)
        _check_case(nk, lib, case, "float32", "float32", False, training, x=x)
        y = nk.batch_norm(x, torch.zeros(shape[1]), torch.ones(shape[1]), training=training)
        assert y.is_contiguous(memory_format=fmt) and not y.is_contiguous()


def test_large_mean(nk, lib):
    rng = np.random.default_rng(3)
    x64 = 1e4 + rng.normal(0, 1, (16, 8, 9, 9))
    x = lib.asarray(x64, "float32")
    x32 = R.to_f64(x)
    for cl, xs, x_ref in ((False, x, x32), (True, lib.asarray(np.moveaxis(x32, 1, -1), "float32"),
                                             np.moveaxis(x32, 1, -1))):
        y = nk.batch_norm(xs, training=True, axis=-1 if cl else 1)
        ref = R.batch_norm_forward(x_ref, training=True, channels_last=cl)[0]
        np.testing.assert_allclose(R.to_f64(y), ref, atol=1e-4 * np.abs(ref).max())


def test_split_phases_compose_to_the_fused_op(nk):
    """stats -> merge (one part) -> apply, and backward reduce -> apply: the same numbers as
    the fused op; and merging two halves' stats gives the whole batch's."""
    rng = np.random.default_rng(5)
    for cl, shape in ((False, (6, 5, 7, 3)), (True, (6, 7, 3, 5)), (False, (9, 4))):
        x = rng.normal(2.0, 1.0, shape).astype(np.float32)
        dy = rng.normal(0, 1, shape).astype(np.float32)
        axis = -1 if cl else 1
        C = shape[-1] if cl else shape[1]
        w = rng.normal(1, 0.3, C).astype(np.float32)
        b = rng.normal(0, 0.3, C).astype(np.float32)
        y, sm, sr = nk.batch_norm_forward(x, None, None, w, b, True, axis=axis)
        n1, m1, q1 = nk.batch_norm_stats(x[:2], axis=axis)
        n2, m2, q2 = nk.batch_norm_stats(x[2:], axis=axis)
        n, m, q = nk.batch_norm_stats(x, axis=axis)
        cnt, mm, qq = nk.moments_merge(np.array([n1, n2], np.float64), np.stack([m1, m2]),
                                       np.stack([q1, q2]))
        assert cnt == n == x.size // C
        np.testing.assert_allclose(mm, m, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(qq, q, rtol=1e-5)
        np.testing.assert_allclose(m, sm, rtol=1e-6, atol=1e-6)
        rstd = (1 / np.sqrt(q.astype(np.float64) / n + 1e-5)).astype(np.float32)
        np.testing.assert_allclose(rstd, sr, rtol=1e-6)
        # (The fused op normalizes with the float64 mean, hi + lo; the float32 save_mean
        # holds hi only.)
        ya = nk.batch_norm_apply(x, sm, sr, w, b, axis=axis)
        np.testing.assert_allclose(ya, y, rtol=1e-5, atol=1e-6)
        dx, dw, db = nk.batch_norm_backward(dy, x, sm, sr, w, b, axis=axis)
        s, sx = nk.batch_norm_backward_reduce(dy, x, sm, sr, axis=axis)
        np.testing.assert_allclose(s, db, rtol=1e-6, atol=1e-5)
        np.testing.assert_allclose(sx, dw, rtol=1e-5, atol=1e-4)
        dxa = nk.batch_norm_backward_apply(dy, x, sm, sr, w, s, sx, n, axis=axis)
        np.testing.assert_allclose(dxa, dx, rtol=1e-4, atol=1e-5)


def test_running_statistics_and_momentum_none(nk):
    rng = np.random.default_rng(1)
    x = rng.normal(1, 2, (8, 3, 5)).astype(np.float32)
    rm, rv = np.zeros(3, np.float32), np.ones(3, np.float32)
    nbt = np.zeros(1, np.int64)
    for k in range(3):
        nk.batch_norm(x * (k + 1), rm, rv, training=True, momentum=None, num_batches_tracked=nbt)
    assert nbt[0] == 3
    means = [(x * (k + 1)).mean((0, 2)) for k in range(3)]
    np.testing.assert_allclose(rm, np.mean(means, axis=0), rtol=1e-5)
    with pytest.raises(ValueError, match="momentum: None"):
        nk.batch_norm(x, rm, rv, training=True, momentum=None)
    # A non-contiguous running buffer is updated too (the result copied in).
    buf = np.zeros(6, np.float32)
    rm2, rv2 = buf[::2], np.ones(6, np.float32)[::2]
    nk.batch_norm(x, rm2, rv2, training=True, momentum=1.0)
    np.testing.assert_allclose(rm2, x.mean((0, 2)), rtol=1e-6)


def test_out_and_nan_padding(nk):
    rng = np.random.default_rng(2)
    x = rng.normal(0, 1, (4, 6, 5)).astype(np.float32)
    big = np.full((4, 6, 9), np.nan, np.float32)
    out = big[:, :, 2:7]
    y = nk.batch_norm(x, training=True, out=out)
    assert y is out
    assert np.isnan(big[:, :, :2]).all() and np.isnan(big[:, :, 7:]).all()
    np.testing.assert_allclose(out, R.batch_norm_forward(x)[0], atol=1e-5)
    # Zero-size batch in evaluation.
    z = nk.batch_norm(np.zeros((0, 6, 5), np.float32), np.zeros(6, np.float32), np.ones(6, np.float32))
    assert z.shape == (0, 6, 5)


def test_bad_input(nk):
    x = np.ones((4, 3, 5), np.float32)
    rm, rv = np.zeros(3, np.float32), np.ones(3, np.float32)
    with pytest.raises(ValueError, match="weight: expected shape \\(3,\\)"):
        nk.batch_norm(x, rm, rv, np.ones(4, np.float32), training=True)
    with pytest.raises(ValueError, match="more than one value per channel"):
        nk.batch_norm(np.ones((1, 3), np.float32), training=True)
    with pytest.raises(ValueError, match="momentum: expected a finite number"):
        nk.batch_norm(x, rm, rv, training=True, momentum=float("nan"))
    with pytest.raises(TypeError, match="running_mean: expected dtype float32"):
        nk.batch_norm(x, rm.astype(np.float64), rv, training=True)
    with pytest.raises(ValueError, match="running_var: expected shape \\(3,\\)"):
        nk.batch_norm(x, rm, np.ones(2, np.float32), training=True)
    ro = rm.copy()
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="running_mean: is read-only"):
        nk.batch_norm(x, ro, rv, training=True)
    with pytest.raises(ValueError, match="running_mean: required when training=False"):
        nk.batch_norm(x)
    with pytest.raises(ValueError, match="axis: expected 1"):
        nk.batch_norm(x, training=True, axis=0)
    with pytest.raises(ValueError, match="x: expected at least 2 dims"):
        nk.batch_norm(np.ones(3, np.float32), training=True)
    with pytest.raises(ValueError, match="running_var: needed with running_mean"):
        nk.batch_norm(x, rm, None, training=True)


# ---------------------------------------------------------------------------------------------
# torch modules
# ---------------------------------------------------------------------------------------------


def _pair(torch, cls, *args, **kw):
    ref = cls(*args, **kw).double()
    with torch.no_grad():
        if ref.weight is not None:
            ref.weight.uniform_(0.5, 1.5)
            ref.bias.uniform_(-0.5, 0.5)
    import normkit.torch as nkt

    ours = nkt.replace_norms(copy.deepcopy(ref))
    assert type(ours) is not cls and isinstance(ours, cls)
    return ref, ours


@pytest.mark.parametrize("kind,shape", [("BatchNorm1d", (6, 5)), ("BatchNorm1d", (4, 5, 7)),
                                        ("BatchNorm2d", (3, 5, 4, 6)),
                                        ("BatchNorm3d", (2, 5, 3, 4, 2)),
                                        ("SyncBatchNorm", (3, 5, 4, 6))])
@pytest.mark.parametrize("momentum", [0.1, None])
@pytest.mark.parametrize("memory", ["contiguous", "channels_last"])
def test_modules_match_torch(kind, shape, momentum, memory):
    torch = pytest.importorskip("torch")
    cls = getattr(torch.nn, kind)
    ref, ours = _pair(torch, cls, shape[1], momentum=momentum)
    assert ref.state_dict().keys() == ours.state_dict().keys()
    fmt = {4: torch.channels_last, 5: torch.channels_last_3d}.get(len(shape))
    for step in range(3):
        x = torch.randn(shape, dtype=torch.float64)
        if memory == "channels_last" and fmt is not None:
            x = x.to(memory_format=fmt)
        xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
        ya, yb = ref(xa), ours(xb)
        g = torch.randn_like(ya)
        ya.backward(g)
        yb.backward(g)
        torch.testing.assert_close(yb, ya)
        torch.testing.assert_close(xb.grad, xa.grad)
        if memory == "channels_last" and fmt is not None:
            assert yb.is_contiguous(memory_format=fmt)
    for k, v in ref.state_dict().items():
        torch.testing.assert_close(ours.state_dict()[k], v, msg=k)
    torch.testing.assert_close(ours.weight.grad, ref.weight.grad)
    torch.testing.assert_close(ours.bias.grad, ref.bias.grad)
    ref.eval(), ours.eval()
    x = torch.randn(shape, dtype=torch.float64)
    torch.testing.assert_close(ours(x), ref(x))


def _small_cnn(torch):
    nn = torch.nn
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.Conv2d(8, 8, 3, padding=1, groups=2), nn.BatchNorm2d(8, affine=False),
                         nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 4), nn.BatchNorm1d(4))


def test_cnn_after_replace_norms_trains_like_torch():
    torch = pytest.importorskip("torch")
    import normkit.torch as nkt

    torch.manual_seed(0)
    ref = _small_cnn(torch).double()
    ours = nkt.replace_norms(copy.deepcopy(ref))
    oa = torch.optim.SGD(ref.parameters(), lr=0.1)
    ob = torch.optim.SGD(ours.parameters(), lr=0.1)
    for _ in range(3):
        x = torch.randn(5, 3, 6, 6, dtype=torch.float64)
        for m, o in ((ref, oa), (ours, ob)):
            o.zero_grad()
            m(x).square().sum().backward()
            o.step()
    for (k, a), (_, b) in zip(ref.state_dict().items(), ours.state_dict().items()):
        torch.testing.assert_close(b, a, msg=k)
    ref.eval(), ours.eval()
    x = torch.randn(5, 3, 6, 6, dtype=torch.float64)
    torch.testing.assert_close(ours(x), ref(x))


def test_compile_fullgraph_model():
    torch = pytest.importorskip("torch")
    import normkit.torch as nkt

    torch.manual_seed(1)
    m = nkt.replace_norms(_small_cnn(torch))
    ref = copy.deepcopy(m)
    x = torch.randn(4, 3, 6, 6)
    compiled = torch.compile(m, fullgraph=True, backend="aot_eager")
    y = compiled(x)
    y.sum().backward()
    yr = ref(x)
    torch.testing.assert_close(y, yr, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(m[1].running_mean, ref[1].running_mean)
    assert int(m[1].num_batches_tracked) == 1


# ---------------------------------------------------------------------------------------------
# SyncBatchNorm over two gloo processes
# ---------------------------------------------------------------------------------------------


def _sync_worker(rank, world, port, path):
    import torch
    import torch.distributed as dist

    import normkit.torch as nkt

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world)
    torch.manual_seed(0)
    full = torch.randn(7, 5, 4, 3, dtype=torch.float64)
    grad = torch.randn(7, 5, 4, 3, dtype=torch.float64)
    lo, hi = (0, 3) if rank == 0 else (3, 7)  # unequal batch sizes
    m = nkt.SyncBatchNorm(5, momentum=0.3).double()
    with torch.no_grad():
        m.weight.copy_(torch.linspace(0.5, 1.5, 5, dtype=torch.float64))
        m.bias.copy_(torch.linspace(-0.2, 0.2, 5, dtype=torch.float64))
    x = full[lo:hi].clone().requires_grad_()
    y = m(x)
    y.backward(grad[lo:hi])
    torch.save({"y": y.detach(), "dx": x.grad, "dw": m.weight.grad, "db": m.bias.grad,
                "rm": m.running_mean, "rv": m.running_var}, f"{path}.{rank}")
    dist.destroy_process_group()


def test_sync_batch_norm_gloo_matches_one_process(tmp_path):
    torch = pytest.importorskip("torch")
    import torch.distributed as dist
    import torch.multiprocessing as mp

    import normkit.torch as nkt

    if not dist.is_available():
        pytest.skip("torch.distributed is not available")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path = str(tmp_path / "out")
    mp.spawn(_sync_worker, args=(2, port, path), nprocs=2, join=True)
    parts = [torch.load(f"{path}.{r}") for r in range(2)]
    torch.manual_seed(0)
    full = torch.randn(7, 5, 4, 3, dtype=torch.float64)
    grad = torch.randn(7, 5, 4, 3, dtype=torch.float64)
    m = nkt.BatchNorm2d(5, momentum=0.3).double()
    with torch.no_grad():
        m.weight.copy_(torch.linspace(0.5, 1.5, 5, dtype=torch.float64))
        m.bias.copy_(torch.linspace(-0.2, 0.2, 5, dtype=torch.float64))
    x = full.clone().requires_grad_()
    y = m(x)
    y.backward(grad)
    torch.testing.assert_close(torch.cat([p["y"] for p in parts]), y.detach())
    torch.testing.assert_close(torch.cat([p["dx"] for p in parts]), x.grad)
    # dweight / dbias are each process's own sums (data parallelism averages them itself).
    torch.testing.assert_close(parts[0]["dw"] + parts[1]["dw"], m.weight.grad)
    torch.testing.assert_close(parts[0]["db"] + parts[1]["db"], m.bias.grad)
    for p in parts:
        torch.testing.assert_close(p["rm"], m.running_mean)
        torch.testing.assert_close(p["rv"], m.running_var)


def test_convert_sync_batchnorm_keeps_parameters():
    torch = pytest.importorskip("torch")
    import normkit.torch as nkt

    net = _small_cnn(torch)
    w = net[1].weight
    out = nkt.SyncBatchNorm.convert_sync_batchnorm(net)
    assert type(out[1]) is nkt.SyncBatchNorm and out[1].weight is w
    assert type(out[8]) is nkt.SyncBatchNorm
    x = torch.randn(3, 3, 6, 6)
    out.train()
    assert out(x).shape == (3, 4)  # no process group: a plain batch norm


# ---------------------------------------------------------------------------------------------
# A ResNet of our own (torchvision is not installable beside this torch: its wheels need a
# different torch), built as torchvision's resnet18 is: basic blocks with a projection
# shortcut, batch norm (or group norm) after every convolution, zero-initialized last norm
# of each block's residual branch.
# ---------------------------------------------------------------------------------------------


def _resnet(torch, norm, widths=(8, 16), blocks=2, classes=5):
    nn = torch.nn

    class Block(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = norm(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = norm(cout)
            nn.init.zeros_(self.bn2.weight)
            self.down = None
            if stride != 1 or cin != cout:
                self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), norm(cout))

        def forward(self, x):
            y = torch.relu(self.bn1(self.conv1(x)))
            y = self.bn2(self.conv2(y))
            return torch.relu(y + (x if self.down is None else self.down(x)))

    layers = [nn.Conv2d(3, widths[0], 3, 1, 1, bias=False), norm(widths[0]), nn.ReLU()]
    cin = widths[0]
    for i, w in enumerate(widths):
        for b in range(blocks):
            layers.append(Block(cin, w, 2 if (b == 0 and i > 0) else 1))
            cin = w
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, classes)]
    return nn.Sequential(*layers)


@pytest.mark.parametrize("norm_name", ["BatchNorm2d", "GroupNorm"])
@pytest.mark.parametrize("memory", ["contiguous", "channels_last"])
def test_resnet_after_replace_norms(norm_name, memory):
    torch = pytest.importorskip("torch")
    import normkit.torch as nkt

    nn = torch.nn
    norm = nn.BatchNorm2d if norm_name == "BatchNorm2d" else (lambda c: nn.GroupNorm(4, c))
    torch.manual_seed(3)
    ref = _resnet(torch, norm).double()
    ours = nkt.replace_norms(copy.deepcopy(ref))
    n_ours = sum(type(m).__module__.startswith("normkit") for m in ours.modules())
    assert n_ours == sum(isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)) for m in ref.modules()) > 0
    fmt = torch.channels_last if memory == "channels_last" else torch.contiguous_format
    oa = torch.optim.SGD(ref.parameters(), lr=0.05, momentum=0.9)
    ob = torch.optim.SGD(ours.parameters(), lr=0.05, momentum=0.9)
    for _ in range(3):
        x = torch.randn(6, 3, 12, 12, dtype=torch.float64).to(memory_format=fmt)
        t = torch.randint(0, 5, (6,))
        outs = []
        for m, o in ((ref, oa), (ours, ob)):
            o.zero_grad()
            out = m(x)
            nn.functional.cross_entropy(out, t).backward()
            o.step()
            outs.append(out.detach())
        torch.testing.assert_close(outs[1], outs[0])
    for (k, a), (_, b) in zip(ref.state_dict().items(), ours.state_dict().items()):
        torch.testing.assert_close(b, a, msg=k)
    ref.eval(), ours.eval()
    x = torch.randn(4, 3, 12, 12, dtype=torch.float64).to(memory_format=fmt)
    torch.testing.assert_close(ours(x), ref(x))
