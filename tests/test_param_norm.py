"""Weight norm and spectral norm (SPEC §9–10): the kernels against the float64 reference for
every dtype and CPU ISA (the autouse cpu_isa fixture) and the CUDA backend (`lib`), every
dim, strided views, the in-place power iteration, bad input, and the torch parametrizations
against torch's own (state_dict keys both ways, training steps, evaluation, compile).
The generic checks (finite differences, gradcheck-free autograd, opcheck, compile, thread
invariance) run from tests/op_specs.py."""

import numpy as np
import pytest

import reference as R
from reference import DTYPES, HALF_DTYPES, Lib, assert_close, round_to, to_f64

NUMPY = Lib("numpy")
# (dtype of v / W, dtype of g / u / v): each dtype with its own, and 16-bit with float32.
MIXES = [(d, d) for d in DTYPES] + [(d, "float32") for d in HALF_DTYPES]
MIX_IDS = [f"{a}-{b}" for a, b in MIXES]


def _gshape(shape, dim):
    if dim is None:
        return ()
    d = dim % len(shape)
    return tuple(s if i == d else 1 for i, s in enumerate(shape))


# ---------------------------------------------------------------------------------------------
# Weight norm
# ---------------------------------------------------------------------------------------------

WN_CASES = [((7, 5), 0), ((7, 5), 1), ((7, 5), -1), ((3, 4, 5), 1), ((2, 3, 4, 5), None),
            ((2, 3, 4, 5), 0), ((2, 3, 4, 5), 3), ((33,), 0), ((33,), None), ((1, 1), 0),
            ((64, 1031), 0), ((1031, 64), 1), ((16, 3, 3, 3), 0)]


@pytest.mark.parametrize("dtype,pdt", MIXES, ids=MIX_IDS)
@pytest.mark.parametrize("shape,dim", WN_CASES, ids=[f"{s}-dim{d}" for s, d in WN_CASES])
def test_weight_norm_matches_reference(nk, lib, shape, dim, dtype, pdt):
    rng = np.random.default_rng(len(shape) * 31 + (dim or 0))
    v = round_to(rng.normal(0.3, 1.0, shape), dtype)
    g = round_to(rng.normal(1.0, 0.5, _gshape(shape, dim)), pdt)
    dw = round_to(rng.normal(0.0, 1.0, shape), dtype)
    va, ga, dwa = lib.asarray(v, dtype), lib.asarray(g, pdt), lib.asarray(dw, dtype)
    w = nk.weight_norm(va, ga, dim)
    assert lib.is_array(w) and R.dtype_of(w) == dtype and tuple(w.shape) == shape
    rdim = None if dim is None else dim % len(shape)  # the reference's -1 means all dims
    rw, rn = R.weight_norm_forward(v, g, rdim)
    assert_close(w, rw, dtype, "w")
    w2, norm = nk.weight_norm_forward(va, ga, dim)
    assert to_f64(w2).tobytes() == to_f64(w).tobytes()
    assert tuple(norm.shape) == tuple(ga.shape)
    assert_close(np.reshape(to_f64(norm), np.shape(rn)), rn, "float64" if dtype == "float64" else "float32", "norm",
                 compute=R.compute_dtype(dtype), scale=np.abs(rn))
    dv, dg = nk.weight_norm_backward(dwa, va, ga, norm, dim)
    rdv, rdg = R.weight_norm_backward(dw, v, g, rdim)
    assert R.dtype_of(dv) == dtype and R.dtype_of(dg) == pdt and tuple(dg.shape) == tuple(ga.shape)
    axes = R._wn_axes(v, rdim)
    nrm = np.sqrt(np.sum(v * v, axis=axes, keepdims=True))
    assert_close(dv, rdv, dtype, "dv", scale=np.abs(g.reshape(nrm.shape)) / nrm *
                 (np.abs(dw) + np.abs(v) * np.sum(np.abs(dw * v), axis=axes, keepdims=True) / nrm**2))
    assert_close(np.reshape(to_f64(dg), np.shape(rdg)), rdg, pdt, "dg", compute=R.compute_dtype(dtype),
                 scale=(np.sum(np.abs(dw * v), axis=axes, keepdims=True) / nrm).reshape(np.shape(g)))


