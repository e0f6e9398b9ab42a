"""``python -m normkit.bench --plot DIR``: the run's figures, for the docs and the README.

Two PNG heat maps, a row per op and dtype, a column per shape and pass (``out=``: into
preallocated outputs), each cell annotated:

- ``speedup_vs_torch.png``: torch's median time over normkit's (log colour scale centred on
  1: blue is faster than torch, red slower);
- ``roof_fraction.png``: normkit's achieved bandwidth over the best copy of the same bytes
  measured in the same run (1 = as fast as a plain copy), with torch's median in the title.

A footer names the machine, the threads and the date, so a figure is never read without its
conditions. matplotlib is imported here only (``pip install 'normkit[bench]'`` brings it).
"""

from __future__ import annotations

import os
from typing import List

FILES = ("speedup_vs_torch.png", "roof_fraction.png")



def _dtype(d: str) -> str:
    return {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16", "float64": "fp64"}.get(d, d)


def _row_key(rec: dict) -> str:
    return f"{rec['op']} {_dtype(rec['dtype'])}"


def _col_key(rec: dict) -> str:
    shape = "x".join(str(d) for d in rec["shape"])
    mode = " out=" if rec.get("mode", "fresh") == "out" else ""
    return f"[{shape}]\n{rec['pass']}{mode}"


def _footer(machine: dict) -> str:
    parts = [str(p) for p in (machine.get("cpu"),
                              machine.get("normkit_isa") and f"normkit {machine['normkit_isa']}",
                              machine.get("normkit_threads") and
                              f"{machine['normkit_threads']} threads",
                              machine.get("torch") and f"torch {machine['torch']}",
                              machine.get("date")) if p]
    return "  ·  ".join(parts)


def _grid(records: List[dict], value):
    """(row labels, column labels, {(row, col): value}) over the cases normkit ran, rows in
    the run's order of ops and dtypes, columns in its order of shapes and passes."""
    rows, cols, cells = [], [], {}
    for rec in records:
        if "median_s" not in rec["libs"].get("normkit", {}):
            continue
        r, c = _row_key(rec), _col_key(rec)
        if r not in rows:
            rows.append(r)
        if c not in cols:
            cols.append(c)
        v = value(rec)
        if v is not None and v == v:
            cells[(r, c)] = v
    return rows, cols, cells


def _heatmap(plt, rows, cols, cells, *, norm, cmap, fmt, title, footer, path, ticks, white):
    import numpy as np

    grid = np.full((len(rows), len(cols)), np.nan)
    for (r, c), v in cells.items():
        grid[rows.index(r), cols.index(c)] = v
    fig, ax = plt.subplots(figsize=(max(7.0, 2.4 + 0.78 * len(cols)),
                                    max(3.0, 1.6 + 0.34 * len(rows))))
    im = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, norm=norm, aspect="auto")
    ax.set_xticks(range(len(cols)), cols, fontsize=6.5)
    ax.set_yticks(range(len(rows)), rows, fontsize=7.5)
    for (r, c), v in cells.items():
        i, j = rows.index(r), cols.index(c)
        shade = min(1.0, max(0.0, float(norm(v))))
        ax.text(j, i, fmt(v), ha="center", va="center", fontsize=6.5,
                color="white" if white(shade) else "black")
    ax.set_title(title, fontsize=9)
    bar = fig.colorbar(im, ax=ax, fraction=0.03, pad=0.01)
    bar.minorticks_off()
    bar.set_ticks([t for t, _ in ticks], labels=[l for _, l in ticks], fontsize=7)
    fig.text(0.01, 0.005, footer, fontsize=6, color="0.35")
    fig.tight_layout(rect=(0, 0.02, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(directory: str, saved: dict) -> List[str]:
    """Writes the figures of a run (the dict ``--json`` saves) into ``directory``; returns
    their paths. Raises ``SystemExit`` naming the fix when matplotlib is missing."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.colors import LogNorm, Normalize
    except ImportError:
        raise SystemExit("--plot needs matplotlib: pip install 'normkit[bench]'") from None
    records = saved["cases"]
    rows, cols, speedup = _grid(records, lambda r: r.get("speedup_vs_torch"))
    if not rows:
        raise SystemExit("--plot: the run has no case that normkit ran")
    _, _, roof = _grid(records, lambda r: r["libs"]["normkit"].get("roof_frac"))
    _, _, troof = _grid(records, lambda r: r["libs"].get("torch", {}).get("roof_frac"))
    os.makedirs(directory, exist_ok=True)
    footer = _footer(saved.get("machine", {}))
    paths = [os.path.join(directory, f) for f in FILES]
    # Speed-up: a log scale centred on 1 (blue: normkit faster, red: slower).
    _heatmap(plt, rows, cols, speedup, norm=LogNorm(vmin=1 / 8, vmax=8), cmap="RdBu",
             fmt=lambda v: f"{v:.2f}×" if v < 10 else f"{v:.0f}×",
             title="normkit speed-up over torch\n(torch time / normkit time; medians, same run)",
             footer=footer, path=paths[0],
             ticks=[(2.0 ** k, f"{2.0 ** k:g}×") for k in range(-3, 4)],
             white=lambda shade: shade < 0.2 or shade > 0.8)
    # Roof: normkit's fraction per cell; torch's as one median in the title.
    _heatmap(plt, rows, cols, roof, norm=Normalize(vmin=0.0, vmax=1.0), cmap="viridis",
             fmt=lambda v: f"{100 * v:.0f}%",
             title="normkit's fraction of the same-run memory-copy roof\n"
                   f"(torch's median over these cases: {_median(troof.values())})",
             footer=footer, path=paths[1],
             ticks=[(k / 4, f"{25 * k}%") for k in range(5)],
             white=lambda shade: shade < 0.45)
    return paths


def _median(values) -> str:
    v = sorted(values)
    if not v:
        return "n/a"
    m = v[len(v) // 2] if len(v) % 2 else 0.5 * (v[len(v) // 2 - 1] + v[len(v) // 2])
    return f"{100 * m:.0f}%"
