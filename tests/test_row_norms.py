"""Layer norm, RMS norm and the fused add + norm (SPEC §1–3) against the float64 reference.

Every op × dtype × CPU ISA (the autouse `cpu_isa` fixture) × odd row lengths, forward and
backward, each optional feature (weight, bias, mixed float32 parameters, weight_offset,
residual_scale, x_bias, an incoming gradient on s) in at least one variant; then shapes
(one row, many tiny rows, 3-D, multi-dim rows), memory layouts (strided, transposed, misaligned,
negative strides, non-contiguous rows), NaN-filled outputs with padding, in-place calls, inputs
with a large mean, torch CPU tensors, the streaming-store path, and a small property test.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import normkit as nk
from reference import (
    DTYPES,
    HALF_DTYPES,
    LAYOUTS,
    OP_NAMES,
    OPS,
    TOLERANCE,
    Config,
    Lib,
    RowOp,
    assert_close,
    config_variants,
    dtype_of,
    fused_residual,
    grad_inputs,
    kernel_backward,
    kernel_call,
    kernel_forward,
    layer_norm_forward,
    make_case,
    numerical_grad,
    reference_backward,
    reference_norm,
    round_to,
    stat_dtype,
    to_f64,
)

NUMPY = Lib("numpy")


# ---------------------------------------------------------------------------------------------
# The one driver: run op forward (+ the plain call into NaN-padded outputs) and backward,
# compare everything with the reference.
# ---------------------------------------------------------------------------------------------


def _grad_scales(op: RowOp, case: dict, xin, stats: dict, dx_ref):
    """Magnitudes of the terms behind each gradient element (for assert_close(scale=))."""
    nd = case["nd"]
    x = np.asarray(xin, dtype=np.float64)
    norm = x.shape[x.ndim - nd :]
    ax = tuple(range(x.ndim - nd, x.ndim))
    r = stats["rstd" if op.kind == "layer" else "rrms"]
    r = np.asarray(r, dtype=np.float64).reshape(np.shape(r) + (1,) * nd)
    xhat = (x - (np.asarray(stats["mean"]).reshape(r.shape) if op.kind == "layer" else 0.0)) * r
    dy = case["dy"]
    w = 1.0 if case["weight"] is None else case["weight"].reshape(norm) + case["weight_offset"]
    # x̂ is formed from x and μ: its error scales with (|x| + |μ|)·rstd, not |x̂| (a large
    # mean costs digits even in the float64 reference), as for y (_y_scale).
    if op.kind == "layer":
        xhat = (np.abs(x) + np.abs(np.asarray(stats["mean"]).reshape(r.shape))) * r
    g = np.abs(dy * w)
    dx_scale = r * (
        g
        + g.mean(axis=ax, keepdims=True)
        + np.abs(xhat) * (g * np.abs(xhat)).mean(axis=ax, keepdims=True)
    )
    if case.get("ds") is not None:
        dx_scale = dx_scale + np.abs(case["ds"])
    rows = lambda t: t.reshape((-1,) + norm).sum(axis=0)  # noqa: E731
    return {
        "dx": dx_scale,
        "dresidual": abs(case["residual_scale"]) * dx_scale,
        "dweight": rows(np.abs(dy * xhat)),
        "dbias": rows(np.abs(dy)),
        "dx_bias": rows(dx_scale) if dx_ref is not None else None,
    }


def check_case(
    op,
    shape,
    nd,
    dtype,
    cfg,
    lib=NUMPY,
    *,
    layout="contiguous",
    seed=0,
    plain=True,
    backward=True,
    x_mean=0.25,
    x_std=1.0,
):
    """Forward, plain call and backward of one case, each checked against the reference."""
    op = OPS[op] if isinstance(op, str) else op
    shape = tuple(shape)
    case = make_case(op, shape, nd, dtype, cfg, seed, x_mean=x_mean, x_std=x_std)
    pdt = case["param_dtype"]
    lead = shape[: len(shape) - nd]
    sdt = stat_dtype(dtype)
    arrays = {
        k: lib.layout(case[k], dtype, layout, nd)
        for k in ("x", "residual", "dy", "ds")
        if case[k] is not None
    }
    arrays.update(
        {k: lib.asarray(case[k], pdt) for k in ("weight", "bias", "x_bias") if case[k] is not None}
    )
    x_before = to_f64(arrays["x"])

    # -- forward ------------------------------------------------------------------------
    fw = kernel_forward(nk, op, case, arrays)
    for name, v in fw.items():
        assert lib.is_array(v), f"{name}: expected a {lib} array, got {type(v)}"
        want_shape, want_dtype = (shape, dtype) if name in ("y", "s") else (lead, sdt)
        assert tuple(v.shape) == want_shape, f"{name}: shape {tuple(v.shape)} != {want_shape}"
        assert dtype_of(v) == want_dtype, f"{name}: dtype {dtype_of(v)} != {want_dtype}"
    np.testing.assert_array_equal(to_f64(arrays["x"]), x_before, err_msg="x was modified")
    if op.fused:
        s_ref = fused_residual(
            case["x"], case["residual"], case["residual_scale"], case["x_bias"], dtype
        )
        s_scale = np.abs(case["x"]) + np.abs(case["residual"] * case["residual_scale"])
        if case["x_bias"] is not None:
            s_scale = s_scale + np.abs(case["x_bias"])
        assert_close(fw["s"], s_ref, dtype, "s", scale=s_scale)
        xin = to_f64(fw["s"])  # the norm is checked on the kernel's own (rounded) s
    else:
        xin = case["x"]
    ref = reference_norm(op, case, xin)
    assert_close(fw["y"], ref["y"], dtype, "y", scale=_y_scale(op, case, xin, ref))
    for name in op.stats:
        # mean is a sum of |x|-sized terms; rstd's σ² is a sum of squares (well conditioned)
        scale = (
            np.abs(xin).mean(axis=tuple(range(len(lead), len(shape)))) if name == "mean" else None
        )
        assert_close(fw[name], ref[name], sdt, name, scale=scale)

    # -- plain call into NaN-filled, padded outputs --------------------------------------
    if plain:
        _check_plain(op, case, arrays, lib, shape, nd, dtype, xin, ref)

    # -- backward -----------------------------------------------------------------------
    if not backward:
        return
    saved = {k: fw[k] for k in op.stats}
    if op.fused:
        saved["s"] = lib.layout(xin, dtype, layout, nd)
    else:
        saved["x"] = arrays["x"]
    bw = kernel_backward(nk, op, case, arrays, saved)
    # The gradient of the exact function: the reference's float64 statistics, not the
    # kernel's saved float32 ones (the kernel recovers the part of the mean that float32
    # cannot hold from the data — Note [Corrected two-pass]).
    stats64 = {k: np.asarray(ref[k], np.float64) for k in op.stats}
    rb = reference_backward(op, case, xin, stats64)
    scales = _grad_scales(op, case, xin, stats64, rb.get("dx_bias"))
    for name, want in rb.items():
        got = bw[name]
        if want is None:
            assert got is None, f"{name}: expected None (parameter absent), got {type(got)}"
            continue
        assert got is not None, f"{name}: expected a gradient, got None"
        assert lib.is_array(got), f"{name}: expected a {lib} array, got {type(got)}"
        out_dtype = dtype if name in ("dx", "dresidual") else pdt
        assert dtype_of(got) == out_dtype, f"{name}: dtype {dtype_of(got)} != {out_dtype}"
        assert tuple(got.shape) == np.shape(
            want
        ), f"{name}: shape {tuple(got.shape)} != {np.shape(want)}"
        assert_close(got, want, out_dtype, name, scale=scales[name], compute=stat_dtype(dtype))


def _y_scale(op, case, xin, ref):
    """|x − μ| is formed from x and μ: its error scales with (|x| + |μ|)·rstd·|γ|."""
    if op.kind != "layer":
        return None
    nd = case["nd"]
    x = np.asarray(xin)
    norm = x.shape[x.ndim - nd :]
    mean = np.asarray(ref["mean"]).reshape(np.shape(ref["mean"]) + (1,) * nd)
    rstd = np.asarray(ref["rstd"]).reshape(mean.shape)
    w = 1.0 if case["weight"] is None else np.abs(case["weight"]).reshape(norm)
    return (np.abs(x) + np.abs(mean)) * rstd * w


def _same_buffer(lib, a, b):
    """a is (a view of) b's memory; zero-size arrays own no memory to compare."""
    return int(np.prod(tuple(a.shape))) == 0 or lib.shares_memory(a, b)


