"""Measured cost of each route on the device in use (for `--cost time`): seconds per LR pixel of a window,
and seconds per call (most windows of a plan run alone in their batch, and a call costs a pass over every layer).

The budget is a fraction of the full width run on the whole image, which is slower per pixel than on small
windows (caches), so the reference is measured apart, on one `_WHOLE` x `_WHOLE` image.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from leansr.arm.batching import run_patches
from leansr.models.arm import SlimmableSR

_CACHE: dict[tuple, list[list[float]]] = {}
_BATCH, _REPEATS, _WHOLE = 8, 3, 128


def route_times(model: SlimmableSR, window: tuple[int, int], device: torch.device) -> list[float]:
    """Seconds per window pixel for each route (bicubic first), on batches of windows; cached."""
    return _window_times(model, window, device)[0]


def call_times(model: SlimmableSR, window: tuple[int, int], device: torch.device) -> list[float]:
    """Seconds each route's call costs beyond its pixels: what a window alone pays over one in a batch."""
    return _window_times(model, window, device)[1]


def _window_times(model: SlimmableSR, window: tuple[int, int], device: torch.device) -> list[list[float]]:
    key = (id(model), window, str(device))
    if key not in _CACHE:
        batch, alone = torch.rand(_BATCH, 3, *window, device=device), torch.rand(1, 3, *window, device=device)
        pixels = window[0] * window[1]
        per_pixel, per_call = [], []
        for width in model.routes:
            amortised = _best_time(model, batch, width) / _BATCH
            per_pixel.append(amortised / pixels)
            per_call.append(max(_best_time(model, alone, width) - amortised, 0.0))
        _CACHE[key] = [per_pixel, per_call]
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


def whole_image_time(model: SlimmableSR, device: torch.device) -> float:
    """Seconds per LR pixel of the full width on one whole image (the budget's reference); cached."""
    key = (id(model), "whole", str(device))
    if key not in _CACHE:
        x = torch.rand(1, 3, _WHOLE, _WHOLE, device=device)
        _CACHE[key] = [[_best_time(model, x, model.widths[-1]) / x[:, 0].numel()]]
    return _CACHE[key][0][0]
