"""Bad input raises ValueError / TypeError whose message names the argument (SPEC §0)."""

from __future__ import annotations

import numpy as np
import pytest

import normkit as nk
from reference import BF16

pytestmark = pytest.mark.any_isa  # validation happens before any kernel runs

F32 = np.float32
RNG = np.random.default_rng(0)


def _a(shape, dtype=F32):
    return RNG.standard_normal(shape).astype(dtype)


X = _a((4, 8))
W = _a((8,))
DY = _a((4, 8))
MEAN = np.zeros(4, F32)
RSTD = np.ones(4, F32)


def _readonly(a):
    a = a.copy()
    a.setflags(write=False)
    return a


BAD_EPS = [-1e-5, float("nan"), float("inf"), -float("inf")]

# (id, callable, exception type(s), regex the message must contain)
CASES = [
    # ---- shapes ------------------------------------------------------------------------
    ("ln-weight-shape", lambda: nk.layer_norm(X, weight=_a((7,))), ValueError, "weight"),
    (
        "ln-weight-too-many-dims",
        lambda: nk.layer_norm(X, weight=_a((2, 4, 8))),
        ValueError,
        "weight",
    ),
    ("ln-bias-shape", lambda: nk.layer_norm(X, weight=W, bias=_a((9,))), ValueError, "bias"),
    ("ln-bias-shape-no-weight", lambda: nk.layer_norm(X, bias=_a((9,))), ValueError, "bias"),
    ("rms-weight-shape", lambda: nk.rms_norm(X, weight=_a((4,))), ValueError, "weight"),
    ("rms-bias-shape", lambda: nk.rms_norm(X, weight=W, bias=_a((3,))), ValueError, "bias"),
    ("add-ln-residual-shape", lambda: nk.add_layer_norm(X, _a((4, 7))), ValueError, "residual"),
    ("add-ln-residual-rows", lambda: nk.add_layer_norm(X, _a((5, 8))), ValueError, "residual"),
    ("add-rms-residual-shape", lambda: nk.add_rms_norm(X, _a((8,))), ValueError, "residual"),
    ("add-ln-x_bias-shape", lambda: nk.add_layer_norm(X, X, x_bias=_a((7,))), ValueError, "x_bias"),
    (
        "add-rms-x_bias-shape",
        lambda: nk.add_rms_norm(X, X, x_bias=_a((4, 8))),
        ValueError,
        "x_bias",
    ),
    ("ln-x-0d", lambda: nk.layer_norm(np.ones((), F32)), ValueError, "x|normalized_shape"),
    ("ln-x-numpy-scalar", lambda: nk.layer_norm(np.float32(1.0)), (TypeError, ValueError), "x"),
    # ---- normalized_shape ----------------------------------------------------------------
    (
        "ns-mismatch",
        lambda: nk.layer_norm(X, normalized_shape=(7,)),
        ValueError,
        "normalized_shape",
    ),
    ("ns-int-mismatch", lambda: nk.rms_norm(X, normalized_shape=5), ValueError, "normalized_shape"),
    (
        "ns-too-long",
        lambda: nk.layer_norm(X, normalized_shape=(2, 4, 8)),
        ValueError,
        "normalized_shape",
    ),
    (
        "ns-inner-mismatch",
        lambda: nk.layer_norm(_a((2, 3, 8)), normalized_shape=(4, 8)),
        ValueError,
        "normalized_shape",
    ),
    ("ns-empty", lambda: nk.layer_norm(X, normalized_shape=()), ValueError, "normalized_shape"),
    (
        "ns-vs-weight",
        lambda: nk.layer_norm(_a((2, 4, 8)), weight=W, normalized_shape=(4, 8)),
        ValueError,
        "normalized_shape|weight",
    ),
    (
        "ns-add",
        lambda: nk.add_rms_norm(X, X, normalized_shape=(3,)),
        ValueError,
        "normalized_shape",
    ),
    # ---- dtypes --------------------------------------------------------------------------
    ("x-int32", lambda: nk.layer_norm(X.astype(np.int32)), TypeError, "x"),
    ("x-int64-rms", lambda: nk.rms_norm(X.astype(np.int64)), TypeError, "x"),
    ("x-complex", lambda: nk.layer_norm(X.astype(np.complex64)), TypeError, "x"),
    ("x-bool", lambda: nk.rms_norm(X > 0), TypeError, "x"),
    ("x-object", lambda: nk.layer_norm(object()), TypeError, "x"),
    ("weight-int32", lambda: nk.layer_norm(X, weight=W.astype(np.int32)), TypeError, "weight"),
    (
        "weight-f16-for-f32-x",
        lambda: nk.layer_norm(X, weight=W.astype(np.float16)),
        (TypeError, ValueError),
        "weight",
    ),
    (
        "weight-f64-for-f32-x",
        lambda: nk.rms_norm(X, weight=W.astype(np.float64)),
        (TypeError, ValueError),
        "weight",
    ),
    (
        "weight-bf16-for-f16-x",
        lambda: nk.layer_norm(X.astype(np.float16), weight=W.astype(BF16)),
        (TypeError, ValueError),
        "weight",
    ),
    (
        "bias-f64-for-f32-x",
        lambda: nk.layer_norm(X, bias=W.astype(np.float64)),
        (TypeError, ValueError),
        "bias",
    ),
    (
        "residual-dtype",
        lambda: nk.add_layer_norm(X, X.astype(np.float64)),
        (TypeError, ValueError),
        "residual",
    ),
    (
        "residual-int",
        lambda: nk.add_rms_norm(X, X.astype(np.int32)),
        (TypeError, ValueError),
        "residual",
    ),
    (
        "x_bias-dtype",
        lambda: nk.add_layer_norm(X, X, x_bias=W.astype(np.float16)),
        (TypeError, ValueError),
        "x_bias",
    ),
    # ---- scalars -------------------------------------------------------------------------
    *[(f"ln-eps-{e}", (lambda e=e: nk.layer_norm(X, eps=e)), ValueError, "eps") for e in BAD_EPS],
    *[(f"rms-eps-{e}", (lambda e=e: nk.rms_norm(X, eps=e)), ValueError, "eps") for e in BAD_EPS],
    *[
        (f"add-ln-eps-{e}", (lambda e=e: nk.add_layer_norm(X, X, eps=e)), ValueError, "eps")
        for e in BAD_EPS[:2]
    ],
    *[
        (f"add-rms-eps-{e}", (lambda e=e: nk.add_rms_norm(X, X, eps=e)), ValueError, "eps")
        for e in BAD_EPS[1:3]
    ],
    *[
        (f"fwd-eps-{e}", (lambda e=e: nk.layer_norm_forward(X, eps=e)), ValueError, "eps")
        for e in BAD_EPS[:2]
    ],
    *[
        (
            f"add-ln-scale-{v}",
            (lambda v=v: nk.add_layer_norm(X, X, residual_scale=v)),
            ValueError,
            "residual_scale",
        )
        for v in (float("nan"), float("inf"))
    ],
    *[
        (
            f"add-rms-scale-{v}",
            (lambda v=v: nk.add_rms_norm_forward(X, X, residual_scale=v)),
            ValueError,
            "residual_scale",
        )
        for v in (float("nan"), -float("inf"))
    ],
    (
        "rms-offset-without-weight",
        lambda: nk.rms_norm(X, weight_offset=1.0),
        ValueError,
        "weight_offset",
    ),
    # ---- out= / residual_out= ---------------------------------------------------------------
    ("out-readonly", lambda: nk.layer_norm(X, out=_readonly(X)), ValueError, "out"),
    ("out-readonly-rms", lambda: nk.rms_norm(X, out=_readonly(X)), ValueError, "out"),
    ("out-shape", lambda: nk.layer_norm(X, out=np.empty((4, 9), F32)), ValueError, "out"),
    ("out-shape-rows", lambda: nk.rms_norm(X, out=np.empty((3, 8), F32)), ValueError, "out"),
    (
        "out-dtype",
        lambda: nk.layer_norm(X, out=np.empty((4, 8), np.float64)),
        (TypeError, ValueError),
        "out",
    ),
    (
        "out-dtype-bf16",
        lambda: nk.rms_norm(X, out=np.empty((4, 8), BF16)),
        (TypeError, ValueError),
        "out",
    ),
    (
        "out-rows-not-contiguous",
        lambda: nk.layer_norm(X, out=np.empty((4, 16), F32)[:, ::2]),
        ValueError,
        "out",
    ),
    ("out-add", lambda: nk.add_layer_norm(X, X, out=_readonly(X)), ValueError, "out"),
    (
        "residual_out-readonly",
        lambda: nk.add_layer_norm(X, X, residual_out=_readonly(X)),
        ValueError,
        "residual_out",
    ),
    (
        "residual_out-shape",
        lambda: nk.add_rms_norm(X, X, residual_out=np.empty((4, 7), F32), return_residual=True),
        ValueError,
        "residual_out",
    ),
    (
        "residual_out-dtype",
        lambda: nk.add_rms_norm_forward(X, X, residual_out=np.empty((4, 8), np.float16)),
        (TypeError, ValueError),
        "residual_out",
    ),
    # ---- backward --------------------------------------------------------------------------
    (
        "ln-bwd-mean-rows",
        lambda: nk.layer_norm_backward(DY, X, np.zeros(5, F32), RSTD),
        ValueError,
        "mean",
    ),
    (
        "ln-bwd-rstd-rows",
        lambda: nk.layer_norm_backward(DY, X, MEAN, np.ones(3, F32)),
        ValueError,
        "rstd",
    ),
    (
        "ln-bwd-mean-dtype",
        lambda: nk.layer_norm_backward(DY, X, MEAN.astype(np.float64), RSTD),
        (TypeError, ValueError),
        "mean",
    ),
    (
        "ln-bwd-rstd-dtype",
        lambda: nk.layer_norm_backward(DY, X, MEAN, RSTD.astype(np.float16)),
        (TypeError, ValueError),
        "rstd",
    ),
    (
        "ln-bwd-mean-too-many-dims",
        lambda: nk.layer_norm_backward(DY, X, np.zeros((4, 8, 1), F32), RSTD),
        ValueError,
        "mean|rstd",
    ),
    (
        "ln-bwd-mean-same-ndim",
        lambda: nk.layer_norm_backward(DY, X, np.zeros((4, 8), F32), np.ones((4, 8), F32)),
        ValueError,
        "mean|rstd",
    ),
    (
        "ln-bwd-dy-shape",
        lambda: nk.layer_norm_backward(_a((4, 7)), X, MEAN, RSTD),
        ValueError,
        "dy",
    ),
    (
        "ln-bwd-dy-dtype",
        lambda: nk.layer_norm_backward(DY.astype(np.float64), X, MEAN, RSTD),
        (TypeError, ValueError),
        "dy",
    ),
    (
        "ln-bwd-weight-shape",
        lambda: nk.layer_norm_backward(DY, X, MEAN, RSTD, weight=_a((7,))),
        ValueError,
        "weight",
    ),
    (
        "ln-bwd-x-int",
        lambda: nk.layer_norm_backward(DY, X.astype(np.int32), MEAN, RSTD),
        TypeError,
        "x",
    ),
    ("rms-bwd-rrms-rows", lambda: nk.rms_norm_backward(DY, X, np.ones(6, F32)), ValueError, "rrms"),
    (
        "rms-bwd-rrms-dtype",
        lambda: nk.rms_norm_backward(DY, X, np.ones(4, np.float64)),
        (TypeError, ValueError),
        "rrms",
    ),
    (
        "rms-bwd-weight-shape",
        lambda: nk.rms_norm_backward(DY, X, RSTD, weight=_a((9,))),
        ValueError,
        "weight",
    ),
    (
        "rms-bwd-offset-without-weight",
        lambda: nk.rms_norm_backward(DY, X, RSTD, weight_offset=1.0),
        ValueError,
        "weight_offset",
    ),
    (
        "add-ln-bwd-ds-shape",
        lambda: nk.add_layer_norm_backward(DY, X, MEAN, RSTD, ds=_a((4, 9))),
        ValueError,
        "ds",
    ),
    (
        "add-ln-bwd-ds-dtype",
        lambda: nk.add_layer_norm_backward(DY, X, MEAN, RSTD, ds=DY.astype(np.float16)),
        (TypeError, ValueError),
        "ds",
    ),
    (
        "add-rms-bwd-ds-shape",
        lambda: nk.add_rms_norm_backward(DY, X, RSTD, ds=_a((3, 8))),
        ValueError,
        "ds",
    ),
    (
        "add-ln-bwd-x_bias-shape",
        lambda: nk.add_layer_norm_backward(DY, X, MEAN, RSTD, x_bias=_a((5,))),
        ValueError,
        "x_bias",
    ),
    (
        "add-rms-bwd-scale",
        lambda: nk.add_rms_norm_backward(DY, X, RSTD, residual_scale=float("nan")),
        ValueError,
        "residual_scale",
    ),
    (
        "add-rms-bwd-rrms",
        lambda: nk.add_rms_norm_backward(DY, X, np.ones((4, 1), F32)),
        ValueError,
        "rrms",
    ),
]


