"""Streaming standardization (SPEC §11, forward only): exact moments that merge across chunks,
threads, processes and Dask clusters, the fused standardize / destandardize passes, and the
:class:`Standardizer` on top (scikit-learn's ``StandardScaler`` spelling, Keras'
``Normalization.adapt``).

The kernels are the channel platform's (batch norm's split phases, declared in
``normkit._batch_norm``): ``moments`` is ``batch_norm_stats`` over a view of x in which the kept
dims are the channels — exact per-chunk two-pass moments Chan-merged in double in an order fixed
by the shape — ``moments_merge`` is the same Chan merge, and ``standardize`` is
``batch_norm_apply``: one pass, the float64 mean used as hi + lo, so data far from zero keeps
its precision. Every backend of those ops (CPU SIMD per ISA, CUDA) serves these functions.
"""

from __future__ import annotations

import math
import sys
from typing import NamedTuple

import numpy as np

from ._arrays import detach, is_torch, lib_for
from ._batch_norm import BATCH_NORM_APPLY, BATCH_NORM_STATS, MOMENTS_MERGE

__all__ = ["Moments", "moments", "moments_merge", "standardize", "destandardize",
           "Standardizer"]


class Moments(NamedTuple):
    """The exact moments of a set of values, per kept position: ``count`` (values per
    position, a 0-d int64 array), ``mean`` and ``m2 = Σ(x − mean)²`` (float64 arrays of the
    kept dims' shape, in the input's array library and device). ``var`` is the biased
    variance ``m2 / count``; merge any number with :func:`moments_merge`."""

    count: object
    mean: object
    m2: object

    @property
    def var(self):
        n = int(self.count)
        return self.m2 / n if n > 0 else self.m2 * float("nan")


# ---------------------------------------------------------------------------------------
# Layout: reduced axes → the channel view (N, K, S) the core reduces over N and S
# ---------------------------------------------------------------------------------------


def _reduced_axes(ndim: int, axis, name: str = "axis") -> tuple:
    """``axis`` (None: all; an int; a tuple of ints) as sorted non-negative axes."""
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, (int, np.integer)) and not isinstance(axis, bool) else axis
    try:
        axes = tuple(axes)
    except TypeError:
        raise TypeError(f"{name}: expected None, an int or a tuple of ints, got "
                        f"{type(axis).__name__}") from None
    out = []
    for a in axes:
        if isinstance(a, bool) or not isinstance(a, (int, np.integer)):
            raise TypeError(f"{name}: expected ints, got {type(a).__name__}")
        if not -ndim <= a < ndim:
            raise ValueError(f"{name}: {a} is out of range for a {ndim}-dim array")
        out.append(int(a) % ndim)
    if len(set(out)) != len(out):
        raise ValueError(f"{name}: repeated axis in {axis}")
    return tuple(sorted(out))


class _Plan:
    """How x with reduced axes R is viewed for the core: kept dims K (in order) made one
    channel block — x itself reshaped to (N, K, S) (channels first; (N, K) channels last
    when S == 1) when K is a run of consecutive dims, else x transposed to (K..., R...)
    (one copy)."""

    def __init__(self, shape, reduced):
        nd = len(shape)
        self.shape = tuple(int(s) for s in shape)
        self.reduced = reduced
        self.kept = tuple(i for i in range(nd) if i not in reduced)
        self.kept_shape = tuple(self.shape[i] for i in self.kept)
        self.K = math.prod(self.kept_shape)
        n = math.prod(self.shape)
        self.count = n // self.K if self.K else math.prod(self.shape[i] for i in reduced)
        k = self.kept
        self.perm = None
        if k and k != tuple(range(k[0], k[-1] + 1)):
            self.perm = k + reduced
            a, b = 0, len(k)
        else:
            a, b = (k[0], k[-1] + 1) if k else (nd, nd)
        sh = self.shape if self.perm is None else tuple(self.shape[i] for i in self.perm)
        self.N = math.prod(sh[:a])
        self.S = math.prod(sh[b:])
        if not k and nd > 1:  # one statistic of everything: planes reduced in parallel
            a = b = 1
            self.N, self.S = sh[0], math.prod(sh[1:])
        self.channels_last = self.S == 1 and self.N > 1

    def view(self, x):
        """x as the core reads it."""
        if self.perm is not None:
            x = _contiguous(x.permute(*self.perm) if is_torch(x) else x.transpose(*self.perm))
        if self.channels_last:
            return _reshape(x, (self.N, self.K))
        return _reshape(x, (self.N, self.K, self.S))

    def unview(self, y):
        """The core's output (laid out as view(x)) back in x's shape, C-contiguous."""
        if self.perm is None:
            return _reshape(y, self.shape)
        t = _reshape(y, tuple(self.shape[i] for i in self.perm))
        inv = tuple(int(i) for i in np.argsort(self.perm))
        return _contiguous(t.permute(*inv) if is_torch(t) else t.transpose(*inv))


