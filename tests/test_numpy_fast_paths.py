"""The NumPy fast paths of the row norms' training forward and backward (functional.py:
``_numpy_train_forward``, ``_numpy_backward``) give the same bits as the general plan, on the
cases a user tries: odd rows, 3-D input with a 2-D weight, strided views, 16-bit data with
float32 parameters, ``bias=True`` as a flag, no parameters — and fall back (never mis-read)
where the core cannot take the arrays as they are."""

import numpy as np
import pytest

import normkit as nk
from normkit import functional as F
from normkit._arrays import BackwardOut

pytestmark = pytest.mark.any_isa


def _dtypes():
    out = [np.float32, np.float64, np.float16]
    try:
        import ml_dtypes
        out.append(ml_dtypes.bfloat16)
    except ImportError:
        pass
    return out


def _case(rng, dtype, shape, pdims, pdtype):
    x = rng.standard_normal(shape).astype(dtype)
    w = (1 + 0.1 * rng.standard_normal(shape[-pdims:])).astype(pdtype)
    b = (0.1 * rng.standard_normal(shape[-pdims:])).astype(pdtype)
    dy = rng.standard_normal(shape).astype(dtype)
    return x, w, b, dy


def _same(a, b):
    if a is None or b is None:
        assert a is None and b is None
        return
    assert a.dtype == b.dtype and a.shape == b.shape
    assert np.array_equal(a.view(np.uint8), b.view(np.uint8))


def _backward_pair(kind, dy, x, mean, rstd, weight, flag):
    """(the public backward's gradients, the general plan's) for one parameter/bias case."""
    if kind == "layer":
        got = nk.layer_norm_backward(dy, x, mean, rstd, weight, flag)
    else:
        got = nk.rms_norm_backward(dy, x, rstd, weight, flag)
    k = F._LAYER if kind == "layer" else F._RMS
    ref = F._backward(k, dy, x, mean, rstd, weight, flag, 0.0, 1.0, None, False, None,
                      "mean" if kind == "layer" else "rrms",
                      BackwardOut("test", None, F._ROW_GRADS))
    assert len(got) == len(ref) == 3
    return got, ref


