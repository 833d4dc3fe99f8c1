"""Bicubic baseline: MATLAB-style bicubic upscaling, the reference row of every SR table (no parameters)."""

from __future__ import annotations

from torch import Tensor

from leansr.data.imresize import imresize
from leansr.models.base import SRModel


class Bicubic(SRModel):
    def __init__(self, *, scale: int = 4, img_range: float = 1.0, in_channels: int = 3) -> None:
        super().__init__(scale=scale, img_range=img_range, in_channels=in_channels)

    def forward_sr(self, x: Tensor) -> Tensor:
        return imresize(x, float(self.scale))
