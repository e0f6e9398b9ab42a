"""``python -m normkit --version`` and ``python -m normkit info``."""

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
