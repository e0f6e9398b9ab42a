#!/usr/bin/env bash
# tools/gpu_check.sh OUTDIR — normkit's one-call check on a machine with an NVIDIA GPU.
#
#   0. preflight (seconds): nvidia-smi lists a GPU, nvcc is found, torch sees CUDA; otherwise
#      one line on stderr, OUTDIR/summary.json with "ok": false, exit 2
#   1. build for this GPU's architecture only, the two builds side by side:
#        C++ core + tests   cmake -G Ninja, Release, NORMKIT_BUILD_TESTS=ON  -> build/
#        Python package     pip install --no-build-isolation --no-deps .     -> pybuild/
#   2. tests, the C++ and the Python chain side by side:
#        ctest (all groups, -j8), then normkit_tests with every *_cuda group (row norms, DyT, batch / group / batch layer norm, weight / spectral norm, the RNNs: cuBLAS
#        from the toolkit's lib64 on the loader path; their CPU comparison needs scipy-openblas32,
#        else that group skips).
#        import normkit (CUDA compiled in and usable), then pytest -k cuda -n 8
#   3. python -m normkit.bench --device cuda --quick --json OUTDIR/bench.json (alone)
#   4. OUTDIR/summary.json; exit 0 only when every step passed
#
# Every step has a timeout and the whole run a budget (NORMKIT_GPU_CHECK_BUDGET, 450 s):
# a step gets min(its cap, what is left of the budget less a reserve for the steps after
# it). Needs no network. See tools/README.md for the outputs.
#
# Environment: PYTHON (default python, else python3) · NORMKIT_GPU_CHECK_WORK (where the
# build trees go; default OUTDIR) · NORMKIT_GPU_CHECK_BUDGET (seconds, default 450) ·
# NORMKIT_GPU_CHECK_DRY_RUN=1 (log the commands instead of running them; no GPU needed).
set -euo pipefail