def test_weight_norm_strided_and_out(nk):
    rng = np.random.default_rng(3)
    base = rng.normal(size=(8, 12))
    v = base[:, ::2]  # a strided view: copied once
    g = rng.normal(size=(8, 1))
    ref = R.weight_norm_forward(v, g, 0)[0]
    np.testing.assert_allclose(nk.weight_norm(v, g), ref, rtol=1e-13, atol=1e-14)
    out = np.full(v.shape, np.nan)
    assert nk.weight_norm(v, g, out=out) is out
    np.testing.assert_allclose(out, ref, rtol=1e-13, atol=1e-14)
    vt = v.T  # dim 1 of the transpose = dim 0 of v
    np.testing.assert_allclose(nk.weight_norm(vt, g.T, 1), ref.T, rtol=1e-13, atol=1e-14)


def test_weight_norm_bad_input(nk):
    v = np.ones((3, 4))
    with pytest.raises(ValueError, match="dim"):
        nk.weight_norm(v, np.ones((3, 1)), dim=2)
    with pytest.raises(TypeError, match="dim"):
        nk.weight_norm(v, np.ones((3, 1)), dim=1.0)
    with pytest.raises(ValueError, match="g: expected 3 elements"):
        nk.weight_norm(v, np.ones((4, 1)))
    with pytest.raises(ValueError, match="g: expected 1 element"):
        nk.weight_norm(v, np.ones(3), dim=None)
    z = v.copy()
    z[1] = 0
    with pytest.raises(ValueError, match="channel 1 has norm 0"):
        nk.weight_norm(z, np.ones((3, 1)))
    with pytest.raises(TypeError, match="g"):
        nk.weight_norm(v, np.ones((3, 1), np.float32))  # float64 v, float32 g
    w, n = nk.weight_norm_forward(v, np.ones((3, 1)))
    with pytest.raises(ValueError, match="dw"):
        nk.weight_norm_backward(np.ones((4, 3)), v, np.ones((3, 1)), n)
    ro = np.empty_like(v)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="out"):
        nk.weight_norm(v, np.ones((3, 1)), out=ro)
    assert nk.weight_norm(np.ones((0, 4)), np.ones((0, 1))).shape == (0, 4)


def _torch():
    torch = pytest.importorskip("torch")
    import normkit.torch  # noqa: F401

    return torch


@pytest.mark.any_isa
@pytest.mark.parametrize("kind,dim", [("linear", 0), ("linear", 1), ("linear", None),
                                      ("linear", -1), ("conv", 0), ("conv", 2),
                                      ("convT", 0), ("conv", -2)])
def test_weight_norm_module_matches_torch(kind, dim):
    torch = _torch()
    import normkit.torch as nkt

    nn = torch.nn
    make = {"linear": lambda: nn.Linear(9, 6), "conv": lambda: nn.Conv2d(3, 5, 3),
            "convT": lambda: nn.ConvTranspose2d(4, 3, 3)}[kind]
    shape = {"linear": (4, 9), "conv": (2, 3, 7, 7), "convT": (2, 4, 5, 5)}[kind]
    torch.manual_seed(0)
    a = nn.utils.parametrizations.weight_norm(make().double(), dim=dim)
    torch.manual_seed(0)
    b = nkt.weight_norm(make().double(), dim=dim)
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    assert "parametrizations.weight.original0" in sb and "parametrizations.weight.original1" in sb
    for k in sa:
        assert sa[k].shape == sb[k].shape, k
        torch.testing.assert_close(sa[k], sb[k], rtol=1e-14, atol=1e-15)
    x = torch.randn(*shape, dtype=torch.float64)
    opt_a = torch.optim.SGD(a.parameters(), lr=0.1)
    opt_b = torch.optim.SGD(b.parameters(), lr=0.1)
    for _ in range(3):
        for m, o in ((a, opt_a), (b, opt_b)):
            o.zero_grad()
            (m(x) ** 2).sum().backward()
            o.step()
    torch.testing.assert_close(b(x), a(x), rtol=1e-12, atol=1e-12)
    for (ka, pa), (kb, pb) in zip(a.named_parameters(), b.named_parameters()):
        assert ka == kb
        torch.testing.assert_close(pb, pa, rtol=1e-12, atol=1e-12, msg=ka)
    # Checkpoints move both ways.
    c = nkt.weight_norm(make().double(), dim=dim)
    c.load_state_dict(a.state_dict())
    torch.testing.assert_close(c(x), a(x), rtol=1e-12, atol=1e-12)
    d = nn.utils.parametrizations.weight_norm(make().double(), dim=dim)
    d.load_state_dict(b.state_dict())
    torch.testing.assert_close(d(x), b(x), rtol=1e-12, atol=1e-12)


