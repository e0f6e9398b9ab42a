"""``python -m normkit.bench --plot DIR`` (normkit/bench/plot.py): the figures of a run — a
tiny real run saved with --json, then plotted from the file with --render (as the docs' figures
are made), and the refusal of a run without normkit figures."""

import json
import subprocess
import sys

import pytest

pytest.importorskip("matplotlib")
pytestmark = pytest.mark.any_isa


def _bench(*args):
    out = subprocess.run([sys.executable, "-m", "normkit.bench", *args], capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_plot_of_a_saved_run(tmp_path):
    run, fig = tmp_path / "run.json", tmp_path / "fig"
    _bench("--quick", "--ops", "layer_norm,rms_norm", "--dtypes", "fp32", "--shapes", "64x256",
           "--passes", "fwd", "--channel-ops", "none", "--no-overhead", "--no-numpy",
           "--threads", "1", "--json", str(run))
    cases = json.loads(run.read_text())["cases"]
    assert [c["op"] for c in cases] == ["layer_norm", "rms_norm"]
    stdout = _bench("--render", str(run), "--plot", str(fig))
    for name in ("speedup_vs_torch.png", "roof_fraction.png"):
        data = (fig / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, name
        assert f"wrote {fig / name}" in stdout


def test_plot_refuses_a_run_without_normkit(tmp_path):
    from normkit.bench import plot

    rec = {"op": "layer_norm", "dtype": "float32", "shape": [8, 8], "pass": "fwd",
           "mode": "fresh", "libs": {"torch": {"median_s": 1.0, "roof_frac": 0.5}}}
    with pytest.raises(SystemExit, match="no case that normkit ran"):
        plot.write(str(tmp_path), {"machine": {}, "cases": [rec]})
