"""Array-library adapters: allocate outputs with the caller's library, on the caller's device.

NumPy and torch have dedicated adapters (the common cases, kept cheap); any other DLPack
array (CuPy, JAX, ...) goes through the array API namespace (``__array_namespace__``).
The kernels themselves see every array through DLPack in ``normkit._core`` — no copies,
except once for an input whose normalized (trailing) dims are not contiguous.
"""

from __future__ import annotations

import os
import sys

import numpy as np

_KDL_CPU = 1

# ---------------------------------------------------------------------------------------
# Note [Huge pages for fresh outputs]: a fresh 64 MB output is a new mmap (glibc maps every
# block over 32 MB), and the kernel's first write to each 4 KB page faults: ~16,000 faults,
# 15–20 ms on the build machines — three to four times the whole kernel (a [4096, 4096]
# float32 W/σ takes 4.6 ms into a warm buffer, 19.3 ms into a fresh one). Where the system's
# transparent huge pages are in "madvise" mode (the usual default), asking for huge pages on
# the output before it is touched makes that 32 faults of 2 MB: 5.8 ms. NumPy already advises
# its own large arrays so; torch's CPU allocator does not. So every torch CPU output of at
# least 32 MB that normkit allocates (never a caller's out=) is advised MADV_HUGEPAGE over its
# 2 MB-aligned interior. NORMKIT_HUGE_PAGES=0 turns it off.
# ---------------------------------------------------------------------------------------

_HUGE_MIN_BYTES = 32 << 20
_MADV_HUGEPAGE = 14
_madvise = None  # libc's madvise, or False where it does not apply


def _huge_pages_setup():
    global _madvise
    _madvise = False
    if os.environ.get("NORMKIT_HUGE_PAGES", "1") == "0" or not sys.platform.startswith("linux"):
        return
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            if "[madvise]" not in f.read():
                return  # "always" needs no advice; "never" ignores it
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.madvise
        fn.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
        fn.restype = ctypes.c_int
        _madvise = fn
    except (OSError, AttributeError):
        _madvise = False


def advise_huge_pages(ptr: int, nbytes: int) -> None:
    """MADV_HUGEPAGE over the 2 MB-aligned interior of [ptr, ptr + nbytes), for a fresh output
    of at least 32 MB (Note [Huge pages for fresh outputs]); nothing elsewhere."""
    if nbytes < _HUGE_MIN_BYTES:
        return
    if _madvise is None:
        _huge_pages_setup()
    if not _madvise:
        return
    lo = (ptr + (1 << 21) - 1) & ~((1 << 21) - 1)
    hi = (ptr + nbytes) & ~((1 << 21) - 1)
    if hi > lo:
        _madvise(lo, hi - lo, _MADV_HUGEPAGE)  # advice: a failure changes nothing


def _fresh_torch(t):
    if not t.is_cuda and t.element_size() * t.numel() >= _HUGE_MIN_BYTES:
        advise_huge_pages(t.data_ptr(), t.element_size() * t.numel())
    return t


def _torch():
    return sys.modules.get("torch")


def is_torch(x) -> bool:
    t = sys.modules.get("torch")
    return t is not None and isinstance(x, t.Tensor)


