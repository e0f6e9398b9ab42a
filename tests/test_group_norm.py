"""Group and instance norm (SPEC §5): the kernels against the float64 reference for every
dtype and CPU ISA (autouse cpu_isa) and the CUDA backend (`lib`), channels first / last and
channels-last memory, spatial dims none to 3-D, odd channel and group counts, strided views,
large means, instance norm's running statistics and evaluation, NaN-padded outputs, bad
input, and the torch modules against torch.nn's (train and eval, SGD steps after
replace_norms, torch.compile)."""

import copy

import numpy as np
import pytest

import reference as R
from reference import DTYPES, HALF_DTYPES, Lib, assert_close

NUMPY = Lib("numpy")

# (N, C, G, spatial): spatial none, 1, 3, 7x7, 17x5; C = 1, 3, 64, 257; G = 1, C, between.
CASES = [(2, 3, 1, ()), (33, 1, 1, (3,)), (2, 64, 32, (7, 7)), (2, 257, 257, (3,)),
         (33, 3, 3, (17, 5)), (3, 6, 2, (2, 3, 2)), (1, 4, 2, (3,)), (2, 64, 8, (1,))]
DTYPE_MIXES = [(d, False) for d in DTYPES] + [(d, True) for d in HALF_DTYPES]


def _shape(n, c, sp, cl):
    return (n,) + sp + (c,) if cl else (n, c) + sp


def _make(shape, c, dtype, pdt, seed, mean=0.5):
    rng = np.random.default_rng(seed)
    return {
        "x": R.round_to(rng.normal(mean, 1.5, shape), dtype),
        "dy": R.round_to(rng.normal(0.0, 1.0, shape), dtype),
        "weight": R.round_to(rng.normal(1.0, 0.5, (c,)), pdt),
        "bias": R.round_to(rng.normal(0.0, 0.5, (c,)), pdt),
    }


def _check(nk, lib, case, G, dtype, pdt, cl, x=None, dy=None):
    x64 = case["x"]
    xa = x if x is not None else lib.asarray(x64, dtype)
    w, b = lib.asarray(case["weight"], pdt), lib.asarray(case["bias"], pdt)
    axis = -1 if cl else 1
    y, sm, sr = nk.group_norm_forward(xa, G, w, b, 1e-5, axis=axis)
    ry, rmean, rrstd = R.group_norm_forward(x64, G, case["weight"], case["bias"], 1e-5, cl)
    comp = R.compute_dtype(dtype)
    assert R.dtype_of(y) == dtype and tuple(y.shape) == x64.shape
    assert tuple(sm.shape) == (x64.shape[0], G) and R.dtype_of(sm) == comp
    g, back = R._groups_view(x64, G, cl)
    dev = back(np.abs(g - rmean[:, :, None, None]) * rrstd[:, :, None, None])
    wshape = R._channel_shape(x64, cl or x64.ndim == 2)
    assert_close(y, ry, dtype, "y", scale=dev * np.abs(case["weight"]).reshape(wshape) + 1)
    assert_close(sm, rmean, comp, "save_mean", scale=np.abs(g).max(axis=(2, 3)))
    assert_close(sr, rrstd, comp, "save_rstd", scale=rrstd)
    dya = dy if dy is not None else lib.asarray(case["dy"], dtype)
    dx, dw, db = nk.group_norm_backward(dya, xa, sm, sr, G, w, b, axis=axis)
    rdx, rdw, rdb = R.group_norm_backward(case["dy"], x64, R.to_f64(sm), R.to_f64(sr), G,
                                          case["weight"], cl)
    axes = R._channel_axes(x64, cl or x64.ndim == 2)
    gsum = np.abs(case["dy"] * case["weight"].reshape(wshape))
    gg, _ = R._groups_view(gsum, G, cl)
    dx_scale = back(np.broadcast_to((gg.mean(axis=(2, 3)) * R.to_f64(sr))[:, :, None, None],
                                    gg.shape)) * 4 + np.abs(rdx)
    assert_close(dx, rdx, dtype, "dx", scale=dx_scale)
    assert_close(dw, rdw, pdt, "dweight", scale=np.sum(np.abs(case["dy"]) * dev, axis=axes),
                 compute=comp)
    assert_close(db, rdb, pdt, "dbias", scale=np.sum(np.abs(case["dy"]), axis=axes), compute=comp)


