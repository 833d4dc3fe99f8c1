"""Efficiency metrics of the AIM 2020 / NTIRE 2022 efficient-SR challenges (`leansr bench`).

How each number is measured: docs/metrics.md. Reports and plots live in `leansr.bench.report` (matplotlib is
imported only there).
"""

from leansr.bench.counting import ModelCounts, OpCounts, count_model, count_params
from leansr.bench.memory import peak_memory_bytes
from leansr.bench.runner import BenchRecord, BenchSettings, DatasetScores, benchmark_model, prepare_model
from leansr.bench.stats import pareto_front, spearman
from leansr.bench.timing import Timing, time_forward

__all__ = [
    "BenchSettings",
    "ModelCounts",
    "OpCounts",
    "Timing",
    "BenchRecord",
    "DatasetScores",
    "benchmark_model",
    "count_model",
    "count_params",
    "pareto_front",
    "peak_memory_bytes",
    "prepare_model",
    "spearman",
    "time_forward",
]
