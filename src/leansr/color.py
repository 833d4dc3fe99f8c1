"""Colour layouts a model was not trained on: BT.601 YCbCr for Y-only models, gray, alpha."""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from leansr.context import GLOBAL, Context
from leansr.data.imresize import imresize

Model = Callable[[Tensor], Tensor]
# MATLAB rgb2ycbcr (BT.601, studio swing) on the 0-1 scale: ycbcr = OFFSET + MATRIX @ rgb.
BT601_MATRIX = ((65.481, 128.553, 24.966),  # rows: Y, Cb, Cr from R, G, B on 0-255
                (-37.797, -74.203, 112.0),
                (112.0, -93.786, -18.214))
BT601_OFFSET = (16.0, 128.0, 128.0)
_YCBCR_MATRIX = torch.tensor(BT601_MATRIX, dtype=torch.float64) / 255.0
_YCBCR_OFFSET = torch.tensor(BT601_OFFSET, dtype=torch.float64) / 255.0
BICUBIC_RADIUS = 2  # LR pixels an upscaling bicubic kernel reaches
_LUMA = (0.299, 0.587, 0.114)  # BT.601 luma, to turn an RGB model's output back into gray


def rgb_to_ycbcr(rgb: Tensor) -> Tensor:
    m, offset = _YCBCR_MATRIX.to(rgb), _YCBCR_OFFSET.to(rgb)
    return torch.einsum("ij,njhw->nihw", m, rgb) + offset[:, None, None]


def ycbcr_to_rgb(ycbcr: Tensor) -> Tensor:
    inverse, offset = torch.linalg.inv(_YCBCR_MATRIX).to(ycbcr), _YCBCR_OFFSET.to(ycbcr)
    return torch.einsum("ij,njhw->nihw", inverse, ycbcr - offset[:, None, None])


class ImageAdapter:
    """Wraps a model so that it takes any image layout, channels in the order colour (1 or 3) then alpha.

    Y-only models super-resolve the BT.601 luma while chroma is upscaled bicubically; gray images fed to
    RGB models are replicated to three channels and turned back into gray (luma); alpha is upscaled
    bicubically. Every step is local, so the adapter runs inside the tiler, tile by tile.
    """

    def __init__(self, model: Model, *, colour: int, alpha: bool, scale: int, context: Context = GLOBAL) -> None:
        self.model, self.colour, self.alpha, self.scale = model, colour, alpha, scale
        self.model_channels = int(getattr(model, "in_channels", 3))
        self.arch = getattr(model, "arch", "")
        uses_bicubic = alpha or (self.model_channels == 1 and colour == 3)
        self.context = context.widened(BICUBIC_RADIUS) if uses_bicubic else context

    @property
    def config(self) -> tuple[int, bool, int]:
        return self.colour, self.alpha, self.model_channels

    def __call__(self, x: Tensor) -> Tensor:
        colour = x[:, :self.colour]
        if self.model_channels == 1 and self.colour == 3:
            ycbcr = rgb_to_ycbcr(colour)
            luma = self.model(ycbcr[:, :1].contiguous(memory_format=torch.channels_last)).float()
            out = ycbcr_to_rgb(torch.cat([luma, self._bicubic(ycbcr[:, 1:])], dim=1))
        elif self.model_channels == 1:  # gray: its Y is 16/255 + 219/255 * g
            out = (self.model((16 + 219 * colour) / 255).float() * 255 - 16) / 219
        elif self.colour == 1:
            rgb = self.model(colour.expand(-1, 3, -1, -1).contiguous(memory_format=torch.channels_last))
            out = sum(w * rgb[:, i:i + 1].float() for i, w in enumerate(_LUMA))
        else:
            out = self.model(colour)
        if self.alpha:
            out = torch.cat([out.float(), self._bicubic(x[:, self.colour:])], dim=1)
        return out

    def _bicubic(self, planes: Tensor) -> Tensor:
        with torch.autocast(device_type=planes.device.type, enabled=False):
            return imresize(planes.float(), float(self.scale))
