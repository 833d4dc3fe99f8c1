"""PNG plots: PSNR against a cost with the Pareto front marked, and a rank-correlation heat map."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")  # files only; never a display
import matplotlib.pyplot as plt  # noqa: E402

from leansr.bench.stats import pareto_front  # noqa: E402


def plot_quality_vs_cost(
    names: Sequence[str], cost: Sequence[float], psnr: Sequence[float], *, xlabel: str, title: str, path: Path
) -> Path:
    """Scatter of PSNR against `cost`, names beside points, the Pareto front as a step line.

    The legend sits below the axes, never over the points (the front runs along the top-left edge), and the
    margins leave room for the names of the outermost points.
    """
    fig, ax = plt.subplots(figsize=(7.2, 5.0), dpi=100)
    front = pareto_front(cost, psnr)
    on_front = set(front)
    others = [i for i in range(len(names)) if i not in on_front]
    ax.scatter([cost[i] for i in front], [psnr[i] for i in front], s=40, color="tab:red", zorder=3,
               label="on the Pareto front")
    if others:
        ax.scatter([cost[i] for i in others], [psnr[i] for i in others], s=36, color="tab:blue", zorder=3,
                   label="dominated")
    for i, name in enumerate(names):
        ax.annotate(name, (cost[i], psnr[i]), textcoords="offset points", xytext=(5, 4), fontsize=8)
    ax.plot([cost[i] for i in front], [psnr[i] for i in front], drawstyle="steps-post", color="tab:red",
            linewidth=1, label="Pareto front (best PSNR for the cost)")
    ax.margins(x=0.18, y=0.12)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("PSNR-Y [dB]")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=3, fontsize=8, frameon=False)
    fig.tight_layout()
    fig.savefig(path, bbox_inches="tight")  # nothing clipped: long names or the legend grow the canvas
    plt.close(fig)
    return path


def plot_correlation_heatmap(labels: Sequence[str], matrix: Sequence[Sequence[float]], *, title: str,
                             path: Path) -> Path:
    """Square heat map of pairwise rank correlations, the value printed in each cell."""
    size = len(labels)
    fig, ax = plt.subplots(figsize=(0.9 * size + 1.8, 0.9 * size + 1), dpi=90)
    image = ax.imshow(matrix, cmap="RdBu_r", vmin=-1, vmax=1)
    ax.set_xticks(range(size), labels, rotation=40, ha="right")
    ax.set_yticks(range(size), labels)
    for row in range(size):
        for col in range(size):
            value = matrix[row][col]
            ax.text(col, row, "n/a" if math.isnan(value) else f"{value:.2f}", ha="center", va="center",
                    fontsize=8, color="white" if abs(value) > 0.6 else "black")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return path
