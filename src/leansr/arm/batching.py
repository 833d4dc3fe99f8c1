"""Running many same-size windows through one route, batched by the engine's executor.

The one seam between ARM routing and the engine: every route's windows go through `run_patches`.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from leansr.engine import run_batches

DEFAULT_BATCH = 64  # 36x36 windows: ~25 MB of activations for CARN at full width


def run_patches(fn: Callable[[Tensor], Tensor], patches: Tensor, *, device: torch.device,
                batch: int = DEFAULT_BATCH) -> Tensor:
    """`fn` over `patches` (N, C, h, w) on `device`, `batch` at a time; outputs on the patches' device."""
    if patches.shape[0] == 0:
        raise ValueError("no patches to run")
    outs = run_batches(fn, list(patches.split(1)), max_batch=batch, device=device)
    return torch.cat([out for _, out in outs])
