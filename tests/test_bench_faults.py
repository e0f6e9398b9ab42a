"""``python -m normkit.bench.faults`` (the cost of freshly mapped outputs, issue 11 item 5):
it runs each allocator setting in its own interpreter and reports every case. A measurement
(no timing is asserted): the test checks it runs and reports what it says it does."""

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.any_isa


def test_faults_reports_every_case_under_every_setting(tmp_path):
    out = tmp_path / "faults.json"
    run = subprocess.run([sys.executable, "-m", "normkit.bench.faults", "--shape", "64x256",
                          "--threads", "1", "--reps", "3", "--json", str(out)],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    saved = json.loads(out.read_text())
    assert set(saved["ms"]) == {"default", "keep"}
    assert saved["settings"]["keep"]["MALLOC_MMAP_THRESHOLD_"] == str(1 << 30)
    for setting, cases in saved["ms"].items():
        assert {"normkit fresh (NumPy)", "normkit out= (NumPy)",
                "np.empty + fill (faults only)"} <= set(cases), setting
        assert all(v > 0 for v in cases.values()), cases
    assert "faults per fresh call" in run.stdout