@pytest.mark.parametrize("cl", [False, True], ids=["first", "last"])
@pytest.mark.parametrize("dtype,mixed", DTYPE_MIXES,
                         ids=[f"{d}-{'mixed' if m else 'same'}" for d, m in DTYPE_MIXES])
@pytest.mark.parametrize("n,c,g,sp", CASES, ids=str)
def test_kernels(nk, lib, n, c, g, sp, dtype, mixed, cl):
    pdt = "float32" if mixed else dtype
    case = _make(_shape(n, c, sp, cl), c, dtype, pdt, seed=n * 1000 + c + len(sp))
    _check(nk, lib, case, g, dtype, pdt, cl)


def test_strided_views(nk):
    """Views the core walks in place (a batch slice, a row-strided channels-last view) and
    one it must copy (spatial dims not compact): each against the reference."""
    rng = np.random.default_rng(11)
    base = rng.normal(0, 1, (6, 8, 5, 9))
    for view in (lambda a: a[::2], lambda a: a[:, :, :, 1:8:2], lambda a: a[1:5]):
        x64 = np.ascontiguousarray(view(base))
        case = {"x": x64, "dy": rng.normal(0, 1, x64.shape), "weight": rng.normal(1, 0.3, 8),
                "bias": rng.normal(0, 0.3, 8)}
        _check(nk, NUMPY, case, 4, "float64", "float64", False, x=view(base))
    xl = rng.normal(0, 1, (4, 10, 6))  # channels last, every other position
    x64 = np.ascontiguousarray(xl[:, ::2])
    case = {"x": x64, "dy": rng.normal(0, 1, x64.shape), "weight": rng.normal(1, 0.3, 6),
            "bias": rng.normal(0, 0.3, 6)}
    _check(nk, NUMPY, case, 3, "float64", "float64", True, x=xl[:, ::2])


def test_torch_channels_last_memory(nk):
    torch = pytest.importorskip("torch")
    lib = Lib("torch", "cpu")
    for shape, fmt in (((2, 6, 7, 3), torch.channels_last), ((2, 4, 3, 5, 2), torch.channels_last_3d)):
        case = _make(shape, shape[1], "float32", "float32", seed=7)
        x = torch.from_numpy(case["x"]).float().to(memory_format=fmt)
        dy = torch.from_numpy(case["dy"]).float().to(memory_format=fmt)
        _check(nk, lib, case, 2, "float32", "float32", False, x=x, dy=dy)
        y = nk.group_norm(x, 2)
        assert y.is_contiguous(memory_format=fmt) and not y.is_contiguous()
        y = nk.instance_norm(x)
        assert y.is_contiguous(memory_format=fmt) and not y.is_contiguous()
        # In place: the core reads x's memory (no copy), so a view of it gives the same result.
        np.testing.assert_allclose(y.numpy(), R.instance_norm_forward(case["x"])[0], atol=1e-5)


def test_large_mean(nk, lib):
    rng = np.random.default_rng(3)
    x64 = 1e4 + rng.normal(0, 1, (4, 8, 9, 9))
    x32 = R.to_f64(lib.asarray(x64, "float32"))
    dy = rng.normal(0, 1, x32.shape)
    for cl, xr in ((False, x32), (True, np.moveaxis(x32, 1, -1))):
        xs = lib.asarray(xr, "float32")
        y, sm, sr = nk.group_norm_forward(xs, 4, axis=-1 if cl else 1)
        ref, rm, rr = R.group_norm_forward(xr, 4, channels_last=cl)
        np.testing.assert_allclose(R.to_f64(y), ref, atol=1e-4 * np.abs(ref).max())
        d = dy if not cl else np.moveaxis(dy, 1, -1)
        dx, _, _ = nk.group_norm_backward(lib.asarray(d, "float32"), xs, sm, sr, 4,
                                          axis=-1 if cl else 1)
        rdx = R.group_norm_backward(d, xr, rm, rr, 4, channels_last=cl)[0]
        np.testing.assert_allclose(R.to_f64(dx), rdx, atol=1e-3 * np.abs(rdx).max())


