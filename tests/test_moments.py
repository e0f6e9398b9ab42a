"""Streaming standardization (SPEC §11): moments over any axes against the float64
reference for every dtype, CPU ISA and the CUDA backend (`lib`); data far from zero;
moments_merge in any order and grouping equal to one pass over the concatenation;
standardize / destandardize; the Standardizer over arrays, chunks and Dask arrays against
scikit-learn's StandardScaler and Keras' Normalization (where installed); its state;
merging across processes with torch.distributed."""

import os
import socket

import numpy as np
import pytest

import reference as R
from reference import DTYPES, Lib, round_to, to_f64

NUMPY = Lib("numpy")

AXES_CASES = [((1000, 7), 0), ((1000, 7), 1), ((1000, 7), None), ((6, 5, 4), (0, 2)),
              ((6, 5, 4), (0, 1)), ((6, 5, 4), (1, 2)), ((6, 5, 4), 1), ((6, 5, 4), -1),
              ((33,), 0), ((2, 3, 4, 5), (1, 3)), ((3, 1), 0), ((16384 + 3, 9), 0)]


def _tol_var(dtype, n):
    # Moments of values stored in `dtype`, accumulated in its compute type (float32 for
    # 16-bit / float32, float64 for float64), two-pass per chunk, merged in double.
    u = R.UNIT_ROUNDOFF[R.compute_dtype(dtype)]
    return 64 * u * max(1.0, np.log2(max(n, 2)))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,axis", AXES_CASES, ids=[f"{s}-ax{a}" for s, a in AXES_CASES])
def test_moments_match_reference(nk, lib, shape, axis, dtype):
    rng = np.random.default_rng(len(shape))
    x = round_to(rng.normal(2.0, 1.5, shape), dtype)
    m = nk.moments(lib.asarray(x, dtype), axis)
    n, mean, m2 = R.moments_reference(x, axis)
    assert isinstance(m, nk.Moments) and int(m.count) == n
    assert R.dtype_of(m.mean) == "float64" and R.dtype_of(m.m2) == "float64"
    assert tuple(m.mean.shape) == np.shape(mean) == tuple(m.m2.shape)
    tol = _tol_var(dtype, n)
    np.testing.assert_allclose(to_f64(m.mean), mean, rtol=tol, atol=tol)
    np.testing.assert_allclose(to_f64(m.m2), m2, rtol=tol, atol=tol * n)


@pytest.mark.parametrize("shape,axis", [((4000, 3), 0), ((40, 100), None), ((30, 20, 10), (0, 2))])
def test_moments_far_from_zero_in_float32(nk, shape, axis):
    # SPEC §0: 1e4 + N(0, 1) in float32 — the variance exact to float32 rounding, not
    # destroyed by E[x²] − E[x]².
    x = (1e4 + np.random.default_rng(0).normal(size=shape)).astype(np.float32)
    m = nk.moments(x, axis)
    n, mean, m2 = R.moments_reference(x, axis)
    np.testing.assert_allclose(m.mean, mean, rtol=1e-7)
    np.testing.assert_allclose(m.m2, m2, rtol=1e-5)
    np.testing.assert_allclose(m.var, m2 / n, rtol=1e-5)


def test_moments_of_torch_and_empty(nk):
    torch = pytest.importorskip("torch")
    x = torch.randn(50, 4, dtype=torch.float32)
    m = nk.moments(x, 0)
    assert isinstance(m.mean, torch.Tensor) and m.mean.dtype == torch.float64
    np.testing.assert_allclose(m.mean.numpy(), x.double().mean(0).numpy(), rtol=1e-6, atol=1e-7)
    e = nk.moments(np.ones((0, 3)), 0)
    assert int(e.count) == 0 and e.mean.shape == (3,) and not np.any(e.m2)
    with pytest.raises(ValueError, match="axis"):
        nk.moments(np.ones((2, 3)), 2)
    with pytest.raises(ValueError, match="axis"):
        nk.moments(np.ones((2, 3)), (0, 0))
    with pytest.raises(TypeError, match="axis"):
        nk.moments(np.ones((2, 3)), 1.5)


