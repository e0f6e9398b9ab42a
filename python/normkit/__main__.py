"""``python -m normkit --version`` / ``python -m normkit info``: what this copy of normkit is
and what it can use here (the build, the CPU ISAs, threads, CUDA, the CPU BLAS)."""

from __future__ import annotations

import argparse
import sys


def _info() -> dict:
    import normkit as nk

    info = dict(nk.build_info())
    info["available_cpu_isas"] = list(nk.available_cpu_isas())
    info["threads"] = nk.get_num_threads()
    try:
        info["cuda_available"] = bool(nk.cuda_available())
    except Exception as e:  # a broken driver must not break `info`
        info["cuda_available"] = f"no ({e})"
    info["cuda_status"] = nk.cuda_status()
    try:
        info["cpu_blas"] = nk.cpu_blas_info()
    except Exception as e:
        info["cpu_blas"] = f"not loaded ({e})"
    return info


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m normkit", description=__doc__)
    p.add_argument("--version", action="store_true", help="print the version and exit")
    p.add_argument("command", nargs="?", choices=["info"], help="info: the build and runtime")
    args = p.parse_args(argv)
    import normkit as nk

    if args.version:
        print(nk.__version__)
        return 0
    if args.command == "info":
        for k, v in _info().items():
            print(f"{k:20s} {v}")
        return 0
    p.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
