"""LatticeNet's lattice block (Luo et al., ECCV 2020): two butterfly structures over two residual blocks.

Each butterfly combines a residual block's input x and output h with learned, input-dependent
combination coefficients (channel attention from the mean and the standard deviation of each channel):
    p = x + A(h) * h,   q = h + B(x) * x.
The upper branch p feeds the second residual block; the two outputs of the second butterfly are
concatenated and compressed by a 1x1 convolution.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

LEAKY_SLOPE = 0.05  # LatticeNet's residual-block LeakyReLU slope


class CombinationCoefficient(nn.Module):
    """Per-channel coefficients in (0, 1): the mean of a mean-pooled and a std-pooled squeeze-excitation.

    The std is the population one (divide by H*W, as the paper's formula), defined for 1x1 maps too.
    """

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        self.from_mean = _squeeze_excite(channels, reduction)
        self.from_std = _squeeze_excite(channels, reduction)

    def forward(self, x: Tensor) -> Tensor:
        mean = x.mean(dim=(2, 3), keepdim=True)
        std = (x - mean).pow(2).mean(dim=(2, 3), keepdim=True).sqrt()
        return (self.from_mean(mean) + self.from_std(std)) / 2


def _squeeze_excite(channels: int, reduction: int) -> nn.Sequential:
    hidden = max(channels // reduction, 1)
    return nn.Sequential(
        nn.Conv2d(channels, hidden, 1), nn.ReLU(inplace=True), nn.Conv2d(hidden, channels, 1), nn.Sigmoid()
    )


def lattice_residual_block(channels: int, reduced: int) -> nn.Sequential:
    """Three 3x3 convolutions (channels -> reduced -> reduced -> channels), each followed by LeakyReLU."""
    widths = (channels, reduced, reduced, channels)
    layers: list[nn.Module] = []
    for cin, cout in zip(widths, widths[1:]):
        layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.LeakyReLU(LEAKY_SLOPE)]
    return nn.Sequential(*layers)


class LatticeBlock(nn.Module):
    """Two butterflies over two residual blocks whose middle width is `channels - diff`."""

    def __init__(self, channels: int, diff: int = 16, reduction: int = 16) -> None:
        super().__init__()
        self.block1 = lattice_residual_block(channels, channels - diff)
        self.coeff_h1 = CombinationCoefficient(channels, reduction)
        self.coeff_x1 = CombinationCoefficient(channels, reduction)
        self.block2 = lattice_residual_block(channels, channels - diff)
        self.coeff_q1 = CombinationCoefficient(channels, reduction)
        self.coeff_h2 = CombinationCoefficient(channels, reduction)
        self.compress = nn.Conv2d(2 * channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        h1 = self.block1(x)
        p1 = x + self.coeff_h1(h1) * h1  # upper path: input plus weighted block output
        q1 = h1 + self.coeff_x1(x) * x  # lower path: block output plus weighted input
        h2 = self.block2(p1)
        p2 = h2 + self.coeff_q1(q1) * q1
        q2 = q1 + self.coeff_h2(h2) * h2
        return self.compress(torch.cat((p2, q2), dim=1))