def test_batch_invariance_and_threads(nk, threads):
    """A sample's outputs never depend on the other samples; 1 and 2 threads, the same bits."""
    rng = np.random.default_rng(4)
    for cl, shape in ((False, (5, 8, 33, 17)), (True, (5, 33, 17, 8))):
        x = rng.normal(0, 1, shape).astype(np.float32)
        axis = -1 if cl else 1
        full = nk.group_norm(x, 4, axis=axis)
        np.testing.assert_array_equal(nk.group_norm(x[2:3], 4, axis=axis), full[2:3])
        threads(1)
        one = nk.group_norm(x, 4, axis=axis)
        dy = rng.normal(0, 1, shape).astype(np.float32)
        y, sm, sr = nk.group_norm_forward(x, 4, np.ones(8, np.float32), None, axis=axis)
        g1 = nk.group_norm_backward(dy, x, sm, sr, 4, np.ones(8, np.float32),
                                    np.zeros(8, np.float32), axis=axis)
        threads(2)
        g2 = nk.group_norm_backward(dy, x, sm, sr, 4, np.ones(8, np.float32),
                                    np.zeros(8, np.float32), axis=axis)
        np.testing.assert_array_equal(one, full)
        for a, b in zip(g1, g2):
            np.testing.assert_array_equal(a, b)


def test_instance_norm_running_statistics(nk, lib):
    rng = np.random.default_rng(6)
    for cl, shape in ((False, (4, 5, 6, 3)), (True, (4, 6, 3, 5)), (False, (3, 5, 7))):
        C = shape[-1] if cl else shape[1]
        x64 = rng.normal(1, 2, shape)
        rm0, rv0 = rng.normal(0, 0.3, C), rng.uniform(0.5, 2, C)
        rm, rv = lib.asarray(rm0, "float32"), lib.asarray(rv0, "float32")
        w, b = rng.normal(1, 0.3, C), rng.normal(0, 0.3, C)
        y = nk.instance_norm(lib.asarray(x64, "float32"), rm, rv, lib.asarray(w, "float32"),
                             lib.asarray(b, "float32"), momentum=0.3, axis=-1 if cl else 1)
        ry, _, _, rrm, rrv = R.instance_norm_forward(R.to_f64(lib.asarray(x64, "float32")), w,
                                                     b, rm0, rv0, 0.3, 1e-5, cl)
        assert_close(y, ry, "float32", "y", scale=np.abs(ry) + 4)
        assert_close(rm, rrm, "float32", "running_mean", scale=np.abs(rrm) + 1)
        assert_close(rv, rrv, "float32", "running_var", scale=np.abs(rrv) + 1)
        # Evaluation with the running statistics: batch norm's.
        ye = nk.instance_norm(lib.asarray(x64, "float32"), rm, rv, use_input_stats=False,
                              axis=-1 if cl else 1)
        re = R.batch_norm_forward(R.to_f64(lib.asarray(x64, "float32")), None, None,
                                  R.to_f64(rm), R.to_f64(rv), False, channels_last=cl)[0]
        assert_close(ye, re, "float32", "y eval", scale=np.abs(re) + 1)


def test_out_and_nan_padding(nk):
    rng = np.random.default_rng(2)
    x = rng.normal(0, 1, (4, 6, 5)).astype(np.float32)
    big = np.full((4, 6, 9), np.nan, np.float32)
    out = big[:, :, 2:7]
    y = nk.group_norm(x, 3, out=out)
    assert y is out
    assert np.isnan(big[:, :, :2]).all() and np.isnan(big[:, :, 7:]).all()
    np.testing.assert_allclose(out, R.group_norm_forward(x, 3)[0], atol=1e-5)
    big[...] = np.nan
    y = nk.instance_norm(x, out=out)
    assert np.isnan(big[:, :, :2]).all() and np.isnan(big[:, :, 7:]).all()
    np.testing.assert_allclose(out, R.instance_norm_forward(x)[0], atol=1e-5)
    z = nk.group_norm(np.zeros((0, 6, 5), np.float32), 2)
    assert z.shape == (0, 6, 5)
    y, sm, sr = nk.group_norm_forward(np.zeros((3, 6, 0), np.float32), 2)
    assert y.shape == (3, 6, 0) and sm.shape == (3, 2) and np.all(sm == 0)