def refuse_out_with_grad(name: str, inputs, outs) -> None:
    """torch's rule for ``out=``: no autograd through it. torch raises; so do we (for every op
    of the functional API), instead of silently computing a result detached from the graph."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.is_grad_enabled():
        return
    if not any(isinstance(o, torch.Tensor) for o in outs if o is not None):
        return
    if any(getattr(a, "requires_grad", False) for a in (*inputs, *outs) if a is not None):
        raise RuntimeError(
            f"{name}(): functions with out=... arguments don't support automatic "
            "differentiation, but one of the arguments requires grad (call it without out=, "
            "or under torch.no_grad())")


class BackwardOut:
    """``out=`` of a backward function: ``None``; an array, the buffer of the input gradient
    (``dx``, the one the size of the data); or a tuple (or list) with one entry per returned
    gradient, in the order the function returns them — an array to write that gradient
    into, or ``None`` to have it allocated. Caller-provided buffers let a training
    loop reuse its gradient memory instead of paying for freshly mapped pages every step
    (docs/benchmarks.rst, "Fresh outputs"). The core checks each buffer's shape, dtype,
    layout and device and names it in the error; a byte-misaligned NumPy buffer gets the
    result through an aligned copy, as the forwards' ``out=`` do. Autograd never runs through
    ``out=`` (:func:`refuse_out_with_grad`)."""

    __slots__ = ("names", "given", "_copy")

    def __init__(self, fn: str, out, names, inputs=()):
        self.names = tuple(names)
        if out is None:
            self.given = (None,) * len(self.names)
        else:
            if not isinstance(out, (tuple, list)):
                out = (out,) + (None,) * (len(self.names) - 1)
            if len(out) != len(self.names):
                raise TypeError(
                    f"{fn}: out: expected None, {self.names[0]}'s buffer, or a tuple of "
                    f"{len(self.names)} arrays or None ({', '.join(self.names)}), got "
                    f"{_describe(out)}")
            self.given = tuple(out)
            refuse_out_with_grad(fn, inputs, self.given)
        self._copy = {}

    def want(self, name, default=True):
        """The registry's want entry for gradient ``name``: the caller's buffer, or
        ``default`` (``True``: allocate; ``None``: not computed) when none was given."""
        o = self.given[self.names.index(name)]
        if o is None:
            return default
        if misaligned_numpy(o):
            self._copy[name] = o
            return default if default is not None else True
        return o

    def finish(self, lib, name, got):
        """The gradient as the function returns it: the caller's buffer (filled) or the
        freshly allocated array through ``lib.finish``."""
        into = self._copy.get(name)
        if into is not None:
            into[...] = got
            return into
        o = self.given[self.names.index(name)]
        if o is not None:
            return o if got is not None else None
        return None if got is None else lib.finish(got)


def _describe(v) -> str:
    if isinstance(v, (tuple, list)):
        return f"a {type(v).__name__} of {len(v)}"
    return type(v).__name__


def detach(a):
    """``a`` without its autograd history (a torch tensor that requires grad), else ``a``:
    what the functional API hands the kernels outside autograd. NumPy arrays and None return
    at once (the functional API's common case; ~0.5 us per argument otherwise)."""
    if a is None or type(a) is np.ndarray:
        return a
    return a.detach() if is_torch(a) and a.requires_grad else a


def _rows_compact(shape, strides, itemsize: int, nd: int) -> bool:
    """Whether the last ``nd`` dims are C-contiguous among themselves (size-1 dims ignored)."""
    expect = itemsize
    for i in range(len(shape) - 1, len(shape) - 1 - nd, -1):
        n = shape[i]
        if n == 1:
            continue
        if n == 0:
            return True
        if strides[i] != expect:
            return False
        expect *= n
    return True


def compact_rows(a, nd: int):
    """``a`` itself when its trailing ``nd`` dims are contiguous, else one contiguous copy.
    NumPy data not aligned to its element size (``np.frombuffer`` at an odd offset) is copied
    too: the core never reads it in place (it refuses it)."""
    if a is None:
        return None
    if type(a) is np.ndarray:
        if not a.flags.aligned:
            return np.array(a, order="C")
        if a.flags.c_contiguous or _rows_compact(a.shape, a.strides, a.itemsize, nd):
            return a
        return np.ascontiguousarray(a)
    if is_torch(a):
        if a.is_contiguous() or _rows_compact(a.shape, a.stride(), 1, nd):
            return a
        return a.contiguous()
    return a  # other libraries: the core reports a non-contiguous row clearly


def compact(a):
    """A fully contiguous array (parameters: weight, bias)."""
    if a is None:
        return None
    if type(a) is np.ndarray:
        if not a.flags.aligned:
            return np.array(a, order="C")
        return a if a.flags.c_contiguous else np.ascontiguousarray(a)
    if is_torch(a):
        return a if a.is_contiguous() else a.contiguous()
    return a


def misaligned_numpy(a) -> bool:
    """A NumPy output whose data is not aligned to its element size: the result is computed
    into an aligned array and copied into it."""
    return type(a) is np.ndarray and not a.flags.aligned


class NumpyLib:
    """Every adapter has the same methods: ``rows`` / ``contiguous`` (an input laid out for
    the core), ``empty_like_x`` (C-contiguous, x's dtype, x's shape or ``shape``),
    ``empty_like_strided`` (x's strides too), ``empty_stat`` (a per-row statistic),
    ``finish`` (an output as the caller's library returns it) and ``stream``. The op
    declarations (``normkit._registry``) allocate through them."""

    kind = "numpy"
    rows = staticmethod(compact_rows)
    contiguous = staticmethod(compact)

    @staticmethod
    def empty_like_x(x, shape=None):
        return np.empty(x.shape if shape is None else shape, dtype=x.dtype)

    @staticmethod
    def empty_like_strided(x):
        return np.empty_like(x)  # order="K": x's memory layout

    @staticmethod
    def empty_stat(x, shape):
        return np.empty(shape, dtype=np.float64 if x.dtype == np.float64 else np.float32)

    @staticmethod
    def finish(a):
        return a

    stream = 0


class TorchLib:
    """torch tensors. The allocation methods are static (each output goes on its template's
    device) and use ``torch.empty_like`` where they can: on the CPU it costs about a third of
    ``torch.empty(shape, dtype=, device=)``, whose argument parsing dominates a small call.
    ``normkit.torch`` allocates through this class too."""

    kind = "torch"

    def __init__(self, x):
        self.device = x.device
        self.stream = 0
        if x.is_cuda:
            self.stream = _torch().cuda.current_stream(x.device).cuda_stream

    @staticmethod
    def rows(a, nd: int):
        t = sys.modules["torch"]
        if isinstance(a, t.Tensor):
            if a.is_contiguous() or _rows_compact(a.shape, a.stride(), 1, nd):
                return a
            return a.contiguous()
        return compact_rows(a, nd)  # e.g. a NumPy residual next to a torch x

    @staticmethod
    def contiguous(a):
        t = sys.modules["torch"]
        if isinstance(a, t.Tensor) and a.is_contiguous():
            return a
        return compact(a)

    @staticmethod
    def empty_like_x(x, shape=None):
        t = sys.modules["torch"]
        if shape is None:
            return _fresh_torch(t.empty_like(x, memory_format=t.contiguous_format))
        return _fresh_torch(t.empty(shape, dtype=x.dtype, device=x.device))

    @staticmethod
    def empty_like_strided(x):
        return _fresh_torch(sys.modules["torch"].empty_like(x))

    @staticmethod
    def empty_stat(x, shape):
        t = sys.modules["torch"]
        return t.empty(shape, dtype=t.float64 if x.dtype == t.float64 else t.float32,
                       device=x.device)

    @staticmethod
    def finish(a):
        return a


class GenericLib:
    """Any other DLPack array. On the CPU, outputs are NumPy arrays handed back through the
    library's ``from_dlpack`` (JAX arrays, for one, are immutable and cannot be written);
    on a GPU, ``xp.empty`` on the input's device (CuPy)."""

    kind = "generic"
    stream = 0
    rows = staticmethod(compact_rows)
    contiguous = staticmethod(compact)

    def __init__(self, x):
        if not hasattr(x, "__dlpack__"):
            raise TypeError(
                f"x: expected an array (NumPy, torch, or any DLPack array), got {type(x).__name__}"
            )
        self.xp = x.__array_namespace__() if hasattr(x, "__array_namespace__") else None
        self.cpu = x.__dlpack_device__()[0] == _KDL_CPU
        if not self.cpu and self.xp is None:
            raise TypeError("x: a non-CPU array must implement __array_namespace__")

    def _np_dtype(self, x):
        return np.from_dlpack(x).dtype if self.cpu else None

    def empty_like_x(self, x, shape=None):
        shape = tuple(x.shape) if shape is None else shape
        if self.cpu:
            return np.empty(shape, dtype=self._np_dtype(x))
        return self.xp.empty(shape, dtype=x.dtype, device=x.device)

    def empty_like_strided(self, x):
        if self.cpu:
            return np.empty_like(np.from_dlpack(x))
        return self.xp.empty_like(x)

    def empty_stat(self, x, shape):
        if self.cpu:
            f64 = self._np_dtype(x) == np.float64
            return np.empty(shape, dtype=np.float64 if f64 else np.float32)
        f64 = x.dtype == self.xp.float64
        return self.xp.empty(shape, dtype=self.xp.float64 if f64 else self.xp.float32, device=x.device)

    def finish(self, a):
        if a is None or not self.cpu or self.xp is None:
            return a
        return self.xp.from_dlpack(a)


def lib_for(x):
    if type(x) is np.ndarray:
        return NumpyLib
    if is_torch(x):
        return TorchLib(x)
    if isinstance(x, np.ndarray):  # ndarray subclasses
        return NumpyLib
    return GenericLib(x)
