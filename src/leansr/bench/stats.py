"""Rank correlation and Pareto fronts over the benchmarked models."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def rank(values: Sequence[float]) -> np.ndarray:
    """1-based ranks, ties given the mean of the ranks they span (as scipy.stats.rankdata 'average')."""
    data = np.asarray(values, dtype=float)
    order = np.argsort(data, kind="stable")
    ranks = np.empty(len(data))
    sorted_data = data[order]
    start = 0
    while start < len(data):
        stop = start
        while stop + 1 < len(data) and sorted_data[stop + 1] == sorted_data[start]:
            stop += 1
        ranks[order[start : stop + 1]] = (start + stop) / 2 + 1
        start = stop + 1
    return ranks


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman rank correlation (SROCC): Pearson correlation of the tie-averaged ranks; NaN if undefined."""
    if len(x) != len(y):
        raise ValueError("spearman needs two sequences of equal length")
    if len(x) < 2:
        return float("nan")
    rx, ry = rank(x) - (len(x) + 1) / 2, rank(y) - (len(y) + 1) / 2
    denominator = np.sqrt((rx * rx).sum() * (ry * ry).sum())
    return float((rx * ry).sum() / denominator) if denominator > 0 else float("nan")


def pareto_front(cost: Sequence[float], quality: Sequence[float]) -> list[int]:
    """Indices of points no other point dominates (cost <= and quality >=, one strictly), by cost."""
    points = list(zip(cost, quality))
    front = [
        i
        for i, (c, q) in enumerate(points)
        if not any(c2 <= c and q2 >= q and (c2 < c or q2 > q) for c2, q2 in points)
    ]
    return sorted(front, key=lambda i: (cost[i], -quality[i]))
