"""Tables (plain text or markdown), the summary, and the JSON record."""

from __future__ import annotations

import json
import math
from typing import Dict, List, Optional, Sequence

from .cases import CHECK_TOL


def fmt_time(s: Optional[float]) -> str:
    if s is None or not math.isfinite(s):
        return "-"
    if s < 1e-3:
        return f"{s * 1e6:.1f} µs"
    if s < 1.0:
        return f"{s * 1e3:.2f} ms"
    return f"{s:.2f} s"


def fmt_iqr(rec: Optional[dict]) -> str:
    if not rec or "median_s" not in rec:
        return ""
    return f"±{100.0 * rec['iqr_s'] / rec['median_s']:.0f}%" if rec["median_s"] > 0 else ""


def fmt_num(v: Optional[float], spec: str = ".1f", suffix: str = "") -> str:
    if v is None or not math.isfinite(v):
        return "-"
    return f"{v:{spec}}{suffix}"


def shape_str(shape: Sequence[int]) -> str:
    return "[" + ",".join(str(d) for d in shape) + "]"


def _lib_cells(lib: Optional[dict]) -> List[str]:
    if lib is None:
        return ["-", "-", "-"]
    if "error" in lib:
        return ["error", "-", "-"]
    return [
        f"{fmt_time(lib['median_s'])} {fmt_iqr(lib)}",
        fmt_num(lib["gbps"], ".1f"),
        fmt_num(100.0 * lib["roof_frac"], ".0f", "%"),
    ]


def _check_cell(rec: dict) -> str:
    c = rec.get("check")
    if c is None:
        return "-"
    if not math.isfinite(c):
        return "nan!"
    mark = "!" if c > CHECK_TOL.get(rec["dtype"], 1e-3) else ""
    return f"{c:.0e}{mark}"


HEADERS = [
    "op", "dtype", "shape", "pass", "outputs",
    "normkit", "GB/s", "roof", "torch", "GB/s", "roof", "× torch",
    "numpy", "copy roof GB/s", "check",
]


def row_cells(rec: dict, extra_lib: Optional[str] = None) -> List[str]:
    libs = rec["libs"]
    cells = [
        rec["op"],
        {"float32": "fp32", "bfloat16": "bf16"}.get(rec["dtype"], rec["dtype"]),
        shape_str(rec["shape"]),
        rec["pass"],
        rec["mode"],
    ]
    cells += _lib_cells(libs.get("normkit"))
    cells += _lib_cells(libs.get("torch"))
    cells.append(fmt_num(rec.get("speedup_vs_torch"), ".2f", "×"))
    np_rec = libs.get("numpy")
    cells.append(fmt_time(np_rec["median_s"]) if np_rec and "median_s" in np_rec else "-")
    cells.append(f"{rec['roof']['best_gbps']:.1f} ({rec['roof']['best_method']})")
    cells.append(_check_cell(rec))
    if extra_lib:
        e = libs.get(extra_lib)
        cells.append(fmt_time(e["median_s"]) if e and "median_s" in e else "-")
    return cells


def headers(extra_lib: Optional[str] = None) -> List[str]:
    return HEADERS + ([extra_lib] if extra_lib else [])


def text_row(cells: List[str], widths: List[int]) -> str:
    return "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()


TEXT_WIDTHS = [14, 5, 13, 7, 7, 16, 6, 5, 16, 6, 5, 8, 10, 22, 6, 17]


def markdown_table(head: List[str], rows: List[List[str]]) -> str:
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    out += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]
    return "\n".join(out)


def geomean(xs: List[float]) -> float:
    xs = [x for x in xs if x and math.isfinite(x) and x > 0]
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else float("nan")


def summary_rows(records: List[dict]) -> List[List[str]]:
    """Geometric means per (op, dtype, pass): speed-up over torch and fraction of the roof,
    over all shapes and over the shapes that stream from DRAM (≥ 1M elements), for fresh
    outputs and, where measured, for preallocated ``out=`` outputs (forward only)."""
    acc: Dict[tuple, Dict[str, List[float]]] = {}
    for r in records:
        key = (r["op"], r["dtype"], r["pass"])
        a = acc.setdefault(key, {})
        big = math.prod(r["shape"]) >= 1 << 20
        sp = r.get("speedup_vs_torch")
        nk = r["libs"].get("normkit") or {}
        frac = nk.get("roof_frac")
        mode = r["mode"]
        if sp and mode == "fresh":
            a.setdefault("sp_all", []).append(sp)
        if big:
            if sp:
                a.setdefault(f"sp_big_{mode}", []).append(sp)
            if frac:
                a.setdefault(f"roof_big_{mode}", []).append(frac)
    rows = []
    for key in sorted(acc):
        op, dtype, pass_ = key
        a = acc[key]
        rows.append([
            op,
            {"float32": "fp32", "bfloat16": "bf16"}.get(dtype, dtype),
            pass_,
            fmt_num(geomean(a.get("sp_all", [])), ".2f", "×"),
            fmt_num(geomean(a.get("sp_big_fresh", [])), ".2f", "×"),
            fmt_num(geomean(a.get("sp_big_out", [])), ".2f", "×"),
            fmt_num(100 * geomean(a.get("roof_big_fresh", [])), ".0f", "%"),
            fmt_num(100 * geomean(a.get("roof_big_out", [])), ".0f", "%"),
        ])
    return rows


SUMMARY_HEADERS = [
    "op", "dtype", "pass", "× torch, all shapes", "× torch, ≥1M elem.",
    "× torch, ≥1M, out=", "normkit roof, ≥1M", "normkit roof, ≥1M, out=",
]


OVERHEAD_HEADERS = ["[1,4096] float32 layer_norm, one call", "median", "IQR", "calls", "vs torch"]


def overhead_rows(ov: dict) -> List[List[str]]:
    rows = []
    ref = ov.get("torch F.layer_norm", {}).get("median_s")
    for name, st in ov.items():
        if "median_s" not in st:
            rows.append([name, st.get("error", "-"), "", "", ""])
            continue
        ratio = st["median_s"] / ref if ref else None
        rows.append([
            name, fmt_time(st["median_s"]), fmt_time(st["iqr_s"]), str(st["reps"]),
            fmt_num(ratio, ".2f", "×"),
        ])
    return rows


def plain_table(head: List[str], rows: List[List[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(head)]
    lines = [text_row(head, widths), text_row(["-" * w for w in widths], widths)]
    lines += [text_row(r, widths) for r in rows]
    return "\n".join(lines)


def write_json(path: str, result: dict) -> None:
    def clean(o):
        if isinstance(o, float) and not math.isfinite(o):
            return None
        if isinstance(o, dict):
            return {str(k): clean(v) for k, v in o.items()}
        if isinstance(o, (list, tuple)):
            return [clean(v) for v in o]
        return o

    with open(path, "w") as f:
        json.dump(clean(result), f, indent=1)
        f.write("\n")