def test_bad_input(nk):
    x = np.ones((4, 6, 5), np.float32)
    with pytest.raises(ValueError, match="num_groups: expected a divisor of the 6 channels"):
        nk.group_norm(x, 4)
    with pytest.raises(ValueError, match="num_groups: expected >= 1"):
        nk.group_norm(x, 0)
    with pytest.raises(TypeError, match="num_groups: expected an int"):
        nk.group_norm(x, 2.0)
    with pytest.raises(ValueError, match="weight: expected shape \\(6,\\)"):
        nk.group_norm(x, 2, np.ones(5, np.float32))
    with pytest.raises(ValueError, match="eps: expected >= 0"):
        nk.group_norm(x, 2, eps=-1.0)
    with pytest.raises(ValueError, match="x: expected at least 2 dims"):
        nk.group_norm(np.ones(6, np.float32), 2)
    with pytest.raises(ValueError, match="more than one spatial element"):
        nk.instance_norm(np.ones((4, 6), np.float32))
    with pytest.raises(ValueError, match="momentum: expected a finite number"):
        nk.instance_norm(x, np.zeros(6, np.float32), np.ones(6, np.float32), momentum=float("inf"))
    with pytest.raises(TypeError, match="running_var: expected dtype float32"):
        nk.instance_norm(x, np.zeros(6, np.float32), np.ones(6))
    with pytest.raises(ValueError, match="running_var: needed with running_mean"):
        nk.instance_norm(x, np.zeros(6, np.float32))
    ro = np.zeros(6, np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="running_mean: is read-only"):
        nk.instance_norm(x, ro, np.ones(6, np.float32))
    with pytest.raises(ValueError, match="running_mean: required"):
        nk.instance_norm(x, use_input_stats=False)
    y, sm, sr = nk.group_norm_forward(x, 2)
    with pytest.raises(ValueError, match="mean: expected 8 elements|mean: expected"):
        nk.group_norm_backward(x, x, sm[:, :1].copy(), sr, 2)


# ---------------------------------------------------------------------------------------------
# torch modules
# ---------------------------------------------------------------------------------------------


def _pair(torch, cls, *args, **kw):
    ref = cls(*args, **kw).double()
    with torch.no_grad():
        if getattr(ref, "weight", None) is not None:
            ref.weight.uniform_(0.5, 1.5)
            ref.bias.uniform_(-0.5, 0.5)
    import normkit.torch as nkt

    ours = nkt.replace_norms(copy.deepcopy(ref))
    assert type(ours) is not cls and isinstance(ours, cls)
    return ref, ours


MODULE_CASES = [
    ("GroupNorm", (3, 6), (2, 6), {}), ("GroupNorm", (4, 8), (3, 8, 5, 7), {}),
    ("GroupNorm", (1, 5), (2, 5, 3, 4, 2), {"affine": False}),
    ("InstanceNorm1d", (5,), (3, 5, 7), {}), ("InstanceNorm1d", (5,), (5, 7), {"affine": True}),
    ("InstanceNorm2d", (5,), (3, 5, 4, 6), {"affine": True, "track_running_stats": True}),
    ("InstanceNorm2d", (5,), (5, 4, 6), {"track_running_stats": True, "momentum": None}),
    ("InstanceNorm3d", (4,), (2, 4, 3, 4, 2), {"affine": True}),
]


@pytest.mark.parametrize("kind,args,shape,kw", MODULE_CASES, ids=str)
@pytest.mark.parametrize("memory", ["contiguous", "channels_last"])
def test_modules_match_torch(kind, args, shape, kw, memory):
    torch = pytest.importorskip("torch")
    cls = getattr(torch.nn, kind)
    ref, ours = _pair(torch, cls, *args, **kw)
    assert ref.state_dict().keys() == ours.state_dict().keys()
    fmt = {4: torch.channels_last, 5: torch.channels_last_3d}.get(len(shape))
    for _ in range(3):
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
    if getattr(ref, "weight", None) is not None:
        torch.testing.assert_close(ours.weight.grad, ref.weight.grad)
        torch.testing.assert_close(ours.bias.grad, ref.bias.grad)
    ref.eval(), ours.eval()
    x = torch.randn(shape, dtype=torch.float64)
    torch.testing.assert_close(ours(x), ref(x))