def _reshape(x, shape):
    return x.reshape(shape)


def _contiguous(x):
    if is_torch(x):
        return x.contiguous()
    if isinstance(x, np.ndarray):
        return np.ascontiguousarray(x).reshape(x.shape)  # (0-dim stays 0-dim)
    return x


def _float64_like(lib, x, shape):
    """An uninitialized float64 array of ``shape`` in x's library and device."""
    if is_torch(x):
        t = sys.modules["torch"]
        return t.empty(shape, dtype=t.float64, device=x.device)
    if isinstance(x, np.ndarray) or getattr(lib, "cpu", True):
        return np.empty(shape, dtype=np.float64)
    return lib.xp.empty(shape, dtype=lib.xp.float64, device=x.device)


def _count_array(like, n: int):
    if is_torch(like):
        t = sys.modules["torch"]
        return t.tensor(int(n), dtype=t.int64)
    return np.asarray(int(n), dtype=np.int64)


def _as_array_lib(x):
    """A DLPack array that is neither NumPy nor torch, on the CPU: as NumPy (zero copy)."""
    if isinstance(x, np.ndarray) or is_torch(x):
        return x
    if not hasattr(x, "__dlpack__"):
        if isinstance(x, (list, tuple)):
            return np.asarray(x)
        raise TypeError(f"x: expected an array (NumPy, torch, or any DLPack array), got "
                        f"{type(x).__name__}")
    if x.__dlpack_device__()[0] == 1:  # kDLCPU
        return np.from_dlpack(x)
    return x


# ---------------------------------------------------------------------------------------
# moments / moments_merge
# ---------------------------------------------------------------------------------------


def _back(orig, a):
    """An output for a CPU DLPack input that is neither NumPy nor torch (computed as NumPy):
    in the input's own library."""
    if a is None or isinstance(orig, np.ndarray) or is_torch(orig) or isinstance(a, type(orig)):
        return a
    ns = getattr(orig, "__array_namespace__", None)
    return ns().asarray(a) if ns is not None else a


def moments(x, axis=None) -> Moments:
    """The exact moments of ``x`` over ``axis`` (None: every axis; an int; a tuple of ints):
    ``Moments(count, mean, m2)`` with ``mean`` and ``m2 = Σ(x − mean)²`` shaped like the
    kept dims, in float64 whatever x's dtype (16-bit, float32, float64), computed in one
    read of x (two passes over each chunk in cache, Chan-merged in double in an order that
    depends on the shape only). Exact to float64 rounding even for float32 data far from
    zero (a mean of 1e4 and std 1)."""
    orig, x = x, _as_array_lib(x)
    plan = _Plan(x.shape, _reduced_axes(len(x.shape), axis))
    lib = lib_for(x)
    mean = _float64_like(lib, x, (plan.K,))
    m2 = _float64_like(lib, x, (plan.K,))
    if plan.K > 0:
        if plan.count == 0:
            mean[...] = 0
            m2[...] = 0
        else:
            BATCH_NORM_STATS.run(lib, [plan.view(detach(x)), plan.channels_last], [mean, m2],
                                 lib.stream)
    ks = plan.kept_shape
    return Moments(_count_array(mean, plan.count), _back(orig, lib.finish(_reshape(mean, ks))),
                   _back(orig, lib.finish(_reshape(m2, ks))))


def _stack(arrays):
    a0 = arrays[0]
    if is_torch(a0):
        return sys.modules["torch"].stack([a.reshape(-1) for a in arrays])
    if isinstance(a0, np.ndarray):
        return np.stack([np.asarray(a).reshape(-1) for a in arrays])
    xp = a0.__array_namespace__()
    return xp.stack([xp.reshape(a, (-1,)) for a in arrays])


