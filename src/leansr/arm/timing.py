"""Measured cost of each route on the device in use (for `--cost time`): seconds per LR pixel of a window.

The budget is a fraction of the full width run on the whole image, which is slower per pixel than on small
windows (caches), so the reference is measured apart, on one `_WHOLE` x `_WHOLE` image.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from leansr.arm.batching import run_patches
from leansr.models.arm import SlimmableSR

_CACHE: dict[tuple, list[float]] = {}
_BATCH, _REPEATS, _WHOLE = 8, 3, 128


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


def whole_image_time(model: SlimmableSR, device: torch.device) -> float:
    """Seconds per LR pixel of the full width on one whole image (the budget's reference); cached."""
    key = (id(model), "whole", str(device))
    if key not in _CACHE:
        x = torch.rand(1, 3, _WHOLE, _WHOLE, device=device)
        _CACHE[key] = [_best_time(model, x, model.widths[-1]) / x[:, 0].numel()]
    return _CACHE[key][0]
