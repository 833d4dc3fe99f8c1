"""Reduced Enhanced Spatial Attention: RLFN's ESA, without RFDN's `conv_max`/`conv3_` stages."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

_POOL_KERNEL = 7
_POOL_STRIDE = 3
_STRIDED_KERNEL = 3


class ReducedESA(nn.Module):
    """Gate features by a sigmoid mask computed at low resolution (strided conv, 7x7/3 max pool).

    Module names (`conv1`, `conv_f`, `conv2`, `conv3`, `conv4`) follow the official RLFN weights.
    """

    def __init__(self, channels: int, esa_channels: int = 16) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, esa_channels, 1)
        self.conv_f = nn.Conv2d(esa_channels, esa_channels, 1)
        self.conv2 = nn.Conv2d(esa_channels, esa_channels, _STRIDED_KERNEL, stride=2, padding=0)
        self.conv3 = nn.Conv2d(esa_channels, esa_channels, 3, padding=1)
        self.conv4 = nn.Conv2d(esa_channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        reduced = self.conv1(x)
        low = self.conv2(_pad_to_at_least(reduced, _STRIDED_KERNEL))
        pooled = F.max_pool2d(low, kernel_size=_pool_kernel(low), stride=_POOL_STRIDE)
        context = F.interpolate(
            self.conv3(pooled), size=x.shape[-2:], mode="bilinear", align_corners=False
        )
        # In place where autograd allows it: these are fresh full-size maps, and each copy costs bandwidth.
        mask = self.conv4(context.add_(self.conv_f(reduced))).sigmoid_()
        return x * mask if torch.is_grad_enabled() else mask.mul_(x)


def _pool_kernel(x: Tensor) -> tuple[int, int]:
    # The official 7x7 pool fails on maps under 7 px (inputs under 15 px); shrinking the window there
    # keeps tiny inputs and tiles working and leaves every official-size result unchanged.
    return min(_POOL_KERNEL, x.shape[-2]), min(_POOL_KERNEL, x.shape[-1])


def _pad_to_at_least(x: Tensor, size: int) -> Tensor:
    # The unpadded strided conv needs >= 3 px; only inputs of 1-2 px are ever padded.
    pad_h, pad_w = max(0, size - x.shape[-2]), max(0, size - x.shape[-1])
    if pad_h == 0 and pad_w == 0:
        return x
    return F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