def _merge_triples(ms) -> Moments:
    if not ms:
        raise ValueError("moments_merge: expected at least one Moments")
    for k, m in enumerate(ms):
        if not isinstance(m, tuple) or len(m) != 3:
            raise TypeError(f"moments_merge: ms[{k}]: expected a Moments (count, mean, m2), "
                            f"got {type(m).__name__}")
    shape = tuple(ms[0][1].shape)
    for k, m in enumerate(ms):
        if tuple(m[1].shape) != shape or tuple(m[2].shape) != shape:
            raise ValueError(f"moments_merge: ms[{k}]: mean and m2 of shape "
                             f"{tuple(m[1].shape)} / {tuple(m[2].shape)}, expected {shape} "
                             f"(the shape of ms[0]'s): moments of different kept dims do not "
                             f"merge")
    counts = [int(m[0]) for m in ms]
    if any(c < 0 for c in counts):
        raise ValueError(f"moments_merge: counts must be >= 0, got {counts}")
    if len(ms) == 1:
        m = ms[0]
        return Moments(_count_array(m[1], counts[0]), m[1], m[2])
    means, m2s = _stack([m[1] for m in ms]), _stack([m[2] for m in ms])
    if is_torch(means):
        t = sys.modules["torch"]
        means, m2s = means.double(), m2s.double()
        cts = t.tensor(counts, dtype=t.float64, device=means.device)
    elif isinstance(means, np.ndarray):
        means, m2s = means.astype(np.float64, copy=False), m2s.astype(np.float64, copy=False)
        cts = np.asarray(counts, dtype=np.float64)
    else:
        xp = means.__array_namespace__()
        means, m2s = xp.astype(means, xp.float64), xp.astype(m2s, xp.float64)
        cts = xp.asarray(counts, dtype=xp.float64, device=means.device)
    lib = lib_for(means)
    mean, m2 = MOMENTS_MERGE.run(lib, [cts, means, m2s], MOMENTS_MERGE.all_want, lib.stream)
    return Moments(_count_array(mean, sum(counts)), lib.finish(_reshape(mean, shape)),
                   lib.finish(_reshape(m2, shape)))


def moments_merge(*ms):
    """Chan et al.'s merge: ``moments_merge(m1, m2, ...)`` of any number of
    :class:`Moments` (or ``(count, mean, m2)`` triples) of the same kept shape → the
    :class:`Moments` of the union, in double — the same result, to rounding, as
    :func:`moments` over the concatenated data, in any order.

    The stacked form of synchronized batch norm, ``moments_merge(counts, means, m2s)``
    (``counts`` [K], ``means`` and ``m2s`` [K, C]), returns ``(count, mean, m2)`` as before."""
    if len(ms) == 3 and not any(isinstance(m, tuple) for m in ms):
        from ._batch_norm import moments_merge as stacked

        return stacked(*ms)
    if len(ms) == 1 and isinstance(ms[0], list):
        ms = tuple(ms[0])
    return _merge_triples(list(ms))


# ---------------------------------------------------------------------------------------
# standardize / destandardize
# ---------------------------------------------------------------------------------------


def _per_kept(lib, x, plan, a, name):
    """A per-kept-position statistic as a float64 [K] array in x's library and device."""
    if is_torch(x):
        t = sys.modules["torch"]
        a = t.as_tensor(a, dtype=t.float64, device=x.device)
    elif isinstance(x, np.ndarray):
        a = np.asarray(a, dtype=np.float64)
    n = math.prod(int(s) for s in a.shape)
    if n != plan.K:
        raise ValueError(f"{name}: expected {plan.K} values (the kept dims "
                         f"{plan.kept_shape} of x), got shape {tuple(a.shape)}")
    return _contiguous(_reshape(a, (plan.K,)))


def _apply(x, axis, stats, out):
    """y = (x − mean)·rstd per kept position, (mean, rstd) = stats(lib, x, plan)."""
    orig, x = x, _as_array_lib(x)
    plan = _Plan(x.shape, _reduced_axes(len(x.shape), axis))
    lib = lib_for(x)
    m, r = stats(lib, x, plan)
    xv = plan.view(detach(x))
    into = None
    if out is not None:
        if tuple(out.shape) != tuple(x.shape):
            raise ValueError(f"out: expected x's shape {tuple(x.shape)}, got {tuple(out.shape)}")
        if plan.perm is None:
            into = _reshape(out, xv.shape)
    y = BATCH_NORM_APPLY.run(lib, [xv, m, r, None, None, plan.channels_last],
                             [True if into is None else into], lib.stream)[0]
    if into is not None:
        return out
    y = plan.unview(y)
    if out is not None:
        out[...] = y
        return out
    return _back(orig, lib.finish(y))


