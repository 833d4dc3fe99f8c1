"""Measured cost of each route on the device in use (for `--cost time`): seconds per LR pixel of a window."""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from leansr.arm.batching import run_patches
from leansr.models.arm import SlimmableSR

_CACHE: dict[tuple, list[float]] = {}
_BATCH, _REPEATS = 8, 3


def route_times(model: SlimmableSR, window: tuple[int, int], device: torch.device) -> list[float]:
    """Seconds per window pixel for each route (bicubic first), best of a few batched runs; cached."""
    key = (id(model), window, str(device))
    if key not in _CACHE:
        x = torch.rand(_BATCH, 3, *window, device=device)
        _CACHE[key] = [_best_time(model, x, width) / x[:, 0].numel() for width in model.routes]
    return _CACHE[key]


def _best_time(model: SlimmableSR, x: torch.Tensor, width: int) -> float:
    def once() -> float:
        start = time.perf_counter()
        if width == 0:
            with torch.inference_mode():
                F.interpolate(x, scale_factor=model.scale, mode="bicubic", align_corners=False)
        else:
            run_patches(lambda b: model.forward_width(b, width), x, device=x.device)
        if x.device.type == "cuda":
            torch.cuda.synchronize(x.device)
        return time.perf_counter() - start

    once()  # warm-up: allocator and kernel selection
    return min(once() for _ in range(_REPEATS))
