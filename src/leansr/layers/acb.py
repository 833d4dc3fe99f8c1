"""Asymmetric convolution block (ACNet; the ACB of FIMDN): 3x3 + 1x3 + 3x1 branches fused into one 3x3."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from leansr.layers import fusion
from leansr.layers.conv_bn import ConvBN, branch_params
from leansr.layers.reparam import Reparameterizable


class ACB(Reparameterizable):
    """Sum of a square k x k, a horizontal 1 x k and a vertical k x 1 convolution.

    With `batch_norm` each branch is conv -> BN (ACNet); without, each branch is a biased conv.
    The 1 x k and k x 1 kernels centre inside k x k exactly, since all branches use 'same' padding.
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int = 3, *, batch_norm: bool = False
    ) -> None:
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"ACB needs an odd kernel size, got {kernel_size}")
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
        self.square = _branch(in_channels, out_channels, (kernel_size, kernel_size), batch_norm)
        self.hor = _branch(in_channels, out_channels, (1, kernel_size), batch_norm)
        self.ver = _branch(in_channels, out_channels, (kernel_size, 1), batch_norm)

    def forward(self, x: Tensor) -> Tensor:
        return self.square(x) + self.hor(x) + self.ver(x)

    def fused_params(self) -> fusion.ConvParams:
        return fusion.add_branches(*(branch_params(b) for b in (self.square, self.hor, self.ver)))

    @torch.no_grad()
    def fuse(self) -> nn.Conv2d:
        return fusion.to_conv(self.fused_params())


def _branch(in_channels: int, out_channels: int, kernel: tuple[int, int], batch_norm: bool) -> nn.Module:
    if batch_norm:
        return ConvBN(in_channels, out_channels, kernel)
    return nn.Conv2d(in_channels, out_channels, kernel, padding=(kernel[0] // 2, kernel[1] // 2))
