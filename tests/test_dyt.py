"""DyT (SPEC §6): y = γ·tanh(α·x) + β — the kernels against the float64 reference, every
dtype and CPU ISA (the autouse cpu_isa fixture), the CUDA backend (`lib`), channels last and
first, strided / misaligned / channels-last-memory views, NaN-padded outputs, in place, the
reference against finite differences and the kernels' float64 gradients against both."""

import numpy as np
import pytest

import reference as R
from reference import DTYPES, HALF_DTYPES, Lib, assert_close, round_to, to_f64

NUMPY = Lib("numpy")


def _param_dtype(dtype, mixed):
    return "float32" if mixed and dtype in HALF_DTYPES else dtype


def _make(shape, dtype, channels_last, mixed, seed, weight=True, bias=True, alpha=0.7):
    """float64 values (rounded to the dtypes they are stored in) of one case."""
    rng = np.random.default_rng(seed)
    c = shape[-1] if channels_last or len(shape) == 1 else shape[1]
    pdt = _param_dtype(dtype, mixed)
    case = {
        "x": round_to(rng.normal(0.0, 1.5, shape), dtype),
        "alpha": round_to(np.array([alpha]), pdt),
        "weight": round_to(rng.normal(1.0, 0.5, (c,)), pdt) if weight else None,
        "bias": round_to(rng.normal(0.0, 0.5, (c,)), pdt) if bias else None,
        "dy": round_to(rng.normal(0.0, 1.0, shape), dtype),
    }
    return case, pdt


def _arr(lib, a64, dtype):
    return None if a64 is None else lib.asarray(a64, dtype)


def _check(nk, lib, case, dtype, pdt, channels_last, x=None, dy=None):
    xa = x if x is not None else lib.asarray(case["x"], dtype)
    dya = dy if dy is not None else lib.asarray(case["dy"], dtype)
    al, w, b = (_arr(lib, case[k], pdt) for k in ("alpha", "weight", "bias"))
    y = nk.dyt(xa, al, w, b, channels_last=channels_last)
    assert lib.is_array(y) and R.dtype_of(y) == dtype and tuple(y.shape) == case["x"].shape
    ref = R.dyt_forward(case["x"], case["alpha"], case["weight"], case["bias"], channels_last)
    assert_close(y, ref, dtype, "y")
    dx, da, dw, db = nk.dyt_backward(dya, xa, al, w, b, channels_last=channels_last)
    rdx, rda, rdw, rdb = R.dyt_backward(case["dy"], case["x"], case["alpha"], case["weight"],
                                        case["bias"] is not None, channels_last)
    x64, dy64 = case["x"], case["dy"]
    t = np.tanh(float(case["alpha"][0]) * x64)
    assert_close(dx, rdx, dtype, "dx")
    axes = R._channel_axes(x64, channels_last)
    wb = 1.0 if case["weight"] is None else np.abs(case["weight"]).reshape(
        R._channel_shape(x64, channels_last))
    assert_close(da, rda, pdt, "dalpha", scale=np.sum(np.abs(dy64 * x64) * wb),
                 compute=R.compute_dtype(dtype))
    if case["weight"] is not None:
        assert_close(dw, rdw, pdt, "dweight", scale=np.sum(np.abs(dy64 * t), axis=axes),
                     compute=R.compute_dtype(dtype))
    else:
        assert dw is None
    if case["bias"] is not None:
        assert_close(db, rdb, pdt, "dbias", scale=np.sum(np.abs(dy64), axis=axes),
                     compute=R.compute_dtype(dtype))
    else:
        assert db is None


SHAPES_LAST = [(17,), (3, 5, 17), (1, 1), (7, 1000), (2, 4097), (130, 33), (64, 16)]
SHAPES_FIRST = [(2, 3, 5, 7), (3, 4, 1), (2, 5, 33), (5, 9), (2, 16, 3, 5, 2)]


# (dtype, mixed): every dtype with parameters of its own dtype, and 16-bit x with float32
# parameters ("mixed", as torch AMP).
DTYPE_MIXES = [(d, False) for d in DTYPES] + [(d, True) for d in HALF_DTYPES]


@pytest.mark.parametrize("dtype,mixed", DTYPE_MIXES,
                         ids=[f"{d}-{'mixed' if m else 'same'}" for d, m in DTYPE_MIXES])
@pytest.mark.parametrize("shape", SHAPES_LAST, ids=str)
def test_channels_last(nk, lib, dtype, mixed, shape):
    case, pdt = _make(shape, dtype, True, mixed, seed=len(shape) * 100 + shape[-1])
    _check(nk, lib, case, dtype, pdt, True)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES_FIRST, ids=str)