@pytest.mark.parametrize("fn,exc,match", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_names_the_argument(fn, exc, match):
    with pytest.raises(exc, match=match):
        fn()


def test_bad_input_is_not_a_crash_for_every_error_class():
    """The exception types are plain ValueError/TypeError (subclasses allowed)."""
    with pytest.raises(ValueError) as e:
        nk.layer_norm(X, weight=_a((7,)))
    assert isinstance(e.value, ValueError)
    assert (
        "weight" in str(e.value) and len(str(e.value)) > len("weight") + 10
    ), "say what was expected"


def test_read_only_inputs_are_fine():
    """Only outputs must be writable: read-only x, weight, bias, residual work."""
    x, w, r = _readonly(X), _readonly(W), _readonly(X)
    y = nk.layer_norm(x, weight=w, bias=w)
    y2 = nk.layer_norm(X, weight=W, bias=W)
    np.testing.assert_array_equal(y, y2)
    nk.add_rms_norm(x, r, weight=w)
    nk.layer_norm_backward(_readonly(DY), x, _readonly(MEAN), _readonly(RSTD), weight=w)


def test_set_cpu_isa_rejects_unknown_and_unrunnable():
    before = nk.cpu_isa()
    try:
        with pytest.raises(ValueError, match="bogus"):
            nk.set_cpu_isa("bogus")
        not_here = [
            i for i in ("scalar", "avx2", "avx512", "avx512bf16", "neon") if i not in nk.available_cpu_isas()
        ]
        for isa in not_here:
            with pytest.raises(ValueError, match=isa):
                nk.set_cpu_isa(isa)
    finally:
        nk.set_cpu_isa(before)
    assert nk.cpu_isa() == before


def test_failed_call_leaves_out_untouched():
    """Validation happens before any memory is touched: out keeps its contents."""
    out = np.full((4, 8), 7.0, F32)
    with pytest.raises(ValueError):
        nk.add_layer_norm(X, _a((4, 7)), out=out)
    np.testing.assert_array_equal(out, 7.0)


def test_mixed_devices_torch():
    torch = pytest.importorskip("torch")
    if not (torch.cuda.is_available() and nk.cuda_available()):
        pytest.skip("needs torch CUDA tensors (a GPU); the emulation build runs test_mixed_devices")
    x = torch.randn(4, 8, device="cuda")
    with pytest.raises(ValueError, match="weight"):
        nk.layer_norm(x, weight=torch.ones(8))
    with pytest.raises(ValueError, match="residual"):
        nk.add_layer_norm(x, torch.randn(4, 8))
    with pytest.raises(ValueError, match="weight"):
        nk.layer_norm(torch.randn(4, 8), weight=torch.ones(8, device="cuda"))
    with pytest.raises(ValueError, match="weight"):
        nk.layer_norm(X, weight=torch.ones(8, device="cuda"))
    with pytest.raises(ValueError, match="out"):
        nk.rms_norm(x, out=torch.empty(4, 8))
    with pytest.raises(ValueError, match="mean|rstd"):
        nk.layer_norm_backward(x, x, torch.zeros(4), torch.ones(4, device="cuda"))


@pytest.mark.any_isa
@pytest.mark.parametrize("device", ["cuda"], indirect=True)
def test_mixed_devices(device, lib):
    """CUDA arrays (torch on a GPU, emulated device arrays in the emulation build) mixed with
    NumPy ones: the error names the argument on the other device."""
    rng = np.random.default_rng(0)
    x = lib.asarray(rng.standard_normal((4, 8)), "float32")
    w = lib.asarray(np.ones(8), "float32")
    with pytest.raises(ValueError, match="weight"):
        nk.layer_norm(x, weight=np.ones(8, F32))
    with pytest.raises(ValueError, match="residual"):
        nk.add_layer_norm(x, rng.standard_normal((4, 8)).astype(F32))
    with pytest.raises(ValueError, match="weight"):
        nk.layer_norm(X, weight=w)
    with pytest.raises(ValueError, match="out"):
        nk.rms_norm(x, out=np.empty((4, 8), F32))
    with pytest.raises(ValueError, match="mean|rstd"):
        nk.layer_norm_backward(x, x, np.zeros(4, F32), lib.asarray(np.ones(4), "float32"))
    # and the CUDA call itself works with everything on the device
    y = nk.layer_norm(x, weight=w)
    assert lib.is_array(y)


# ---------------------------------------------------------------------------------------
# The binding's boundary
# ---------------------------------------------------------------------------------------


def test_byte_misaligned_numpy_data_is_never_read_in_place():
    """np.frombuffer at an odd offset gives a float32 array whose data is not 4-byte aligned.
    The core refuses it with a clear error naming it (never dereferences it); the functional
    API copies such inputs and writes such an out= through an aligned copy
    (test_row_norms.test_byte_misaligned_numpy_arrays checks the values)."""
    from normkit import _core

    buf = np.zeros(4 * 8 * 4 + 1, np.uint8)
    x = np.frombuffer(buf.data, dtype=F32, count=32, offset=1).reshape(4, 8)
    assert x.ctypes.data % 4 == 1
    y = np.empty((4, 8), F32)
    with pytest.raises(ValueError, match=r"x: data .* not aligned"):
        _core.row_norm_forward(_core.NormKind.layer, 1, 1e-5, 0.0, 1.0, x, None, None, None,
                               None, y, None, None, None)
    out = np.frombuffer(bytearray(4 * 32 + 1), dtype=F32, count=32, offset=1).reshape(4, 8)
    with pytest.raises(ValueError, match=r"out: data .* not aligned"):
        _core.row_norm_forward(_core.NormKind.rms, 1, 1e-5, 0.0, 1.0, X, None, None, None,
                               None, out, None, None, None)
    assert nk.rms_norm(X, out=out) is out
    np.testing.assert_allclose(out, nk.rms_norm(X), rtol=1e-6)


class _CopiedExport:
    """A CPU array whose DLPack export says it is a copy (DLPACK_FLAG_BITMASK_IS_COPIED):
    writing into it would be lost to the caller."""

    def __init__(self, a):
        self.a = a
        self.shape, self.dtype, self.ndim = a.shape, a.dtype, a.ndim

    def __dlpack_device__(self):
        return (1, 0)

    def __dlpack__(self, *, stream=None, max_version=None, dl_device=None, copy=None):
        import ctypes

        cap = self.a.__dlpack__(max_version=(1, 0))
        get = ctypes.pythonapi.PyCapsule_GetPointer
        get.restype, get.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]
        p = get(cap, b"dltensor_versioned")
        flags = ctypes.c_uint64.from_address(p + 24)  # after version, manager_ctx, deleter
        flags.value |= 2
        return cap


