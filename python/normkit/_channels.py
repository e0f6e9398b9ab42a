"""The channel-wise families' layouts on the Python side (DyT, batch / group / instance norm,
BLN): which arrays the core walks in place (``cpp/src/channel_layout.hpp``: channels last, or
channels first with compact planes or a unit-stride C), and one copy for any other view."""

from __future__ import annotations

import sys

import numpy as np

from ._arrays import is_torch

__all__ = ["layout_ok", "prepare", "like_layout", "empty_like"]


def layout_ok(a, channels_last: bool) -> bool:
    """Whether the core can walk `a` in place: channels last needs a unit-stride last dim;
    channels first needs the dims after C compact, or a unit-stride C (channels-last memory)."""
    if is_torch(a):
        shape, strides, item = tuple(a.shape), tuple(a.stride()), 1
    else:
        shape, strides, item = a.shape, a.strides, a.itemsize
    nd = len(shape)
    if nd == 0 or 0 in shape:
        return True
    if channels_last or nd <= 2:
        return shape[-1] == 1 or strides[-1] == item
    expect = item
    for i in range(nd - 1, 1, -1):
        if shape[i] != 1:
            if strides[i] != expect:
                return shape[1] == 1 or strides[1] == item
            expect *= shape[i]
    return True


def prepare(a, channels_last: bool):
    """`a` itself when the core can use it in place, else one contiguous copy (misaligned NumPy
    data is always copied: the core refuses it)."""
    if a is None:
        return None
    if type(a) is np.ndarray:
        if not a.flags.aligned or not layout_ok(a, channels_last):
            return np.array(a, order="C")
        return a
    if is_torch(a):
        return a if layout_ok(a, channels_last) else a.contiguous()
    return a  # other libraries: the core names what it cannot use


def _strides(a):
    return tuple(a.stride()) if is_torch(a) else getattr(a, "strides", None)


def like_layout(a, x, lib):
    """`a` (shaped like x) in x's memory layout: the core walks every array of a call the same
    way, so a gradient that autograd made contiguous for a channels_last x is copied once."""
    if (a is None or not hasattr(a, "shape") or tuple(a.shape) != tuple(x.shape)
            or _strides(a) == _strides(x)):
        return a  # (a shape mismatch is the core's to report)
    if type(a) is np.ndarray or is_torch(a):
        t = empty_like(lib, x)
        t[...] = a
        return t
    return a


def empty_like(lib, x):
    """An output with x's shape, dtype, device and memory layout."""
    if is_torch(x):
        return sys.modules["torch"].empty_like(x)
    if type(x) is np.ndarray:
        return np.empty_like(x)
    return lib.empty_like_x(x)