def _check_plain(op, case, arrays, lib, shape, nd, dtype, xin, ref):
    out, obuf = lib.nan_out(shape, dtype, nd)
    if op.fused:
        rout, rbuf = lib.nan_out(shape, dtype, nd)
        res = kernel_call(nk, op, case, arrays, out=out, residual_out=rout, return_residual=True)
        assert isinstance(res, tuple) and len(res) == 2, "return_residual=True: expected (y, s)"
        y, s = res
        assert _same_buffer(lib, s, rout), "s was not returned in residual_out"
        assert not np.isnan(to_f64(rout)).any(), "residual_out: elements left unwritten (NaN)"
        assert lib.padding_intact(rbuf, rout), "residual_out: wrote outside the view"
        np.testing.assert_array_equal(
            to_f64(rout), xin, err_msg="residual_out differs from forward's s"
        )
    else:
        y = kernel_call(nk, op, case, arrays, out=out)
    assert _same_buffer(lib, y, out), "the result was not returned in out"
    assert not np.isnan(to_f64(out)).any(), "out: elements left unwritten (NaN)"
    assert lib.padding_intact(obuf, out), "out: wrote outside the view"
    assert_close(out, ref["y"], dtype, "out", scale=_y_scale(op, case, xin, ref))
    # Without out= (and, fused, without return_residual): one new array.
    y2 = kernel_call(nk, op, case, arrays)
    assert lib.is_array(y2), f"expected one {lib} array, got {type(y2)}"
    assert dtype_of(y2) == dtype and tuple(y2.shape) == tuple(shape)
    assert_close(y2, ref["y"], dtype, "y (no out=)", scale=_y_scale(op, case, xin, ref))