if [[ $# -ne 1 || "$1" == -* ]]; then
  echo "usage: tools/gpu_check.sh OUTDIR" >&2
  exit 64
fi

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
mkdir -p "$1"
OUT="$(cd "$1" && pwd)"
WORK="${NORMKIT_GPU_CHECK_WORK:-$OUT}"
mkdir -p "$WORK"
WORK="$(cd "$WORK" && pwd)"
BUDGET="${NORMKIT_GPU_CHECK_BUDGET:-450}"
DRY="${NORMKIT_GPU_CHECK_DRY_RUN:-0}"
NPROC="$(nproc 2>/dev/null || echo 4)"
T_END=$((SECONDS + BUDGET))

PY="${PYTHON:-python}"
command -v "$PY" >/dev/null 2>&1 || PY=python3
PY3=python3
command -v "$PY3" >/dev/null 2>&1 || PY3="$PY"

STEPS="$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")"
SUMMARY_WRITTEN=0
export GC_OUT="$OUT" GC_STEPS="$STEPS" GC_BUDGET="$BUDGET" GC_REASON="" GC_MISSING=""
export GC_STARTED="$(date -u +%Y-%m-%dT%H:%M:%SZ)" GC_T0="$(date +%s.%N)"
export GC_COMMIT="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo none)"
export GC_DIRTY="$(git -C "$ROOT" status --porcelain 2>/dev/null | grep -c . || true)"
export GC_GPU_NAME="" GC_DRIVER="" GC_CC="" GC_ARCH="" GC_NVCC="" GC_TORCH="" GC_TORCH_CUDA=""
export GC_GPU_COUNT="" GC_GPU_MEM=""

log() { printf 'gpu_check: %s\n' "$*"; }
first_line() { tr -s '\r\n\t' '   ' | sed 's/^ *//; s/ *$//' | cut -c1-300; }

# ---------------------------------------------------------------------------------------
# summary.json (python3, stdlib only). Exit status 0 when ok, 1 otherwise.
# ---------------------------------------------------------------------------------------
write_summary() {
  SUMMARY_WRITTEN=1
  "$PY3" - <<'PYEOF'
import glob, json, math, os, re, sys, time
import xml.etree.ElementTree as ET

out = os.environ["GC_OUT"]
env = os.environ.get
reason = env("GC_REASON") or None


def read(rel):
    try:
        with open(os.path.join(out, rel), errors="replace") as f:
            return f.read()
    except OSError:
        return ""


steps = []
for path in sorted(glob.glob(os.path.join(env("GC_STEPS"), "*.tsv"))):
    with open(path) as f:
        parts = f.read().rstrip("\n").split("\t")
    name, rc, t0, t1, log, limit, note = (parts + [""] * 7)[:7]
    rc = None if rc in ("", "-") else int(rc)
    secs = round(float(t1) - float(t0), 1) if t0 and t1 else 0.0
    if rc is None:
        status = "skipped"
    elif rc == 0:
        status = "passed"
    elif rc in (124, 137):
        status = "timeout"
        note = note or f"killed after {limit} s"
    else:
        status = "failed"
    steps.append({"name": name, "rc": rc, "seconds": secs, "log": log or None,
                  "status": status, "timeout_s": int(limit) if limit else None,
                  "note": note or None})
by_name = {s["name"]: s for s in steps}


def fail(name, note):
    s = by_name.get(name)
    if s and s["status"] in ("passed", "failed"):
        s["status"] = "failed"
        s["note"] = s["note"] or note


# C++ tests: the direct run's "N passed, M failed, K skipped" line.
ctest = None
m = re.findall(r"^(\d+) passed, (\d+) failed(?:, (\d+) skipped)?\s*$", read("cuda-tests.log"), re.M)
if m:
    p, f_, k = m[-1]
    ctest = {"passed": int(p), "failed": int(f_), "skipped": int(k or 0)}
s = by_name.get("cuda-tests")
if s and s["rc"] == 77:
    s["note"] = "every CUDA test skipped (exit 77): the tests saw no device"
if ctest and ctest["passed"] == 0:
    fail("cuda-tests", "no CUDA test passed")

# ctest's own summary: groups.
ctest_groups = None
log = read("ctest.log")
m = re.findall(r"(\d+)% tests passed, (\d+) tests? failed out of (\d+)", log)
if m:
    _, nfail, total = (int(v) for v in m[-1])
    skipped = re.findall(r"^\s*\d+ - (\S+) \((?:Skipped|Not Run|Disabled)\)", log, re.M)
    ctest_groups = {"passed": total - nfail - len(skipped), "failed": nfail,
                    "skipped": len(skipped), "total": total, "skipped_groups": skipped}
    cuda_skipped = [g for g in skipped if g.endswith("_cuda")]
    if cuda_skipped:
        fail("ctest", "CUDA groups skipped: " + ", ".join(cuda_skipped))
    if not any(g in log for g in ("row_norm_cuda", "determinism_cuda", "errors_cuda")):
        fail("ctest", "no CUDA groups registered (CUDA backend not compiled?)")

# Configure: the CUDA backend must be on.
if by_name.get("cmake-configure", {}).get("status") == "passed" and \
        "normkit: CUDA backend ON" not in read("cmake-configure.log"):
    fail("cmake-configure", "CMake did not turn the CUDA backend on (see the log)")

# pytest: the junit xml, else the log's last summary line.
pytest = None
xml = os.path.join(out, "pytest-cuda.xml")
if os.path.exists(xml):
    try:
        root = ET.parse(xml).getroot()
        suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
        tot = {k: sum(int(su.get(k, 0)) for su in suites)
               for k in ("tests", "failures", "errors", "skipped")}
        pytest = {"passed": tot["tests"] - tot["failures"] - tot["errors"] - tot["skipped"],
                  "failed": tot["failures"], "errors": tot["errors"],
                  "skipped": tot["skipped"], "source": "pytest-cuda.xml"}
    except Exception as exc:  # a truncated xml (timeout): fall back to the log
        pytest = None
if pytest is None:
    lines = [l for l in read("pytest-cuda.log").splitlines() if re.search(r"\d+ (passed|failed|skipped|errors?)\b", l) and " in " in l]
    if lines:
        counts = dict((w.rstrip("s") if w.startswith("error") else w, int(n))
                      for n, w in re.findall(r"(\d+) (passed|failed|skipped|errors?|xfailed|xpassed|deselected)", lines[-1]))
        pytest = {"passed": counts.get("passed", 0), "failed": counts.get("failed", 0),
                  "errors": counts.get("error", 0), "skipped": counts.get("skipped", 0),
                  "source": "pytest-cuda.log"}
s = by_name.get("pytest-cuda")
if s and s["rc"] == 5:
    s["note"] = "pytest collected no test (exit 5)"
if pytest and pytest["passed"] == 0:
    fail("pytest-cuda", "no CUDA test case passed")

# normkit as installed.
build_info = None
txt = read("build_info.json")
if txt:
    try:
        build_info = json.loads(txt)
    except ValueError:
        pass

# Benchmark: errors of normkit's cases and checks over their tolerance.
bench = None
bj = os.path.join(out, "bench.json")
if os.path.exists(bj):
    bench = {"json": "bench.json", "text": "bench.txt"}
    try:
        with open(bj) as f:
            data = json.load(f)
        tol = {"float32": 1e-3, "bfloat16": 6e-2, "float16": 1e-2}
        cases = data.get("cases", [])
        label = lambda r: f"{r['op']} {r['dtype']} {r['shape']} {r['pass']} {r['mode']}"
        errors = [label(r) + ": " + r["libs"]["normkit"]["error"] for r in cases
                  if "error" in r.get("libs", {}).get("normkit", {})]
        def bad_check(r):
            libs = r.get("libs", {})
            both_ran = all(k in libs and "error" not in libs[k] for k in ("normkit", "torch"))
            c = r.get("check")
            if c is None:  # NaN is written as null; a missing peer leaves no check
                return both_ran
            return not c <= tol.get(r["dtype"], 1e-3)
        bad = [label(r) + f": check {r.get('check')}" for r in cases if bad_check(r)]
        sp = [r["speedup_vs_torch"] for r in cases if r.get("speedup_vs_torch")]
        bench.update({
            "cases": len(cases), "wall_s": data.get("wall_s"),
            "normkit_errors": errors, "checks_over_tolerance": bad,
            "geomean_speedup_vs_torch": round(math.exp(sum(map(math.log, sp)) / len(sp)), 3) if sp else None,
        })
        if errors:
            fail("bench", f"{len(errors)} normkit case(s) raised")
        elif bad:
            fail("bench", f"{len(bad)} case(s) differ from torch beyond the tolerance")
        if not cases:
            fail("bench", "bench.json has no cases")
    except Exception as exc:
        bench["parse_error"] = f"{type(exc).__name__}: {exc}"
        fail("bench", "bench.json unreadable")
elif by_name.get("bench", {}).get("status") == "passed":
    fail("bench", "no bench.json written")

# A failed step without a note: the last line of its log says most.
for s in steps:
    if s["status"] in ("failed", "timeout") and not s["note"] and s["log"]:
        tail = [l.strip() for l in read(s["log"]).splitlines() if l.strip()]
        if tail:
            s["note"] = "log ends: " + tail[-1][:200]

missing = [m for m in (env("GC_MISSING") or "").split() if m]
bad_steps = [s for s in steps if s["status"] != "passed"]
ok = reason is None and bool(steps) and not bad_steps
if not steps and reason is None:
    reason = "no step was recorded"
if reason is None and bad_steps:
    reason = "; ".join(f"{s['name']}: {s['status']}" + (f" ({s['note']})" if s["note"] else "")
                       for s in bad_steps)
if reason is None and missing:
    reason = "missing Python modules: " + ", ".join(missing)
    ok = False

cc = env("GC_CC") or None
summary = {
    "ok": ok,
    "reason": reason,
    "started": env("GC_STARTED"),
    "wall_seconds": round(time.time() - float(env("GC_T0")), 1),
    "budget_seconds": int(env("GC_BUDGET")),
    "commit": env("GC_COMMIT"),
    "dirty_files": int(env("GC_DIRTY") or 0),
    "dry_run": env("NORMKIT_GPU_CHECK_DRY_RUN", "0") == "1",
    "gpu": {
        "name": env("GC_GPU_NAME") or None,
        "count": int(env("GC_GPU_COUNT")) if (env("GC_GPU_COUNT") or "").isdigit() else None,
        "memory": env("GC_GPU_MEM") or None,
        "driver": env("GC_DRIVER") or None,
        "compute_capability": cc,
        "cuda_architectures": env("GC_ARCH") or None,
        "nvcc": env("GC_NVCC") or None,
        "torch": env("GC_TORCH") or None,
        "torch_cuda": env("GC_TORCH_CUDA") or None,
    },
    "missing_modules": missing,
    "steps": steps,
    "ctest": ctest,
    "ctest_groups": ctest_groups,
    "pytest": pytest,
    "build_info": build_info,
    "bench": bench,
}
with open(os.path.join(out, "summary.json"), "w") as f:
    json.dump(summary, f, indent=2)
    f.write("\n")

for s in steps:
    extra = f"  {s['note']}" if s["note"] else ""
    print(f"gpu_check:   {s['status']:<8} {s['seconds']:6.1f} s  {s['name']}{extra}")
for key, val in (("ctest (CUDA groups)", ctest), ("pytest -k cuda", pytest)):
    if val:
        print(f"gpu_check:   {key}: {val['passed']} passed, {val['failed']} failed, {val['skipped']} skipped")
print(f"gpu_check: {'OK' if ok else 'FAILED'} in {summary['wall_seconds']:.0f} s"
      + ("" if ok else f": {reason}") + f" -> {os.path.join(out, 'summary.json')}")
sys.exit(0 if ok else 1)
PYEOF
}

on_exit() {
  local rc=$?
  if [[ $SUMMARY_WRITTEN == 0 ]]; then
    GC_REASON="gpu_check.sh stopped unexpectedly (exit $rc)"
    write_summary >/dev/null 2>&1 || true
  fi
  rm -rf "$STEPS"
}
trap on_exit EXIT
trap 'exit 130' INT TERM

# No GPU (or no toolchain): the reason on stderr, summary.json, exit 2.
no_gpu() {
  GC_REASON="$1"
  echo "gpu_check: $1" >&2
  record_step 00 preflight 2 "$T_PRE0" "$(date +%s.%N)" "" "" "$1"
  write_summary >/dev/null || true
  exit 2
}

# ---------------------------------------------------------------------------------------
# Steps. A record: NAME, rc ("-" = skipped), start, end, log (relative to OUTDIR), limit, note.
# ---------------------------------------------------------------------------------------
record_step() {  # SEQ NAME RC T0 T1 LOG LIMIT NOTE
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$2" "$3" "$4" "$5" "$6" "$7" "$(printf '%s' "$8" | first_line)" \
    >"$STEPS/$1.tsv"
}

skip_step() {  # SEQ NAME LOG NOTE
  local t; t="$(date +%s.%N)"
  record_step "$1" "$2" - "$t" "$t" "$3" "" "$4"
  printf '%s\n' "skipped: $4" >"$OUT/$3"
  log "[$2] skipped: $4"
}

step_rc() { cut -f2 "$STEPS/$1.tsv" 2>/dev/null || echo -; }

# run_step SEQ NAME CAP RESERVE LOG CMD...: CMD under `timeout`, output to OUTDIR/LOG.
run_step() {
  local seq=$1 name=$2 cap=$3 reserve=$4 logf=$5
  shift 5
  local left=$((T_END - SECONDS - reserve)) limit=$cap
  ((left < limit)) && limit=$left
  if ((limit < 10)); then
    skip_step "$seq" "$name" "$logf" "no time left in the ${BUDGET} s budget"
    return 0
  fi
  log "[$name] running (limit ${limit} s, log $logf)"
  local t0 t1 rc=0
  t0="$(date +%s.%N)"
  {
    printf '$'; printf ' %q' "$@"; printf '\n'
  } >"$OUT/$logf"
  if [[ $DRY == 1 ]]; then
    echo "(dry run: not executed)" >>"$OUT/$logf"
  else
    timeout -k 5 "$limit" "$@" >>"$OUT/$logf" 2>&1 </dev/null || rc=$?
  fi
  t1="$(date +%s.%N)"
  record_step "$seq" "$name" "$rc" "$t0" "$t1" "$logf" "$limit" ""
  log "[$name] rc=$rc"
  return 0
}

# ---------------------------------------------------------------------------------------
# 0. Preflight: GPU, nvcc, torch CUDA (fast; nothing is built before these pass)
# ---------------------------------------------------------------------------------------
T_PRE0="$(date +%s.%N)"
log "checkout $ROOT ($GC_COMMIT), output $OUT, work $WORK, budget ${BUDGET} s, $NPROC cores"

if [[ $DRY == 1 ]]; then
  log "DRY RUN: GPU checks not enforced, commands logged but not run"
fi
# All three are looked at (for the record); the first failure is the reason.
PRE_REASON=""
preflight_fail() { [[ -n "$PRE_REASON" ]] || PRE_REASON="$1"; }

if ! command -v nvidia-smi >/dev/null 2>&1; then
  preflight_fail "no NVIDIA GPU visible (nvidia-smi: not found; no NVIDIA driver installed?)"
else
  smi_rc=0
  smi="$(timeout 30 nvidia-smi --query-gpu=name,driver_version,compute_cap,memory.total \
           --format=csv,noheader 2>&1)" || smi_rc=$?
  if [[ $smi_rc -ne 0 ]] && grep -q 'compute_cap' <<<"$smi"; then  # a driver without that field
    smi_rc=0
    smi="$(timeout 30 nvidia-smi --query-gpu=name,driver_version,memory.total \
             --format=csv,noheader 2>&1)" || smi_rc=$?
    [[ $smi_rc -eq 0 ]] && smi="$(sed 's/^\([^,]*\), *\([^,]*\),/\1, \2, ,/' <<<"$smi")"
  fi
  timeout 30 nvidia-smi >"$OUT/nvidia-smi.txt" 2>&1 || true
  if [[ $smi_rc -ne 0 || -z "$smi" ]]; then
    preflight_fail "no NVIDIA GPU visible (nvidia-smi: $(first_line <<<"${smi:-no output}") (exit $smi_rc))"
  else
    GC_GPU_COUNT="$(grep -c . <<<"$smi")"
    IFS=',' read -r GC_GPU_NAME GC_DRIVER smi_cc GC_GPU_MEM <<<"$(head -1 <<<"$smi")"
    GC_GPU_NAME="$(first_line <<<"$GC_GPU_NAME")"; GC_DRIVER="$(first_line <<<"$GC_DRIVER")"
    GC_GPU_MEM="$(first_line <<<"$GC_GPU_MEM")"; GC_CC="$(first_line <<<"$smi_cc")"
    log "GPU: $GC_GPU_NAME (x$GC_GPU_COUNT), driver $GC_DRIVER, cc ${GC_CC:-?}, $GC_GPU_MEM"
  fi
fi

NVCC="$(command -v nvcc 2>/dev/null || true)"
if [[ -z "$NVCC" && -x /usr/local/cuda/bin/nvcc ]]; then
  NVCC=/usr/local/cuda/bin/nvcc
  export PATH="/usr/local/cuda/bin:$PATH"
fi
if [[ -z "$NVCC" ]]; then
  preflight_fail "nvcc not found (not on PATH, not in /usr/local/cuda/bin)"
else
  GC_NVCC="$("$NVCC" --version 2>&1 | sed -n 's/.*release \([0-9][0-9.]*\).*/\1/p' | head -1)"
  log "nvcc: $NVCC (CUDA ${GC_NVCC:-?})"
fi

torch_rc=0
torch_out="$(timeout 90 "$PY" -c '
import torch
print("torch", torch.__version__, torch.version.cuda)
assert torch.cuda.is_available(), "torch.cuda.is_available() is False"
print(torch.__version__, torch.version.cuda, "%d.%d" % torch.cuda.get_device_capability(0), sep="|")
' 2>&1)" || torch_rc=$?
if [[ $torch_rc -ne 0 ]]; then
  read -r _ GC_TORCH GC_TORCH_CUDA <<<"$(grep '^torch ' <<<"$torch_out" | head -1)" || true
  preflight_fail "torch sees no CUDA GPU ($PY: $(tail -1 <<<"${torch_out:-no output}" | first_line))"
else
  IFS='|' read -r GC_TORCH GC_TORCH_CUDA torch_cc <<<"$(tail -1 <<<"$torch_out")"
  GC_CC="${torch_cc:-$GC_CC}"
  log "torch $GC_TORCH (CUDA $GC_TORCH_CUDA), device capability $GC_CC"
fi

if [[ -n "$PRE_REASON" ]]; then
  if [[ $DRY == 1 ]]; then log "(dry run, ignored) $PRE_REASON"; else no_gpu "$PRE_REASON"; fi
fi

# The CUDA architecture to build: the compute capability's digits ("9.0" -> 90), else native.
if [[ "$GC_CC" =~ ^([0-9]+)\.([0-9]+)$ ]]; then
  GC_ARCH="${BASH_REMATCH[1]}${BASH_REMATCH[2]}"
else
  GC_ARCH=native
fi
log "building for CMAKE_CUDA_ARCHITECTURES=$GC_ARCH"

# Python modules the steps need (reported, not installed: there is no network).
GC_MISSING="$("$PY" - <<'PYEOF' 2>/dev/null || echo "(python-failed)"
import importlib.util
mods = ["numpy", "pybind11", "scikit_build_core", "pytest", "xdist", "hypothesis", "ml_dtypes"]
print(" ".join(m for m in mods if importlib.util.find_spec(m) is None))
PYEOF
)"
for tool in cmake ninja ctest; do
  command -v "$tool" >/dev/null 2>&1 || GC_MISSING="$GC_MISSING $tool"
