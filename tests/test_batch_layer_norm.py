"""Batch layer norm (SPEC §7): the kernels against the float64 reference for every dtype,
CPU ISA (autouse cpu_isa) and the CUDA backend (`lib`), every statistics mode, odd shapes,
strided batches, large means, running statistics, channels-first data, bad input, and the
BatchLayerNorm module (train / eval, state_dict, torch.compile)."""

import copy

import numpy as np
import pytest

import reference as R
from reference import DTYPES, HALF_DTYPES, Lib, assert_close

NUMPY = Lib("numpy")
SHAPES = [(2, 3), (33, 1, 5), (4, 7, 64), (3, 17, 5, 3), (5, 257), (2, 1, 1)]
MODES = [(True, True), (False, True), (True, False), (False, False)]
DTYPE_MIXES = [(d, False) for d in DTYPES] + [(d, True) for d in HALF_DTYPES]


def _case(shape, dtype, pdt, seed, mean=0.5):
    rng = np.random.default_rng(seed)
    F = shape[-1]
    return {
        "x": R.round_to(rng.normal(mean, 1.5, shape), dtype),
        "dy": R.round_to(rng.normal(0, 1, shape), dtype),
        "weight": R.round_to(rng.normal(1, 0.5, F), pdt),
        "bias": R.round_to(rng.normal(0, 0.5, F), pdt),
        "running": [R.round_to(rng.normal(0.2, 0.3, shape[1:]), pdt),
                    R.round_to(rng.uniform(0.5, 2, shape[1:]), pdt),
                    R.round_to(rng.normal(0.2, 0.3, shape[1:-1] or (1,)), pdt),
                    R.round_to(rng.uniform(0.5, 2, shape[1:-1] or (1,)), pdt)],
    }


def _check(nk, lib, case, dtype, pdt, mode, x=None):
    b_in, f_in = mode
    training = b_in and f_in
    x64 = case["x"]
    if training and (x64.shape[0] < 2 or x64.shape[-1] < 2):
        return
    xa = x if x is not None else lib.asarray(x64, dtype)
    w, b = lib.asarray(case["weight"], pdt), lib.asarray(case["bias"], pdt)
    run = [lib.asarray(r, pdt) for r in case["running"]]
    kw = dict(use_running_batch_stats=not b_in, use_running_feature_stats=not f_in)
    y, bm, br, fm, fr = nk.batch_layer_norm_forward(xa, w, b, *run, training=training, **kw)
    ry, rbm, rbr, rfm, rfr, new = R.batch_layer_norm_forward(
        x64, case["weight"], case["bias"], case["running"], b_in, f_in)
    comp = R.compute_dtype(dtype)
    assert R.dtype_of(y) == dtype and tuple(y.shape) == x64.shape
    dev = np.abs(x64 - rbm) * rbr + np.abs(x64 - rfm[..., None]) * rfr[..., None]
    assert_close(y, ry, dtype, "y", scale=dev * np.abs(case["weight"]) + 1)
    assert_close(bm, rbm, comp, "batch_mean", scale=np.abs(x64).max(axis=0))
    assert_close(br, rbr, comp, "batch_rstd", scale=rbr)
    assert_close(fm, rfm, comp, "feature_mean", scale=np.abs(x64).max(axis=-1))
    assert_close(fr, rfr, comp, "feature_rstd", scale=rfr)
    for k, name in enumerate(("running_batch_mean", "running_batch_var",
                              "running_feature_mean", "running_feature_var")):
        expect = new[k] if training else case["running"][k]  # (evaluation updates nothing)
        assert_close(run[k], expect, pdt, name, scale=np.abs(expect) + 1)
    dya = lib.asarray(case["dy"], dtype)
    dx, dw, db = nk.batch_layer_norm_backward(dya, xa, bm, br, fm, fr, w, b, training=training,
                                              **kw)
    rdx, rdw, rdb = R.batch_layer_norm_backward(case["dy"], x64, R.to_f64(bm), R.to_f64(br),
                                                R.to_f64(fm), R.to_f64(fr), case["weight"],
                                                b_in, f_in)
    g = np.abs(case["dy"] * case["weight"]) / np.sqrt(x64.shape[-1])
    gscale = (g.mean(axis=0) * R.to_f64(br) + (g.mean(axis=-1) * R.to_f64(fr))[..., None]) * 4
    assert_close(dx, rdx, dtype, "dx", scale=gscale + np.abs(rdx))
    axes = tuple(range(x64.ndim - 1))
    assert_close(dw, rdw, pdt, "dweight", scale=np.sum(np.abs(case["dy"]) * dev, axis=axes),
                 compute=comp)
    assert_close(db, rdb, pdt, "dbias", scale=np.sum(np.abs(case["dy"]), axis=axes),
                 compute=comp)


