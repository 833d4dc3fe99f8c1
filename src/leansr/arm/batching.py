"""Running many same-size patches through one route, a batch at a time.

The seam to the engine's batched executor (`leansr.engine`, issue 8): every ARM route goes through
`run_patches`, so switching executors is a change here only.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

DEFAULT_BATCH = 64  # 32x32 patches: ~20 MB of activations for CARN at full width


def run_patches(fn: Callable[[Tensor], Tensor], patches: Tensor, *, batch: int = DEFAULT_BATCH) -> Tensor:
    """`fn` over `patches` (N, C, h, w) in batches of `batch`, results concatenated; no gradients."""
    if patches.shape[0] == 0:
        raise ValueError("no patches to run")
    with torch.inference_mode():
        return torch.cat([fn(patches[i:i + batch]) for i in range(0, patches.shape[0], batch)])
