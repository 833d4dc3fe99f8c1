"""Runs a model over a list of patches in batches: the one place the engine calls a model.

Patches of equal shape are stacked up to `max_batch` at a time (ARM runs each subnet width's patches
this way); inputs go channels-last to the model's device under the precision policy; outputs come back
as float32 on the patches' device, in order.
"""

from __future__ import annotations

from typing import Callable, Iterator, Sequence

import torch
from torch import Tensor

from leansr.runtime import Precision, autocast

Model = Callable[[Tensor], Tensor]


def run_batches(
    model: Model,
    patches: Sequence[Tensor],
    *,
    max_batch: int,
    device: torch.device,
    precision: Precision = "fp32",
    channels_last: bool = True,
) -> Iterator[tuple[int, Tensor]]:
    """Yield (index of the batch's first patch, output batch) over `patches` (each 1xCxHxW), in order.

    On CUDA out-of-memory a batch is halved and retried; at one patch the error propagates, so the caller
    can re-plan with smaller tiles.
    """
    start = 0
    while start < len(patches):
        count = _run_length(patches, start, max_batch)
        batch = torch.cat([patches[i] for i in range(start, start + count)]) if count > 1 else patches[start]
        try:
            out = run_one(model, batch, device=device, precision=precision, channels_last=channels_last)
        except torch.cuda.OutOfMemoryError:
            if count == 1:
                raise
            max_batch = max(1, count // 2)
            torch.cuda.empty_cache()
            continue
        yield start, out.to(patches[start].device)
        start += count


def run_one(model: Model, x: Tensor, *, device: torch.device, precision: Precision = "fp32",
            channels_last: bool = True) -> Tensor:
    x = x.to(device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(), autocast(device, precision):
        return model(x).float()


def _run_length(patches: Sequence[Tensor], start: int, max_batch: int) -> int:
    """How many patches from `start` share the first one's shape, up to `max_batch`."""
    shape = patches[start].shape
    count = 1
    while count < max_batch and start + count < len(patches) and patches[start + count].shape == shape:
        count += 1
    return count