# ---------------------------------------------------------------------------------------------
# The reference itself, and float64 kernels, against finite differences
# ---------------------------------------------------------------------------------------------

FD_SHAPES = [((3, 5), 1), ((2, 2, 3), 2)]


def _variants64(op):
    return config_variants(OPS[op], "float64")


def _kernel_loss(op, case):
    def loss(**a):
        c = dict(case, **a)
        arrays = {
            k: c[k] for k in ("x", "residual", "weight", "bias", "x_bias") if c[k] is not None
        }
        fw = kernel_forward(nk, op, c, arrays)
        val = float(np.sum(to_f64(fw["y"]) * c["dy"]))
        if op.fused and c["ds"] is not None:
            val += float(np.sum(to_f64(fw["s"]) * c["ds"]))
        return val

    return loss


@pytest.mark.parametrize("shape,nd", FD_SHAPES, ids=["3x5", "2x2x3_nd2"])
@pytest.mark.parametrize("op", OP_NAMES)
def test_kernel_backward_matches_finite_differences(op, shape, nd):
    """float64 kernels: backward == central differences of the kernel's own forward."""
    o = OPS[op]
    for cfg in _variants64(op):
        case = make_case(o, shape, nd, "float64", cfg, seed=2)
        arrays = {
            k: case[k]
            for k in ("x", "residual", "weight", "bias", "x_bias", "dy", "ds")
            if case[k] is not None
        }
        fw = kernel_forward(nk, o, case, arrays)
        saved = {k: fw[k] for k in o.stats}
        saved["s" if o.fused else "x"] = fw["s"] if o.fused else arrays["x"]
        bw = kernel_backward(nk, o, case, arrays, saved)
        for inp, grad in grad_inputs(o, case):
            fd = numerical_grad(_kernel_loss(o, case), {inp: case[inp]}, inp)
            np.testing.assert_allclose(
                to_f64(bw[grad]), fd, rtol=1e-6, atol=1e-7, err_msg=f"{cfg.label()} d{inp}"
            )


# ---------------------------------------------------------------------------------------------
# Every op × dtype × ISA × odd row lengths (vector width ± 1 for every ISA's width)
# ---------------------------------------------------------------------------------------------

ODD_H = [1, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 65, 129, 1000]


@pytest.mark.parametrize("H", ODD_H, ids=lambda h: f"H{h}")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op", OP_NAMES)
def test_odd_row_lengths(op, dtype, H, lib):
    for i, cfg in enumerate(config_variants(OPS[op], dtype)):
        check_case(op, (3, H), 1, dtype, cfg, lib, seed=H + i, plain=(i < 2))


BIG_H = [
    (4097, "float32"),
    (4097, "bfloat16"),
    (4097, "float16"),
    (4097, "float64"),
    (65536, "float32"),
    (65536, "bfloat16"),
]


@pytest.mark.parametrize("H,dtype", BIG_H, ids=[f"H{h}-{d}" for h, d in BIG_H])
@pytest.mark.parametrize("op", OP_NAMES)
def test_long_rows(op, H, dtype, lib):
    cfg = config_variants(OPS[op], dtype)[0]
    check_case(op, (3, H), 1, dtype, cfg, lib, seed=H)


# ---------------------------------------------------------------------------------------------
# Shapes: one row, a vector, many tiny rows, 3-D, multi-dim rows
# ---------------------------------------------------------------------------------------------