def test_channels_first(nk, lib, dtype, shape):
    case, pdt = _make(shape, dtype, False, True, seed=sum(shape))
    _check(nk, lib, case, dtype, pdt, False)


@pytest.mark.parametrize("weight,bias", [(False, False), (True, False), (False, True)])
@pytest.mark.parametrize("channels_last", [True, False])
def test_optional_parameters(nk, lib, weight, bias, channels_last):
    case, pdt = _make((4, 6, 5), "float32", channels_last, False, 3, weight, bias, alpha=-1.7)
    _check(nk, lib, case, "float32", pdt, channels_last)


@pytest.mark.parametrize("layout", ["row_stride", "padded_rows", "transposed_lead", "misaligned",
                                    "negative_stride", "trailing_noncontig"])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_strided_views(nk, lib, layout, dtype):
    case, pdt = _make((6, 4, 33), dtype, True, True, 11)
    x = lib.layout(case["x"], dtype, layout, 1)
    dy = lib.layout(case["dy"], dtype, layout, 1)
    if layout == "trailing_noncontig" and lib.name == "emu":
        # Other DLPack libraries' arrays (here the emulation build's device arrays) are not
        # copied by normkit: the core names what it cannot walk.
        with pytest.raises(ValueError, match="x: the channel dim \\(C\\) must be contiguous"):
            nk.dyt(x, lib.asarray(case["alpha"], pdt))
        return
    _check(nk, lib, case, dtype, pdt, True, x=x, dy=dy)


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_channels_first_over_channels_last_memory(nk, dtype):
    # A logical (N, C, H, W) view of (N, H, W, C) memory — what torch.channels_last gives —
    # is computed in place (C has unit stride), with the same result.
    case, pdt = _make((2, 8, 3, 5), dtype, False, True, 5)
    nhwc = np.ascontiguousarray(np.transpose(case["x"], (0, 2, 3, 1)))
    x = NUMPY.asarray(nhwc, dtype).transpose(0, 3, 1, 2)
    dy = NUMPY.asarray(np.ascontiguousarray(np.transpose(case["dy"], (0, 2, 3, 1))),
                       dtype).transpose(0, 3, 1, 2)
    assert x.strides[1] == x.itemsize
    _check(nk, NUMPY, case, dtype, pdt, False, x=x, dy=dy)
    y = nk.dyt(x, NUMPY.asarray(case["alpha"], pdt), channels_last=False)
    assert y.strides == x.strides  # the output keeps the input's memory layout


@pytest.mark.parametrize("dtype", DTYPES)
def test_out_nan_padded_and_in_place(nk, lib, dtype):
    case, pdt = _make((5, 37), dtype, True, True, 2)
    x = lib.asarray(case["x"], dtype)
    al, w, b = (_arr(lib, case[k], pdt) for k in ("alpha", "weight", "bias"))
    ref = R.dyt_forward(case["x"], case["alpha"], case["weight"], case["bias"])
    out, buf = lib.nan_out((5, 37), dtype, 1)
    r = nk.dyt(x, al, w, b, out=out)
    assert r is out
    assert_close(out, ref, dtype, "out")
    assert Lib.padding_intact(buf, out)
    r = nk.dyt(x, al, w, b, out=x)  # in place
    assert r is x
    assert_close(x, ref, dtype, "in place")


def test_zero_size(nk):
    for shape in [(0, 8), (4, 0), (0,)]:
        x = np.zeros(shape, np.float32)
        a = np.array([0.5], np.float32)
        w = np.ones(shape[-1], np.float32)
        assert nk.dyt(x, a, w, w).shape == shape
        dx, da, dw, db = nk.dyt_backward(x, x, a, w, w)
        assert dx.shape == shape and da.tolist() == [0.0]
        assert dw.tolist() == [0.0] * shape[-1] and db.tolist() == [0.0] * shape[-1]


def test_saturation_and_special_values(nk, lib):
    x64 = np.array([[0.0, -0.0, 1e-30, -1e-30, 20.0, -20.0, 1e4, -1e4, np.inf, -np.inf, np.nan]])
    x = lib.asarray(x64, "float32")
    a = lib.asarray(np.array([1.0]), "float32")
    y = to_f64(nk.dyt(x, a))
    assert y[0, 4] == 1.0 and y[0, 5] == -1.0 and y[0, 6] == 1.0 and y[0, 8] == 1.0
    assert y[0, 9] == -1.0 and np.isnan(y[0, 10])
    assert np.signbit(y[0, 1]) and y[0, 2] == np.float32(1e-30)
    dx = to_f64(nk.dyt_backward(lib.asarray(np.ones_like(x64), "float32"), x, a)[0])
    assert dx[0, 6] == 0.0 and dx[0, 8] == 0.0 and dx[0, 0] == 1.0


