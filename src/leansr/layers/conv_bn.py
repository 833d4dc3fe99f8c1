"""Convolution followed by BatchNorm, folded into one biased convolution for deployment."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from leansr.layers import fusion
from leansr.layers.reparam import Reparameterizable


class ConvBN(Reparameterizable):
    """`bn(conv(x))` with a bias-free, stride-1, 'same'-padded conv (kernel may be non-square, e.g. 1x3).

    Folding uses the BatchNorm running statistics, i.e. it reproduces eval mode.
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int], *, groups: int = 1
    ) -> None:
        super().__init__()
        kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
        self.conv = nn.Conv2d(
            in_channels, out_channels, (kh, kw), padding=(kh // 2, kw // 2), groups=groups, bias=False
        )
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.bn(self.conv(x))

    def fused_params(self, *, dense: bool = True) -> fusion.ConvParams:
        """Folded (weight, bias); `dense=False` keeps a grouped kernel grouped."""
        return fusion.fold_bn(fusion.conv_params(self.conv, dense=dense), self.bn)

    @torch.no_grad()
    def fuse(self) -> nn.Conv2d:
        return fusion.to_conv(self.fused_params(dense=False), groups=self.conv.groups)


def branch_params(module: nn.Module) -> fusion.ConvParams:
    """Fused (weight, bias) of a branch that is a plain conv or a ConvBN."""
    if isinstance(module, ConvBN):
        return module.fused_params()
    if isinstance(module, nn.Conv2d):
        return fusion.conv_params(module)
    raise TypeError(f"cannot fuse a {type(module).__name__} branch")