done
GC_MISSING="$(first_line <<<"$GC_MISSING")"
[[ -n "$GC_MISSING" ]] && echo "gpu_check: missing (not installable here, no network): $GC_MISSING" >&2
record_step 00 preflight 0 "$T_PRE0" "$(date +%s.%N)" "nvidia-smi.txt" "" ""

# pip into an externally managed interpreter (PEP 668) needs --break-system-packages.
PIP_EXTRA=()
if "$PY" - <<'PYEOF' 2>/dev/null; then
import os, sys, sysconfig
in_venv = sys.prefix != getattr(sys, "base_prefix", sys.prefix)
marker = os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")
sys.exit(0 if os.path.exists(marker) and not in_venv else 1)
PYEOF
  PIP_EXTRA=(--break-system-packages)
fi

export CMAKE_BUILD_PARALLEL_LEVEL="$NPROC"
export HYPOTHESIS_STORAGE_DIRECTORY="$WORK/hypothesis"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1

has() { [[ " $GC_MISSING " == *" $1 "* ]] && return 1 || return 0; }

# ---------------------------------------------------------------------------------------
# 1. Builds (this GPU's architecture only): the C++ tree and the Python package side by side
# ---------------------------------------------------------------------------------------
BUILD_END=$((SECONDS + 240))
# Both builds must end by BUILD_END and leave 200 s of the budget for the tests and bench.
build_cap() { echo $((BUILD_END - SECONDS)); }

