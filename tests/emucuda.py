"""Test-only: NumPy arrays presented as CUDA device memory, for the emulation build.

In the emulation build (CMake ``NORMKIT_CUDA_EMULATION``; ``normkit.build_info()["cuda"] ==
"emulated"``) the CUDA backend runs on the CPU under the SIMT emulator of ``cuda/emu``, and
device memory is host memory. torch's CPU build cannot make CUDA tensors, so the ``device="cuda"``
cases of the suite use :class:`EmuCudaArray` instead: a NumPy array whose ``__dlpack__`` says
it lives on ``(kDLCUDA, 0)``. normkit then takes its CUDA path for it exactly as for a CuPy or
torch CUDA array (``__dlpack__`` capsule protocol, outputs allocated through
``__array_namespace__().empty(..., device=...)``), while the tests can still read it with
``np.asarray``. Nothing here is part of normkit; it only works where device memory is host
memory.

How: NumPy's own DLPack capsule (a versioned ``DLManagedTensorVersioned``) has its
``dl_tensor.device`` patched to kDLCUDA (and, for bfloat16, the dtype code of a ``uint16``
export patched to kDLBfloat) before it is handed over; NumPy's deleter still frees it.
"""

from __future__ import annotations

import ctypes
import sys
import types

import numpy as np

KDL_CUDA = 2
KDL_BFLOAT = 4

# Offsets in DLManagedTensorVersioned (DLPack 1.x): version (8), manager_ctx (8), deleter (8),
# flags (8), then DLTensor: data (8), device {int32 type, int32 id}, ndim (4), dtype {u8 code,
# u8 bits, u16 lanes}.
_OFF_DEVICE_TYPE = 40
_OFF_DEVICE_ID = 44
_OFF_DTYPE_CODE = 52

_get_pointer = ctypes.pythonapi.PyCapsule_GetPointer
_get_pointer.restype = ctypes.c_void_p
_get_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]


def _bf16():
    try:
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    except ImportError:  # pragma: no cover - the test extras install it
        return None


class _Device:
    """What ``x.device`` returns: CUDA device 0."""

    def __repr__(self):
        return "emucuda:0"

    def __eq__(self, other):
        return isinstance(other, _Device)

    def __hash__(self):
        return 0


DEVICE = _Device()


class EmuCudaArray:
    """A NumPy array that reports itself as CUDA device memory (see the module docstring)."""

    __slots__ = ("_a",)

    def __init__(self, a: np.ndarray):
        assert isinstance(a, np.ndarray)
        self._a = a

    # -- what normkit and the tests read ------------------------------------------------
    @property
    def shape(self):
        return self._a.shape

    @property
    def dtype(self):
        return self._a.dtype

    @property
    def ndim(self):
        return self._a.ndim

    @property
    def size(self):
        return self._a.size

    @property
    def device(self):
        return DEVICE

    def numpy(self) -> np.ndarray:
        return self._a

    def __array__(self, dtype=None, copy=None):
        return self._a if dtype is None else self._a.astype(dtype)

    def __repr__(self):
        return f"EmuCudaArray({self._a!r})"

    def __array_namespace__(self, api_version=None):
        return namespace

    def __dlpack_device__(self):
        return (KDL_CUDA, 0)

    def __dlpack__(self, *, stream=None, max_version=None, dl_device=None, copy=None):
        a = self._a
        bf16 = a.dtype == _bf16()
        src = a.view(np.uint16) if bf16 else a
        cap = src.__dlpack__(max_version=(1, 0))
        p = _get_pointer(cap, b"dltensor_versioned")
        ctypes.c_int32.from_address(p + _OFF_DEVICE_TYPE).value = KDL_CUDA
        ctypes.c_int32.from_address(p + _OFF_DEVICE_ID).value = 0
        if bf16:
            ctypes.c_uint8.from_address(p + _OFF_DTYPE_CODE).value = KDL_BFLOAT
        return cap

    # -- views, so that the tests' layouts (slices, reshapes, transposes) work -----------
    def __getitem__(self, idx):
        return EmuCudaArray(self._a[idx])

    def __setitem__(self, idx, value):
        self._a[idx] = np.asarray(value)

    def reshape(self, *shape):
        return EmuCudaArray(self._a.reshape(*shape))

    def transpose(self, *axes):
        return EmuCudaArray(self._a.transpose(*axes))

    @property
    def T(self):
        return EmuCudaArray(self._a.T)

    @property
    def flags(self):
        return self._a.flags

    # -- arithmetic, as a device array library has it (the streaming-standardization helpers
    # compute their small per-feature vectors with it) ------------------------------------
    def _op(self, other, f):
        o = other._a if isinstance(other, EmuCudaArray) else other
        return EmuCudaArray(np.asarray(f(self._a, o)))

    def __add__(self, o):
        return self._op(o, np.add)

    __radd__ = __add__

    def __sub__(self, o):
        return self._op(o, np.subtract)

    def __rsub__(self, o):
        return self._op(o, lambda a, b: np.subtract(b, a))

    def __mul__(self, o):
        return self._op(o, np.multiply)

    __rmul__ = __mul__

    def __truediv__(self, o):
        return self._op(o, np.true_divide)

    def __rtruediv__(self, o):
        return self._op(o, lambda a, b: np.true_divide(b, a))

    def __neg__(self):
        return EmuCudaArray(-self._a)

    def __eq__(self, o):
        return self._op(o, np.equal)

    __hash__ = None


def wrap(a):
    """An EmuCudaArray over ``a`` (a NumPy array); None stays None."""
    return None if a is None else EmuCudaArray(np.asarray(a) if not isinstance(a, np.ndarray) else a)


def _empty(shape, dtype=None, device=None):
    return EmuCudaArray(np.empty(shape, dtype=dtype))


def _empty_like(x, dtype=None, device=None):
    # The array API's empty_like: x's layout too (np.empty_like's order="K"), as elementwise
    # ops (DyT) allocate their outputs.
    return EmuCudaArray(np.empty_like(x._a, dtype=dtype))


def _from_dlpack(x):
    raise TypeError("emucuda: from_dlpack of device arrays is not needed by normkit")


def _un(f):
    return lambda x, *a, **k: EmuCudaArray(np.asarray(f(x._a if isinstance(x, EmuCudaArray) else x,
                                                          *a, **k)))


# The array namespace normkit uses for non-CPU arrays (GenericLib, the moments helpers).
namespace = types.SimpleNamespace(
    empty=_empty,
    empty_like=_empty_like,
    sqrt=_un(np.sqrt),
    reshape=_un(np.reshape),
    astype=lambda x, dtype: EmuCudaArray(x._a.astype(dtype)),
    asarray=lambda x, dtype=None, device=None: EmuCudaArray(np.asarray(
        x._a if isinstance(x, EmuCudaArray) else x, dtype=dtype)),
    stack=lambda xs: EmuCudaArray(np.stack([x._a for x in xs])),
    float32=np.dtype(np.float32),
    float64=np.dtype(np.float64),
    float16=np.dtype(np.float16),
    from_dlpack=_from_dlpack,
)


def emulated() -> bool:
    """True when the installed normkit is the emulation build."""
    nk = sys.modules.get("normkit")
    if nk is None:
        import normkit as nk
    return nk.build_info().get("cuda") == "emulated"
