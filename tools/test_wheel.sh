#!/usr/bin/env bash
# tools/test_wheel.sh WHEEL... — install each wheel on a machine without a compiler and test it.
#
# For each wheel, a minimal Debian root (debootstrap --variant=minbase, cached; see
# tools/_roots.sh) with Debian's own CPython of the wheel's version and nothing to compile
# with: no cc, gcc, g++, c++, ld, as or nvcc, and no libcuda (this script checks all of that
# first). cp311 runs in Debian 12 (bookworm), cp39 — the oldest Python normkit supports — in
# Debian 11 (bullseye); cp313 in Debian 13 (trixie). Inside: a fresh venv,
# `pip install --only-binary :all:` of the wheel (and of everything else: there is nothing to
# build sdists with), then
#   1. the smoke checks (tools/wheel_smoke.py): every CPU ISA against a float64 reference,
#      OpenMP really threaded, cuda_available() False without raising and cuda_status()
#      saying why, a release build (build_info()["cuda"] is not "emulated");
#   2. the test suite, run from a copy of tests/ against the installed wheel. Tests that need
#      a compiler (torch.compile's inductor backend) skip, saying so. torch comes from the
#      local wheel directory (PIP_FIND_LINKS) when one matches the Python; otherwise the
#      torch tests skip (an unpinned torch is a multi-GB CUDA download).
#
# Environment: NORMKIT_TEST_WHEEL_PYTEST="..." extra pytest arguments (default none: all);
# NORMKIT_TEST_WHEEL_NO_SUITE=1 runs the smoke checks only; NORMKIT_ROOTS as in _roots.sh.
set -euo pipefail
SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$SRC/tools/_roots.sh"
[[ $# -ge 1 ]] || nk_die "usage: tools/test_wheel.sh WHEEL..."
nk_enter_namespace "$0" "$@"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/normkit-wheeltest.XXXXXX")"
[[ "${NORMKIT_WHEEL_KEEP:-0}" == 1 ]] && echo "keeping $WORK" || trap 'rm -rf "$WORK"' EXIT
T0=$SECONDS

for whl in "$@"; do
  whl="$(readlink -f "$whl")"
  [[ -f "$whl" ]] || nk_die "$whl: no such wheel"
  name="$(basename "$whl")"
  pytag="$(echo "$name" | cut -d- -f3)"
  case "$pytag" in
    cp39)  suite=bullseye;;
    cp311) suite=bookworm;;
    cp313) suite=trixie;;
    *) nk_die "$name: no Debian release ships CPython ${pytag#cp} (cp39, cp311, cp313 are tested)";;
  esac
  root="$(nk_make_root "$suite-test" "$suite" python3 python3-venv ca-certificates)"
  echo "== $name in $root (Debian $suite, $(chroot "$root" /usr/bin/python3 --version))"

  # Nothing to compile or link with, and no CUDA driver.
  for tool in cc gcc g++ c++ ld as nvcc clang; do
    if chroot "$root" /bin/sh -c "command -v $tool" >/dev/null 2>&1; then
      nk_die "$root has $tool: not a compiler-free root"
    fi
  done
  if chroot "$root" /bin/sh -c 'ls /usr/lib/x86_64-linux-gnu/libcuda.so* /usr/lib64/libcuda.so* 2>/dev/null' | grep -q .; then
    nk_die "$root has libcuda"
  fi

  case_dir="$WORK/$pytag"
  mkdir -p "$case_dir"
  cp -r "$SRC/tests" "$case_dir/tests"
  cp "$SRC/tools/wheel_smoke.py" "$case_dir/"
  binds=("$case_dir" "$(dirname "$whl")")
  links=""
  if [[ -n "${PIP_FIND_LINKS:-}" && -d "$PIP_FIND_LINKS" ]]; then
    binds+=("$PIP_FIND_LINKS"); links="$PIP_FIND_LINKS"
  fi
  nk_bind "$root" "${binds[@]}"
  inroot() { nk_in "$root" "$case_dir" /usr/bin/env -i HOME=/root PATH="$case_dir/venv/bin:/usr/bin:/bin" \
    PIP_FIND_LINKS="$links" PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_DEFAULT_TIMEOUT=180 \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt LANG=C.UTF-8 "$@"; }

  inroot /usr/bin/python3 -m venv "$case_dir/venv"
  t=$SECONDS
  inroot pip install -q --only-binary :all: "$whl"
  echo "   installed in $((SECONDS - t))s: $(inroot python -c 'import normkit, os; print(os.path.dirname(normkit.__file__))')"
  inroot python -m normkit info | sed 's/^/   /'
  inroot python wheel_smoke.py

  if [[ "${NORMKIT_TEST_WHEEL_NO_SUITE:-0}" != 1 ]]; then
    deps=(pytest pytest-xdist hypothesis ml_dtypes scikit-learn "dask[array]")
    if [[ -n "$links" ]] && ls "$links"/torch-*-"$pytag"-*.whl >/dev/null 2>&1; then
      tv="$(ls "$links"/torch-*-"$pytag"-*.whl | head -1 | sed -E 's/.*torch-([0-9.]+)[+-].*/\1/')"
      deps+=("torch==$tv" keras)
      echo "   torch $tv from $links"
    else
      echo "   no local torch wheel for $pytag: the torch tests skip"
    fi
    t=$SECONDS
    inroot pip install -q --only-binary :all: "${deps[@]}"
    echo "   test dependencies installed in $((SECONDS - t))s"
    t=$SECONDS
    # From the copy of tests/: normkit is the installed wheel (nothing on sys.path points at
    # the checkout; the check below proves it).
    inroot python -c 'import normkit, sys; assert "site-packages" in normkit.__file__, normkit.__file__'
    set +e
    # shellcheck disable=SC2086
    inroot python -m pytest tests -p no:cacheprovider -q -ra -n 2 --dist loadfile \
      ${NORMKIT_TEST_WHEEL_PYTEST:-} > "$case_dir/pytest.log" 2>&1
    rc=$?
    set -e
    tail -25 "$case_dir/pytest.log" | sed 's/^/   /'
    [[ $rc == 0 ]] || nk_die "$name: the test suite failed in $root (exit $rc)"
    grep -Eq '[1-9][0-9]* passed' "$case_dir/pytest.log" || nk_die "$name: the test suite ran no test"
    echo "   test suite passed in $((SECONDS - t))s"
  fi
  echo "== $name: OK"
done
echo "test_wheel: all passed ($((SECONDS - T0))s)"
