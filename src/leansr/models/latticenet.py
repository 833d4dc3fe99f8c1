"""LatticeNet (Luo et al., ECCV 2020): lattice blocks and backward feature fusion (HaiYun's AIM 2020 entry).

Head: two 3x3 convolutions. Body: four `LatticeBlock`s. Backward fusion (the paper's BFM) walks from the
last block to the first: at each step a 1x1 conv + ReLU halves the running fused features and the next
earlier block's output, and the two halves are concatenated. A long skip adds the head features, then a
3x3 conv and a pixel-shuffle upsampler (one 3x3 conv to 3*s*s channels) give the image. The paper's
configuration (64 channels, residual-block middle width 64 - 16, reduction 16 in the combination
coefficients) is the default at x2/x3/x4: 756,172 / 764,827 / 776,944 parameters (the paper: 756K / 765K / 777K).
The DIV2K RGB mean is subtracted at the input and added back at the output, as in the official code.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from leansr.layers.lattice import LatticeBlock
from leansr.layers.upsample import PixelShuffleUpsampler
from leansr.models.base import SRModel

DIV2K_RGB_MEAN = (0.4488, 0.4371, 0.4040)


def _halve(channels: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(channels, channels // 2, 1), nn.ReLU())


class BackwardFusion(nn.Module):
    """Fuse block outputs from the last to the first: f <- cat(halve(f), halve(earlier block output))."""

    def __init__(self, channels: int, num_blocks: int) -> None:
        super().__init__()
        self.fused = nn.ModuleList(_halve(channels) for _ in range(num_blocks - 1))
        self.earlier = nn.ModuleList(_halve(channels) for _ in range(num_blocks - 1))

    def forward(self, outputs: list[Tensor]) -> Tensor:
        fused = outputs[-1]
        for step, earlier in enumerate(reversed(outputs[:-1])):
            fused = torch.cat((self.fused[step](fused), self.earlier[step](earlier)), dim=1)
        return fused


class LatticeNet(SRModel):
    def __init__(
        self,
        *,
        scale: int = 4,
        channels: int = 64,
        num_blocks: int = 4,
        diff: int = 16,
        reduction: int = 16,
        img_range: float = 1.0,
    ) -> None:
        super().__init__(scale=scale, img_range=img_range, in_channels=3)
        if channels % 2 or num_blocks < 1:
            raise ValueError("LatticeNet needs an even channel count and at least one block")
        self.register_buffer("rgb_mean", torch.tensor(DIV2K_RGB_MEAN).reshape(1, 3, 1, 1), persistent=False)
        self.head = nn.Sequential(nn.Conv2d(3, channels, 3, padding=1), nn.Conv2d(channels, channels, 3, padding=1))
        self.blocks = nn.ModuleList(LatticeBlock(channels, diff, reduction) for _ in range(num_blocks))
        self.fusion = BackwardFusion(channels, num_blocks)
        self.tail = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1), PixelShuffleUpsampler(channels, 3, scale)
        )

    def forward_sr(self, x: Tensor) -> Tensor:
        mean = self.rgb_mean * self.img_range
        features = self.head(x - mean)
        outputs, h = [], features
        for block in self.blocks:
            h = block(h)
            outputs.append(h)
        return self.tail(self.fusion(outputs) + features) + mean