@pytest.mark.parametrize("mode", MODES, ids=lambda m: f"b{'in' if m[0] else 'run'}-f{'in' if m[1] else 'run'}")
@pytest.mark.parametrize("dtype,mixed", DTYPE_MIXES,
                         ids=[f"{d}-{'mixed' if m else 'same'}" for d, m in DTYPE_MIXES])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_kernels(nk, lib, shape, dtype, mixed, mode):
    pdt = "float32" if mixed else dtype
    case = _case(shape, dtype, pdt, seed=sum(shape) + len(shape))
    _check(nk, lib, case, dtype, pdt, mode)


def test_strided_batch(nk):
    """A batch slice (dim 0 strided) is walked in place; a view with non-compact features
    is copied once."""
    rng = np.random.default_rng(9)
    base = rng.normal(0, 1, (8, 5, 12))
    for view in (lambda a: a[::2], lambda a: a[:, :, ::2], lambda a: a[1:6]):
        x64 = np.ascontiguousarray(view(base))
        case = _case(x64.shape, "float64", "float64", 3)
        case["x"] = x64
        _check(nk, NUMPY, case, "float64", "float64", (True, True), x=view(base))


def test_large_mean(nk, lib):
    rng = np.random.default_rng(3)
    x64 = 1e4 + rng.normal(0, 1, (16, 9, 32))
    x32 = R.to_f64(lib.asarray(x64, "float32"))
    dy = rng.normal(0, 1, x32.shape)
    y, bm, br, fm, fr = nk.batch_layer_norm_forward(lib.asarray(x32, "float32"))
    ref = R.batch_layer_norm_forward(x32)
    np.testing.assert_allclose(R.to_f64(y), ref[0], atol=1e-4 * np.abs(ref[0]).max())
    dx = nk.batch_layer_norm_backward(lib.asarray(dy, "float32"), lib.asarray(x32, "float32"),
                                      bm, br, fm, fr)[0]
    rdx = R.batch_layer_norm_backward(dy, x32, ref[1], ref[2], ref[3], ref[4])[0]
    np.testing.assert_allclose(R.to_f64(dx), rdx, atol=1e-3 * np.abs(rdx).max())


def test_channels_first_axis(nk):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    x64 = rng.normal(0, 1, (4, 6, 5, 3))
    ref = np.moveaxis(R.batch_layer_norm_forward(np.moveaxis(x64, 1, -1))[0], -1, 1)
    np.testing.assert_allclose(nk.batch_layer_norm(x64, axis=1), ref, rtol=1e-12, atol=1e-12)
    for fmt in (torch.contiguous_format, torch.channels_last):
        x = torch.from_numpy(x64).to(memory_format=fmt)
        y = nk.batch_layer_norm(x, axis=1)
        torch.testing.assert_close(y, torch.from_numpy(ref))
        assert y.is_contiguous(memory_format=fmt)


def test_threads_run_to_run(nk, threads):
    rng = np.random.default_rng(5)
    x = rng.normal(0, 1, (33, 40, 48)).astype(np.float32)
    dy = rng.normal(0, 1, x.shape).astype(np.float32)
    outs = []
    for t in (1, 2, 2):
        threads(t)
        y, *st = nk.batch_layer_norm_forward(x, np.ones(48, np.float32), np.zeros(48, np.float32))
        outs.append((y,) + nk.batch_layer_norm_backward(dy, x, *st, np.ones(48, np.float32),
                                                       np.zeros(48, np.float32)))
    for other in outs[1:]:
        for a, b in zip(outs[0], other):
            np.testing.assert_array_equal(a, b)