@pytest.mark.any_isa
@pytest.mark.needs_compiler
def test_weight_norm_module_loads_old_style_keys_and_compiles():
    torch = _torch()
    import normkit.torch as nkt

    nn = torch.nn
    torch.manual_seed(1)
    old = nn.Linear(5, 4).double()
    state = {"weight_g": torch.rand(4, 1, dtype=torch.float64) + 0.5,
             "weight_v": torch.randn(4, 5, dtype=torch.float64), "bias": old.bias.detach()}
    m = nkt.weight_norm(nn.Linear(5, 4).double())
    m.load_state_dict(state)
    x = torch.randn(3, 5, dtype=torch.float64)
    w = state["weight_g"] * state["weight_v"] / state["weight_v"].norm(dim=1, keepdim=True)
    torch.testing.assert_close(m(x), x @ w.T + state["bias"], rtol=1e-12, atol=1e-12)
    c = torch.compile(m, fullgraph=True)
    torch.testing.assert_close(c(x), m(x), rtol=1e-12, atol=1e-12)
    torch._dynamo.reset()
    with pytest.raises(ValueError, match="name"):
        nkt.weight_norm(nn.Linear(2, 2), name="nope")


# ---------------------------------------------------------------------------------------------
# Spectral norm
# ---------------------------------------------------------------------------------------------

SN_SHAPES = [(7, 5), (5, 7), (1, 9), (9, 1), (64, 1031), (130, 33)]


def _sn_case(shape, dtype, pdt, seed=0):
    rng = np.random.default_rng(seed)
    W = round_to(rng.normal(0.0, 1.0, shape), dtype)
    u = rng.normal(size=shape[0])
    v = rng.normal(size=shape[1])
    return W, round_to(u / np.linalg.norm(u), pdt), round_to(v / np.linalg.norm(v), pdt)


@pytest.mark.parametrize("n_iter", [1, 0, 3])
@pytest.mark.parametrize("dtype,pdt", MIXES, ids=MIX_IDS)
@pytest.mark.parametrize("shape", SN_SHAPES, ids=str)
def test_spectral_norm_matches_reference(nk, lib, shape, dtype, pdt, n_iter):
    W, u, v = _sn_case(shape, dtype, pdt)
    Wa, ua, va = lib.asarray(W, dtype), lib.asarray(u, pdt), lib.asarray(v, pdt)
    out, sigma = nk.spectral_norm_forward(Wa, ua, va, n_iter)
    rout, rsigma, ru, rv = R.spectral_norm_forward(W, u, v, n_iter)
    sdt = "float64" if dtype == "float64" else "float32"
    assert R.dtype_of(out) == dtype and R.dtype_of(sigma) == sdt and tuple(sigma.shape) == ()
    # Power iterations in the compute precision: σ, u, v to its rounding growth.
    cu = R.UNIT_ROUNDOFF[R.compute_dtype(dtype)] * (4 + n_iter) * max(shape) ** 0.5
    np.testing.assert_allclose(to_f64(sigma), rsigma, rtol=cu * 10 + R.TOLERANCE[sdt].rtol)
    tol = 10 * cu + R.TOLERANCE[pdt].rtol
    np.testing.assert_allclose(to_f64(ua), ru, rtol=0, atol=tol)
    np.testing.assert_allclose(to_f64(va), rv, rtol=0, atol=tol)
    assert_close(out, rout, dtype, "out", scale=np.abs(rout) * 10 * (4 + n_iter) * max(shape) ** 0.5)
    dout = round_to(np.random.default_rng(5).normal(size=shape), dtype)
    dW = nk.spectral_norm_backward(lib.asarray(dout, dtype), Wa, ua, va, sigma)
    s64, u64, v64 = float(to_f64(sigma)), to_f64(ua), to_f64(va)
    rdW = R.spectral_norm_backward(dout, W, u64, v64, s64)
    assert_close(dW, rdW, dtype, "dweight",
                 scale=(np.abs(dout) + np.sum(np.abs(dout * W)) / abs(s64) *
                        np.abs(np.outer(u64, v64))) / abs(s64))


