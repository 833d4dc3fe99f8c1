"""Curves from a run's JSON-lines log: training loss and validation PSNR against iterations and wall time."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def read_log(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot_curves(log_path: Path, out_path: Path) -> Path | None:
    """Loss vs iteration, and validation PSNR vs iteration and vs wall-clock minutes; None without data."""
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    records = read_log(log_path)
    train = [r for r in records if r.get("event") == "train"]
    val = [r for r in records if r.get("event") == "val"]
    if not train and not val:
        return None
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    axes[0].plot([r["iter"] for r in train], [r["loss"] for r in train], lw=1)
    axes[0].set(xlabel="iteration", ylabel="training loss", yscale="log", title="loss")
    for name in sorted({k for r in val for k in r["psnr"]}):
        points = [(r["iter"], r["elapsed_s"] / 60, r["psnr"][name]) for r in val if name in r["psnr"]]
        axes[1].plot([p[0] for p in points], [p[2] for p in points], marker="o", ms=3, label=name)
        axes[2].plot([p[1] for p in points], [p[2] for p in points], marker="o", ms=3, label=name)
    axes[1].set(xlabel="iteration", ylabel="Y-PSNR (dB)", title="validation PSNR")
    axes[2].set(xlabel="wall-clock minutes", ylabel="Y-PSNR (dB)", title="validation PSNR vs time")
    for ax in axes:
        ax.grid(alpha=0.3)
    if val:
        axes[1].legend()
        axes[2].legend()
    fig.tight_layout()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path, dpi=100)
    plt.close(fig)
    return out_path