def test_running_statistics_in_place_and_momentum_none(nk):
    rng = np.random.default_rng(6)
    x = rng.normal(1, 2, (6, 4, 5)).astype(np.float32)
    run = [np.zeros((4, 5), np.float32), np.ones((4, 5), np.float32), np.zeros(4, np.float32),
           np.ones(4, np.float32)]
    nbt = np.zeros(1, np.int64)
    for k in range(3):
        nk.batch_layer_norm(x * (k + 1), None, None, *run, momentum=None, num_batches_tracked=nbt)
    assert nbt[0] == 3
    np.testing.assert_allclose(run[0], np.mean([(x * (k + 1)).mean(0) for k in range(3)], 0),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(run[2], np.mean([(x * (k + 1)).mean(-1).mean(0) for k in range(3)], 0),
                               rtol=1e-5, atol=1e-6)
    strided = np.zeros((4, 10), np.float32)[:, ::2]  # updated through a copy
    nk.batch_layer_norm(x, None, None, strided, np.ones((4, 5), np.float32), momentum=1.0)
    np.testing.assert_allclose(strided, x.mean(0), rtol=1e-6)


def test_out_and_nan_padding(nk):
    rng = np.random.default_rng(8)
    x = rng.normal(0, 1, (4, 6, 5)).astype(np.float32)
    big = np.full((4, 6, 9), np.nan, np.float32)
    out = big[:, :, 2:7]
    y = nk.batch_layer_norm(x, out=out)
    assert y is out
    assert np.isnan(big[:, :, :2]).all() and np.isnan(big[:, :, 7:]).all()
    np.testing.assert_allclose(out, R.batch_layer_norm_forward(x)[0], atol=1e-5)
    # channels first into a channels-first out (the view moved back)
    xc = rng.normal(0, 1, (3, 5, 4, 2)).astype(np.float32)
    outc = np.full(xc.shape, np.nan, np.float32)
    assert nk.batch_layer_norm(xc, axis=1, out=outc) is outc
    ref = np.moveaxis(R.batch_layer_norm_forward(np.moveaxis(xc, 1, -1))[0], -1, 1)
    np.testing.assert_allclose(outc, ref, atol=1e-5)
    assert nk.batch_layer_norm(np.zeros((0, 3, 5), np.float32)).shape == (0, 3, 5)


def test_bad_input(nk):
    x = np.ones((4, 3, 5), np.float32)
    with pytest.raises(ValueError, match="weight: expected shape \\(5,\\)"):
        nk.batch_layer_norm(x, np.ones(3, np.float32))
    with pytest.raises(ValueError, match="running_batch_mean: expected shape \\(3, 5\\)"):
        nk.batch_layer_norm(x, None, None, np.zeros(5, np.float32), np.ones(5, np.float32))
    with pytest.raises(ValueError, match="running_batch_var: needed with running_batch_mean"):
        nk.batch_layer_norm(x, None, None, np.zeros((3, 5), np.float32))
    with pytest.raises(ValueError, match="running_batch_mean: required"):
        nk.batch_layer_norm(x, training=False)
    with pytest.raises(ValueError, match="more than one sample"):
        nk.batch_layer_norm(x[:1], None, None, np.zeros((3, 5), np.float32),
                            np.ones((3, 5), np.float32))
    with pytest.raises(ValueError, match="momentum: expected a finite number"):
        nk.batch_layer_norm(x, None, None, np.zeros((3, 5), np.float32),
                            np.ones((3, 5), np.float32), momentum=float("nan"))
    with pytest.raises(TypeError, match="running_feature_var: expected dtype float32"):
        nk.batch_layer_norm(x, None, None, None, None, np.zeros(3, np.float32), np.ones(3))
    ro = np.zeros((3, 5), np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="running_batch_mean: is read-only"):
        nk.batch_layer_norm(x, None, None, ro, np.ones((3, 5), np.float32))
    with pytest.raises(ValueError, match="axis: expected -1"):
        nk.batch_layer_norm(x, axis=0)
    with pytest.raises(ValueError, match="x: expected at least 2 dims"):
        nk.batch_layer_norm(np.ones(5, np.float32))


# ---------------------------------------------------------------------------------------------
# The module
# ---------------------------------------------------------------------------------------------


def _ref_module_step(torch, m, x):
    """BLN by the reference, as the module computes it (training, then its running stats)."""
    y, bm, br, fm, fr, new = R.batch_layer_norm_forward(
        x.detach().double().numpy(), m.weight.detach().double().numpy(),
        m.bias.detach().double().numpy(),
        [np.zeros(x.shape[1:]), np.ones(x.shape[1:]), np.zeros(x.shape[1:-1] or (1,)),
         np.ones(x.shape[1:-1] or (1,))], momentum=m.momentum)
    return y, new


@pytest.mark.parametrize("shape", [(6, 8), (5, 7, 8), (4, 3, 2, 8)])
def test_module_train_eval_and_state_dict(shape):
    torch = pytest.importorskip("torch")
    import normkit.torch as nkt

    torch.manual_seed(0)
    m = nkt.BatchLayerNorm(8).double()
    with torch.no_grad():
        m.weight.uniform_(0.5, 1.5)
        m.bias.uniform_(-0.5, 0.5)
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    y = m(x)
    ry, new = _ref_module_step(torch, m, x)
    torch.testing.assert_close(y.detach(), torch.from_numpy(ry))
    torch.testing.assert_close(m.running_batch_mean, torch.from_numpy(new[0]))
    torch.testing.assert_close(m.running_batch_var, torch.from_numpy(new[1]))
    torch.testing.assert_close(m.running_feature_mean.reshape(-1),
                               torch.from_numpy(np.asarray(new[2])).reshape(-1))
    assert int(m.num_batches_tracked) == 1 and int(m.batch_size) == shape[0]
    g = torch.randn_like(y)
    y.backward(g)
    xs = x.detach().double().numpy()
    _, bm, br, fm, fr, _ = R.batch_layer_norm_forward(xs)
    rdx, rdw, rdb = R.batch_layer_norm_backward(g.numpy(), xs, bm, br, fm, fr,
                                                m.weight.detach().numpy())
    torch.testing.assert_close(x.grad, torch.from_numpy(rdx))
    torch.testing.assert_close(m.weight.grad, torch.from_numpy(rdw))
    # Evaluation: running batch statistics, this batch's feature statistics (the defaults),
    # the training batch size in the mixing weights.
    m.eval()
    xe = torch.randn((3,) + tuple(shape[1:]), dtype=torch.float64)
    ye = m(xe)
    re = R.batch_layer_norm_forward(
        xe.numpy(), m.weight.detach().numpy(), m.bias.detach().numpy(),
        [m.running_batch_mean.numpy(), m.running_batch_var.numpy(),
         m.running_feature_mean.numpy(), m.running_feature_var.numpy()], False, True,
        batch_size=shape[0])[0]
    torch.testing.assert_close(ye, torch.from_numpy(re))
    # A fresh module loads the running statistics' shapes from the state dict.
    m2 = nkt.BatchLayerNorm(8).double()
    m2.load_state_dict(m.state_dict())
    m2.eval()
    torch.testing.assert_close(m2(xe), ye)
    m3 = nkt.BatchLayerNorm(8, use_running_feature_stats=True).double()
    m3.load_state_dict(m.state_dict())
    m3.eval()
    rf = R.batch_layer_norm_forward(
        xe.numpy(), m.weight.detach().numpy(), m.bias.detach().numpy(),
        [m.running_batch_mean.numpy(), m.running_batch_var.numpy(),
         m.running_feature_mean.numpy(), m.running_feature_var.numpy()], False, False,
        batch_size=shape[0])[0]
    torch.testing.assert_close(m3(xe), torch.from_numpy(rf))


def test_module_channels_first_cnn_and_compile():
    torch = pytest.importorskip("torch")
    import normkit.torch as nkt

    torch.manual_seed(2)
    nn = torch.nn
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nkt.BatchLayerNorm(8, axis=1), nn.ReLU(),
                        nn.Flatten(), nn.Linear(8 * 5 * 5, 2))
    x = torch.randn(4, 3, 5, 5)
    y = net(x.to(memory_format=torch.channels_last))
    y.sum().backward()
    ref = copy.deepcopy(net)
    compiled = torch.compile(net, fullgraph=True, backend="aot_eager")
    yc = compiled(x)
    torch.testing.assert_close(yc, ref(x), rtol=1e-4, atol=1e-4)
    net.eval()
    assert net(x).shape == (4, 2)


def test_module_bad_input():
    torch = pytest.importorskip("torch")
    import normkit.torch as nkt

    m = nkt.BatchLayerNorm(8)
    with pytest.raises(ValueError, match="expected 8 features"):
        m(torch.randn(3, 4, 7))
    m.eval()
    with pytest.raises(ValueError, match="needs a training step"):
        m(torch.randn(3, 4, 8))


def test_backward_bad_input(nk):
    x = np.ones((4, 3, 5), np.float32)
    y, bm, br, fm, fr = nk.batch_layer_norm_forward(x + np.arange(5, dtype=np.float32))
    with pytest.raises(ValueError, match="batch_layer_norm_backward: feature_mean: expected 12"):
        nk.batch_layer_norm_backward(x, x, bm, br, fm[:2], fr)
    with pytest.raises(ValueError, match="batch_layer_norm_backward: dy: expected shape"):
        nk.batch_layer_norm_backward(x[:, :2], x, bm, br, fm, fr)
    with pytest.raises(TypeError, match="batch_mean: expected dtype float32"):
        nk.batch_layer_norm_backward(x, x, bm.astype(np.float64), br, fm, fr)
