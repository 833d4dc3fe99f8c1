"""Edge-oriented convolution block (ECBSR, Zhang et al., ACM MM 2021), fused into one 3x3 convolution.

Branches: a 3x3 conv; a 1x1 expansion followed by a 3x3 conv; three 1x1 convs each followed by a fixed
edge filter (Sobel-x, Sobel-y, Laplacian) with a learned per-channel scale and bias; optionally the identity.
The 1x1 outputs are padded with their own bias before the 3x3 stage (as the official code does), so the
fused convolution is exact at image borders too.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from leansr.layers import fusion
from leansr.layers.reparam import Reparameterizable


class ExpandConv3x3(nn.Module):
    """1x1 conv to `mid_channels`, bias padding, then a 3x3 conv (no zero padding)."""

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int) -> None:
        super().__init__()
        self.expand = nn.Conv2d(in_channels, mid_channels, 1)
        self.conv = nn.Conv2d(mid_channels, out_channels, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(fusion.pad_with_bias(self.expand(x), self.expand.bias))

    def fused_params(self) -> fusion.ConvParams:
        conv = (self.conv.weight.detach(), self.conv.bias.detach())
        return fusion.merge_sequential(fusion.conv_params(self.expand), conv)


class EdgeFilter(nn.Module):
    """1x1 conv, bias padding, then a fixed 3x3 filter per channel with a learned scale and bias."""

    def __init__(self, in_channels: int, out_channels: int, kernel: tuple[tuple[float, ...], ...]) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(in_channels, out_channels, 1)
        # Small random init, as in the official code, so the branch starts near zero but not dead.
        self.scale = nn.Parameter(torch.randn(out_channels) * 1e-3)
        self.bias = nn.Parameter(torch.randn(out_channels) * 1e-3)
        # A constant, not state: kept out of the state dict.
        self.register_buffer("kernel", torch.tensor(kernel), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        y = fusion.pad_with_bias(self.reduce(x), self.reduce.bias)
        channels = self.scale.numel()
        weight = self.scale.reshape(channels, 1, 1, 1) * self.kernel.to(self.scale).expand(channels, 1, 3, 3)
        return F.conv2d(y, weight, self.bias, groups=channels)

    def fused_params(self) -> fusion.ConvParams:
        edge = fusion.fixed_kernel_params(self.kernel, self.scale.detach(), self.bias.detach())
        return fusion.merge_sequential(fusion.conv_params(self.reduce), edge)


class ECB(Reparameterizable):
    """Edge-oriented convolution block; no activation (ECBSR applies one after it)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        depth_multiplier: float = 2.0,
        with_identity: bool = False,
    ) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        # As in the official code: the identity branch exists only where shapes allow it.
        self.with_identity = with_identity and in_channels == out_channels
        self.conv3x3 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.expand3x3 = ExpandConv3x3(in_channels, int(out_channels * depth_multiplier), out_channels)
        self.sobel_x = EdgeFilter(in_channels, out_channels, fusion.SOBEL_X)
        self.sobel_y = EdgeFilter(in_channels, out_channels, fusion.SOBEL_Y)
        self.laplacian = EdgeFilter(in_channels, out_channels, fusion.LAPLACIAN)

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv3x3(x) + self.expand3x3(x) + self.sobel_x(x) + self.sobel_y(x) + self.laplacian(x)
        return y + x if self.with_identity else y

    def fused_params(self) -> fusion.ConvParams:
        branches = [
            fusion.conv_params(self.conv3x3),
            self.expand3x3.fused_params(),
            self.sobel_x.fused_params(),
            self.sobel_y.fused_params(),
            self.laplacian.fused_params(),
        ]
        if self.with_identity:
            branches.append(fusion.identity_params(self.out_channels, 3, like=self.conv3x3.weight.detach()))
        return fusion.add_branches(*branches)

    @torch.no_grad()
    def fuse(self) -> nn.Conv2d:
        return fusion.to_conv(self.fused_params())