@pytest.mark.skipif(np.lib.NumpyVersion(np.__version__) < "2.1.0",
                    reason="the fake export needs NumPy >= 2.1's versioned DLPack (max_version)")
def test_dlpack_copy_is_never_used_as_out():
    y = np.zeros((4, 8), F32)
    with pytest.raises(ValueError, match="out: its DLPack export is a copy"):
        nk.layer_norm(X, out=_CopiedExport(y))
    with pytest.raises(ValueError, match="dx: its DLPack export is a copy"):
        from normkit import _core

        _core.row_norm_backward(_core.NormKind.layer, 1, 0.0, 1.0, X, None, X, None,
                                np.ones(4, F32), None, _CopiedExport(y), None, None, None, None)
    # as an input it is fine: the copy is what is read
    np.testing.assert_allclose(nk.layer_norm(_CopiedExport(X.copy())), nk.layer_norm(X))


def test_out_with_autograd_raises_as_torch_does():
    torch = pytest.importorskip("torch")
    x = torch.randn(4, 8, requires_grad=True)
    out = torch.empty(4, 8)
    with pytest.raises(RuntimeError, match="out=.*automatic differentiation"):
        nk.layer_norm(x, out=out)
    with pytest.raises(RuntimeError, match="out=.*automatic differentiation"):
        nk.add_rms_norm(x.detach(), torch.randn(4, 8), torch.ones(8, requires_grad=True), out=out)
    with pytest.raises(RuntimeError, match="out=.*automatic differentiation"):
        nk.rms_norm(torch.randn(4, 8), out=torch.empty(4, 8, requires_grad=True))
    with torch.no_grad():  # no graph to lose: fine, as in torch
        nk.layer_norm(x, out=out)
    np.testing.assert_allclose(out.numpy(), nk.layer_norm(x.detach().numpy()), rtol=1e-6)


