"""``python -m normkit.bench.profile``: the op / roof / in-cache decomposition and the
per-pass split of perf samples (issue 11 item 1). Timings are never asserted: the tests check
what is computed from them and that the pieces are wired."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest

import normkit as nk
from normkit.bench import profile as P

pytestmark = pytest.mark.any_isa


def test_verdict_names_the_limit():
    assert P.verdict(1.10, 1.0, 0.5) == "memory"          # within 15% of the roof
    assert P.verdict(2.0, 1.0, 1.8) == "arithmetic"       # in-cache time ~ the op's
    assert P.verdict(2.0, 1.0, 1.0) == "overlap"          # neither explains the time
    assert P.verdict(2.0, 1.0, 1.69) == "overlap"


def test_in_cache_rows_fit_l2_and_feed_every_thread(monkeypatch):
    for l2 in (256 * 1024, 512 * 1024, 1 << 20, 2 << 20):  # whatever this machine's L2 is
        monkeypatch.setattr(P, "L2_BYTES", l2)
        fit = l2 * 3 // 4 * 2 // (4096 * 4 * 2)
        r1, r2 = P.in_cache_rows(4096, 4, 2, 2)
        assert r2 == max(fit, 32)  # 16 rows of 4096 feed two threads (TEAM_ELEMENTS each)
        assert r1 == max(16, r2 // 2) and r1 * 4096 >= 2 * P.TEAM_ELEMENTS and r1 < r2
        # narrow rows: enough rows for every thread's share, and two points for the slope
        r1, r2 = P.in_cache_rows(64, 4, 3, 2)
        assert r1 * 64 >= 2 * P.TEAM_ELEMENTS and r1 < r2
    # a row too big for any cache: one row per thread, a single point
    assert P.in_cache_rows(10 ** 7, 4, 3, 2) == (2, 2)


def test_case_bytes_and_calls():
    c = P.Case(nk, "layer_norm", "float32", 6, 40, "fwd")
    assert c.nbytes == 6 * 40 * 4 * 2
    c.fn()()
    ref = nk.layer_norm(c.x, c.w, c.b)
    assert (c.y == ref).all()
    b = P.Case(nk, "rms_norm", "float32", 6, 40, "bwd")
    assert b.nbytes == 6 * 40 * 4 * 3
    b.fn()()
    dx, dw, db = nk.rms_norm_backward(b.dy, b.x, b.rstd, b.w, b.b)
    assert (b.grads[0] == dx).all() and (b.grads[1] == dw).all() and (b.grads[2] == db).all()


REPORT = """\
# Samples: 4K of event 'cpu-clock'
#
    41.20%  _core.cpython-311-x86_64-linux-gnu.so  [.] void normkit::cpu::avx512::layer_stats<float, float>(float const*, long, double&, double&)
    35.00%  _core.cpython-311-x86_64-linux-gnu.so  [.] normkit::cpu::avx512::(anonymous namespace)::forward_impl<float, (normkit::NormKind)0, true, true, true>(normkit::detail::RowNormProblem const&, normkit::cpu::ForwardPrep const&)::{lambda(int, long, long)#1}::operator()
    10.00%  libgomp.so.1.0.0                       [.] 0x000000000001f7da
     5.00%  [kernel.kallsyms]                      [k] clear_page_erms
     4.00%  python3.11                             [.] _PyEval_EvalFrameDefault
     2.00%  libc.so.6                              [.] __memmove_avx512_unaligned_erms
"""


def test_perf_report_split_by_pass():
    rows = P.parse_perf_report(REPORT)
    assert len(rows) == 6 and rows[0][0] == 41.2
    parts = {}
    for pct, dso, sym in rows:
        parts.setdefault(P.categorize(dso, sym), []).append(pct)
    assert parts["statistics pass"] == [41.2]
    assert parts["normalize pass"] == [35.0]
    assert parts["OpenMP fork/join/wait"] == [10.0]
    assert parts["kernel (page faults, scheduling)"] == [5.0]
    assert parts["Python and extension modules"] == [4.0]
    assert parts["other"] == [2.0]
    assert P.categorize("_core.so", "normkit::cpu::avx2::finish_column_sums<float>") == \
        "parameter-gradient reduction"
    assert P.categorize("_core.so", "void normkit::cpu::avx512::(anonymous namespace)::"
                        "backward_impl<") == "backward passes"
    assert P.categorize("_core.cpython-311-x86_64-linux-gnu.so", "0x00000000005e8dc5") == \
        "normkit (no symbols: a stripped build)"
    assert rows[0][2].startswith("void normkit::cpu::avx512::layer_stats<float, float>")


def test_main_writes_records(tmp_path, capsys):
    import normkit as nk

    out = tmp_path / "p.json"
    before = (nk.cpu_isa(), nk.get_num_threads())
    rc = P.main(["--quick", "--shapes", "64x256", "--dtypes", "float32", "--threads", "1",
                 "--json", str(out)])
    assert rc == 0
    assert (nk.cpu_isa(), nk.get_num_threads()) == before  # settings put back
    text = capsys.readouterr().out
    assert "| layer_norm | float32 | 64x256 | fwd |" in text
    assert "| rms_norm | float32 | 64x256 | bwd |" in text
    data = json.loads(out.read_text())
    assert data["threads"] == 1 and len(data["records"]) == 4
    for r in data["records"]:
        assert r["limit"] in ("memory", "arithmetic", "overlap")
        assert r["bytes"] == 64 * 256 * 4 * (2 if r["pass"] == "fwd" else 3)
        assert r["op_s"] > 0 and r["roof_s"] > 0 and r["arith_s"] > 0
        # the fraction is the median of the interleaved rounds' roof / op ratios
        assert len(r["fractions"]) == 3 and all(f > 0 for f in r["fractions"])
        assert r["of_roof"] == pytest.approx(float(np.median(r["fractions"])))


def _perf_works() -> bool:
    perf = shutil.which("perf")
    if perf is None:
        return False
    r = subprocess.run([perf, "stat", "-e", "cpu-clock", "true"], capture_output=True)
    return r.returncode == 0


@pytest.mark.skipif(not _perf_works(), reason="perf with the cpu-clock event is not available")
def test_perf_profile_finds_the_kernel_passes():
    prof = P.perf_profile("layer_norm", "float32", (2048, 1024), "fwd", 1, seconds=1.0)
    assert prof is not None and "error" not in prof, prof
    assert sum(prof["parts"].values()) == pytest.approx(100.0, abs=2.0)
    # The two forward passes are where a warm out= forward spends its samples.
    kernel = prof["parts"].get("statistics pass", 0) + prof["parts"].get("normalize pass", 0)
    assert kernel > 30.0, prof
