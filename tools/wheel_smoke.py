"""Smoke checks of an installed normkit wheel (tools/test_wheel.sh runs this in a compiler-free
root). Exits non-zero, saying what failed, if any check fails."""

import os
import sys

import numpy as np

import normkit as nk

failures = []


def check(ok, what):
    print(("ok    " if ok else "FAIL  ") + what)
    if not ok:
        failures.append(what)


info = nk.build_info()
print("build_info:", info)
check("site-packages" in nk.__file__, f"normkit is the installed wheel ({nk.__file__})")
check(info["cuda"] != "emulated",
      "a release build: build_info()['cuda'] is not 'emulated'")

# Every CPU ISA compiled in and runnable here, against a float64 reference.
rng = np.random.default_rng(0)
x = rng.standard_normal((37, 1001)).astype(np.float32)
w = rng.standard_normal(1001).astype(np.float32)
b = rng.standard_normal(1001).astype(np.float32)
x64 = x.astype(np.float64)
ref = (x64 - x64.mean(1, keepdims=True)) / np.sqrt(x64.var(1, keepdims=True) + 1e-5) * w + b
isas = nk.available_cpu_isas()
check(len(isas) >= 1, f"available CPU ISAs: {isas}")
for isa in isas:
    nk.set_cpu_isa(isa)
    y = np.asarray(nk.layer_norm(x, w, b, eps=1e-5))
    err = float(np.abs(y - ref).max())
    check(err < 1e-4, f"layer_norm on {isa}: max |err| {err:.2e} vs float64")

# OpenMP really threaded.
check(bool(info.get("openmp")), f"build_info()['openmp'] = {info.get('openmp')!r}")
nk.set_num_threads(2)
team = nk._core.openmp_team_size(2)
check(team == 2, f"a 2-thread normkit region runs on {team} threads")

# No GPU and no driver here: False without raising, and the reason.
try:
    avail = nk.cuda_available()
    check(avail is False, f"cuda_available() = {avail!r}")
except Exception as e:  # noqa: BLE001
    check(False, f"cuda_available() raised {e!r}")
status = nk.cuda_status()
check(isinstance(status, str) and "driver" in status.lower(), f"cuda_status(): {status!r}")

if failures:
    print(f"wheel_smoke: {len(failures)} check(s) failed", file=sys.stderr)
    sys.exit(1)
print("wheel_smoke: all checks passed")
