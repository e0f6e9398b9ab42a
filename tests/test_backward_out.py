"""``out=`` of every backward function (issue 11: caller-provided gradient buffers, so that dx
need not be freshly mapped each step): the gradients land in the caller's buffers (the same
objects come back), with the same bits as freshly allocated ones; dx's buffer alone, a tuple
with ``None`` entries, a byte-misaligned NumPy buffer (through an aligned copy), torch
tensors; a wrong ``out`` is refused naming it, a wrong buffer naming the gradient."""

from __future__ import annotations

import numpy as np
import pytest

import normkit as nk

RNG = np.random.default_rng(11)


def _f32(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def _cases():
    """name -> (backward(out) returning a tuple, or a dict for the RNNs)."""
    x, dy = _f32(5, 37), _f32(5, 37)
    w, b = _f32(37), _f32(37)
    cases = {}
    _, mean, rstd = nk.layer_norm_forward(x, w, b)
    cases["layer_norm_backward"] = lambda out: nk.layer_norm_backward(dy, x, mean, rstd, w, b,
                                                                      out=out)
    _, rrms = nk.rms_norm_forward(x, w)
    cases["rms_norm_backward"] = lambda out: nk.rms_norm_backward(dy, x, rrms, w, True, out=out)
    r = _f32(5, 37)
    _, s, m2, r2 = nk.add_layer_norm_forward(x, r, w, b, x_bias=b)
    cases["add_layer_norm_backward"] = lambda out: nk.add_layer_norm_backward(
        dy, s, m2, r2, w, b, 0.5, ds=dy, x_bias=b, out=out)
    _, s3, r3 = nk.add_rms_norm_forward(x, r, w)
    cases["add_rms_norm_backward"] = lambda out: nk.add_rms_norm_backward(
        dy, s3, r3, w, None, 0.0, 2.0, out=out)
    _, am, ar = nk.ada_norm_forward(x)
    cases["ada_norm_backward"] = lambda out: (nk.ada_norm_backward(dy, x, am, ar, out=out),)
    alpha = np.array([0.7], np.float32)
    cases["dyt_backward"] = lambda out: nk.dyt_backward(dy, x, alpha, w, b, out=out)
    xc, dyc = _f32(3, 6, 4, 5), _f32(3, 6, 4, 5)
    wc, bc = _f32(6), _f32(6)
    _, sm, sr = nk.batch_norm_forward(xc, None, None, wc, bc, True)
    cases["batch_norm_backward"] = lambda out: nk.batch_norm_backward(dyc, xc, sm, sr, wc, bc,
                                                                      out=out)
    _, gm, gr = nk.group_norm_forward(xc, 3, wc, bc)
    cases["group_norm_backward"] = lambda out: nk.group_norm_backward(dyc, xc, gm, gr, 3, wc,
                                                                      bc, out=out)
    xb, dyb = _f32(4, 3, 7), _f32(4, 3, 7)
    wb, bb = _f32(7), _f32(7)
    _, bm, br, fm, fr = nk.batch_layer_norm_forward(xb, wb, bb)
    cases["batch_layer_norm_backward"] = lambda out: nk.batch_layer_norm_backward(
        dyb, xb, bm, br, fm, fr, wb, bb, out=out)
    v, g = _f32(6, 9), _f32(6)
    _, norm = nk.weight_norm_forward(v, g)
    dw = _f32(6, 9)
    cases["weight_norm_backward"] = lambda out: nk.weight_norm_backward(dw, v, g, norm, out=out)
    W, u, vv = _f32(6, 9), _f32(6), _f32(9)
    _, sigma = nk.spectral_norm_forward(W, u, vv)
    dout = _f32(6, 9)
    cases["spectral_norm_backward"] = lambda out: (nk.spectral_norm_backward(
        dout, W, u, vv, sigma, out=out),)
    T, B, I, Hh = 3, 2, 5, 4
    xs = _f32(T, B, I)
    w_ih, w_hh, b_ih = _f32(4 * Hh, I), _f32(4 * Hh, Hh), _f32(4 * Hh)
    y, h_n, c_n, saved = nk.lstm_forward(xs, w_ih, w_hh, b_ih)
    dys = _f32(*y.shape)
    cases["lstm_backward"] = lambda out: nk.lstm_backward(dys, None, None, saved, out=out)
    return cases


CASES = _cases()


def _as_tuple(res):
    return tuple(res.values()) if isinstance(res, dict) else tuple(res)


def _buffers(res):
    """NaN-filled buffers shaped like each computed gradient (None where none is computed)."""
    def buf(g):
        return None if g is None else np.full(g.shape, np.nan, g.dtype)
    if isinstance(res, dict):
        return {k: buf(g) for k, g in res.items() if g is not None}
    return tuple(buf(g) for g in res)


def _same(a, b, what):
    assert (a is None) == (b is None), what
    if a is not None:
        assert a.dtype == b.dtype and a.shape == b.shape, what
        assert np.array_equal(a, b, equal_nan=True), what


@pytest.mark.any_isa
@pytest.mark.parametrize("name", sorted(CASES))
def test_out_tuple_fills_the_callers_buffers(name):
    fn = CASES[name]
    fresh = fn(None)
    bufs = _buffers(fresh)
    got = fn(bufs)
    if isinstance(fresh, dict):
        assert got.keys() == fresh.keys()
        for k in fresh:
            _same(got[k], fresh[k], f"{name}: {k}")
            if k in bufs:
                assert got[k] is bufs[k], f"{name}: {k} not written into out"
        return
    for i, (g, f, o) in enumerate(zip(got, fresh, bufs)):
        _same(g, f, f"{name}: gradient {i}")
        if o is not None:
            assert g is o, f"{name}: gradient {i} not written into out"


@pytest.mark.any_isa
@pytest.mark.parametrize("name", sorted(n for n in CASES if not n.startswith("lstm")))
def test_out_dx_alone_and_none_entries(name):
    fn = CASES[name]
    fresh = _as_tuple(fn(None))
    dx = np.full(fresh[0].shape, np.nan, fresh[0].dtype)
    got = _as_tuple(fn(dx))  # an array: the input gradient's buffer
    assert got[0] is dx
    for i, (g, f) in enumerate(zip(got, fresh)):
        _same(g, f, f"{name}: gradient {i}")
    if len(fresh) > 1:  # a tuple with None entries: those are allocated
        last = fresh[-1]
        tail = None if last is None else np.full(last.shape, np.nan, last.dtype)
        got = _as_tuple(fn((None,) * (len(fresh) - 1) + (tail,)))
        for i, (g, f) in enumerate(zip(got, fresh)):
            _same(g, f, f"{name}: gradient {i}")
        if tail is not None:
            assert got[-1] is tail


@pytest.mark.any_isa
@pytest.mark.parametrize("name", ["layer_norm_backward", "batch_norm_backward", "dyt_backward"])
def test_out_misaligned_numpy_buffer(name):
    fn = CASES[name]
    fresh = _as_tuple(fn(None))
    raw = np.zeros(fresh[0].nbytes + 1, np.uint8)
    dx = raw[1:].view(fresh[0].dtype).reshape(fresh[0].shape)
    assert not dx.flags.aligned
    got = _as_tuple(fn(dx))
    assert got[0] is dx
    _same(np.array(dx), fresh[0], name)


@pytest.mark.any_isa
def test_out_torch_tensors():
    torch = pytest.importorskip("torch")
    x, dy = torch.randn(6, 40), torch.randn(6, 40)
    w, b = torch.randn(40), torch.randn(40)
    _, mean, rstd = nk.layer_norm_forward(x, w, b)
    fresh = nk.layer_norm_backward(dy, x, mean, rstd, w, b)
    bufs = tuple(torch.full_like(g, float("nan")) for g in fresh)
    got = nk.layer_norm_backward(dy, x, mean, rstd, w, b, out=bufs)
    for g, f, o in zip(got, fresh, bufs):
        assert g is o and torch.equal(g, f)


@pytest.mark.any_isa
def test_out_errors_name_the_argument():
    fn = CASES["layer_norm_backward"]
    with pytest.raises(TypeError, match=r"layer_norm_backward: out: expected None, dx's buffer, "
                                        r"or a tuple of 3"):
        fn((None, None))
    with pytest.raises(ValueError, match="dx"):
        fn(np.empty((5, 36), np.float32))
    with pytest.raises(TypeError, match="dx: expected dtype float32"):
        fn(np.empty((5, 37), np.float64))
    lstm = CASES["lstm_backward"]
    with pytest.raises(TypeError, match=r"lstm_backward: out: no gradient named \['nope'\]"):
        lstm({"nope": np.empty(3, np.float32)})
    with pytest.raises(TypeError, match="lstm_backward: out: expected None or a dict"):
        lstm((None,))
