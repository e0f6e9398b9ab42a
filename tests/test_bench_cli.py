"""``python -m normkit.bench --isa``: the run uses and records the instruction set asked for,
and refuses one this machine cannot run, naming the choices."""

import json
import subprocess
import sys

import pytest

import normkit

pytestmark = pytest.mark.any_isa


def _bench(*args):
    return subprocess.run([sys.executable, "-m", "normkit.bench", *args], capture_output=True,
                          text=True, timeout=600)


def test_isa_flag_runs_and_records_the_isa(tmp_path):
    isa = normkit.available_cpu_isas()[0]  # the lowest: never the default where there are more
    run = _bench("--quick", "--isa", isa, "--ops", "rms_norm", "--dtypes", "fp32", "--shapes",
                 "16x256", "--passes", "fwd", "--channel-ops", "none", "--no-overhead",
                 "--no-numpy", "--threads", "1", "--json", str(tmp_path / "run.json"))
    assert run.returncode == 0, run.stderr
    assert json.loads((tmp_path / "run.json").read_text())["machine"]["normkit_isa"] == isa


def test_isa_flag_refuses_an_unavailable_isa():
    run = _bench("--isa", "no-such-isa")
    assert run.returncode != 0
    assert "--isa: 'no-such-isa' is not available here; choose from" in run.stderr