def test_spectral_norm_functional_dims_and_in_place(nk):
    rng = np.random.default_rng(2)
    W = rng.normal(size=(4, 3, 5, 2))
    for dim in (0, 1, -1):
        m = np.moveaxis(W, dim, 0).reshape(W.shape[dim], -1)
        u = rng.normal(size=m.shape[0])
        v = rng.normal(size=m.shape[1])
        u0, v0 = u.copy(), v.copy()
        ro, rs, ru, rv = R.spectral_norm_forward(m, u0, v0, 2)
        out = nk.spectral_norm(W, u, v, n_power_iterations=2, dim=dim)
        expect = np.moveaxis(ro.reshape(np.moveaxis(W, dim, 0).shape), 0, dim)
        np.testing.assert_allclose(out, expect, rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose(u, ru, rtol=1e-12, atol=1e-13)  # updated in place
        np.testing.assert_allclose(v, rv, rtol=1e-12, atol=1e-13)
        u1, v1 = u.copy(), v.copy()
        ev = nk.spectral_norm(W, u, v, dim=dim, training=False)  # evaluation: u, v as given
        assert u.tobytes() == u1.tobytes() and v.tobytes() == v1.tobytes()
        np.testing.assert_allclose(ev, W / float(u @ m @ v), rtol=1e-12, atol=1e-13)
        o = np.empty_like(W)
        assert nk.spectral_norm(W, u, v, dim=dim, training=False, out=o) is o
        np.testing.assert_allclose(o, ev, rtol=1e-13, atol=1e-14)


def test_spectral_norm_bad_input(nk):
    W = np.ones((3, 4)) + np.eye(3, 4)
    u, v = np.ones(3), np.ones(4)
    with pytest.raises(ValueError, match="u: expected shape"):
        nk.spectral_norm(W, np.ones(4), v)
    with pytest.raises(ValueError, match="v: expected shape"):
        nk.spectral_norm(W, u, np.ones(3))
    with pytest.raises(ValueError, match="v: has norm 0"):
        nk.spectral_norm(W, u, np.zeros(4))
    with pytest.raises(ValueError, match="sigma = 0"):
        nk.spectral_norm(np.zeros((3, 4)), u, v)
    with pytest.raises(ValueError, match="sigma = 0"):
        nk.spectral_norm(W, np.zeros(3), v, training=False)
    with pytest.raises(ValueError, match="eps"):
        nk.spectral_norm(W, u, v, eps=-1.0)
    with pytest.raises(ValueError, match="n_power_iterations"):
        nk.spectral_norm(W, u, v, n_power_iterations=-1)
    with pytest.raises(ValueError, match="dim"):
        nk.spectral_norm(W, u, v, dim=2)
    with pytest.raises(TypeError, match="u"):
        nk.spectral_norm(W, np.ones(3, np.float32), np.ones(4, np.float32))
    ro = np.ones(3)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="u"):
        nk.spectral_norm(W, ro, v)  # written in training
    nk.spectral_norm(W, ro, v, training=False)  # only read in evaluation


def _modules(torch):
    nn = torch.nn
    return {"linear": (lambda: nn.Linear(20, 7), (5, 20)),
            "conv": (lambda: nn.Conv2d(3, 8, 3), (2, 3, 9, 9)),
            "convT": (lambda: nn.ConvTranspose2d(4, 6, 3), (2, 4, 5, 5)),
            "conv1d": (lambda: nn.Conv1d(2, 3, 4), (2, 2, 11))}


