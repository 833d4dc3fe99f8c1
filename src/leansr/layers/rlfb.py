"""Residual Local Feature Block (RLFB), the building block of RLFN."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from leansr.layers.reduced_esa import ReducedESA


class RLFB(nn.Module):
    """Three 3x3 conv + LeakyReLU(0.05) with a local residual, then a 1x1 conv and reduced ESA.

    `mid_channels` widens or narrows the inner convs (the pruned NTIRE 2022 model uses 48 inside 46).
    Module names follow the official RLFN weights.
    """

    def __init__(self, channels: int, mid_channels: int, esa_channels: int = 16) -> None:
        super().__init__()
        self.c1_r = nn.Conv2d(channels, mid_channels, 3, padding=1)
        self.c2_r = nn.Conv2d(mid_channels, mid_channels, 3, padding=1)
        self.c3_r = nn.Conv2d(mid_channels, channels, 3, padding=1)
        self.c5 = nn.Conv2d(channels, channels, 1)
        self.esa = ReducedESA(channels, esa_channels)
        self.act = nn.LeakyReLU(0.05, inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        out = self.act(self.c1_r(x))
        out = self.act(self.c2_r(out))
        out = self.act(self.c3_r(out))
        # Without autograd the residual goes in place (the activation's output is saved for backward otherwise).
        return self.esa(self.c5(out + x if torch.is_grad_enabled() else out.add_(x)))