def test_norm_kind_crosses_the_binding_as_an_enum():
    from normkit import _core

    y = np.empty((4, 8), F32)
    with pytest.raises(TypeError, match="kind: expected a normkit._core.NormKind, got int"):
        _core.row_norm_forward(7, 1, 1e-5, 0.0, 1.0, X, None, None, None, None, y, None, None,
                               None)
    _core.row_norm_forward(_core.NormKind.rms, 1, 1e-5, 0.0, 1.0, X, None, None, None, None, y,
                           None, None, None)
    np.testing.assert_allclose(y, nk.rms_norm(X, eps=1e-5), rtol=1e-6)


def test_fast_entry_points_name_the_argument():
    # The kernel entry points parse positional arguments themselves (Note [Fast entry points]
    # in python/src/interop.hpp): a wrong count or type names the function or the argument.
    from normkit import _core

    y = np.empty((4, 8), F32)
    L = _core.NormKind.layer
    with pytest.raises(TypeError, match=r"row_norm_forward\(kind, normalized_ndim, .*stream\): "
                                        r"expected 14 to 15 positional arguments, got 3"):
        _core.row_norm_forward(L, 1, 1e-5)
    with pytest.raises(TypeError, match="row_norm_forward: normalized_ndim: expected an int, got str"):
        _core.row_norm_forward(L, "1", 1e-5, 0.0, 1.0, X, None, None, None, None, y, None, None, None)
    with pytest.raises(TypeError, match="row_norm_forward: normalized_ndim: expected an int, got bool"):
        _core.row_norm_forward(L, True, 1e-5, 0.0, 1.0, X, None, None, None, None, y, None, None, None)
    with pytest.raises(TypeError, match="row_norm_forward: eps: expected a float, got NoneType"):
        _core.row_norm_forward(L, 1, None, 0.0, 1.0, X, None, None, None, None, y, None, None, None)
    with pytest.raises(TypeError, match="row_norm_forward: stream: expected an int"):
        _core.row_norm_forward(L, 1, 1e-5, 0.0, 1.0, X, None, None, None, None, y, None, None, None,
                               "s")
    with pytest.raises(TypeError, match="dyt_forward: channels_last: expected a bool, got str"):
        _core.dyt_forward(X, np.ones(1, F32), None, None, y, "yes")
    # Another NormKind instance of the same value is the same kind (a copy, NormKind(1)).
    import copy

    _core.row_norm_forward(copy.copy(_core.NormKind.rms), 1, 1e-5, 0.0, 1.0, X, None, None,
                           None, None, y, None, None, None, np.int64(0))
    np.testing.assert_allclose(y, nk.rms_norm(X, eps=1e-5), rtol=1e-5, atol=1e-6)
    _core.dyt_forward(X, np.ones(1, F32), None, None, y)  # channels_last defaults to True
    with pytest.raises(TypeError, match="got an unexpected keyword|takes no keyword arguments"):
        _core.ada_norm_forward(normalized_ndim=1)
    import inspect

    params = inspect.signature(_core.row_norm_forward).parameters
    assert list(params)[:2] == ["kind", "normalized_ndim"] and params["stream"].default == 0
    assert all(p.kind is p.POSITIONAL_ONLY for p in params.values())
    # NumPy scalars convert as Python numbers do; the core still validates the values.
    _core.dyt_forward(X, np.ones(1, F32), None, None, y, np.True_)
    _core.row_norm_forward(L, np.int64(1), np.float32(1e-5), 0.0, 1.0, X, None, None, None, None,
                           y, None, None, None, 0)
    np.testing.assert_allclose(y, nk.layer_norm(X, eps=1e-5), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="normalized_shape: expected 1..2 trailing dims"):
        _core.row_norm_forward(L, 9, 1e-5, 0.0, 1.0, X, None, None, None, None, y, None, None, None)
