"""Peak working memory of a model as a function of input size, estimated from two small probe runs.

Fully convolutional SR models need memory linear in the pixels they see, so two tracked forwards (CPU:
live tensor storage; CUDA: the allocator's peak) at small sizes give the intercept and slope. The
estimate then decides whether a whole image fits the budget, and how large tiles may be.

On CPU the tracking is a `TorchFunctionMode` (every torch function's output storage counted until its last
tensor dies): unlike `leansr bench`'s dispatch-level tracker it needs no torch._dynamo import, which costs
about 2 s on first use — too much for a command-line run of one photo.
"""

from __future__ import annotations

import gc
import weakref
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from leansr.bench.memory import StorageLedger
from leansr.runtime import Precision, autocast

PROBE_SIZES = (64, 128)
SAFETY = 1.4  # kernel scratch space, allocator slack and in-kernel temporaries the tracker does not see (RLFN: 16%)
_CACHE: "weakref.WeakKeyDictionary[nn.Module, dict[tuple, MemoryProfile]]" = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class MemoryProfile:
    fixed: float  # bytes
    per_pixel: float  # bytes per LR input pixel

    def peak(self, pixels: int) -> int:
        return int(SAFETY * (self.fixed + self.per_pixel * pixels))

    def max_pixels(self, budget: int) -> int:
        """The most input pixels one call may hold within `budget` bytes."""
        return max(0, int((budget / SAFETY - self.fixed) / max(self.per_pixel, 1.0)))


def profile_memory(
    model: Callable[[Tensor], Tensor], channels: int, device: torch.device, precision: Precision,
    *, key_module: nn.Module | None = None,
) -> MemoryProfile:
    """Memory profile of `model` on `channels`-plane inputs; cached per module and settings."""
    key = (channels, str(device), precision, type(model).__name__, getattr(model, "config", None))
    cache = _CACHE.setdefault(key_module, {}) if key_module is not None else {}
    if key not in cache:
        small, large = (_peak(model, channels, size, device, precision) for size in PROBE_SIZES)
        slope = max(large - small, 1) / (PROBE_SIZES[1] ** 2 - PROBE_SIZES[0] ** 2)
        cache[key] = MemoryProfile(max(0.0, small - slope * PROBE_SIZES[0] ** 2), slope)
    return cache[key]


def _peak(model: Callable[[Tensor], Tensor], channels: int, size: int, device: torch.device,
          precision: Precision) -> int:
    x = torch.rand(1, channels, size, size, device=device).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(), autocast(device, precision):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            base = torch.cuda.memory_allocated(device)
            torch.cuda.reset_peak_memory_stats(device)
            out = model(x)
            torch.cuda.synchronize(device)
            del out
            return int(torch.cuda.max_memory_allocated(device) - base)
        gc.collect()
        tracker = _LiveStorage(x)
        with tracker:
            out = model(x)
        del out
        return int(tracker.peak)


class _LiveStorage(TorchFunctionMode):
    """The storage ledger fed by every torch function's outputs."""

    def __init__(self, resident: Tensor) -> None:
        super().__init__()
        self.ledger = StorageLedger([resident])

    @property
    def peak(self) -> int:
        return self.ledger.peak

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self.ledger.track_all(out)
        return out
