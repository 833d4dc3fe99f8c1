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
    """Scatter of PSNR against `cost`, names beside points, the Pareto front as a step line."""
    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=100)
    front = pareto_front(cost, psnr)
    on_front = set(front)
    for i, name in enumerate(names):
        ax.scatter(cost[i], psnr[i], s=36, color="tab:red" if i in on_front else "tab:blue", zorder=3)
        ax.annotate(name, (cost[i], psnr[i]), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.plot([cost[i] for i in front], [psnr[i] for i in front], drawstyle="steps-post", color="tab:red",
            linewidth=1, label="Pareto front")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("PSNR-Y [dB]")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
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
    fig.savefig(path)
    plt.close(fig)
    return path