def _cnn(torch):
    nn = torch.nn
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.GroupNorm(4, 8), nn.ReLU(),
                         nn.Conv2d(8, 8, 3, padding=1), nn.InstanceNorm2d(8, affine=True,
                                                                         track_running_stats=True),
                         nn.ReLU(), nn.Conv2d(8, 8, 1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.Flatten(), nn.Linear(8 * 6 * 6, 4))


def test_cnn_after_replace_norms_trains_like_torch():
    torch = pytest.importorskip("torch")
    import normkit.torch as nkt

    torch.manual_seed(0)
    ref = _cnn(torch).double()
    ours = nkt.replace_norms(copy.deepcopy(ref))
    assert type(ours[1]) is nkt.GroupNorm and type(ours[4]) is nkt.InstanceNorm2d
    oa = torch.optim.SGD(ref.parameters(), lr=0.1)
    ob = torch.optim.SGD(ours.parameters(), lr=0.1)
    for step in range(3):
        x = torch.randn(5, 3, 6, 6, dtype=torch.float64)
        if step == 1:
            x = x.to(memory_format=torch.channels_last)
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
    m = nkt.replace_norms(_cnn(torch))
    ref = copy.deepcopy(m)
    x = torch.randn(4, 3, 6, 6)
    compiled = torch.compile(m, fullgraph=True, backend="aot_eager")
    y = compiled(x)
    y.sum().backward()
    yr = ref(x)
    torch.testing.assert_close(y, yr, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(m[4].running_mean, ref[4].running_mean)


@pytest.mark.any_isa
def test_channel_bench_traffic():
    """The channel benchmark's byte counts (from the declarations) against closed forms:
    x read and y written, parameters and running statistics once each; per-channel and
    per-group statistics are not counted."""
    from normkit.bench import channels as CH

    n, c, h, w = 2, 6, 3, 5
    for dtype, e in (("float32", 4), ("bfloat16", 2)):
        A, P = n * c * h * w * e, c * e
        expect = {("batch_norm", "fwd"): 2 * A + 6 * P, ("batch_norm", "eval"): 2 * A + 6 * P,
                  ("batch_norm", "fwd+bwd"): 5 * A + 9 * P,
                  ("group_norm", "fwd"): 2 * A + 2 * P, ("group_norm", "fwd+bwd"): 5 * A + 5 * P,
                  ("instance_norm", "fwd"): 2 * A + 2 * P,
                  ("instance_norm", "fwd+bwd"): 5 * A + 5 * P}
        cases = CH.cases(CH.OPS, [dtype], [(n, c, h, w)], ("fwd", "fwd+bwd"))
        assert len(cases) == 2 * len(expect)
        for case in cases:
            assert CH.bytes_moved(case) == expect[(case.op, case.pass_)], case.label


def test_forward_backward_out(nk):
    """out= of the forward / backward pairs (batch and group norm): written in place, the
    same values as freshly allocated ones."""
    rng = np.random.default_rng(13)
    x = rng.normal(0, 1, (3, 8, 5, 4)).astype(np.float32)
    dy = rng.normal(0, 1, x.shape).astype(np.float32)
    w, b = np.ones(8, np.float32), np.zeros(8, np.float32)
    y, dx = np.empty_like(x), np.empty_like(x)
    r = gn = nk.group_norm_forward(x, 4, w, b, out=y)
    assert r[0] is y
    np.testing.assert_array_equal(y, nk.group_norm_forward(x, 4, w, b)[0])
    g = nk.group_norm_backward(dy, x, r[1], r[2], 4, w, b, out=dx)
    assert g[0] is dx
    np.testing.assert_array_equal(dx, nk.group_norm_backward(dy, x, r[1], r[2], 4, w, b)[0])
    r = nk.batch_norm_forward(x, None, None, w, b, True, out=y)
    assert r[0] is y
    np.testing.assert_array_equal(y, nk.batch_norm_forward(x, None, None, w, b, True)[0])
    g = nk.batch_norm_backward(dy, x, r[1], r[2], w, b, out=dx)
    assert g[0] is dx
    np.testing.assert_array_equal(dx, nk.batch_norm_backward(dy, x, r[1], r[2], w, b)[0])
    with pytest.raises(ValueError, match="dx: expected shape"):
        nk.group_norm_backward(dy, x, gn[1], gn[2], 4, w, b, out=np.empty((3, 8, 5), np.float32))