def _sqrt(a):
    if is_torch(a):
        return a.sqrt()
    # NumPy arrays and scalars (a NumPy scalar has no __array_namespace__ before NumPy 2.1),
    # else the array's own namespace (CuPy, JAX, ...).
    namespace = getattr(a, "__array_namespace__", None)
    if namespace is None or isinstance(a, (np.ndarray, np.generic)):
        return np.sqrt(a)
    return namespace().sqrt(a)


def _check_eps(eps):
    eps = float(eps)
    if not eps >= 0 or math.isinf(eps):
        raise ValueError(f"eps: expected a finite value >= 0, got {eps}")
    return eps


def standardize(x, mean, var, eps=0.0, *, axis=None, out=None):
    """``(x − mean)/sqrt(var + eps)`` in one fused pass; ``axis`` names the reduced axes as
    in :func:`moments` (``mean`` and ``var`` hold one value per kept position, in its shape
    or any shape of that many elements). ``mean`` is used in float64 (hi + lo), so data far
    from zero keep their precision. A position with ``var + eps == 0`` gives ±inf / NaN (as
    IEEE division); :class:`Standardizer` uses scikit-learn's rule instead (scale 1)."""
    eps = _check_eps(eps)

    def stats(lib, x, plan):
        m = _per_kept(lib, x, plan, mean, "mean")
        v = _per_kept(lib, x, plan, var, "var")
        return m, 1.0 / _sqrt(v + eps)

    return _apply(x, axis, stats, out)


def destandardize(x, mean, var, eps=0.0, *, axis=None, out=None):
    """The inverse of :func:`standardize`: ``x·sqrt(var + eps) + mean`` in one fused pass."""
    eps = _check_eps(eps)

    def stats(lib, x, plan):
        m = _per_kept(lib, x, plan, mean, "mean")
        s = _sqrt(_per_kept(lib, x, plan, var, "var") + eps)
        # (x − (−mean/s))·s = x·s + mean; −mean/s in float64 is used as hi + lo.
        return -m / s, s

    return _apply(x, axis, stats, out)


# ---------------------------------------------------------------------------------------
# Standardizer
# ---------------------------------------------------------------------------------------


def _is_dask(x) -> bool:
    da = sys.modules.get("dask.array")
    return da is not None and isinstance(x, da.Array)


def _dask_moments(x, reduced) -> Moments:
    """Moments of a Dask array: ``dask.array.reduction`` with :func:`moments` per block and
    :func:`moments_merge` as the combine and aggregate steps, so the data are read once,
    where they live. A block's (mean, m2) travel as one complex128 value per position
    (mean + i·m2: both float64, exactly)."""
    import dask.array as da

    count = math.prod(int(x.shape[i]) for i in reduced)
    if any(math.isnan(float(s)) for s in x.shape):
        raise ValueError("x: a Dask array of unknown chunk sizes (compute_chunk_sizes() first)")

    # computing_meta: dask asks each step for the type of what it returns.
    def chunk(block, axis, keepdims, computing_meta=False):
        if computing_meta:
            return block
        m = moments(block, axis=axis)
        n = int(m.count)
        shape = tuple(1 if i in axis else s for i, s in enumerate(block.shape))
        packed = (np.asarray(m.mean) + 1j * np.asarray(m.m2)).reshape(shape)
        return {"n": n, "p": packed}

    def leaves(tree):
        if isinstance(tree, dict):
            return [tree]
        out = []
        for t in tree:
            out.extend(leaves(t))
        return out

    def merge(tree, axis, keepdims, computing_meta=False):
        if computing_meta:
            return tree
        parts = leaves(tree)
        ms = [Moments(p["n"], _contiguous(p["p"].real), _contiguous(p["p"].imag)) for p in parts]
        m = moments_merge(*ms)
        return {"n": int(m.count), "p": np.asarray(m.mean) + 1j * np.asarray(m.m2)}

    def aggregate(tree, axis, keepdims, computing_meta=False):
        if computing_meta:
            return tree
        r = merge(tree, axis, keepdims)["p"]
        if not keepdims:
            r = r.reshape(tuple(s for i, s in enumerate(r.shape) if i not in axis))
        return r

    packed = da.reduction(x, chunk, aggregate, combine=merge, axis=reduced, keepdims=False,
                          dtype=np.complex128, concatenate=False,
                          meta=np.empty((0,) * (x.ndim - len(reduced)), dtype=np.complex128))
    kept = tuple(int(s) for i, s in enumerate(x.shape) if i not in reduced)
    p = np.asarray(packed.compute()).reshape(kept)
    return Moments(np.asarray(count, dtype=np.int64), _contiguous(p.real), _contiguous(p.imag))


