#!/usr/bin/env python3
"""tools/check_wheel.py WHEEL [options] — the release policy of a repaired normkit wheel, each
point checked (exit 1 naming the first that fails); prints a report (size, tag, what is
vendored, NEEDED, the CUDA architectures inside). Used by tools/build_wheels.sh and by the
cibuildwheel configuration in pyproject.toml, so both enforce one policy:

  - tag: what `auditwheel repair` proved, no newer than manylinux_2_<--max-glibc> (28);
  - vendored (normkit.libs/): libgomp only, and libgomp must be there (OpenMP threading);
  - NEEDED of normkit/_core*.so: no libcuda, cuBLAS, cudart or NVRTC (cudart is static;
    libcuda is opened by the CUDA runtime at run time, cuBLAS by the RNN cells);
  - CUDA (--cuda-archs): SASS for exactly these sm_XX and PTX for exactly --ptx, read from
    the fatbin with cuobjdump (--cuobjdump, else on PATH);
  - size: at most --max-mb (50) MB.
Needs readelf (binutils)."""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile


def fail(wheel, msg):
    sys.exit(f"check_wheel: {os.path.basename(wheel)}: {msg}")


def glibc_minor(tag):
    m = re.match(r"manylinux_2_(\d+)_", tag)
    if m:
        return int(m.group(1))
    legacy = {"manylinux2014": 17, "manylinux2010": 12, "manylinux1": 5}
    for name, minor in legacy.items():
        if tag.startswith(name + "_"):
            return minor
    return None


def archs_from_cmake(spec):
    """'75-real;80-real;90-virtual' or '75,80,90' -> ({75, 80}, {90}) (plain numbers: both)."""
    sass, ptx = set(), set()
    for item in re.split(r"[;,\s]+", spec.strip()):
        if not item:
            continue
        num, _, kind = item.partition("-")
        if not num.isdigit():
            raise ValueError(f"--cuda-archs: expected numbers like 90-real, got {item!r}")
        if kind in ("", "real"):
            sass.add(int(num))
        if kind in ("", "virtual"):
            ptx.add(int(num))
    return sass, ptx


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("wheel")
    ap.add_argument("--max-glibc", type=int, default=28)
    ap.add_argument("--max-mb", type=float, default=50.0)
    ap.add_argument("--cuda-archs", default="",
                    help="CMAKE_CUDA_ARCHITECTURES of the build; empty: a CPU-only wheel")
    ap.add_argument("--cuobjdump", default="")
    ap.add_argument("--report", default="", help="also write the report to this file")
    a = ap.parse_args()
    wheel = a.wheel
    name = os.path.basename(wheel)
    lines = [f"wheel:     {name}"]

    m = re.search(r"-((?:manylinux|musllinux)[^-]*)\.whl$", name)
    if not m:
        fail(wheel, "no manylinux platform tag (was it repaired by auditwheel?)")
    minors = [glibc_minor(t) for t in m.group(1).split(".")]
    if None in minors:
        fail(wheel, f"unexpected platform tag {m.group(1)}")
    if max(minors) > a.max_glibc:
        fail(wheel, f"tag needs glibc 2.{max(minors)}, newer than manylinux_2_{a.max_glibc}")
    lines.append(f"tag:       {m.group(1)} (glibc >= 2.{max(minors)})")

    size = os.path.getsize(wheel)
    if size > a.max_mb * 1e6:
        fail(wheel, f"{size} bytes, over the {a.max_mb:g} MB limit")
    lines.append(f"size:      {size} bytes ({size / 1e6:.2f} MB)")

    with tempfile.TemporaryDirectory() as tmp:
        with zipfile.ZipFile(wheel) as z:
            z.extractall(tmp)
        libs_dir = os.path.join(tmp, "normkit.libs")
        vendored = sorted(os.listdir(libs_dir)) if os.path.isdir(libs_dir) else []
        for lib in vendored:
            if not lib.startswith("libgomp"):
                fail(wheel, f"vendors {lib} (only libgomp may be vendored)")
        if not vendored:
            fail(wheel, "libgomp is not vendored (was OpenMP found at build time?)")
        lines.append(f"vendored:  {' '.join(vendored)}")

        pkg = os.path.join(tmp, "normkit")
        cores = [f for f in os.listdir(pkg) if f.startswith("_core") and f.endswith(".so")]
        if len(cores) != 1:
            fail(wheel, f"expected one normkit/_core*.so, found {cores}")
        so = os.path.join(pkg, cores[0])
        dyn = subprocess.run(["readelf", "-d", so], capture_output=True, text=True, check=True)
        needed = re.findall(r"\(NEEDED\).*\[(.*)\]", dyn.stdout)
        for lib in needed:
            if re.match(r"lib(cuda|cublas|cudart|nvrtc)", lib):
                fail(wheel, f"{cores[0]} links {lib} (must not)")
        lines.append(f"NEEDED:    {' '.join(needed)}")

        if a.cuda_archs:
            want_sass, want_ptx = archs_from_cmake(a.cuda_archs)
            sections = subprocess.run(["readelf", "-SW", so], capture_output=True, text=True,
                                      check=True).stdout
            if ".nv_fatbin" not in sections:
                fail(wheel, f"no CUDA fatbin in {cores[0]}")
            tool = a.cuobjdump or shutil.which("cuobjdump")
            if not tool:
                fail(wheel, "cuobjdump not found (--cuobjdump): cannot list the CUDA architectures")

            def listed(flag, prefix):
                out = subprocess.run([tool, flag, so], capture_output=True, text=True)
                if out.returncode != 0:
                    fail(wheel, f"cuobjdump {flag} failed: {out.stderr.strip()}")
                return {int(n) for n in re.findall(rf"\.{prefix}_(\d+)\.", out.stdout)}

            sass, ptx = listed("--list-elf", "sm"), listed("--list-ptx", "sm")
            if sass != want_sass:
                fail(wheel, f"SASS for sm_{sorted(sass)}, expected sm_{sorted(want_sass)}")
            if ptx != want_ptx:
                fail(wheel, f"PTX for compute_{sorted(ptx)}, expected compute_{sorted(want_ptx)}")
            ptx_text = f"compute_{','.join(map(str, sorted(ptx)))}" if ptx else "none"
            lines.append(f"CUDA:      SASS sm_{','.join(map(str, sorted(sass)))}; PTX {ptx_text}")
        else:
            lines.append("CUDA:      none (a CPU-only wheel)")

    report = "\n".join(lines)
    print(report)
    if a.report:
        with open(a.report, "w") as f:
            f.write(report + "\n")


if __name__ == "__main__":
    main()
