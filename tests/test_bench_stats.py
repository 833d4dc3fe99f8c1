"""Rank correlation, Pareto fronts and timing statistics of `leansr bench`."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from leansr.bench.stats import pareto_front, rank, spearman
from leansr.bench.timing import Timing, time_forward


def test_rank_averages_ties():
    assert rank([10, 20, 20, 5]).tolist() == [2.0, 3.5, 3.5, 1.0]


def test_spearman_hand_computed():
    # ranks x: 1 2 3 4 5; y: 2 1 4 3 5; sum d^2 = 4; rho = 1 - 6*4 / (5*24) = 0.8
    assert spearman([1, 2, 3, 4, 5], [20, 10, 40, 30, 50]) == pytest.approx(0.8)
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))  # constant: undefined


def test_spearman_matches_scipy_with_ties():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(3)
    for _ in range(5):
        x = rng.integers(0, 6, size=12).tolist()  # many ties
        y = rng.normal(size=12).tolist()
        assert spearman(x, y) == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)


def test_pareto_front_on_toy_points():
    cost = [1.0, 2.0, 3.0, 2.5, 4.0, 2.0]
    psnr = [30.0, 31.0, 31.5, 30.5, 31.5, 30.9]
    # (2.5, 30.5) is dominated by (2, 31); (4, 31.5) by (3, 31.5); (2, 30.9) by (2, 31).
    assert pareto_front(cost, psnr) == [0, 1, 2]


def test_pareto_front_keeps_exact_duplicates():
    assert pareto_front([1, 1], [2, 2]) == [0, 1]


def test_timing_statistics():
    timing = Timing((10.0, 11.0, 12.0, 13.0, 100.0))
    assert timing.median == 12.0
    assert timing.q1 == 11.0 and timing.q3 == 13.0 and timing.iqr == 2.0
    assert timing.noisy  # IQR 2 over median 12: 17% > 10%; the outlier 100 does not move either
    assert not Timing((10.0, 10.1, 10.2, 10.3, 30.0)).noisy


def test_time_forward_runs_every_repeat():
    calls = []

    class Counting(nn.Module):
        def forward(self, x):
            calls.append(1)
            return x * 2

    timing = time_forward(Counting(), torch.ones(1, 1, 2, 2), warmup=2, repeats=5)
    assert len(calls) == 7 and len(timing.samples_ms) == 5
    assert all(t >= 0 for t in timing.samples_ms)
    with pytest.raises(ValueError):
        time_forward(Counting(), torch.ones(1), warmup=0, repeats=0)