# -- gradients --------------------------------------------------------------------------------

FD_CASES = [((3, 5), True), ((2, 3, 4), False), ((2, 2, 3, 2), False)]


@pytest.mark.parametrize("shape,channels_last", FD_CASES)
def test_kernel_backward_matches_finite_differences(nk, lib, shape, channels_last):
    case, _ = _make(shape, "float64", channels_last, False, 21)
    dy = case["dy"]
    args = [lib.asarray(case[k], "float64") for k in ("x", "alpha", "weight", "bias")]

    def loss(x, alpha, weight, bias):
        y = nk.dyt(*(lib.asarray(a, "float64") for a in (x, alpha, weight, bias)),
                   channels_last=channels_last)
        return float(np.sum(dy * to_f64(y)))

    got = nk.dyt_backward(lib.asarray(dy, "float64"), *args, channels_last=channels_last)
    arrays = {k: case[k] for k in ("x", "alpha", "weight", "bias")}
    for name, g in zip(("x", "alpha", "weight", "bias"), got):
        np.testing.assert_allclose(to_f64(g), R.numerical_grad(loss, arrays, name, h=1e-5),
                                   rtol=1e-6, atol=1e-7, err_msg=name)


# -- bad input --------------------------------------------------------------------------------


@pytest.mark.any_isa
def test_bad_input_names_the_argument(nk):
    x = np.ones((4, 8), np.float32)
    a = np.array([0.5], np.float32)
    with pytest.raises(ValueError, match="weight: expected shape \\(8,\\)"):
        nk.dyt(x, a, np.ones(3, np.float32))
    with pytest.raises(ValueError, match="alpha: expected shape"):
        nk.dyt(x, np.ones(2, np.float32))
    with pytest.raises(TypeError, match="alpha: expected dtype float32"):
        nk.dyt(x, np.ones(1, np.float64))
    with pytest.raises(TypeError, match="bias: expected dtype bfloat16 or float32"):
        nk.dyt(x.astype(R.BF16), a, None, np.ones(8, np.float16))
    with pytest.raises(ValueError, match="at least 2 dims"):
        nk.dyt(np.ones(8, np.float32), a, channels_last=False)
    with pytest.raises(ValueError, match="out: expected shape"):
        nk.dyt(x, a, out=np.ones((4, 7), np.float32))
    ro = np.ones((4, 8), np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="out: is read-only"):
        nk.dyt(x, a, out=ro)
    with pytest.raises(ValueError, match="dy: expected shape"):
        nk.dyt_backward(np.ones((4, 7), np.float32), x, a)


# -- torch ------------------------------------------------------------------------------------


def _torch():
    return pytest.importorskip("torch")


class _PaperDyT:
    """The paper's module, written from its equations as a torch composite (the reference)."""

    def __init__(self, torch, c, channels_last, alpha=0.5):
        self.torch = torch
        self.m = torch.nn.Module()
        self.m.alpha = torch.nn.Parameter(torch.ones(1) * alpha)
        self.m.weight = torch.nn.Parameter(torch.ones(c))
        self.m.bias = torch.nn.Parameter(torch.zeros(c))
        self.channels_last = channels_last

    def __call__(self, x):
        m, t = self.m, self.torch
        y = t.tanh(m.alpha * x)
        if self.channels_last:
            return y * m.weight + m.bias
        shape = (-1,) + (1,) * (x.dim() - 2)
        return y * m.weight.view(shape) + m.bias.view(shape)


@pytest.mark.any_isa
@pytest.mark.parametrize("channels_last", [True, False])
def test_torch_module_matches_the_papers_and_loads_its_state_dict(channels_last):
    torch = _torch()
    import normkit.torch as nkt

    torch.manual_seed(0)
    shape = (3, 7, 16) if channels_last else (2, 16, 5, 3)
    ref = _PaperDyT(torch, 16, channels_last)
    with torch.no_grad():
        ref.m.alpha.fill_(0.8)
        ref.m.weight.normal_(1.0, 0.3)
        ref.m.bias.normal_(0.0, 0.3)
    m = nkt.DyT(16, channels_last=channels_last)
    assert set(m.state_dict()) == {"alpha", "weight", "bias"}
    assert m.alpha.shape == (1,) and m.weight.shape == (16,) and m.bias.shape == (16,)
    assert m.alpha.item() == 0.5 and bool((m.weight == 1).all()) and bool((m.bias == 0).all())
    m.load_state_dict(ref.m.state_dict())
    x = torch.randn(shape, requires_grad=True)
    x2 = x.detach().clone().requires_grad_(True)
    y, y2 = m(x), ref(x2)
    torch.testing.assert_close(y, y2, atol=1e-6, rtol=1e-6)
    g = torch.randn(shape)
    y.backward(g)
    y2.backward(g)
    torch.testing.assert_close(x.grad, x2.grad, atol=1e-6, rtol=1e-6)
    for name in ("alpha", "weight", "bias"):
        torch.testing.assert_close(getattr(m, name).grad, getattr(ref.m, name).grad,
                                   atol=1e-4, rtol=1e-5, msg=name)
    assert "alpha_init_value=0.5" in repr(m)