# name: (shape, nd, Config overrides)
SHAPES = {
    "one_row": ((1, 37), 1, {}),
    "vector": ((65,), 1, {}),
    "tiny_rows": ((5000, 3), 1, {}),
    "3d": ((2, 5, 17), 1, {}),
    "nd2_from_weight": ((3, 5, 4, 6), 2, {"weight": True}),  # weight (4, 6) decides the row dims
    "nd2_normalized_shape": (
        (3, 4, 6),
        2,
        {"weight": False, "bias": False, "normalized_shape": (4, 6)},
    ),
    "nd2_shape_and_weight": ((2, 3, 4, 6), 2, {"normalized_shape": (4, 6)}),
    "nd1_int": ((2, 3, 6), 1, {"normalized_shape": 6}),
    "nd3": ((2, 3, 4, 5), 3, {"normalized_shape": (3, 4, 5)}),
    "nd_all": ((4, 6), 2, {"normalized_shape": (4, 6)}),
}


@pytest.mark.parametrize("shape_name", list(SHAPES))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op", OP_NAMES)
def test_shapes(op, dtype, shape_name, lib):
    shape, nd, over = SHAPES[shape_name]
    base = config_variants(OPS[op], dtype)
    for i, cfg in enumerate((base[0], base[3])):
        fields = dict(cfg.__dict__, **over)
        if not fields["weight"]:
            fields["weight_offset"] = 0.0
        check_case(op, shape, nd, dtype, Config(**fields), lib, seed=i, plain=(i == 0))


# ---------------------------------------------------------------------------------------------
# Memory layouts; outputs with NaN padding are in every check_case
# ---------------------------------------------------------------------------------------------


def _check_layout(op, shape, nd, dtype, cfg, lib, layout, seed):
    if layout == "trailing_noncontig" and lib.name == "emu":
        # Arrays of other DLPack libraries (CuPy, JAX; here the emulation build's device
        # arrays) are never copied behind the caller's back (_arrays.compact_rows): normalized
        # dims that are not contiguous are a ValueError that says so. NumPy and torch inputs
        # get one contiguous copy (the other libs of this test).
        with pytest.raises(ValueError, match="contiguous"):
            check_case(op, shape, nd, dtype, cfg, lib, layout=layout, seed=seed)
        return
    check_case(op, shape, nd, dtype, cfg, lib, layout=layout, seed=seed)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op", OP_NAMES)
def test_layouts(op, dtype, layout, lib):
    cfg = config_variants(OPS[op], dtype)[0]
    _check_layout(op, (3, 4, 37), 1, dtype, cfg, lib, layout, 7)


@pytest.mark.parametrize("layout", ["row_stride", "misaligned", "trailing_noncontig"])
@pytest.mark.parametrize("op", OP_NAMES)
def test_layouts_multi_dim_rows(op, layout, lib):
    cfg = config_variants(OPS[op], "float32")[0]
    _check_layout(op, (3, 2, 4, 6), 2, "float32", cfg, lib, layout, 8)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("op", OP_NAMES)
def test_in_place(op, dtype, lib):
    """y over x (out=x) and, fused, s over residual (residual_out=residual) — exact aliasing."""
    o = OPS[op]
    cfg = config_variants(o, dtype)[0]
    shape = (6, 45)
    case = make_case(o, shape, 1, dtype, cfg, seed=3)
    pdt = case["param_dtype"]
    arrays = {k: lib.asarray(case[k], dtype) for k in ("x", "residual") if case[k] is not None}
    arrays.update(
        {k: lib.asarray(case[k], pdt) for k in ("weight", "bias", "x_bias") if case[k] is not None}
    )
    x = arrays["x"]
    if o.fused:
        r = arrays["residual"]
        y, s = kernel_call(nk, o, case, arrays, out=x, residual_out=r, return_residual=True)
        assert lib.shares_memory(y, x) and lib.shares_memory(s, r)
        s_ref = fused_residual(
            case["x"], case["residual"], case["residual_scale"], case["x_bias"], dtype
        )
        assert_close(r, s_ref, dtype, "s (in place over residual)")
        xin = to_f64(r)
    else:
        y = kernel_call(nk, o, case, arrays, out=x)
        assert lib.shares_memory(y, x)
        xin = case["x"]
    ref = reference_norm(o, case, xin)
    assert_close(x, ref["y"], dtype, "y (in place over x)")


