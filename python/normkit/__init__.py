"""normkit — fast, exact normalization kernels for NumPy, torch and any DLPack array.

    >>> import numpy as np, normkit
    >>> y = normkit.layer_norm(np.random.rand(8, 1024).astype(np.float32))

The torch integration (autograd, ``torch.compile``, ``nn.Module`` drop-ins) lives in
``normkit.torch``; the benchmark in ``python -m normkit.bench``.
"""

from __future__ import annotations

from . import _core
from ._ada_norm import ada_norm, ada_norm_backward, ada_norm_forward
from ._batch_layer_norm import (batch_layer_norm, batch_layer_norm_backward,
                                batch_layer_norm_forward)
from ._batch_norm import (batch_norm, batch_norm_apply, batch_norm_backward,
                          batch_norm_backward_apply, batch_norm_backward_reduce,
                          batch_norm_forward, batch_norm_stats)
from ._dyt import dyt, dyt_backward, dyt_forward
from ._group_norm import (group_norm, group_norm_backward, group_norm_forward,
                          instance_norm)
from ._moments import (Moments, Standardizer, destandardize, moments, moments_merge,
                       standardize)
from ._param_norm import (spectral_norm, spectral_norm_backward, spectral_norm_forward,
                          weight_norm, weight_norm_backward, weight_norm_forward)
from ._rnn import (cpu_blas_info, gru, gru_backward, gru_cell, gru_forward, lstm,
                   lstm_backward, lstm_cell, lstm_forward, rnn, rnn_backward, rnn_cell,
                   rnn_forward)
from .functional import (
    add_layer_norm,
    add_layer_norm_backward,
    add_layer_norm_forward,
    add_rms_norm,
    add_rms_norm_backward,
    add_rms_norm_forward,
    layer_norm,
    layer_norm_backward,
    layer_norm_forward,
    rms_norm,
    rms_norm_backward,
    rms_norm_forward,
)

__version__ = _core.__version__


def set_num_threads(n: int) -> None:
    """Set the number of CPU threads the kernels use (results do not depend on it).

    Until this is called, the kernels use OpenMP's default (``OMP_NUM_THREADS``, else one per
    logical CPU), and an op called through :mod:`normkit.torch` uses
    ``torch.get_num_threads()`` — so ``torch.set_num_threads`` governs both libraries. Each
    Python thread that calls normkit gets its own team of this size. In a child made by
    ``fork()`` of a process that ran a threaded normkit call (a DataLoader worker), kernels run
    on one thread.
    """
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"n: expected an int, got {type(n).__name__}")
    _core.set_num_threads(n)


def get_num_threads() -> int:
    """The number of CPU threads the kernels use (see :func:`set_num_threads`)."""
    return _core.get_num_threads()


def cpu_isa() -> str:
    """The SIMD instruction set in use: ``"scalar"``, ``"avx2"``, ``"avx512"``,
    ``"avx512bf16"`` (AVX-512 with its bf16 conversion instructions) or ``"neon"``."""
    return _core.cpu_isa()


def set_cpu_isa(name: str) -> None:
    """Force an instruction set (one of :func:`available_cpu_isas`); the environment
    variable ``NORMKIT_CPU_ISA`` does the same at start-up."""
    _core.set_cpu_isa(name)


def available_cpu_isas() -> list:
    """Instruction sets compiled in that this CPU can run, lowest first."""
    return list(_core.available_cpu_isas())


def cuda_available() -> bool:
    """True when the CUDA backend is compiled in and a GPU is present (in the emulation
    build: an emulated one)."""
    return bool(_core.cuda_available())


def cuda_status() -> str:
    """Why the CUDA backend is or is not usable here, in words: ``"available: ..."``, no NVIDIA
    driver, a driver older than this build's CUDA runtime (CUDA 13 needs driver >= 580), no
    device, or no CUDA backend in this build. Never raises; the CPU kernels work in every case."""
    return str(_core.cuda_status())


def build_info() -> dict:
    """How this copy of normkit was built. ``"cuda"`` is True (CUDA backend compiled in),
    False, or ``"emulated"`` in the test-only build whose CUDA backend runs on the CPU under
    the SIMT emulator of ``cuda/emu`` (never a release build)."""
    return {
        "version": __version__,
        "cpu_isas": list(_core.compiled_cpu_isas()),
        "cpu_isa": _core.cpu_isa(),
        "cuda": "emulated" if _core.cuda_emulated() else bool(_core.cuda_compiled()),
        "cuda_archs": [a for a in _core.cuda_architectures().split(";") if a],
        "compiler": _core.compiler_info(),
        "openmp": _core.openmp_info() or False,
    }


__all__ = [
    "lstm", "gru", "rnn", "lstm_cell", "gru_cell", "rnn_cell", "lstm_forward",
    "lstm_backward", "gru_forward", "gru_backward", "rnn_forward", "rnn_backward",
    "cpu_blas_info",
    "layer_norm",
    "layer_norm_forward",
    "layer_norm_backward",
    "rms_norm",
    "rms_norm_forward",
    "rms_norm_backward",
    "add_layer_norm",
    "add_layer_norm_forward",
    "add_layer_norm_backward",
    "add_rms_norm",
    "add_rms_norm_forward",
    "add_rms_norm_backward",
    "batch_norm",
    "batch_norm_forward",
    "batch_norm_backward",
    "batch_norm_stats",
    "moments_merge",
    "batch_norm_apply",
    "batch_norm_backward_reduce",
    "batch_norm_backward_apply",
    "group_norm",
    "group_norm_forward",
    "group_norm_backward",
    "instance_norm",
    "batch_layer_norm",
    "batch_layer_norm_forward",
    "batch_layer_norm_backward",
    "dyt",
    "dyt_forward",
    "dyt_backward",
    "ada_norm",
    "ada_norm_forward",
    "ada_norm_backward",
    "Moments",
    "moments",
    "standardize",
    "destandardize",
    "Standardizer",
    "weight_norm",
    "weight_norm_forward",
    "weight_norm_backward",
    "spectral_norm",
    "spectral_norm_forward",
    "spectral_norm_backward",
    "set_num_threads",
    "get_num_threads",
    "cpu_isa",
    "set_cpu_isa",
    "available_cpu_isas",
    "cuda_available",
    "cuda_status",
    "build_info",
]