@pytest.mark.any_isa
@pytest.mark.parametrize("kind", ["linear", "conv", "convT", "conv1d"])
def test_spectral_norm_module_matches_torch(kind):
    torch = _torch()
    import normkit.torch as nkt

    make, shape = _modules(torch)[kind]
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        torch.manual_seed(0)
        a = torch.nn.utils.parametrizations.spectral_norm(make())
        torch.manual_seed(0)
        b = nkt.spectral_norm(make())
    finally:
        torch.set_default_dtype(before)
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    assert {"parametrizations.weight.original", "parametrizations.weight.0._u",
            "parametrizations.weight.0._v"} <= set(sb)
    for k in sa:  # the same draws and 15 warm-up iterations
        torch.testing.assert_close(sb[k], sa[k], rtol=1e-10, atol=1e-12, msg=k)
    x = torch.randn(*shape, dtype=torch.float64)
    oa = torch.optim.SGD(a.parameters(), lr=0.05)
    ob = torch.optim.SGD(b.parameters(), lr=0.05)
    for _ in range(3):
        for m, o in ((a, oa), (b, ob)):
            o.zero_grad()
            (m(x) ** 2).sum().backward()
            o.step()
    torch.testing.assert_close(b(x), a(x), rtol=1e-9, atol=1e-10)
    for k in sa:
        torch.testing.assert_close(b.state_dict()[k], a.state_dict()[k], rtol=1e-9, atol=1e-10,
                                   msg=k)
    a.eval(), b.eval()
    u0 = b.parametrizations.weight[0]._u.clone()
    torch.testing.assert_close(b(x), a(x), rtol=1e-9, atol=1e-10)
    assert torch.equal(b.parametrizations.weight[0]._u, u0)  # evaluation: no iteration
    c = nkt.spectral_norm(make().double())
    c.load_state_dict(a.state_dict())  # a torch checkpoint into normkit's
    c.eval()
    torch.testing.assert_close(c(x), a(x), rtol=1e-12, atol=1e-12)


@pytest.mark.any_isa
@pytest.mark.needs_compiler
def test_spectral_norm_module_compiles_and_checks():
    torch = _torch()
    import normkit.torch as nkt

    m = nkt.spectral_norm(torch.nn.Linear(6, 4).double())
    x = torch.randn(3, 6, dtype=torch.float64)
    ref = torch.nn.utils.parametrizations.spectral_norm(torch.nn.Linear(6, 4).double())
    ref.load_state_dict(m.state_dict())
    c = torch.compile(m, fullgraph=True)
    torch.testing.assert_close(c(x), ref(x), rtol=1e-12, atol=1e-12)
    torch._dynamo.reset()
    with pytest.raises(ValueError, match="n_power_iterations"):
        nkt.spectral_norm(torch.nn.Linear(2, 2), n_power_iterations=0)
    with pytest.raises(IndexError, match="dim"):
        nkt.spectral_norm(torch.nn.Linear(2, 2), dim=2)
    with pytest.raises(ValueError, match="name"):
        nkt.spectral_norm(torch.nn.Linear(2, 2), name="nope")
    v = nkt.spectral_norm(torch.nn.Linear(3, 1).double())  # a 1-row weight
    assert v(torch.ones(2, 3, dtype=torch.float64)).shape == (2, 1)


def _thp_madvise() -> bool:
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            return "[madvise]" in f.read()
    except OSError:
        return False


def _anon_huge_kb(addr: int) -> int:
    """AnonHugePages (kB) of the mapping that holds ``addr`` (/proc/self/smaps)."""
    inside = False
    with open("/proc/self/smaps") as f:
        for line in f:
            head = line.split()[0]
            if "-" in head and ":" not in head:
                lo, hi = (int(v, 16) for v in head.split("-"))
                inside = lo <= addr < hi
            elif inside and line.startswith("AnonHugePages:"):
                return int(line.split()[1])
    return 0


@pytest.mark.any_isa
def test_fresh_large_outputs_get_huge_pages(nk):
    # Note [Huge pages for fresh outputs] (normkit/_arrays.py): where THP is in madvise mode,
    # a fresh output of >= 32 MB is advised MADV_HUGEPAGE before it is written.
    # (NumPy advises its own large arrays; torch's CPU allocator does not: the case here.)
    torch = pytest.importorskip("torch")
    if not _thp_madvise():
        pytest.skip("transparent huge pages are not in 'madvise' mode here")
    v = torch.ones(3072, 4096)  # 48 MB
    g = torch.ones(3072, 1)
    for w in (nk.weight_norm(v, g), nk.spectral_norm(v, torch.ones(3072), torch.ones(4096))):
        assert _anon_huge_kb(w.data_ptr() + w.numel() * 2) >= 2048