def _unaligned(a):
    """A NumPy copy of `a` whose data pointer is one byte past an element boundary."""
    raw = np.zeros(a.nbytes + 1, np.uint8)
    u = np.frombuffer(raw.data, dtype=a.dtype, count=a.size, offset=1).reshape(a.shape)
    u[...] = a
    assert not u.flags.aligned
    return u


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op", OP_NAMES)
def test_byte_misaligned_numpy_arrays(op, dtype):
    """Arrays not aligned to their element size (np.frombuffer at an odd offset): the result
    is right whether the library reads them in place or copies them."""
    o = OPS[op]
    cfg = config_variants(o, dtype)[0]
    case = make_case(o, (5, 41), 1, dtype, cfg, seed=12)
    pdt = case["param_dtype"]
    arrays = {
        k: _unaligned(NUMPY.asarray(case[k], dtype))
        for k in ("x", "residual", "dy", "ds")
        if case[k] is not None
    }
    arrays.update(
        {
            k: _unaligned(NUMPY.asarray(case[k], pdt))
            for k in ("weight", "bias", "x_bias")
            if case[k] is not None
        }
    )
    fw = kernel_forward(nk, o, case, arrays)
    xin = to_f64(fw["s"]) if o.fused else case["x"]
    ref = reference_norm(o, case, xin)
    assert_close(fw["y"], ref["y"], dtype, "y")
    out = _unaligned(np.full((5, 41), np.nan, NUMPY.asarray(np.zeros(1), dtype).dtype))
    kernel_call(nk, o, case, arrays, out=out)
    assert_close(out, ref["y"], dtype, "out (unaligned)")
    saved = {k: fw[k] for k in o.stats}
    saved["s" if o.fused else "x"] = _unaligned(fw["s"]) if o.fused else arrays["x"]
    bw = kernel_backward(nk, o, case, arrays, saved)
    rb = reference_backward(o, case, xin, {k: to_f64(fw[k]) for k in o.stats})
    assert_close(bw["dx"], rb["dx"], dtype, "dx")


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float64"])
@pytest.mark.parametrize("op", OP_NAMES)
def test_strided_parameters(op, dtype, lib):
    """weight / bias / x_bias given as strided views (w[::2]) work like contiguous ones, on
    every path (plain call with and without out=, forward, backward)."""
    o = OPS[op]
    cfg = config_variants(o, dtype)[0]
    case = make_case(o, (4, 24), 1, dtype, cfg, seed=13)
    pdt = case["param_dtype"]
    arrays = {
        k: lib.asarray(case[k], dtype) for k in ("x", "residual", "dy", "ds") if case[k] is not None
    }
    for k in ("weight", "bias", "x_bias"):
        if case[k] is not None:
            arrays[k] = lib.layout(case[k], pdt, "trailing_noncontig", 1)
    xin = (
        fused_residual(case["x"], case["residual"], case["residual_scale"], case["x_bias"], dtype)
        if o.fused
        else case["x"]
    )
    ref = reference_norm(o, case, xin)
    if lib.name == "emu":
        # Other DLPack libraries' arrays are not copied (see _check_layout): a clear error.
        with pytest.raises(ValueError, match="contiguous"):
            kernel_call(nk, o, case, arrays)
        return
    assert_close(kernel_call(nk, o, case, arrays), ref["y"], dtype, "y (plain)")
    out, _ = lib.nan_out((4, 24), dtype, 1)
    kernel_call(nk, o, case, arrays, out=out)
    assert_close(out, ref["y"], dtype, "y (out=)")
    fw = kernel_forward(nk, o, case, arrays)
    assert_close(fw["y"], ref["y"], dtype, "y (forward)")
    saved = {k: fw[k] for k in o.stats}
    saved["s" if o.fused else "x"] = fw["s"] if o.fused else arrays["x"]
    bw = kernel_backward(nk, o, case, arrays, saved)
    rb = reference_backward(
        o, case, to_f64(fw["s"]) if o.fused else case["x"], {k: to_f64(fw[k]) for k in o.stats}
    )
    for k in ("dx", "dweight"):
        assert_close(bw[k], rb[k], dtype if k == "dx" else pdt, k, scale=np.abs(rb[k]) + 1)


@pytest.mark.parametrize("dtype", HALF_DTYPES)
@pytest.mark.parametrize("op", OP_NAMES)
def test_parameters_of_different_dtypes(op, dtype, lib):
    """With 16-bit x each parameter may independently be float32 or x's dtype."""
    o = OPS[op]
    case = make_case(o, (6, 40), 1, dtype, config_variants(o, dtype)[0], seed=14)
    for combo in [("float32", dtype, "float32"), (dtype, "float32", dtype)]:
        arrays = {
            k: lib.asarray(case[k], dtype)
            for k in ("x", "residual", "dy", "ds")
            if case[k] is not None
        }
        c = dict(case)
        for k, pdt in zip(("weight", "bias", "x_bias"), combo):
            if case[k] is not None:
                c[k] = case[k] if pdt == "float32" else round_to(case[k], dtype)
                arrays[k] = lib.asarray(c[k], pdt)
        fw = kernel_forward(nk, o, c, arrays)
        xin = to_f64(fw["s"]) if o.fused else c["x"]
        assert_close(fw["y"], reference_norm(o, c, xin)["y"], dtype, f"y {combo}")
        saved = {k: fw[k] for k in o.stats}
        saved["s" if o.fused else "x"] = fw["s"] if o.fused else arrays["x"]
        bw = kernel_backward(nk, o, c, arrays, saved)
        for k, p in (("dweight", "weight"), ("dbias", "bias"), ("dx_bias", "x_bias")):
            if k in bw and c[p] is not None:
                assert dtype_of(bw[k]) == dtype_of(arrays[p]), f"{k}: dtype follows {p}"


