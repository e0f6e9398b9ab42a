"""``python -m normkit.bench --plot DIR``: the run's figures, for the docs and the README.

Two PNG files, each one horizontal bar per measured case (op, dtype, shape, pass, outputs):

- ``speedup_vs_torch.png``: torch's median time over normkit's (log scale; right of the line
  at 1 is faster than torch);
- ``roof_fraction.png``: achieved bandwidth over the best copy of the same bytes measured in
  the same run, normkit and torch side by side (1 = as fast as a plain copy).

A footer names the machine, the threads and the date, so a figure is never read without its
conditions. matplotlib is imported here only (``pip install 'normkit[bench]'`` brings it).
"""

from __future__ import annotations

import os
from typing import List, Tuple

FILES = ("speedup_vs_torch.png", "roof_fraction.png")

# The two libraries' colours (colour-blind safe: blue / orange).
_NK, _TORCH = "#1f77b4", "#ff7f0e"
_SLOWER = "#d62728"  # a speed-up bar below 1: normkit slower than torch


def _label(rec: dict) -> str:
    shape = "x".join(str(d) for d in rec["shape"])
    mode = "" if rec.get("mode", "fresh") == "fresh" else f" {rec['mode']}="
    dtype = {"float32": "fp32", "bfloat16": "bf16"}.get(rec["dtype"], rec["dtype"])
    return f"{rec['op']} {dtype} [{shape}] {rec['pass']}{mode}"


def _footer(machine: dict) -> str:
    parts = [str(p) for p in (machine.get("cpu"),
                              machine.get("normkit_isa") and f"normkit {machine['normkit_isa']}",
                              machine.get("normkit_threads") and
                              f"{machine['normkit_threads']} threads",
                              machine.get("torch") and f"torch {machine['torch']}",
                              machine.get("date")) if p]
    return "  ·  ".join(parts)


def _rows(records: List[dict]) -> List[Tuple[str, float, float, float]]:
    """(label, speed-up over torch, normkit roof fraction, torch roof fraction) per case
    that both libraries ran; NaN where one of them has no figure."""
    nan = float("nan")
    rows = []
    for rec in records:
        nk = rec["libs"].get("normkit", {})
        t = rec["libs"].get("torch", {})
        if "median_s" not in nk:
            continue
        rows.append((_label(rec), rec.get("speedup_vs_torch", nan),
                     nk.get("roof_frac", nan), t.get("roof_frac", nan)))
    return rows


def write(directory: str, saved: dict) -> List[str]:
    """Writes the figures of a run (the dict ``--json`` saves) into ``directory``; returns
    their paths. Raises ``SystemExit`` naming the fix when matplotlib is missing."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SystemExit("--plot needs matplotlib: pip install 'normkit[bench]'") from None
    rows = _rows(saved["cases"])
    if not rows:
        raise SystemExit("--plot: the run has no case that normkit ran")
    os.makedirs(directory, exist_ok=True)
    labels = [r[0] for r in rows]
    height = 1.2 + 0.26 * len(rows)
    footer = _footer(saved.get("machine", {}))
    paths = []

    # Speed-up over torch.
    sp = [(i, r[1]) for i, r in enumerate(rows) if r[1] == r[1]]
    fig, ax = plt.subplots(figsize=(8.5, height))
    ax.barh([i for i, _ in sp], [v for _, v in sp], height=0.7,
            color=[_NK if v >= 1.0 else _SLOWER for _, v in sp])
    ax.set_xscale("log")
    ax.axvline(1.0, color="black", linewidth=0.8)
    for i, v in sp:
        ax.text(v, i, f" {v:.2f}×", va="center", fontsize=7)
    ax.set_yticks(range(len(rows)), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("torch time / normkit time (log; > 1: normkit faster)")
    ax.set_title("normkit speed-up over torch (medians, same run)", fontsize=10)
    fig.text(0.01, 0.005, footer, fontsize=6, color="0.35")
    fig.tight_layout(rect=(0, 0.02, 1, 1))
    paths.append(os.path.join(directory, FILES[0]))
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    # Fraction of the copy roof.
    fig, ax = plt.subplots(figsize=(8.5, height))
    ys = range(len(rows))
    ax.barh([y - 0.18 for y in ys], [r[2] for r in rows], height=0.36, color=_NK,
            label="normkit")
    ax.barh([y + 0.18 for y in ys], [r[3] for r in rows], height=0.36, color=_TORCH,
            label="torch")
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_yticks(list(ys), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(0, max(1.05, max((max(r[2], r[3]) for r in rows if r[2] == r[2]),
                                 default=1.0) * 1.05))
    ax.set_xlabel("achieved GB/s / same-run copy of the same bytes")
    ax.set_title("fraction of the memory-copy roof", fontsize=10)
    ax.legend(loc="lower right", fontsize=7)
    fig.text(0.01, 0.005, footer, fontsize=6, color="0.35")
    fig.tight_layout(rect=(0, 0.02, 1, 1))
    paths.append(os.path.join(directory, FILES[1]))
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)
    return paths
