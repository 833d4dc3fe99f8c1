"""Width-sliced ("slimmable") convolutions: one set of full-size weights, any prefix of channels at run time.

The fraction of the supernet's width is passed explicitly to every call (`ratio = width / full_width`); no
module keeps a current width. Slicing follows ARM (chenbong/ARM-Net) exactly, since its checkpoints were trained
with it: the output channels are the prefix `int(C_out * ratio)`; the input channels are the prefix of whatever
arrives (`x.shape[1] / groups` per group). Concatenated inputs therefore use the first columns of the full
weight whatever their origin, and a grouped conv's group g sees `arriving / groups` channels.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


def sliced_count(channels: int, ratio: float) -> int:
    """Channels a sliced layer keeps; `int()` truncation as the official code (exact for published widths)."""
    return int(channels * ratio)


class WidthAware(nn.Module):
    """Marker: `forward(x, ratio)` takes the width ratio (see `run_slim`)."""


class SlimConv2d(nn.Conv2d, WidthAware):
    """Conv2d using the arriving input channels and, when `slice_out`, the output prefix for the width."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        padding: int = 0,
        groups: int = 1,
        slice_out: bool = True,
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size, padding=padding, groups=groups)
        self.slice_out = slice_out

    def forward(self, x: Tensor, ratio: float = 1.0) -> Tensor:
        if ratio == 1.0:
            return super().forward(x)
        cin = x.shape[1] // self.groups  # unsliced inputs arrive whole, so this is right for them too
        cout = sliced_count(self.out_channels, ratio) if self.slice_out else self.out_channels
        bias = None if self.bias is None else self.bias[:cout]
        return F.conv2d(x, self.weight[:cout, :cin], bias, self.stride, self.padding, self.dilation, self.groups)


class SlimConvTranspose2d(nn.ConvTranspose2d, WidthAware):
    """ConvTranspose2d (weight `(in, out, k, k)`) with sliced inputs; outputs and bias are never sliced."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, *, stride: int, padding: int,
        output_padding: int,
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                         output_padding=output_padding)

    def forward(self, x: Tensor, ratio: float = 1.0) -> Tensor:  # type: ignore[override]
        cin = sliced_count(self.in_channels, ratio)
        return F.conv_transpose2d(x, self.weight[:cin], self.bias, self.stride, self.padding,
                                  self.output_padding, self.groups, self.dilation)


def run_slim(module: nn.Module, x: Tensor, ratio: float) -> Tensor:
    """Call `module` at `ratio` if it is width-aware, plainly otherwise (activations, pixel shuffle)."""
    if isinstance(module, WidthAware):
        return module(x, ratio)
    return module(x)


class SlimSequential(nn.Sequential, WidthAware):
    """nn.Sequential passing the width ratio to the width-aware members (keys stay `name.N.weight`)."""

    def forward(self, x: Tensor, ratio: float = 1.0) -> Tensor:  # type: ignore[override]
        for module in self:
            x = run_slim(module, x, ratio)
        return x


class SlimPReLU(nn.PReLU, WidthAware):
    """Per-channel PReLU using the slopes of the arriving channels (a prefix, as every sliced layer)."""

    def forward(self, x: Tensor, ratio: float = 1.0) -> Tensor:  # type: ignore[override]
        return F.prelu(x, self.weight[: x.shape[1]])