@pytest.mark.parametrize("op", ["add_layer_norm", "add_rms_norm"])
def test_forward_residual_out(op, lib):
    """add_*_forward(residual_out=buf) writes s into buf (also in place over residual)."""
    o = OPS[op]
    case = make_case(o, (5, 33), 1, "float32", config_variants(o, "float32")[0], seed=15)
    arrays = {
        k: lib.asarray(case[k], "float32")
        for k in ("x", "residual", "weight", "bias", "x_bias")
        if case[k] is not None
    }
    s_ref = fused_residual(
        case["x"], case["residual"], case["residual_scale"], case["x_bias"], "float32"
    )
    buf, pad = lib.nan_out((5, 33), "float32", 1)
    kw = dict(
        weight=arrays["weight"],
        bias=arrays["bias"],
        x_bias=arrays["x_bias"],
        residual_scale=case["residual_scale"],
        residual_out=buf,
    )
    if o.kind == "rms":
        kw["weight_offset"] = case["weight_offset"]
    res = getattr(nk, op + "_forward")(arrays["x"], arrays["residual"], **kw)
    assert lib.shares_memory(res[1], buf)
    assert lib.padding_intact(pad, buf)
    assert_close(buf, s_ref, "float32", "s in residual_out")
    kw["residual_out"] = arrays["residual"]
    res = getattr(nk, op + "_forward")(arrays["x"], arrays["residual"], **kw)
    assert_close(arrays["residual"], s_ref, "float32", "s in place over residual")
    assert_close(res[0], reference_norm(o, case, to_f64(res[1]))["y"], "float32", "y")


# ---------------------------------------------------------------------------------------------
# Inputs with a large mean (mean/std ~ 1e4 in float32/64; 16-bit inputs keep a few bits of
# spread so their rows are not constant after rounding)
# ---------------------------------------------------------------------------------------------

