"""Forward-pass wall time: warm-up, then N independent repeats; median and interquartile range.

Every repeat runs the full forward on the same input (nothing is cached between repeats). On CUDA each repeat
is bracketed by CUDA events and synchronized; on CPU by `time.perf_counter_ns` with the thread count fixed by
the caller (`torch.set_num_threads`) and recorded.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

SPREAD_WARNING = 0.10  # IQR / median above which a timing is flagged as noisy


@dataclass(frozen=True)
class Timing:
    samples_ms: tuple[float, ...]

    @property
    def median(self) -> float:
        return float(np.median(self.samples_ms))

    @property
    def q1(self) -> float:
        return float(np.percentile(self.samples_ms, 25))

    @property
    def q3(self) -> float:
        return float(np.percentile(self.samples_ms, 75))

    @property
    def iqr(self) -> float:
        return self.q3 - self.q1

    @property
    def noisy(self) -> bool:
        return self.median > 0 and self.iqr / self.median > SPREAD_WARNING

    def as_dict(self) -> dict[str, float | int]:
        return {"median": self.median, "iqr": self.iqr, "q1": self.q1, "q3": self.q3,
                "repeats": len(self.samples_ms)}


def time_forward(model: nn.Module, x: Tensor, *, warmup: int, repeats: int) -> Timing:
    """Milliseconds per forward of `model(x)` on x's device."""
    if repeats < 1:
        raise ValueError("repeats must be at least 1")
    cuda = x.device.type == "cuda"
    with torch.inference_mode():
        for _ in range(warmup):
            model(x)
        if cuda:
            torch.cuda.synchronize(x.device)
        samples = [_time_cuda(model, x) if cuda else _time_cpu(model, x) for _ in range(repeats)]
    return Timing(tuple(samples))


def _time_cpu(model: nn.Module, x: Tensor) -> float:
    start = time.perf_counter_ns()
    model(x)
    return (time.perf_counter_ns() - start) / 1e6


def _time_cuda(model: nn.Module, x: Tensor) -> float:
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    model(x)
    end.record()
    torch.cuda.synchronize(x.device)
    return float(start.elapsed_time(end))
