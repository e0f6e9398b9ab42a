"""AdaNorm (SPEC §8): ŷ = (x − μ)/(s + eps), s the unbiased std, y = scale·(1 − k·ŷ)·ŷ, with
scale·(1 − k·ŷ) held constant in the backward — the kernels against the float64 reference,
every dtype and CPU ISA (the autouse cpu_isa fixture), the CUDA backend (`lib`), odd shapes,
two normalized dims, strided / misaligned views, NaN-padded outputs, in place, constant rows,
the reference against finite differences (with the gradient stop) and the kernels' float64
gradients against both; in torch: autograd against a torch composite of the paper's formula,
opcheck, torch.compile and the module."""

import numpy as np
import pytest

import reference as R
from reference import DTYPES, Lib, assert_close, round_to, stat_dtype, to_f64

NUMPY = Lib("numpy")


def _make(shape, dtype, seed, mean=0.25, std=1.0):
    rng = np.random.default_rng(seed)
    return {"x": round_to(rng.normal(mean, std, shape), dtype),
            "dy": round_to(rng.normal(0.0, 1.0, shape), dtype)}


def _scales(x, dy, k, scale, eps, nd):
    """Magnitudes behind y and dx (assert_close(scale=)): ŷ is formed from x and μ, so its
    error scales with (|x| + |μ|)·rstd, and dx sums |g|- and |g·ŷ|-sized terms."""
    ax = tuple(range(x.ndim - nd, x.ndim))
    _, mean, rstd = R.ada_norm_forward(x, k, scale, eps, nd)
    r = rstd.reshape(rstd.shape + (1,) * nd)
    m = np.abs(mean).reshape(r.shape)
    xh = (np.abs(x) + m) * r
    y_scale = abs(scale) * (1 + abs(k) * xh) * xh
    g = np.abs(dy) * abs(scale) * (1 + abs(k) * xh)
    h = int(np.prod(x.shape[x.ndim - nd :]))
    dx_scale = r * (g + g.mean(axis=ax, keepdims=True)
                    + xh * (g * xh).mean(axis=ax, keepdims=True) * h / (h - 1) * 2)
    return y_scale, dx_scale


def _check(nk, lib, case, dtype, nd=1, k=0.1, scale=2.0, eps=1e-5, x=None, dy=None):
    xa = x if x is not None else lib.asarray(case["x"], dtype)
    dya = dy if dy is not None else lib.asarray(case["dy"], dtype)
    ns = case["x"].shape[case["x"].ndim - nd :]
    y, mean, rstd = nk.ada_norm_forward(xa, k, scale, eps, normalized_shape=ns)
    lead = case["x"].shape[: case["x"].ndim - nd]
    assert lib.is_array(y) and R.dtype_of(y) == dtype and tuple(y.shape) == case["x"].shape
    assert R.dtype_of(rstd) == stat_dtype(dtype) and tuple(rstd.shape) == lead
    ry, rmean, rrstd = R.ada_norm_forward(case["x"], k, scale, eps, nd)
    y_scale, dx_scale = _scales(case["x"], case["dy"], k, scale, eps, nd)
    assert_close(y, ry, dtype, "y", scale=y_scale)
    assert_close(rstd, rrstd, stat_dtype(dtype), "rstd")
    assert_close(mean, rmean, stat_dtype(dtype), "mean",
                 scale=np.abs(case["x"]).mean(axis=tuple(range(len(lead), case["x"].ndim))))
    y2 = nk.ada_norm(xa, k, scale, eps, normalized_shape=ns)
    assert_close(y2, ry, dtype, "y (ada_norm)", scale=y_scale)
    dx = nk.ada_norm_backward(dya, xa, mean, rstd, k, scale)
    assert R.dtype_of(dx) == dtype and tuple(dx.shape) == case["x"].shape
    rdx = R.ada_norm_backward(case["dy"], case["x"], k, scale, eps, nd)
    assert_close(dx, rdx, dtype, "dx", scale=dx_scale, compute=stat_dtype(dtype))


