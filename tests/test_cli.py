"""``python -m normkit --version`` and ``python -m normkit info``."""

import re
import subprocess
import sys

import pytest


@pytest.mark.any_isa
def test_version_and_info():
    import normkit as nk

    v = subprocess.run([sys.executable, "-m", "normkit", "--version"], capture_output=True,
                       text=True, timeout=120)
    assert v.returncode == 0 and v.stdout.strip() == nk.__version__
    i = subprocess.run([sys.executable, "-m", "normkit", "info"], capture_output=True, text=True,
                       timeout=120)
    assert i.returncode == 0, i.stderr
    fields = dict(line.split(None, 1) for line in i.stdout.strip().splitlines())
    assert fields["version"] == nk.__version__
    assert fields["cpu_isa"] == nk.cpu_isa()
    assert {"cuda", "cuda_available", "threads", "compiler", "cpu_blas"} <= set(fields)


def test_cuda_status_and_openmp_facts():
    import normkit as nk

    status = nk.cuda_status()
    assert isinstance(status, str) and status
    info = nk.build_info()
    if nk.cuda_available():
        assert status.startswith(("available", "emulated"))
    elif info["cuda"] is False:
        assert "no CUDA backend" in status
    else:  # compiled in, no usable GPU: the reason names the driver or the device
        assert "driver" in status or "device" in status, status
    if info["openmp"]:
        assert info["openmp"].startswith("OpenMP ")
        assert nk._core.openmp_team_size(2) == 2
    else:
        assert nk._core.openmp_team_size(2) == 1
    with pytest.raises(ValueError, match="openmp_team_size: n: expected >= 1"):
        nk._core.openmp_team_size(0)


@pytest.mark.any_isa
def test_cuda_status_names_an_old_or_missing_driver():
    # What a user with an old driver (or none) reads: the emulation build's driver version is
    # set by NK_EMU_DRIVER (cuda/emu/emu.cpp), and the device queries then fail as a real old
    # driver makes them fail.
    import os

    import normkit as nk

    if nk.build_info()["cuda"] != "emulated":
        pytest.skip("needs the emulation build (NK_EMU_DRIVER sets its driver's CUDA version)")

    def run(driver):
        out = subprocess.run(
            [sys.executable, "-c", "import normkit as nk\n"
             "print(nk.cuda_available()); print(nk.cuda_status())"],
            env=dict(os.environ, NK_EMU_DRIVER=str(driver)), capture_output=True, text=True,
            timeout=120)
        assert out.returncode == 0, out.stderr
        available, status = out.stdout.splitlines()
        return available, status

    available, status = run(12080)
    assert available == "False"
    assert re.search(r"driver supports CUDA 12\.8, older than this build's CUDA 1\d\.\d runtime "
                     r"\(CUDA 1\d needs driver >= \d+\); the CPU kernels work", status), status
    available, status = run(0)
    # (The emulation build prefixes "emulated (...); " to what a release build says.)
    assert available == "False" and "no NVIDIA driver: libcuda.so.1 could not be loaded" in status, \
        status
