"""UESTC-MediaLab's IMDN variant (AIM 2020 efficient SR) trained with kernel bases.

Every IMDB stage "Conv3x3 -> LeakyReLU" becomes "GConv3x3 -> PReLU -> Conv1x1": a grouped 3x3
convolution that multiplies the channels by `multiplier`, a PReLU, and a 1x1 back to the stage's width.
Skip connections are adaptive (a learned scalar weight on the skip branch of every block and of the long
skip). Every convolution of the blocks is a `KernelBasisConv2d` ("xavier" bases, coefficients 1/N) so the
kernel-basis schedule of `leansr train` (`kernel_basis.stages`) can grow them; after training each merges
into one kernel. The report gives no exact widths; ours: 48 channels, 6 blocks, 4 groups, multiplier 2.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import Tensor, nn

from leansr.layers.adaptive_skip import AdaptiveSkip
from leansr.layers.kernel_basis import KernelBasisConv2d
from leansr.layers.upsample import PixelShuffleUpsampler
from leansr.models.base import SRModel
from leansr.models.imdn import LEAKY_SLOPE, distilled_features

DEFAULT_BASES = (3,)


class GroupUnit(nn.Sequential):
    """Grouped 3x3 (channel-multiplying) -> PReLU -> 1x1, both kernel-basis convolutions."""

    def __init__(self, cin: int, cout: int, *, groups: int, multiplier: int, stages: tuple[int, ...]) -> None:
        wide = cin * multiplier
        super().__init__(
            KernelBasisConv2d(cin, wide, 3, stages=stages, groups=groups, init="xavier"),
            nn.PReLU(wide),
            KernelBasisConv2d(wide, cout, 1, stages=stages, init="xavier"),
        )


class KBIMDB(nn.Module):
    """IMDB with `GroupUnit` stages (no attention) and an adaptive skip."""

    def __init__(self, channels: int, *, groups: int, multiplier: int, stages: tuple[int, ...]) -> None:
        super().__init__()
        self.distilled = channels // 4
        self.remaining = channels - self.distilled
        unit = partial(GroupUnit, groups=groups, multiplier=multiplier, stages=stages)
        self.c1 = unit(channels, channels)
        self.c2 = unit(self.remaining, channels)
        self.c3 = unit(self.remaining, channels)
        self.c4 = unit(self.remaining, self.distilled)
        self.act = nn.LeakyReLU(LEAKY_SLOPE)
        self.c5 = KernelBasisConv2d(self.distilled * 4, channels, 1, stages=stages, init="xavier")
        self.skip = AdaptiveSkip()

    def forward(self, x: Tensor) -> Tensor:
        return self.skip(self.c5(distilled_features(self, x)), x)


class IMDNKernelBasis(SRModel):
    def __init__(
        self,
        *,
        scale: int = 4,
        channels: int = 48,
        num_blocks: int = 6,
        groups: int = 4,
        multiplier: int = 2,
        basis_stages: list[int] | None = None,  # bases per stage (None = [3]); grown by the schedule
        img_range: float = 1.0,
    ) -> None:
        super().__init__(scale=scale, img_range=img_range, in_channels=3)
        stages = tuple(basis_stages or DEFAULT_BASES)
        if (channels - channels // 4) % groups or channels % groups:
            raise ValueError(f"groups={groups} must divide {channels} and {channels - channels // 4}")
        self.fea_conv = nn.Conv2d(3, channels, 3, padding=1)
        block = partial(KBIMDB, groups=groups, multiplier=multiplier, stages=stages)
        self.blocks = nn.ModuleList(block(channels) for _ in range(num_blocks))
        self.c = nn.Sequential(
            KernelBasisConv2d(channels * num_blocks, channels, 1, stages=stages, init="xavier"),
            nn.LeakyReLU(LEAKY_SLOPE),
        )
        self.LR_conv = KernelBasisConv2d(channels, channels, 3, stages=stages, init="xavier")
        self.skip = AdaptiveSkip()
        self.upsampler = PixelShuffleUpsampler(channels, 3, scale)

    def forward_sr(self, x: Tensor) -> Tensor:
        features = self.fea_conv(x)
        outputs, h = [], features
        for block in self.blocks:
            h = block(h)
            outputs.append(h)
        fused = self.c(torch.cat(outputs, dim=1))
        return self.upsampler(self.skip(self.LR_conv(fused), features))
