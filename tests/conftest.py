"""pytest fixtures shared by the normkit tests.

- Every test runs once per CPU ISA that this build compiled and this CPU can run
  (normkit.available_cpu_isas()): the autouse `cpu_isa` fixture forces it with
  normkit.set_cpu_isa and restores the previous one afterwards. A test that does not depend on
  the ISA can opt out with ``@pytest.mark.any_isa`` (it then runs once, on the default ISA).
- `device` ("cpu", "cuda"): a test that takes it runs on the CPU with NumPy arrays and, when
  torch sees a GPU and normkit was built with CUDA, again with torch CUDA tensors (same
  assertions). In the emulation build (``build_info()["cuda"] == "emulated"``, CMake
  ``NORMKIT_CUDA_EMULATION``) the CUDA cases run too, on NumPy arrays presented as CUDA
  device memory through DLPack (tests/emucuda.py); tests that need torch CUDA tensors
  themselves (the torch modules, torch.compile) still skip there. CUDA runs are not repeated
  per CPU ISA. An ISA that differs from the one below it only in its 16-bit conversions
  (``avx512bf16``: AVX-512 plus AVX512_BF16's float→bf16 instruction; the same kernel
  sources) runs the tests with a 16-bit dtype among their parameters, not every test again:
  cpp/tests/test_vec_math.cpp checks its conversions bit for bit on every pattern class.
- `lib`: the reference.Lib that builds arrays for `device`.
"""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # `import reference` anywhere

# Outputs of at least NORMKIT_NT_BYTES are written with streaming (non-temporal) stores
# (cpu/dispatch.cpp, Note [Streaming stores]; 16 MiB by default, read once per process).
# Lowered here so that test-sized arrays of ≥ 256 KiB take that path and smaller ones the
# regular one: both are covered without 16 MiB arrays. Must precede the first kernel call.
os.environ.setdefault("NORMKIT_NT_BYTES", str(256 * 1024))

from reference import Lib  # noqa: E402

try:
    import normkit as _nk

    _ISAS = list(_nk.available_cpu_isas())
except Exception:  # normkit missing or broken: the tests report it when they import it
    _nk = None
    _ISAS = ["default"]


def _cuda_mode():
    """"gpu" (torch sees a GPU and normkit has CUDA), "emulated" (the emulation build: NumPy
    arrays presented as device memory, tests/emucuda.py), or None (CUDA cases skip)."""
    if _nk is None:
        return None
    if _nk.build_info().get("cuda") == "emulated":
        return "emulated"
    try:
        import torch
    except ImportError:
        return None
    return "gpu" if torch.cuda.is_available() and _nk.cuda_available() else None


CUDA_MODE = _cuda_mode()
CUDA = CUDA_MODE is not None


def pytest_configure(config):
    config.addinivalue_line("markers", "any_isa: run once on the default CPU ISA, not once per ISA")
    config.addinivalue_line(
        "markers", "needs_compiler: generates and compiles C++ (torch.compile's inductor backend)")


def _have_cxx_compiler() -> bool:
    import shutil

    return any(shutil.which(c) for c in (os.environ.get("CXX", ""), "c++", "g++", "clang++") if c)


def pytest_generate_tests(metafunc):
    if "cpu_isa" in metafunc.fixturenames:
        isas = _ISAS
        if metafunc.definition.get_closest_marker("any_isa"):
            isas = _ISAS[-1:]
        metafunc.parametrize("cpu_isa", isas, indirect=True, scope="function")


_CONVERSION_ONLY_ISAS = {"avx512bf16"}
_SIXTEEN_BIT = ("bfloat16", "bf16", "float16", "fp16", "half")


def pytest_collection_modifyitems(config, items):
    # A CUDA run does not depend on the CPU ISA: keep one copy — the first ISA's, or the
    # only one an any_isa test was generated with.
    keep, drop = [], []
    no_cxx = None
    for item in items:
        if item.get_closest_marker("needs_compiler"):
            if no_cxx is None:
                no_cxx = not _have_cxx_compiler()
            if no_cxx:
                item.add_marker(pytest.mark.skip(
                    reason="needs a C++ compiler (torch.compile's inductor backend); none on PATH"))
        cs = getattr(item, "callspec", None)
        first = _ISAS[-1] if item.get_closest_marker("any_isa") else _ISAS[0]
        if (
            cs is not None
            and cs.params.get("device") == "cuda"
            and "cpu_isa" in cs.params
            and cs.params["cpu_isa"] != first
        ):
            drop.append(item)
        elif (
            cs is not None
            and cs.params.get("cpu_isa") in _CONVERSION_ONLY_ISAS
            and not item.get_closest_marker("any_isa")
            and not any(t in item.name for t in _SIXTEEN_BIT)
        ):
            drop.append(item)
        else:
            keep.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture(autouse=True)
def cpu_isa(request):
    """Force the CPU ISA for one test, then restore the previous one."""
    isa = request.param
    if isa == "default" or _nk is None:
        yield isa
        return
    previous = _nk.cpu_isa()
    _nk.set_cpu_isa(isa)
    try:
        yield isa
    finally:
        _nk.set_cpu_isa(previous)


@pytest.fixture(params=["cpu", "cuda"])
def device(request):
    if request.param == "cuda" and not CUDA:
        pytest.skip("CUDA: needs torch.cuda.is_available() and normkit.cuda_available(), "
                    "or the emulation build")
    return request.param


def cuda_lib():
    """The array library of the CUDA cases: torch CUDA tensors on a GPU; in the emulation build
    NumPy arrays presented as device memory (tests/emucuda.py)."""
    return Lib("torch", "cuda") if CUDA_MODE == "gpu" else Lib("emu", "cuda")


@pytest.fixture
def lib(device):
    """NumPy on the CPU, torch tensors (or emulated device arrays) on CUDA."""
    return Lib("numpy") if device == "cpu" else cuda_lib()


@pytest.fixture
def nk():
    import normkit

    return normkit


@pytest.fixture
def threads():
    """Set normkit's thread count within a test; restores it afterwards."""
    import normkit

    before = normkit.get_num_threads()
    yield normkit.set_num_threads
    normkit.set_num_threads(before)
