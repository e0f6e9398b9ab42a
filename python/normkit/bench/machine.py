"""What the numbers were measured on."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import sys
from typing import Optional


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Model", "cpu model"):
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _mem_total_gib() -> Optional[float]:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 2**20, 1)
    except (OSError, ValueError, IndexError):
        pass
    return None


def _read(path: str) -> Optional[str]:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def _caches() -> str:
    """L1d/L2/L3 sizes of cpu0, e.g. "L1d 32K, L2 1024K, L3 32768K"."""
    parts = []
    base = "/sys/devices/system/cpu/cpu0/cache"
    for i in range(8):
        level = _read(f"{base}/index{i}/level")
        kind = _read(f"{base}/index{i}/type")
        size = _read(f"{base}/index{i}/size")
        if level is None or size is None or kind == "Instruction":
            continue
        parts.append(f"L{level}{'d' if kind == 'Data' else ''} {size}")
    return ", ".join(parts) or "?"


def _thp() -> str:
    """Transparent huge pages: how costly a fresh 64 MB output's page faults are."""
    text = _read("/sys/kernel/mm/transparent_hugepage/enabled") or ""
    start, end = text.find("["), text.find("]")
    return text[start + 1 : end] if 0 <= start < end else "?"


def _version(mod_name: str) -> Optional[str]:
    try:
        mod = __import__(mod_name)
    except ImportError:
        return None
    return getattr(mod, "__version__", "?")


def _safe(fn, default=None):
    try:
        return fn()
    except Exception as exc:  # the bench reports what it can; a missing query is not fatal
        return default if default is not None else f"unavailable ({type(exc).__name__})"


def machine_info(nk, torch_mod, threads: int, device: str) -> dict:
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    info = {
        "load_average": _read("/proc/loadavg").split()[:3] if _read("/proc/loadavg") else None,
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "memory_gib": _mem_total_gib(),
        "caches": _caches(),
        "transparent_hugepages": _thp(),
        "os": f"{platform.system()} {platform.release()}",
        "python": sys.version.split()[0],
        "normkit": getattr(nk, "__version__", "?"),
        "normkit_isa": _safe(nk.cpu_isa),
        "normkit_build": _safe(lambda: nk.build_info()),
        "normkit_threads": _safe(nk.get_num_threads),
        "threads_requested": threads,
        "numpy": _version("numpy"),
        "ml_dtypes": _version("ml_dtypes"),
        "torch": getattr(torch_mod, "__version__", None) if torch_mod is not None else None,
        "torch_threads": torch_mod.get_num_threads() if torch_mod is not None else None,
        "device": device,
    }
    if device == "cuda" and torch_mod is not None:
        props = torch_mod.cuda.get_device_properties(torch_mod.cuda.current_device())
        info["gpu"] = props.name
        info["gpu_memory_gib"] = round(props.total_memory / 2**30, 1)
        info["cuda"] = torch_mod.version.cuda
    return info


def format_info(info: dict) -> list:
    lines = [
        f"date      {info['date']}  (load average {' '.join(info['load_average'] or ['?'])}"
        " at start: above 0 means other work shares these cores)",
        f"cpu       {info['cpu']}  ({info['cores']} cores, {info['usable_cores']} usable,"
        f" {info['memory_gib']} GiB)",
        f"caches    {info['caches']}  (per core / shared; THP {info['transparent_hugepages']})",
        f"normkit   {info['normkit']}  isa={info['normkit_isa']}  threads={info['normkit_threads']}",
        f"torch     {info['torch'] or 'not installed (pip install normkit[bench])'}"
        + (f"  threads={info['torch_threads']}" if info["torch"] else ""),
        f"numpy     {info['numpy']}  ml_dtypes {info['ml_dtypes'] or 'not installed'}"
        f"  python {info['python']}  {info['os']}",
    ]
    if info.get("gpu"):
        lines.append(
            f"gpu       {info['gpu']}  ({info['gpu_memory_gib']} GiB, CUDA {info['cuda']})"
        )
    return lines