@pytest.mark.any_isa
def test_torch_opcheck_channels_last_memory():
    # Every op's opcheck over its variants is in test_ops.py; here DyT's stride-preserving
    # output on channels_last memory (the fake implementation must give the same strides).
    torch = _torch()

    a = torch.tensor([0.5], requires_grad=True)
    w = torch.randn(8, requires_grad=True)
    b = torch.randn(8, requires_grad=True)
    xc = torch.randn(2, 8, 3, 3).to(memory_format=torch.channels_last).requires_grad_(True)
    torch.library.opcheck(torch.ops.normkit.dyt_fwd.default, (xc, a, w, b, False))


@pytest.mark.any_isa
def test_torch_channels_last_memory_format_is_kept():
    torch = _torch()
    import normkit.torch as nkt

    m = nkt.DyT(8, channels_last=False)
    with torch.no_grad():
        m.weight.normal_()
        m.bias.normal_()
    x = torch.randn(2, 8, 5, 3).to(memory_format=torch.channels_last).requires_grad_(True)
    y = m(x)
    assert y.is_contiguous(memory_format=torch.channels_last)
    # The custom op (what torch.compile traces) and its fake implementation agree.
    y_op = torch.ops.normkit.dyt_fwd.default(x.detach(), m.alpha.detach(), m.weight.detach(),
                                             m.bias.detach(), False)
    assert y_op.stride() == x.stride()
    compiled = torch.compile(lambda v: m(v).sum(), backend="aot_eager", fullgraph=True)
    torch.testing.assert_close(compiled(x.detach()), y.detach().sum())
    ref = _PaperDyT(torch, 8, False)
    ref.m.load_state_dict(m.state_dict())
    x2 = x.detach().contiguous().requires_grad_(True)
    y2 = ref(x2)
    torch.testing.assert_close(y, y2)
    y.sum().backward()
    y2.sum().backward()
    torch.testing.assert_close(x.grad, x2.grad)
    torch.testing.assert_close(m.alpha.grad, ref.m.alpha.grad, atol=1e-5, rtol=1e-5)


@pytest.mark.any_isa
def test_torch_mixed_precision_and_out_rules():
    torch = _torch()
    import normkit

    x = torch.randn(4, 16).to(torch.bfloat16)
    a = torch.tensor([0.5])
    w = torch.ones(16)
    y = normkit.dyt(x, a, w, w)
    assert y.dtype == torch.bfloat16
    ref = (w * torch.tanh(a * x.float()) + w).to(torch.bfloat16)
    torch.testing.assert_close(y, ref, atol=1e-2, rtol=1e-2)
    xg = torch.randn(4, 16, requires_grad=True)
    with pytest.raises(RuntimeError, match="out="):
        normkit.dyt(xg, a, out=torch.empty(4, 16))
    with torch.no_grad():
        out = torch.empty(4, 16)
        assert normkit.dyt(xg, a, out=out) is out


@pytest.mark.any_isa
def test_layer_norm_to_dyt():
    torch = _torch()
    import normkit.torch as nkt

    shared = torch.nn.LayerNorm(12)
    model = torch.nn.Sequential(torch.nn.Linear(12, 12), shared, torch.nn.GELU(),
                                torch.nn.Sequential(torch.nn.LayerNorm(12), shared),
                                nkt.LayerNorm(12))
    out = nkt.layer_norm_to_dyt(model, alpha_init_value=0.3)
    assert out is model
    assert not any(isinstance(m, torch.nn.LayerNorm) for m in model.modules())
    dyts = [m for m in model.modules() if isinstance(m, nkt.DyT)]
    assert len(dyts) == 3  # the shared norm became one shared DyT
    assert model[1] is model[3][1]
    assert all(abs(d.alpha.item() - 0.3) < 1e-7 and d.normalized_shape == 12 for d in dyts)
    model(torch.randn(2, 12)).sum().backward()
    d = nkt.layer_norm_to_dyt(torch.nn.LayerNorm(7, dtype=torch.float64))
    assert isinstance(d, nkt.DyT) and d.weight.dtype == torch.float64
    with pytest.raises(ValueError, match="normalized_shape"):
        nkt.layer_norm_to_dyt(torch.nn.LayerNorm((3, 4)))
