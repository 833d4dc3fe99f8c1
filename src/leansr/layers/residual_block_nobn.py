"""Residual block without batch norm (EDSR / MSRResNet style): conv-ReLU-conv plus identity."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class ResidualBlockNoBN(nn.Module):
    """`x + conv2(relu(conv1(x)))`; module names follow BasicSR's `ResidualBlockNoBN`."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        # Functional ReLU as in KAIR's MSRResNet1 (the AIM 2020 baseline): the challenge script counts
        # nn.ReLU module outputs as FLOPs, and the published 166.36 G counts none here.
        return x + self.conv2(F.relu(self.conv1(x), inplace=True))
