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
