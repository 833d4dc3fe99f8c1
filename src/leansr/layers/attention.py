"""Attention gates of the distillation networks: CCA (IMDN), ESA (RFDN) and pixel attention (PAN).

Submodule names follow the official code so official checkpoints load without renaming inside a gate.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class ContrastChannelAttention(nn.Module):
    """Contrast-aware channel attention (IMDN): channel gate from per-channel std + mean."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        self.conv_du = nn.Sequential(
            nn.Conv2d(channels, channels // reduction, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels // reduction, channels, 1),
            nn.Sigmoid(),
        )

    def forward(self, x: Tensor) -> Tensor:
        mean = x.mean(dim=(2, 3), keepdim=True)
        std = (x - mean).pow(2).mean(dim=(2, 3), keepdim=True).sqrt()
        return x * self.conv_du(std + mean)


class EnhancedSpatialAttention(nn.Module):
    """ESA as in RFDN: a strided, max-pooled low-resolution branch yields a per-pixel sigmoid gate."""

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        mid = channels // reduction
        self.conv1 = nn.Conv2d(channels, mid, 1)
        self.conv_f = nn.Conv2d(mid, mid, 1)
        self.conv_max = nn.Conv2d(mid, mid, 3, padding=1)
        self.conv2 = nn.Conv2d(mid, mid, 3, stride=2)
        self.conv3 = nn.Conv2d(mid, mid, 3, padding=1)
        self.conv3_ = nn.Conv2d(mid, mid, 3, padding=1)
        self.conv4 = nn.Conv2d(mid, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        reduced = self.conv1(x)
        low = self.conv2(reduced)
        # The official 7x7/stride-3 pool needs inputs of >= 15 px; clip the window on smaller
        # inputs (identical result whenever the official code runs at all).
        window = (min(7, low.shape[2]), min(7, low.shape[3]))
        low = F.max_pool2d(low, kernel_size=window, stride=3)
        low = F.relu(self.conv_max(low))
        low = F.relu(self.conv3(low))
        low = self.conv3_(low)
        low = F.interpolate(low, size=x.shape[2:], mode="bilinear", align_corners=False)
        # In place where autograd allows: fewer full-size temporaries (the gate is memory-bound on a CPU).
        mask = self.conv4(low.add_(self.conv_f(reduced))).sigmoid_()
        return x * mask if torch.is_grad_enabled() else mask.mul_(x)


class PixelAttention(nn.Module):
    """PAN's pixel attention: a 1x1 convolution gives a sigmoid gate per pixel and channel."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        mask = self.conv(x).sigmoid_()
        return x * mask if torch.is_grad_enabled() else mask.mul_(x)

