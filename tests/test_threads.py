"""Note [Threads follow torch] (normkit/torch/_registry.py): a CPU kernel called through
normkit.torch uses torch.get_num_threads() threads unless normkit.set_num_threads was called.
Observed, not timed: the threads this process has (/proc/self/task) before and after one large
normkit call, each case in a fresh interpreter so no earlier OpenMP pool is in the count."""

import os
import subprocess
import sys

import pytest

pytest.importorskip("torch")
pytestmark = [
    pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="needs /proc/self/task (Linux)"),
    pytest.mark.any_isa,
]

# The op runs on a new Python thread: GNU OpenMP keeps the thread count per thread, so there
# torch.set_num_threads (called on the main thread) cannot reach normkit's OpenMP default even
# where both libraries share one libgomp — only normkit.torch following torch can.
_CASE = r"""
import os, sys, threading, torch, normkit as nk, normkit.torch as nkt
torch_threads, nk_threads = int(sys.argv[1]), int(sys.argv[2])
torch.set_num_threads(torch_threads)
if nk_threads:
    nk.set_num_threads(nk_threads)
x = torch.randn(2048, 4096)
tasks = lambda: len(os.listdir("/proc/self/task"))
seen = []
def work():
    before = tasks()
    nkt.layer_norm(x)
    seen.extend([nk.get_num_threads(), tasks() - before])
t = threading.Thread(target=work)
t.start()
t.join()
print(*seen)
"""


def _run(torch_threads, nk_threads):
    out = subprocess.run([sys.executable, "-c", _CASE, str(torch_threads), str(nk_threads)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    threads, new_tasks = map(int, out.stdout.split())
    return threads, new_tasks


def _default_threads():
    out = subprocess.run([sys.executable, "-c", "import normkit; print(normkit.get_num_threads())"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return int(out.stdout)


def test_torch_ops_follow_torch_set_num_threads():
    if _default_threads() < 2:
        pytest.skip("OpenMP's default here is 1 thread: following torch's 1 looks the same")
    # One torch thread: normkit opens no region, so no OpenMP worker appears.
    assert _run(1, 0) == (1, 0)
    # Two: a team of two — one new worker beside the calling thread.
    threads, new_tasks = _run(2, 0)
    assert threads == 2 and new_tasks >= 1


def test_explicit_normkit_threads_win_over_torch():
    assert _run(2, 1) == (1, 0)
    threads, new_tasks = _run(1, 2)
    assert threads == 2 and new_tasks >= 1


def test_default_num_threads_rejects_negative():
    import normkit as nk

    with pytest.raises(ValueError, match="n: expected >= 0"):
        nk._core.set_default_num_threads(-1)


def test_normkit_threads_leave_torch_pool_alone():
    # normkit.set_num_threads sets normkit's count only: torch's intra-op pool keeps its size
    # (the libraries share libgomp here, so a careless omp_set_num_threads would change it).
    case = ("import torch, normkit as nk, normkit.torch as nkt\n"
            "torch.set_num_threads(2)\n"
            "nk.set_num_threads(1)\n"
            "nkt.layer_norm(torch.randn(256, 1024))\n"
            "print(torch.get_num_threads(), nk.get_num_threads())\n")
    out = subprocess.run([sys.executable, "-c", case], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["2", "1"]