@pytest.mark.any_isa
def test_moments_merge_any_order_equals_one_pass(nk):
    rng = np.random.default_rng(4)
    x = 3.0 + rng.normal(size=(997, 6)) * 2
    cuts = [0, 1, 10, 300, 301, 700, 997]
    parts = [nk.moments(x[a:b], 0) for a, b in zip(cuts[:-1], cuts[1:])]
    parts.append(nk.moments(x[:0], 0))  # an empty chunk merges as nothing
    whole = nk.moments(x, 0)
    for order in (parts, parts[::-1], [parts[i] for i in rng.permutation(len(parts))]):
        m = nk.moments_merge(*order)
        assert int(m.count) == 997
        np.testing.assert_allclose(m.mean, whole.mean, rtol=1e-12)
        np.testing.assert_allclose(m.m2, whole.m2, rtol=1e-10)
    # Merging in a tree (threads, then processes) gives the same to rounding.
    tree = nk.moments_merge(nk.moments_merge(*parts[:3]), nk.moments_merge(*parts[3:]))
    np.testing.assert_allclose(tree.m2, whole.m2, rtol=1e-10)
    one = nk.moments_merge(whole)
    assert one.mean is whole.mean
    # batch_norm_stats' triples merge too, and the stacked form of SyncBatchNorm still works.
    bn = nk.batch_norm_stats(x[:500], axis=-1)
    m = nk.moments_merge(bn, nk.moments(x[500:], 0))
    np.testing.assert_allclose(m.m2, whole.m2, rtol=1e-6)
    cnt, mean, m2 = nk.moments_merge(np.array([500.0, 497.0]),
                                     np.stack([nk.moments(x[:500], 0).mean, nk.moments(x[500:], 0).mean]),
                                     np.stack([nk.moments(x[:500], 0).m2, nk.moments(x[500:], 0).m2]))
    assert float(cnt) == 997
    np.testing.assert_allclose(m2, whole.m2, rtol=1e-10)


def test_moments_merge_bad_input(nk):
    a = nk.moments(np.ones((4, 3)), 0)
    b = nk.moments(np.ones((4, 2)), 0)
    with pytest.raises(ValueError, match="different kept dims"):
        nk.moments_merge(a, b)
    with pytest.raises(ValueError, match="at least one"):
        nk.moments_merge()
    with pytest.raises(TypeError, match="ms\\[1\\]"):
        nk.moments_merge(a, (1, 2))
    with pytest.raises(ValueError, match="counts"):
        nk.moments_merge(a, nk.Moments(-1, a.mean, a.m2))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,axis", [((300, 7), 0), ((6, 5, 4), (0, 2)), ((6, 5, 4), 1),
                                        ((64, 33), None), ((5, 1031), 1)])
def test_standardize_round_trip(nk, lib, shape, axis, dtype):
    rng = np.random.default_rng(9)
    x = round_to(rng.normal(5.0, 3.0, shape), dtype)
    n, mean, m2 = R.moments_reference(x, axis)
    var = m2 / n
    keep = np.mean(x, axis=axis, keepdims=True).shape
    eps = 1e-3
    y = nk.standardize(lib.asarray(x, dtype), lib.asarray(mean, "float64"),
                       lib.asarray(var, "float64"), eps, axis=axis)
    assert R.dtype_of(y) == dtype and tuple(y.shape) == shape
    ref = (x - mean.reshape(keep)) / np.sqrt(var.reshape(keep) + eps)
    R.assert_close(y, ref, dtype, "y", scale=np.abs(x) / np.sqrt(var.reshape(keep) + eps))
    z = nk.destandardize(lib.asarray(ref, dtype), lib.asarray(mean, "float64"),
                         lib.asarray(var, "float64"), eps, axis=axis)
    back = round_to(ref, dtype) * np.sqrt(var.reshape(keep) + eps) + mean.reshape(keep)
    R.assert_close(z, back, dtype, "x", scale=np.abs(back))