class Standardizer:
    """Streaming standardization (the "Normalization" preprocessing layer): statistics over
    data too large for memory, then ``(x − mean_)/scale_``.

    ``axis``: the feature axis or axes that keep their own statistics (Keras' rule; the
    default -1 is one mean per last-dim feature, scikit-learn's ``StandardScaler`` on 2-D
    data; ``None``: one mean over everything); every other axis is reduced. ``eps`` is added
    to the variance; a feature of zero scale is left unscaled (scale 1, scikit-learn's
    rule).

    ``fit`` / ``adapt`` / ``partial_fit`` take an array (NumPy, torch, any DLPack), an
    iterable of chunks (a generator over files), or a Dask array (``dask.array.reduction``
    with normkit's moments per block and its merge as the combine step: the data are read
    once, on the cluster). Attributes as scikit-learn: ``mean_``, ``var_``, ``scale_``,
    ``n_samples_seen_``. State: ``state_dict()`` / ``load_state_dict()`` (arrays),
    ``to_dict()`` / ``from_dict()`` (NumPy arrays and the settings). Several processes'
    statistics merge with :meth:`merge` or, in torch.distributed jobs,
    ``normkit.torch.all_gather_moments``.
    """

    def __init__(self, axis=-1, eps=0.0):
        if axis is not None and not isinstance(axis, (int, tuple, list)) or isinstance(axis, bool):
            raise TypeError(f"axis: expected None, an int or a tuple of ints, got "
                            f"{type(axis).__name__}")
        self.axis = tuple(axis) if isinstance(axis, list) else axis
        self.eps = _check_eps(eps)
        self._m = None

    # -- statistics ----------------------------------------------------------------------

    def _reduced(self, ndim):
        if self.axis is None:
            return tuple(range(ndim))
        kept = _reduced_axes(ndim, self.axis, "axis")
        return tuple(i for i in range(ndim) if i not in kept)

    def _moments_of(self, x) -> Moments:
        if _is_dask(x):
            return _dask_moments(x, self._reduced(x.ndim))
        x = _as_array_lib(x)
        return moments(x, axis=self._reduced(len(x.shape)))

    def _add(self, m: Moments):
        if self._m is not None:
            if tuple(self._m.mean.shape) != tuple(m.mean.shape):
                raise ValueError(f"x: features of shape {tuple(m.mean.shape)}, but this "
                                 f"Standardizer was fitted on {tuple(self._m.mean.shape)}")
            if is_torch(self._m.mean) != is_torch(m.mean):
                m = Moments(m.count, _like(self._m.mean, m.mean), _like(self._m.mean, m.m2))
            m = moments_merge(self._m, m)
        self._m = m

    def _chunks(self, data):
        if _is_dask(data) or hasattr(data, "__dlpack__") or isinstance(data, np.ndarray):
            return [data]
        if isinstance(data, (str, bytes)) or not hasattr(data, "__iter__"):
            raise TypeError(f"x: expected an array, an iterable of arrays or a Dask array, "
                            f"got {type(data).__name__}")
        return data

    def partial_fit(self, X, y=None):
        """Adds the statistics of ``X`` (an array, an iterable of chunks or a Dask array)
        to what was seen so far. Returns ``self``."""
        seen = False
        for chunk in self._chunks(X):
            self._add(self._moments_of(chunk))
            seen = True
        if not seen:
            raise ValueError("x: an empty iterable of chunks")
        return self

    def fit(self, X, y=None):
        """Statistics of ``X`` alone (forgets earlier ones). Returns ``self``."""
        self._m = None
        return self.partial_fit(X)

    def adapt(self, data):
        """Keras' spelling of :meth:`fit`."""
        self.fit(data)

    def merge(self, *others: "Standardizer") -> "Standardizer":
        """Adds the statistics of other Standardizers (other shards, threads, processes)."""
        for o in others:
            if o._m is not None:
                self._add(o._m)
        return self

    @property
    def moments(self) -> Moments:
        self._check_fitted()
        return self._m

    def _check_fitted(self):
        if self._m is None:
            raise ValueError("this Standardizer is not fitted yet: call fit, partial_fit or "
                             "adapt first")

    @property
    def n_samples_seen_(self) -> int:
        self._check_fitted()
        return int(self._m.count)

    @property
    def mean_(self):
        self._check_fitted()
        return self._m.mean

    @property
    def var_(self):
        self._check_fitted()
        return self._m.var

    @property
    def scale_(self):
        self._check_fitted()
        s = _sqrt(self.var_ + self.eps)
        return s + (s == 0)  # a feature of zero scale is left unscaled (scikit-learn's rule)

    # -- transforms ----------------------------------------------------------------------

    def _stats_for(self, x):
        mean, scale = self.mean_, self.scale_
        if is_torch(x) != is_torch(mean) or (is_torch(x) and x.device != mean.device):
            mean, scale = _like(x, mean), _like(x, scale)
        return mean, scale

    def transform(self, X, *, out=None):
        """``(X − mean_)/scale_`` in one fused pass (X like the data fitted: the same feature
        dims)."""
        self._check_fitted()
        mean, scale = self._stats_for(_as_array_lib(X))

        def stats(lib, x, plan):
            return (_per_kept(lib, x, plan, mean, "mean_"),
                    1.0 / _per_kept(lib, x, plan, scale, "scale_"))

        return _apply(X, self._reduced(len(X.shape)), stats, out)

    __call__ = transform

    def inverse_transform(self, X, *, out=None):
        """``X·scale_ + mean_`` in one fused pass."""
        self._check_fitted()
        mean, scale = self._stats_for(_as_array_lib(X))

        def stats(lib, x, plan):
            m = _per_kept(lib, x, plan, mean, "mean_")
            s = _per_kept(lib, x, plan, scale, "scale_")
            return -m / s, s

        return _apply(X, self._reduced(len(X.shape)), stats, out)

    def fit_transform(self, X, y=None):
        return self.fit(X).transform(X)

    # -- state ---------------------------------------------------------------------------

    def state_dict(self) -> dict:
        """``{"count", "mean", "m2"}`` (arrays in the fitted data's library)."""
        self._check_fitted()
        return {"count": self._m.count, "mean": self._m.mean, "m2": self._m.m2}

    def load_state_dict(self, state: dict) -> "Standardizer":
        try:
            count, mean, m2 = state["count"], state["mean"], state["m2"]
        except KeyError as e:
            raise ValueError(f"state: missing {e.args[0]!r} (expected count, mean, m2)") from None
        if tuple(mean.shape) != tuple(m2.shape):
            raise ValueError(f"state: mean {tuple(mean.shape)} and m2 {tuple(m2.shape)} "
                             f"differ in shape")
        if int(count) < 0:
            raise ValueError(f"state: count must be >= 0, got {int(count)}")
        self._m = Moments(_count_array(mean, int(count)), mean, m2)
        return self

    def to_dict(self) -> dict:
        """Settings and statistics as plain NumPy arrays (for np.savez, pickling, JSON via
        ``.tolist()``)."""
        d = {"axis": self.axis, "eps": self.eps}
        if self._m is not None:
            d.update({k: _to_numpy(v) for k, v in self.state_dict().items()})
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Standardizer":
        axis = d.get("axis", -1)
        s = cls(axis=tuple(axis) if isinstance(axis, list) else axis, eps=d.get("eps", 0.0))
        if "mean" in d:
            s.load_state_dict({k: np.asarray(d[k]) for k in ("count", "mean", "m2")})
        return s

    def __repr__(self) -> str:
        fitted = f", n_samples_seen_={self.n_samples_seen_}" if self._m is not None else ""
        return f"Standardizer(axis={self.axis}, eps={self.eps}{fitted})"


def _to_numpy(a):
    if is_torch(a):
        return a.detach().cpu().numpy()
    return np.asarray(a)


def _like(template, a):
    """``a`` in ``template``'s library and device."""
    if is_torch(template):
        t = sys.modules["torch"]
        return t.as_tensor(_to_numpy(a) if not is_torch(a) else a, device=template.device)
    return _to_numpy(a)