LARGE_MEAN_STD = {"float64": 1.0, "float32": 1.0, "float16": 32.0, "bfloat16": 256.0}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op", OP_NAMES)
def test_large_mean(op, dtype, lib):
    cfg = config_variants(OPS[op], dtype)[0]
    check_case(op, (4, 1000), 1, dtype, cfg, lib, seed=11, x_mean=1e4, x_std=LARGE_MEAN_STD[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op", ["layer_norm", "add_layer_norm"])
def test_constant_rows(op, dtype, lib):
    """Rows of one repeated value: variance 0, so x̂ must be exactly 0: y = β, dweight = 0."""
    o = OPS[op]
    case = make_case(o, (5, 300), 1, dtype, Config(True, True), seed=4)
    case["x"] = np.repeat(np.array([0.0, 3.0, -1024.0, 0.5, 7.0])[:, None], 300, axis=1)
    if o.fused:
        case["residual"] = np.zeros_like(case["x"])
    arrays = {
        k: lib.asarray(case[k], dtype)
        for k in ("x", "residual", "weight", "bias", "dy")
        if case[k] is not None
    }
    fw = kernel_forward(nk, o, case, arrays)
    np.testing.assert_array_equal(to_f64(fw["y"]), np.broadcast_to(case["bias"], (5, 300)))
    np.testing.assert_array_equal(to_f64(fw["mean"]), case["x"][:, 0])
    saved = {
        "mean": fw["mean"],
        "rstd": fw["rstd"],
        ("s" if o.fused else "x"): fw["s"] if o.fused else arrays["x"],
    }
    bw = kernel_backward(nk, o, case, arrays, saved)
    np.testing.assert_array_equal(to_f64(bw["dweight"]), 0.0)
    stats = {"mean": to_f64(fw["mean"]), "rstd": to_f64(fw["rstd"])}
    rb = reference_backward(o, case, case["x"], stats)
    assert_close(bw["dx"], rb["dx"], dtype, "dx", scale=np.abs(rb["dx"]))


# ---------------------------------------------------------------------------------------------
# torch CPU tensors through the functional API (any DLPack array works; torch comes back)
# ---------------------------------------------------------------------------------------------

TORCH_LAYOUTS = ["contiguous", "row_stride", "transposed_lead", "misaligned", "trailing_noncontig"]


@pytest.mark.parametrize("layout", TORCH_LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op", OP_NAMES)
def test_torch_cpu_tensors(op, dtype, layout):
    pytest.importorskip("torch")
    lib = Lib("torch", "cpu")
    for i, cfg in enumerate(config_variants(OPS[op], dtype)[:2]):
        check_case(op, (2, 3, 33), 1, dtype, cfg, lib, layout=layout, seed=5 + i, plain=(i == 0))


def test_torch_requires_grad_inputs():
    """Tensors that require grad go through the functional API (values only, no autograd)."""
    torch = pytest.importorskip("torch")
    x = torch.randn(4, 16, dtype=torch.float32, requires_grad=True)
    w = torch.rand(16, requires_grad=True) + 0.5
    y = nk.layer_norm(x, weight=w)
    ref, _, _ = layer_norm_forward(to_f64(x), to_f64(w))
    assert_close(y, ref, "float32", "y")


# ---------------------------------------------------------------------------------------------
# The streaming-store path (outputs of ≥ NORMKIT_NT_BYTES, lowered to 256 KiB by conftest.py)
# with misaligned, padded outputs (whole lines streamed, the row ends in 16-byte pieces or
# ordinary stores: Note [Streaming whole lines]) and odd row lengths
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "op,dtype,shape",
    [
        ("layer_norm", "float32", (65, 4097)),
        ("add_layer_norm", "float64", (33, 4099)),
        ("rms_norm", "float16", (130, 2049)),
        ("add_rms_norm", "bfloat16", (129, 4097)),
    ],
    ids=["ln-f32", "addln-f64", "rms-f16", "addrms-bf16"],
)
def test_streaming_stores(op, dtype, shape, lib):
    nbytes = shape[0] * shape[1] * (8 if dtype == "float64" else 4 if dtype == "float32" else 2)
    assert nbytes >= int(
        os.environ.get("NORMKIT_NT_BYTES", 16 << 20)
    ), "must reach the streaming-store path"
    cfg = config_variants(OPS[op], dtype)[0]
    check_case(op, shape, 1, dtype, cfg, lib, layout="padded_rows", seed=9)


@pytest.mark.parametrize("H", [768, 1000, 1003])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op", ["layer_norm", "rms_norm"])
def test_streamed_rows_have_the_bits_of_unstreamed_ones(op, dtype, H):
    """Outputs of at least NORMKIT_NT_BYTES are streamed: whole cache lines with full vectors
    (pairs of them for 16-bit data), a row's head and tail in 16-byte pieces or ordinary
    stores by their alignment (Notes [Streaming whole lines], [Paired stores]). Whatever the
    offset of the arrays from a cache line, every row of y and dx has the bits of the same
    row computed in batches too small to stream."""
    from reference import NP_DTYPES

    npdt = NP_DTYPES[dtype]
    pdt = np.float64 if dtype == "float64" else np.float32
    es = npdt.itemsize
    threshold = int(os.environ.get("NORMKIT_NT_BYTES", 16 << 20))
    R = -(-2 * threshold // (H * es))  # twice the threshold: streamed
    small = max(1, (threshold // 4) // (H * es))  # rows per unstreamed batch
    rng = np.random.default_rng(H + es)
    x = (rng.standard_normal((R, H)) + 0.3).astype(npdt)
    dy = rng.standard_normal((R, H)).astype(npdt)
    w = (1 + 0.1 * rng.standard_normal(H)).astype(pdt)
    b = (0.1 * rng.standard_normal(H)).astype(pdt)
    rms = op == "rms_norm"

    def fwd(xa, out=None):
        if rms:
            return nk.rms_norm(xa, w, out=out)
        return nk.layer_norm(xa, w, b, out=out)

    def stats(xa):
        if rms:
            _, rr = nk.rms_norm_forward(xa, w)
            return (rr,)
        _, m, s = nk.layer_norm_forward(xa, w, b)
        return (m, s)

    def bwd(dya, xa, st, out=None):
        f = nk.rms_norm_backward if rms else nk.layer_norm_backward
        return f(dya, xa, *st, w, out=out)[0]

    st_all = stats(x)
    want_y = np.concatenate([fwd(x[i : i + small]) for i in range(0, R, small)])
    want_dx = np.concatenate(
        [
            bwd(dy[i : i + small], x[i : i + small], tuple(t[i : i + small] for t in st_all))
            for i in range(0, R, small)
        ]
    )
    def place(a, byte_off, align=64):
        raw = np.empty(a.nbytes + align + byte_off, np.uint8)
        start = (-raw.ctypes.data) % align + byte_off
        v = raw[start : start + a.nbytes].view(npdt).reshape(a.shape)
        v[...] = a
        return v

    for off in (0, 1, 8, 24):  # elements past a 64-byte boundary
        y = place(np.zeros_like(x), off * es)
        fwd(place(x, off * es), out=y)
        assert y.tobytes() == want_y.tobytes(), f"y, arrays {off} elements past a line"
        dx = place(np.zeros_like(x), off * es)
        bwd(place(dy, off * es), place(x, off * es), st_all, out=(dx, None, None))
        assert dx.tobytes() == want_dx.tobytes(), f"dx, arrays {off} elements past a line"
    # Note [Walk away from aliased stores]: outputs a little ahead of their inputs mod 4 KiB
    # are walked down the row (y − x ≡ 32, 96 bytes; dx ahead of dy and x, or of one only).
    for xo, dyo, yo in ((0, 0, 32), (16, 16, 112), (64, 0, 48), (4000, 4000, 32)):
        y = place(np.zeros_like(x), yo, 4096)
        fwd(place(x, xo, 4096), out=y)
        assert y.tobytes() == want_y.tobytes(), f"y at {yo}, x at {xo} bytes mod 4096"
        dx = place(np.zeros_like(x), yo, 4096)
        bwd(place(dy, dyo, 4096), place(x, xo, 4096), st_all, out=(dx, None, None))
        assert dx.tobytes() == want_dx.tobytes(), f"dx at {yo}, dy at {dyo}, x at {xo} mod 4096"


# ---------------------------------------------------------------------------------------------
# Property test: random shapes, strides, offsets, dtypes, features
# ---------------------------------------------------------------------------------------------


@st.composite
def _cases(draw):
    op = draw(st.sampled_from(OP_NAMES))
    dtype = draw(st.sampled_from(DTYPES))
    nlead = draw(st.integers(0, 2))
    lead = tuple(draw(st.integers(0 if nlead else 1, 5)) for _ in range(nlead))
    H = draw(st.integers(1, 80))
    layout = draw(st.sampled_from(LAYOUTS))
    o = OPS[op]
    cfg = Config(
        weight=draw(st.booleans()),
        bias=draw(st.booleans()),
        mixed=draw(st.booleans()),
        residual_scale=draw(st.sampled_from([1.0, 0.5, -1.5])) if o.fused else 1.0,
        x_bias=draw(st.booleans()) if o.fused else False,
        ds=draw(st.booleans()) if o.fused else False,
    )
    if o.kind == "rms" and cfg.weight and draw(st.booleans()):
        cfg = Config(**dict(cfg.__dict__, weight_offset=1.0))
    return op, lead + (H,), dtype, layout, cfg, draw(st.integers(0, 2**16))


@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(_cases())
def test_property_random_shapes_and_strides(c):
    op, shape, dtype, layout, cfg, seed = c
    check_case(op, shape, 1, dtype, cfg, NUMPY, layout=layout, seed=seed)


# ---------------------------------------------------------------------------------------------
# ISA selection and build facts
# ---------------------------------------------------------------------------------------------


@pytest.mark.any_isa
def test_isa_selection_and_build_info():
    isas = nk.available_cpu_isas()
    assert isinstance(isas, list) and "scalar" in isas
    assert set(isas) <= {"scalar", "avx2", "avx512", "avx512bf16", "neon"}
    before = nk.cpu_isa()
    assert before in isas
    try:
        for isa in isas:
            nk.set_cpu_isa(isa)
            assert nk.cpu_isa() == isa
    finally:
        nk.set_cpu_isa(before)
    info = nk.build_info()
    for key in ("version", "cpu_isas", "cuda", "cuda_archs", "compiler"):
        assert key in info, f"build_info() lacks {key!r}"
    assert set(isas) <= set(info["cpu_isas"])
    # True / False, or "emulated" in the test-only emulation build (cuda/emu)
    assert isinstance(info["cuda"], bool) or info["cuda"] == "emulated"
    assert (info["cuda"] == "emulated") == (info["cuda_archs"] == ["emulated"])
    assert isinstance(nk.cuda_available(), bool)
    assert not nk.cuda_available() or info["cuda"]
    assert isinstance(nk.get_num_threads(), int) and nk.get_num_threads() >= 1


def test_tolerance_table_covers_every_dtype():
    assert set(TOLERANCE) == set(DTYPES)
    assert set(HALF_DTYPES) < set(DTYPES)
