"""Adaptive skip connection: `body + weight * skip` with one learnable scalar weight (UESTC-MediaLab's IMDN)."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class AdaptiveSkip(nn.Module):
    """Adds the skip branch scaled by a learned scalar (initially `init`, i.e. a plain residual)."""

    def __init__(self, init: float = 1.0) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.full((1,), float(init)))  # shape (1,), not (): checkpoint-friendly

    def forward(self, body: Tensor, skip: Tensor) -> Tensor:
        return body + self.weight * skip