(
  run_step 10 cmake-configure "$(build_cap)" 200 cmake-configure.log \
    cmake -S "$ROOT" -B "$WORK/build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DNORMKIT_BUILD_TESTS=ON -DCMAKE_CUDA_ARCHITECTURES="$GC_ARCH"
  if [[ "$(step_rc 10)" == 0 ]]; then
    run_step 11 cmake-build "$(build_cap)" 200 cmake-build.log \
      cmake --build "$WORK/build" -j "$NPROC"
  else
    skip_step 11 cmake-build cmake-build.log "cmake configure failed"
  fi
) &
CPP_BUILD=$!
(
  run_step 12 pip-install "$(build_cap)" 200 pip-install.log \
    "$PY" -m pip install --no-build-isolation --no-deps --no-index -v ${PIP_EXTRA[@]+"${PIP_EXTRA[@]}"} \
      "$ROOT" --config-settings=cmake.define.CMAKE_CUDA_ARCHITECTURES="$GC_ARCH" \
      --config-settings=build-dir="$WORK/pybuild"
) &
PY_BUILD=$!
wait "$CPP_BUILD" || true
wait "$PY_BUILD" || true

# ---------------------------------------------------------------------------------------
# 2. Tests: the C++ chain and the Python chain side by side (ctest -j8 + pytest -n 8)
# ---------------------------------------------------------------------------------------
(
  if [[ "$(step_rc 11)" == 0 ]]; then
    run_step 20 ctest 90 90 ctest.log \
      ctest --test-dir "$WORK/build" --output-on-failure -j 8
    run_step 21 cuda-tests 60 60 cuda-tests.log \
      env LD_LIBRARY_PATH="$(dirname "$(dirname "$(command -v nvcc)")")/lib64:${LD_LIBRARY_PATH:-}" \
      "$WORK/build/cpp/tests/normkit_tests" row_norm_cuda. determinism_cuda. errors_cuda. dyt_cuda. batch_norm_cuda. group_norm_cuda. batch_layer_norm_cuda. rnn_cuda. param_norm_cuda.
  else
    skip_step 20 ctest ctest.log "the C++ build failed"
    skip_step 21 cuda-tests cuda-tests.log "the C++ build failed"
  fi
) &
CPP_TESTS=$!
(
  # From OUTDIR, so that nothing but the installed package can be imported as normkit.
  if [[ "$(step_rc 12)" == 0 ]]; then
    cat >"$STEPS/import_normkit.py" <<'PYEOF'
import json, normkit
info = normkit.build_info()
print(normkit.__file__)
print(json.dumps(info))
with open("build_info.json", "w") as f:
    json.dump(info, f, indent=2)
assert info["cuda"] is True, "normkit was built without the CUDA backend"
assert normkit.cuda_available(), "normkit.cuda_available() is False"
print("normkit.cuda_available(): True")
PYEOF
    run_step 30 import-normkit 30 150 import-normkit.log \
      bash -c 'cd "$1" && exec "$2" "$3"' _ "$OUT" "$PY" "$STEPS/import_normkit.py"
  else
    skip_step 30 import-normkit import-normkit.log "pip install failed"
  fi
  if [[ "$(step_rc 12)" != 0 ]]; then
    skip_step 31 pytest-cuda pytest-cuda.log "pip install failed"
  elif [[ "$(step_rc 30)" != 0 ]]; then
    skip_step 31 pytest-cuda pytest-cuda.log "normkit does not import with CUDA usable"
  elif ! has pytest || ! has xdist || ! has hypothesis || ! has ml_dtypes; then
    skip_step 31 pytest-cuda pytest-cuda.log "missing test modules: $GC_MISSING"
  else
    run_step 31 pytest-cuda 150 60 pytest-cuda.log \
      "$PY" -m pytest tests -k cuda -p no:cacheprovider -q -n 8 --junitxml="$OUT/pytest-cuda.xml"
  fi
) &
PY_TESTS=$!
wait "$CPP_TESTS" || true
wait "$PY_TESTS" || true

# ---------------------------------------------------------------------------------------
# 3. Benchmark (alone: nothing else runs while it times)
# ---------------------------------------------------------------------------------------
if [[ "$(step_rc 12)" != 0 ]]; then
  skip_step 40 bench bench.txt "pip install failed"
elif [[ "$(step_rc 30)" != 0 ]]; then
  skip_step 40 bench bench.txt "normkit does not import with CUDA usable"
else
  run_step 40 bench 90 0 bench.txt \
    "$PY" -m normkit.bench --device cuda --quick --json "$OUT/bench.json"
fi

# ---------------------------------------------------------------------------------------
# 4. summary.json
# ---------------------------------------------------------------------------------------
rc=0
write_summary || rc=$?
exit "$rc"
