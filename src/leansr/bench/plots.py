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
    ax.plot([cost[i] for i in front], [psnr[i] for i in front], drawstyle="steps-post", color="tab:red",
            linewidth=1, label="Pareto front (best PSNR for the cost)")
    ax.margins(x=0.18, y=0.12)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("PSNR-Y [dB]")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=3, fontsize=8, frameon=False)
    fig.tight_layout()
    _label_points(ax, names, cost, psnr)
    fig.savefig(path, bbox_inches="tight")  # nothing clipped: long names or the legend grow the canvas
    plt.close(fig)
    return path


# Label positions tried in turn (offset in points, horizontal alignment) so that close points' names do not overlap.
_LABEL_SLOTS = ((5, 4, "left"), (5, -11, "left"), (-5, 4, "right"), (-5, -11, "right"), (5, 14, "left"),
                (5, -21, "left"))


def _label_points(ax, names: Sequence[str], xs: Sequence[float], ys: Sequence[float]) -> None:
    """Names beside points, each in the first slot whose (estimated) box overlaps no name placed before."""
    fig = ax.figure
    fig.canvas.draw()  # fixes the limits and layout, so data -> pixel coordinates are final
    to_px = ax.transData.transform
    scale = fig.dpi / 72.0
    placed: list[tuple[float, float, float, float]] = []
    for i in sorted(range(len(names)), key=lambda k: (-ys[k], xs[k])):
        px, py = to_px((xs[i], ys[i]))
        width, height = 5.0 * len(names[i]) * scale, 9.0 * scale  # 8 pt sans-serif, roughly
        for dx, dy, align in _LABEL_SLOTS:
            x0 = px + dx * scale - (width if align == "right" else 0.0)
            box = (x0, py + dy * scale, x0 + width, py + dy * scale + height)
            if not any(box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3] for b in placed):
                break
        placed.append(box)
        ax.annotate(names[i], (xs[i], ys[i]), textcoords="offset points", xytext=(dx, dy), ha=align, fontsize=8)


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
