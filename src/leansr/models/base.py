"""Common base of zoo models: scale, input range and the 0-1 image interface."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn


class SRModel(nn.Module):
    """Callers pass and receive images on the 0-1 scale, NCHW; `img_range` is what the weights expect.

    Subclasses implement `forward_sr` on the weights' own range. `in_channels` is 3 (RGB) or 1 (Y only).
    `arch` and `hparams` are recorded by `leansr.create_model` so that a checkpoint round-trips.
    """

    arch: str = ""
    hparams: dict[str, Any]

    def __init__(self, *, scale: int, img_range: float = 1.0, in_channels: int = 3) -> None:
        super().__init__()
        self.scale = int(scale)
        self.img_range = float(img_range)
        self.in_channels = int(in_channels)
        self.deployed = False  # set by reparameterize_model

    def forward(self, x: Tensor) -> Tensor:
        if self.img_range == 1.0:
            return self.forward_sr(x)
        return self.forward_sr(x * self.img_range) / self.img_range

    def forward_sr(self, x: Tensor) -> Tensor:
        raise NotImplementedError