SHAPES = [(2,), (3, 5, 17), (1, 2), (7, 1000), (2, 4097), (130, 33), (64, 16), (3, 65536)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_forward_backward(nk, lib, dtype, shape):
    _check(nk, lib, _make(shape, dtype, seed=sum(shape)), dtype)


@pytest.mark.parametrize("k,scale,eps", [(0.0, 1.0, 1e-5), (-0.3, 0.7, 1e-2), (0.5, 3.0, 0.0)])
def test_coefficients(nk, lib, k, scale, eps):
    _check(nk, lib, _make((6, 37), "float32", 4), "float32", k=k, scale=scale, eps=eps)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_two_normalized_dims(nk, lib, dtype):
    _check(nk, lib, _make((3, 2, 4, 25), dtype, 8), dtype, nd=2)


@pytest.mark.parametrize("layout", ["row_stride", "padded_rows", "transposed_lead", "misaligned",
                                    "negative_stride", "trailing_noncontig"])
@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_strided_views(nk, lib, layout, dtype):
    case = _make((6, 4, 33), dtype, 11)
    x = lib.layout(case["x"], dtype, layout, 1)
    dy = lib.layout(case["dy"], dtype, layout, 1)
    if layout == "trailing_noncontig" and lib.name == "emu":
        # Other DLPack libraries' arrays (here the emulation build's device arrays) are never
        # copied behind the caller's back: the core says what it cannot walk.
        with pytest.raises(ValueError, match="ada_norm: x: the normalized .* must be contiguous"):
            nk.ada_norm(x)
        return
    _check(nk, lib, case, dtype, x=x, dy=dy)


def test_large_mean_float32(nk, lib):
    # SPEC §0: x = 1e4 + N(0, 1) in float32 gives the float64 answer to 1e-4 relative.
    x64 = round_to(np.random.default_rng(3).normal(1e4, 1.0, (4, 1000)), "float32")
    y = to_f64(nk.ada_norm(lib.asarray(x64, "float32")))
    ref = R.ada_norm_forward(x64)[0]
    assert np.max(np.abs(y - ref)) <= 1e-4 * np.max(np.abs(ref))


@pytest.mark.parametrize("dtype", DTYPES)
def test_out_nan_padded_and_in_place(nk, lib, dtype):
    case = _make((5, 37), dtype, 2)
    x = lib.asarray(case["x"], dtype)
    ref = R.ada_norm_forward(case["x"])[0]
    y_scale, _ = _scales(case["x"], case["dy"], 0.1, 2.0, 1e-5, 1)
    out, buf = lib.nan_out((5, 37), dtype, 1)
    assert nk.ada_norm(x, out=out) is out
    assert_close(out, ref, dtype, "out", scale=y_scale)
    assert Lib.padding_intact(buf, out)
    assert nk.ada_norm(x, out=x) is x  # in place
    assert_close(x, ref, dtype, "in place", scale=y_scale)


def test_constant_rows(nk, lib):
    # s = 0: ŷ = 0, y = 0, and the backward holds s constant there (a finite gradient,
    # rstd·(g − mean(g)) with rstd = 1/eps), not NaN.
    x64 = np.array([[1.5] * 8, [0.0] * 8, list(np.linspace(-1, 1, 8))])
    dy64 = np.random.default_rng(0).normal(size=x64.shape)
    x, dy = lib.asarray(x64, "float64"), lib.asarray(dy64, "float64")
    y, mean, rstd = nk.ada_norm_forward(x, eps=1e-3)
    assert np.all(to_f64(y)[:2] == 0.0)
    assert np.allclose(to_f64(rstd)[:2], 1e3)
    dx = to_f64(nk.ada_norm_backward(dy, x, mean, rstd))
    assert np.all(np.isfinite(dx))
    expect = 1e3 * 2.0 * (dy64[:2] - dy64[:2].mean(axis=1, keepdims=True))
    np.testing.assert_allclose(dx[:2], expect, rtol=1e-12)
    np.testing.assert_allclose(dx, R.ada_norm_backward(dy64, x64, eps=1e-3), rtol=1e-10,
                               atol=1e-12)


def test_zero_size_and_nan(nk):
    y, mean, rstd = nk.ada_norm_forward(np.zeros((0, 8), np.float32))
    assert y.shape == (0, 8) and mean.shape == (0,) and rstd.shape == (0,)
    assert nk.ada_norm(np.zeros((0, 1), np.float32)).shape == (0, 1)  # no rows: nothing to do
    x = np.random.default_rng(1).normal(size=(3, 9)).astype(np.float32)
    x[1, 4] = np.nan
    y = nk.ada_norm(x)
    assert np.all(np.isnan(y[1])) and not np.any(np.isnan(y[[0, 2]]))


# -- gradients --------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(3, 5), (2, 3, 9)], ids=str)
def test_kernel_backward_matches_finite_differences(nk, lib, shape):
    case = _make(shape, "float64", 21)
    k, scale, eps = 0.2, 1.3, 1e-3
    x = lib.asarray(case["x"], "float64")
    yh0 = to_f64(nk.ada_norm(x, 0.0, 1.0, eps))
    phi0 = scale * (1 - k * yh0)

    def loss(x):
        return float(np.sum(case["dy"] * phi0 * to_f64(nk.ada_norm(lib.asarray(x, "float64"),
                                                                   0.0, 1.0, eps))))

    _, mean, rstd = nk.ada_norm_forward(x, k, scale, eps)
    dx = nk.ada_norm_backward(lib.asarray(case["dy"], "float64"), x, mean, rstd, k, scale)
    np.testing.assert_allclose(to_f64(dx), R.numerical_grad(loss, {"x": case["x"]}, "x", h=1e-5),
                               rtol=1e-6, atol=1e-7)


# -- bad input --------------------------------------------------------------------------------


@pytest.mark.any_isa
def test_bad_input_names_the_argument(nk):
    x = np.ones((4, 8), np.float32)
    with pytest.raises(ValueError, match="ada_norm: x: AdaNorm needs at least 2 elements per row"):
        nk.ada_norm(np.ones((4, 1), np.float32))
    with pytest.raises(ValueError, match="ada_norm: k: expected a finite"):
        nk.ada_norm(x, k=float("nan"))
    with pytest.raises(ValueError, match="ada_norm: scale: expected a finite"):
        nk.ada_norm(x, scale=float("inf"))
    with pytest.raises(ValueError, match="ada_norm: eps"):
        nk.ada_norm(x, eps=-1.0)
    with pytest.raises(ValueError, match="normalized_shape"):
        nk.ada_norm(x, normalized_shape=(7,))
    with pytest.raises(TypeError, match="x: expected dtype"):
        nk.ada_norm(np.ones((4, 8), np.int32))
    with pytest.raises(ValueError, match="out: expected shape"):
        nk.ada_norm(x, out=np.ones((4, 7), np.float32))
    _, mean, rstd = nk.ada_norm_forward(x + np.arange(8, dtype=np.float32))
    with pytest.raises(ValueError, match="ada_norm_backward: mean: expected 4 elements"):
        nk.ada_norm_backward(x, x, mean[:3], rstd)
    with pytest.raises(ValueError, match="dy: expected shape"):
        nk.ada_norm_backward(np.ones((4, 7), np.float32), x, mean, rstd)


# -- torch ------------------------------------------------------------------------------------


def _torch():
    return pytest.importorskip("torch")


def _paper(torch, x, k=0.1, scale=2.0, eps=1e-5, nd=1):
    """The paper's AdaNorm as a torch composite: unbiased std, eps on the std, and the
    gradient stopped through scale·(1 − k·ŷ)."""
    dims = tuple(range(x.dim() - nd, x.dim()))
    mean = x.mean(dim=dims, keepdim=True)
    std = x.std(dim=dims, keepdim=True, unbiased=True)
    yh = (x - mean) / (std + eps)
    return (scale * (1 - k * yh)).detach() * yh


@pytest.mark.any_isa
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("nd", [1, 2])
def test_torch_module_matches_the_paper(dtype, nd):
    torch = _torch()
    import normkit.torch as nkt

    torch.manual_seed(0)
    dt = getattr(torch, dtype)
    ns = (5, 16)[-nd:] if nd == 1 else (5, 16)
    m = nkt.AdaNorm(ns, k=0.2, scale=1.5, eps=1e-4)
    assert list(m.parameters()) == [] and "k=0.2" in repr(m)
    x = torch.randn(3, 5, 16, dtype=dt, requires_grad=True)
    x2 = x.detach().clone().requires_grad_(True)
    y, y2 = m(x), _paper(torch, x2, 0.2, 1.5, 1e-4, nd)
    tol = 1e-5 if dtype == "float32" else 1e-12
    torch.testing.assert_close(y, y2, atol=tol, rtol=tol)
    g = torch.randn_like(y)
    y.backward(g)
    y2.backward(g)
    torch.testing.assert_close(x.grad, x2.grad, atol=10 * tol, rtol=10 * tol)
    with pytest.raises(ValueError, match="input: expected a tensor whose last"):
        m(torch.randn(3, 4))
    with pytest.raises(ValueError, match="normalized_shape: expected at least one dim"):
        nkt.AdaNorm(())
    with pytest.raises(ValueError, match="ada_norm: k: expected a finite"):
        nkt.AdaNorm(16, k=float("inf"))(torch.randn(2, 16))
    with pytest.raises(ValueError, match="AdaNorm needs at least 2 elements per row"):
        nkt.AdaNorm(1)(torch.randn(3, 1, requires_grad=True))


@pytest.mark.any_isa
def test_torch_functional_and_half():
    torch = _torch()
    import normkit
    import normkit.torch as nkt

    x = torch.randn(4, 64).to(torch.bfloat16).requires_grad_(True)
    y = normkit.ada_norm(x)
    assert y.dtype == torch.bfloat16 and y.requires_grad
    x2 = x.detach().float().requires_grad_(True)
    ref = _paper(torch, x2)
    torch.testing.assert_close(y.float(), ref, atol=2e-2, rtol=2e-2)
    y.float().sum().backward()
    ref.sum().backward()
    torch.testing.assert_close(x.grad.float(), x2.grad, atol=5e-2, rtol=5e-2)
    torch.testing.assert_close(nkt.ada_norm(x.detach(), 0.1, 2.0), y.detach())
    with pytest.raises(RuntimeError, match="out="):
        normkit.ada_norm(x, out=torch.empty(4, 64, dtype=torch.bfloat16))
    with torch.no_grad():
        out = torch.empty(4, 64, dtype=torch.bfloat16)
        assert normkit.ada_norm(x, out=out) is out