@pytest.mark.parametrize("dtype", _dtypes(), ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("shape,pdims", [((7, 33), 1), ((3, 5, 24), 2), ((1, 4096), 1)])
@pytest.mark.parametrize("kind", ["layer", "rms"])
def test_fast_paths_match_the_general_plan(dtype, shape, pdims, kind):
    rng = np.random.default_rng(3)
    pdtype = np.float32 if np.dtype(dtype).itemsize == 2 else dtype
    x, w, b, dy = _case(rng, dtype, shape, pdims, pdtype)
    k = F._LAYER if kind == "layer" else F._RMS
    for weight, bias in ((w, b), (w, None), (None, None)):
        if kind == "layer":
            y, mean, rstd = nk.layer_norm_forward(x, weight, bias)
        else:
            (y, rstd), mean = nk.rms_norm_forward(x, weight, bias=bias), None
        gy, _, gmean, grstd = F._forward(k, x, None, weight, bias, None,
                                          1e-5 if kind == "layer" else 1e-6, 0.0, 1.0, None,
                                          None, None, True, False)
        _same(y, gy), _same(rstd, grstd)
        if kind == "layer":
            _same(mean, gmean)
        for flag in (bias, True if bias is not None else None):
            got, ref = _backward_pair(kind, dy, x, mean, rstd, weight, flag)
            for g, r in zip(got, ref):
                _same(g, r)


def test_strided_views_match_contiguous_copies():
    rng = np.random.default_rng(4)
    big = rng.standard_normal((10, 2, 40)).astype(np.float32)
    x = big[::2, 0, :37]          # row stride, contiguous rows
    dy = big[1::2, 1, 3:40]       # another strided view
    w = np.linspace(0.5, 1.5, 37, dtype=np.float32)
    y, mean, rstd = nk.layer_norm_forward(x, w)
    yc, meanc, rstdc = nk.layer_norm_forward(np.ascontiguousarray(x), w)
    _same(y, yc), _same(mean, meanc), _same(rstd, rstdc)
    got = nk.layer_norm_backward(dy, x, mean, rstd, w, True)
    ref = nk.layer_norm_backward(np.ascontiguousarray(dy), np.ascontiguousarray(x), mean, rstd,
                                 w, True)
    for g, r in zip(got, ref):
        _same(g, r)
    # A column view (non-contiguous rows) cannot be read in place: the general path copies it.
    xt = np.asfortranarray(rng.standard_normal((6, 16)).astype(np.float32))
    _same(nk.layer_norm_forward(xt)[0], nk.layer_norm_forward(np.ascontiguousarray(xt))[0])


def test_bad_arguments_still_name_the_problem():
    x = np.ones((4, 8), np.float32)
    y, mean, rstd = nk.layer_norm_forward(x)
    with pytest.raises(ValueError, match="weight"):
        nk.layer_norm_forward(x, np.ones(7, np.float32))
    with pytest.raises(ValueError, match="dy"):
        nk.layer_norm_backward(np.ones((4, 9), np.float32), x, mean, rstd)
    with pytest.raises(ValueError, match="rstd"):
        nk.layer_norm_backward(x, x, mean, np.ones(3, np.float32))


@pytest.mark.parametrize("pdtype", ["same", "float32"])
@pytest.mark.parametrize("dtype", ["float32", "float64", "float16", "bfloat16"])
@pytest.mark.parametrize("kind", ["layer", "rms"])
def test_torch_training_paths_match_the_general_plan(kind, dtype, pdtype):
    """Plain torch tensors take the ops' generated eager code (functional._plain_torch):
    the same bits as the general plan, bias as a flag and tensors that need grad through the
    general path, and the results record no graph."""
    torch = pytest.importorskip("torch")
    if dtype == "float64" and pdtype == "float32":
        pytest.skip("float64 data takes float64 parameters (an error on both paths)")
    g = torch.Generator().manual_seed(5)
    dt = getattr(torch, dtype)
    pdt = dt if pdtype == "same" else torch.float32
    x = torch.randn(3, 5, 24, generator=g).to(dt)
    dy = torch.randn(3, 5, 24, generator=g).to(dt)
    w = (1 + 0.1 * torch.randn(5, 24, generator=g)).to(pdt)
    b = (0.1 * torch.randn(5, 24, generator=g)).to(pdt)
    k = F._LAYER if kind == "layer" else F._RMS
    eps = 1e-5 if kind == "layer" else 1e-6

    def bits(t):
        return None if t is None else t.contiguous().view(torch.uint8).numpy().tobytes()

    for weight, bias in ((w, b), (w, None), (None, None)):
        if kind == "layer":
            y, mean, rstd = nk.layer_norm_forward(x, weight, bias)
        else:
            (y, rstd), mean = nk.rms_norm_forward(x, weight, bias=bias), None
        gy, _, gmean, grstd = F._forward(k, x, None, weight, bias, None, eps, 0.0, 1.0, None,
                                          None, None, True, False)
        assert (y.dtype, rstd.dtype) == (gy.dtype, grstd.dtype)
        assert bits(y) == bits(gy) and bits(rstd) == bits(grstd) and bits(mean) == bits(gmean)
        for flag in (bias, True if bias is not None else None):
            got, ref = _backward_pair(kind, dy, x, mean, rstd, weight, flag)
            for a, r in zip(got, ref):
                assert (a is None) == (r is None)
                if a is not None:
                    assert a.dtype == r.dtype and a.shape == r.shape and bits(a) == bits(r)
                    assert a.grad_fn is None and not a.requires_grad
    # Inputs that need grad: detached by the general path, no graph recorded.
    xg = x.clone().requires_grad_(True)
    y, mean, rstd = nk.layer_norm_forward(xg, w, b) if kind == "layer" else (
        *nk.rms_norm_forward(xg, w, bias=b)[:1], None, nk.rms_norm_forward(xg, w, bias=b)[1])
    assert y.grad_fn is None and not y.requires_grad


@pytest.mark.parametrize("dtype", _dtypes(), ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("kind", ["layer", "rms"])
def test_fused_add_fast_path_matches_the_general_plan(dtype, kind):
    """add_layer_norm / add_rms_norm on contiguous NumPy arrays skip the general plan: the
    same bits (y and s), with x_bias and a residual scale, with and without parameters, and a
    strided residual or a wrong-shaped one still handled / named."""
    rng = np.random.default_rng(8)
    pdtype = np.float32 if np.dtype(dtype).itemsize == 2 else dtype
    x, w, b, r = _case(rng, dtype, (5, 40), 1, pdtype)
    xb = (0.1 * rng.standard_normal(40)).astype(pdtype)
    k = F._LAYER if kind == "layer" else F._RMS
    fn = nk.add_layer_norm if kind == "layer" else nk.add_rms_norm
    for weight, bias, x_bias, scale in ((w, b, xb, 0.5), (w, None, None, 1.0),
                                        (None, None, None, 2.0)):
        if kind == "layer":
            y, s = fn(x, r, weight, bias, 1e-5, scale, True, x_bias=x_bias)
            y1 = fn(x, r, weight, bias, 1e-5, scale, x_bias=x_bias)
        else:
            y, s = fn(x, r, weight, 1e-6, 0.0, scale, True, bias=bias, x_bias=x_bias)
            y1 = fn(x, r, weight, 1e-6, 0.0, scale, bias=bias, x_bias=x_bias)
        gy, gs, _, _ = F._forward(k, x, r, weight, bias, x_bias,
                                  1e-5 if kind == "layer" else 1e-6, 0.0, scale, None, None,
                                  None, False, True)
        _same(y, gy), _same(s, gs), _same(y1, gy)
    wide = np.repeat(r, 2, axis=1)[:, ::2]  # a strided residual: the general path copies it
    y2, s2 = fn(x, wide, w, return_residual=True) if kind == "rms" else \
        fn(x, wide, w, b, return_residual=True)
    y3, s3 = fn(x, np.ascontiguousarray(wide), w, return_residual=True) if kind == "rms" \
        else fn(x, np.ascontiguousarray(wide), w, b, return_residual=True)
    _same(y2, y3), _same(s2, s3)
    with pytest.raises(ValueError, match="residual"):
        fn(x, r[:, :39], w)
