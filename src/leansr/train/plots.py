"""Curves from a run's JSON-lines log: training loss and validation PSNR against iterations and wall time."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def read_log(path: Path) -> list[dict[str, Any]]:
    """The log's records; a line torn by a killed process (or otherwise not a JSON object) is skipped."""
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and isinstance(record.get("iter"), int):
            records.append(record)
    return records


def plot_curves(log_path: Path, out_path: Path, *, stage_switch: int | None = None) -> Path | None:
    """Loss vs iteration, validation PSNR vs iteration and vs wall-clock minutes; None without data.

    `stage_switch`: the iteration where the L2 fine-tune starts, drawn as a dashed line on the iteration axes.
    """
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt
    from matplotlib.ticker import EngFormatter, FuncFormatter

    records = read_log(log_path)
    train = [r for r in records if r.get("event") == "train" and isinstance(r.get("loss"), (int, float))]
    val = [r for r in records if r.get("event") == "val" and isinstance(r.get("psnr"), dict)]
    if not train and not val:
        return None
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    axes[0].plot([r["iter"] for r in train], [r["loss"] for r in train], lw=1, color="tab:blue")
    axes[0].set(xlabel="iteration", ylabel="loss (log scale)", yscale="log",
                title="training loss" + (" (L1, then L2 = MSE)" if stage_switch else ""))
    plain = FuncFormatter(lambda value, _: f"{value:.3g}")  # 0.04, not 4x10^-2
    axes[0].yaxis.set_major_formatter(plain)
    axes[0].yaxis.set_minor_formatter(plain)
    axes[0].tick_params(axis="y", which="minor", labelsize=7)
    for name in sorted({k for r in val for k in r["psnr"]}):
        points = [(r["iter"], r.get("elapsed_s", 0.0) / 60, r["psnr"][name]) for r in val
                  if isinstance(r["psnr"].get(name), (int, float))]
        axes[1].plot([p[0] for p in points], [p[2] for p in points], marker="o", ms=3, label=name)
        axes[2].plot([p[1] for p in points], [p[2] for p in points], marker="o", ms=3, label=name)
    axes[1].set(xlabel="iteration", ylabel="Y-PSNR [dB]", title="validation PSNR")
    axes[2].set(xlabel="wall-clock minutes", ylabel="Y-PSNR [dB]", title="validation PSNR vs time")
    for ax in axes[:2]:
        ax.xaxis.set_major_formatter(EngFormatter(sep=""))  # 20k, not 20000 squeezed into the tick labels
        if stage_switch:
            ax.axvline(stage_switch, color="tab:gray", ls="--", lw=1, label="L1 → L2 fine-tune")
    for ax in axes:
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.tight_layout()
    from leansr.atomic import atomic_path

    with atomic_path(out_path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return out_path
