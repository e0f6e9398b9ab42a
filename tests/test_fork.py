"""Note [Fork] (cpp/src/runtime.cpp): a fork()ed child of a process that ran a multi-threaded
normkit call — a torch DataLoader worker — must compute (on one thread) instead of hanging in
GNU OpenMP's dead pool; a child of a process that never ran one keeps its threads. Each case
runs in a fresh interpreter, so the test process's own OpenMP state does not matter."""

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")

_CHILD = r"""
import os, sys, time, numpy as np, normkit as nk
nk.set_num_threads(2)
x = np.random.default_rng(0).standard_normal((2048, 4096)).astype(np.float32)
used = sys.argv[1] == "used"
if used:
    ref = nk.layer_norm(x)          # a parallel region in the parent
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    os.close(r)
    y = nk.layer_norm(x)
    nk.set_num_threads(2)           # ignored in such a child
    ok = (not used) or y.tobytes() == ref.tobytes()
    os.write(w, f"{nk.get_num_threads()} {int(ok)}".encode())
    os._exit(0)
os.close(w)
deadline = time.time() + 60
while time.time() < deadline:
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
        print(os.read(r, 100).decode(), os.waitstatus_to_exitcode(status))
        sys.exit(0)
    time.sleep(0.02)
os.kill(pid, 9)
print("hung")
sys.exit(1)
"""


def _run(mode):
    p = subprocess.run([sys.executable, "-c", _CHILD, mode], capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    threads, ok, code = p.stdout.split()
    return int(threads), ok == "1", int(code)


@pytest.mark.any_isa
def test_child_after_parallel_work_computes_on_one_thread():
    threads, ok, code = _run("used")
    assert code == 0 and ok, "the child's result differs from the parent's"
    assert threads == 1


@pytest.mark.any_isa
def test_child_of_a_fresh_process_keeps_its_threads():
    threads, ok, code = _run("fresh")
    assert code == 0 and ok
    assert threads == 2