def test_standardize_out_and_errors(nk):
    x = np.random.default_rng(1).normal(size=(10, 4))
    m = nk.moments(x, 0)
    out = np.full_like(x, np.nan)
    assert nk.standardize(x, m.mean, m.var, axis=0, out=out) is out
    np.testing.assert_allclose(out, (x - x.mean(0)) / x.std(0), rtol=1e-12, atol=1e-13)
    with pytest.raises(ValueError, match="mean: expected 4 values"):
        nk.standardize(x, np.zeros(3), np.ones(4), axis=0)
    with pytest.raises(ValueError, match="eps"):
        nk.standardize(x, m.mean, m.var, -1.0, axis=0)
    with pytest.raises(ValueError, match="out"):
        nk.standardize(x, m.mean, m.var, axis=0, out=np.empty((4, 10)))


# ---------------------------------------------------------------------------------------------
# Standardizer
# ---------------------------------------------------------------------------------------------


def _data(shape=(2000, 6), seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=shape) * np.arange(1, shape[-1] + 1) + 100.0).astype(dtype)


def test_standardizer_array_chunks_and_generator(nk):
    x = _data()
    a = nk.Standardizer().fit(x)
    b = nk.Standardizer()
    for k in range(0, 2000, 300):
        b.partial_fit(x[k:k + 300])
    c = nk.Standardizer().fit(x[k:k + 256] for k in range(0, 2000, 256))
    for s in (a, b, c):
        assert s.n_samples_seen_ == 2000
        np.testing.assert_allclose(s.mean_, x.mean(0), rtol=1e-13)
        np.testing.assert_allclose(s.var_, x.var(0), rtol=1e-10)
        np.testing.assert_allclose(s.scale_, x.std(0), rtol=1e-10)
    y = c.transform(x)
    np.testing.assert_allclose(y, (x - x.mean(0)) / x.std(0), rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(c.inverse_transform(y), x, rtol=1e-12)
    np.testing.assert_allclose(nk.Standardizer().fit_transform(x), y, rtol=1e-12, atol=1e-12)
    s = nk.Standardizer()
    s.adapt(x)  # Keras' spelling
    np.testing.assert_allclose(s.mean_, a.mean_, rtol=1e-15)


def test_standardizer_axes_eps_and_zero_variance(nk):
    x = _data((40, 5, 6))
    s = nk.Standardizer(axis=(1, 2)).fit(x)  # a mean per (5, 6) position, over axis 0
    assert s.mean_.shape == (5, 6)
    np.testing.assert_allclose(s.mean_, x.mean(0), rtol=1e-13)
    s = nk.Standardizer(axis=1).fit(x)
    np.testing.assert_allclose(s.var_, x.var((0, 2)), rtol=1e-10)
    np.testing.assert_allclose(s.transform(x), (x - x.mean((0, 2), keepdims=True)) /
                               x.std((0, 2), keepdims=True), rtol=1e-9, atol=1e-10)
    s = nk.Standardizer(axis=None, eps=0.5).fit(x)
    assert s.mean_.shape == ()
    np.testing.assert_allclose(s.scale_, np.sqrt(x.var() + 0.5), rtol=1e-10)
    z = np.ones((10, 3))
    z[:, 1] = np.arange(10)
    s = nk.Standardizer().fit(z)
    np.testing.assert_array_equal(s.scale_[[0, 2]], [1.0, 1.0])  # zero variance: scale 1
    assert np.all(np.isfinite(s.transform(z)))


def test_standardizer_state_and_merge(nk):
    x = _data()
    a = nk.Standardizer().fit(x[:700])
    b = nk.Standardizer().fit(x[700:])
    merged = nk.Standardizer().merge(a, b)
    whole = nk.Standardizer().fit(x)
    np.testing.assert_allclose(merged.var_, whole.var_, rtol=1e-12)
    st = whole.state_dict()
    assert set(st) == {"count", "mean", "m2"}
    r = nk.Standardizer().load_state_dict(st)
    np.testing.assert_array_equal(r.transform(x), whole.transform(x))
    d = whole.to_dict()
    assert all(isinstance(d[k], np.ndarray) for k in ("count", "mean", "m2"))
    r2 = nk.Standardizer.from_dict(d)
    assert r2.axis == whole.axis and r2.n_samples_seen_ == 2000
    np.testing.assert_array_equal(r2.transform(x), whole.transform(x))
    np.savez(os.devnull if os.name == "nt" else "/dev/null", **{k: v for k, v in d.items()
                                                                 if isinstance(v, np.ndarray)})


def test_standardizer_errors(nk):
    with pytest.raises(ValueError, match="not fitted"):
        nk.Standardizer().transform(np.ones((2, 3)))
    s = nk.Standardizer().fit(np.random.rand(10, 3))
    with pytest.raises(ValueError, match="features of shape"):
        s.partial_fit(np.random.rand(10, 4))
    with pytest.raises(ValueError, match="empty iterable"):
        nk.Standardizer().fit(iter([]))
    with pytest.raises(TypeError, match="x"):
        nk.Standardizer().fit(3.0)
    with pytest.raises(ValueError, match="eps"):
        nk.Standardizer(eps=-1)
    with pytest.raises(ValueError, match="missing"):
        nk.Standardizer().load_state_dict({"mean": np.zeros(3)})


def test_standardizer_torch(nk):
    torch = pytest.importorskip("torch")
    x = torch.from_numpy(_data(dtype=np.float32))
    s = nk.Standardizer().fit(x.split(333))
    assert isinstance(s.mean_, torch.Tensor)
    y = s.transform(x)
    assert isinstance(y, torch.Tensor) and y.dtype == torch.float32
    xd = x.double()
    torch.testing.assert_close(y.double(), (xd - xd.mean(0)) / xd.std(0, unbiased=False),
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(s.transform(x.numpy()), y.numpy(), rtol=1e-6, atol=1e-6)


def test_standardizer_dask(nk):
    da = pytest.importorskip("dask.array", reason="dask is an optional extra (normkit[dask])")
    x = _data((3001, 7), seed=3)
    d = da.from_array(x, chunks=(400, 3))
    s = nk.Standardizer().fit(d)
    np.testing.assert_allclose(s.mean_, x.mean(0), rtol=1e-13)
    np.testing.assert_allclose(s.var_, x.var(0), rtol=1e-10)
    s = nk.Standardizer(axis=None).fit(d)
    assert s.mean_.shape == ()
    np.testing.assert_allclose(s.var_, x.var(), rtol=1e-10)
    x3 = _data((50, 4, 6), seed=5)
    s = nk.Standardizer(axis=1).fit(da.from_array(x3, chunks=(7, 2, 6)))
    np.testing.assert_allclose(s.var_, x3.var((0, 2)), rtol=1e-10)
    # A Dask array among other chunks, and as partial_fit.
    s = nk.Standardizer().partial_fit(x[:1000]).partial_fit(da.from_array(x[1000:], chunks=500))
    np.testing.assert_allclose(s.var_, x.var(0), rtol=1e-10)


def test_standardizer_matches_sklearn(nk):
    skp = pytest.importorskip("sklearn.preprocessing",
                              reason="scikit-learn is a reference in the test extra")
    x = _data()
    sk = skp.StandardScaler()
    ours = nk.Standardizer()
    for k in range(0, 2000, 250):
        sk.partial_fit(x[k:k + 250])
        ours.partial_fit(x[k:k + 250])
    assert ours.n_samples_seen_ == sk.n_samples_seen_
    np.testing.assert_allclose(ours.mean_, sk.mean_, rtol=1e-12)
    np.testing.assert_allclose(ours.var_, sk.var_, rtol=1e-9)
    np.testing.assert_allclose(ours.scale_, sk.scale_, rtol=1e-9)
    np.testing.assert_allclose(ours.transform(x), sk.transform(x), rtol=1e-8, atol=1e-9)
    np.testing.assert_allclose(ours.inverse_transform(sk.transform(x)), x, rtol=1e-12)


def test_standardizer_matches_keras(nk):
    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras", reason="keras is a reference in the test extra")
    x = _data((500, 4), dtype=np.float32)
    layer = keras.layers.Normalization(axis=-1)
    layer.adapt(x)
    ours = nk.Standardizer(axis=-1).fit(x)
    np.testing.assert_allclose(ours.mean_, np.asarray(layer.mean).reshape(-1), rtol=1e-5)
    np.testing.assert_allclose(ours.var_, np.asarray(layer.variance).reshape(-1), rtol=1e-4)
    y = np.asarray(layer(x))
    np.testing.assert_allclose(ours.transform(x), y, rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------------------------------------
# Across processes: torch.distributed (gloo)
# ---------------------------------------------------------------------------------------------


def _moments_worker(rank, world, port, path):
    import torch
    import torch.distributed as dist

    import normkit as nk
    import normkit.torch as nkt

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world)
    x = _data((1001, 5), seed=11)
    shard = x[:400] if rank == 0 else x[400:]  # unequal shards
    s = nk.Standardizer().fit(torch.from_numpy(shard))
    m = nkt.all_gather_moments(s.moments)
    s.load_state_dict(m._asdict())
    torch.save({"mean": s.mean_, "var": s.var_, "n": s.n_samples_seen_}, f"{path}.{rank}")
    dist.destroy_process_group()


def test_all_gather_moments_two_processes(tmp_path):
    torch = pytest.importorskip("torch")
    import torch.distributed as dist
    import torch.multiprocessing as mp

    if not dist.is_available():
        pytest.skip("torch.distributed is not available")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path = str(tmp_path / "out")
    mp.spawn(_moments_worker, args=(2, port, path), nprocs=2, join=True)
    parts = [torch.load(f"{path}.{r}") for r in range(2)]
    x = _data((1001, 5), seed=11)
    for p in parts:
        assert p["n"] == 1001
        np.testing.assert_allclose(p["mean"].numpy(), x.mean(0), rtol=1e-13)
        np.testing.assert_allclose(p["var"].numpy(), x.var(0), rtol=1e-10)
    assert parts[0]["var"].numpy().tobytes() == parts[1]["var"].numpy().tobytes()


class _ForeignCPU:
    """A CPU array of another library: only DLPack and an array namespace (as JAX's)."""

    def __init__(self, a):
        self.a = np.ascontiguousarray(a)
        self.shape, self.dtype, self.ndim = self.a.shape, self.a.dtype, self.a.ndim

    def __dlpack_device__(self):
        return (1, 0)

    def __dlpack__(self, *, stream=None, max_version=None, dl_device=None, copy=None):
        return self.a.__dlpack__()

    def __array_namespace__(self, api_version=None):
        import types

        return types.SimpleNamespace(asarray=lambda x: _ForeignCPU(np.asarray(x)),
                                     from_dlpack=lambda x: _ForeignCPU(np.from_dlpack(x)))


def test_moments_and_standardize_of_a_foreign_dlpack_array(nk):
    x = np.random.default_rng(2).normal(3.0, 2.0, (100, 3))
    m = nk.moments(_ForeignCPU(x), 0)
    assert isinstance(m.mean, _ForeignCPU)
    np.testing.assert_allclose(m.mean.a, x.mean(0), rtol=1e-13)
    y = nk.standardize(_ForeignCPU(x), m.mean.a, m.m2.a / 100, axis=0)
    assert isinstance(y, _ForeignCPU)
    np.testing.assert_allclose(y.a, (x - x.mean(0)) / x.std(0), rtol=1e-11, atol=1e-12)
