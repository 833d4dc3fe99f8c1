"""FMEN's residual-in-residual re-parameterizable block (RRRB) and enhanced residual block (ERB).

Training form of RRRB (Du et al., "Fast and Memory-Efficient Network Towards Efficient Image
Super-Resolution", CVPRW 2022; NJU-Jet/FMEN `train_fmen.py`):

    y = reduce( fea(pad_b0(expand(x))) + expand(x) ) + x

with 1x1 `expand_conv` (C -> ratio*C), unpadded 3x3 `fea_conv`, 1x1 `reduce_conv` (ratio*C -> C).
The expanded map is padded with `expand_conv`'s bias b0, not with zeros: b0 is what `expand_conv` outputs
for the zero padding the fused 3x3 convolution sees, so the fusion is exact at image borders too.
Deployed, each RRRB is one 3x3 convolution kept under the name `rep_conv`, the official deployed key.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from leansr.layers.fusion import (
    ConvParams,
    add_branches,
    conv_params,
    identity_params,
    merge_sequential,
    pad_with_bias,
    to_conv,
)
from leansr.layers.reparam import Reparameterizable

LRELU_SLOPE = 0.1


def lrelu(x: Tensor) -> Tensor:
    """LeakyReLU(0.1), functional: the official FMEN applies a module-level `act` that is no submodule, so the
    challenge script (hooks on the model's modules) counts no FLOPs for it, e.g. FMEN-S's published 22.28 G."""
    return F.leaky_relu(x, LRELU_SLOPE, inplace=True)  # callers pass fresh conv/add outputs


def unpadded_conv_params(conv: nn.Conv2d) -> ConvParams:
    """(weight, bias) of a stride-1 conv that runs on explicitly pre-padded input (padding=0)."""
    if conv.stride != (1, 1) or conv.dilation != (1, 1) or conv.groups != 1 or conv.bias is None:
        raise ValueError("expected a dense stride-1 convolution with bias")
    return conv.weight.detach().clone(), conv.bias.detach().clone()


class RepConv(nn.Module):
    """A deployed RRRB: one 3x3 convolution under the official name `rep_conv`."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        self.rep_conv = conv

    def forward(self, x: Tensor) -> Tensor:
        return self.rep_conv(x)


class RRRB(Reparameterizable):
    """1x1 expand -> (3x3 + identity) -> 1x1 reduce, plus an outer identity; fuses into one 3x3 conv."""

    def __init__(self, channels: int, ratio: int = 2) -> None:
        super().__init__()
        mid = ratio * channels
        self.expand_conv = nn.Conv2d(channels, mid, 1)
        self.fea_conv = nn.Conv2d(mid, mid, 3, padding=0)  # padding done by hand with the expand bias
        self.reduce_conv = nn.Conv2d(mid, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        expanded = self.expand_conv(x)
        inner = self.fea_conv(pad_with_bias(expanded, self.expand_conv.bias)) + expanded
        return self.reduce_conv(inner) + x

    def fuse(self) -> RepConv:
        expand = conv_params(self.expand_conv)
        mid = expand[0].shape[0]
        inner = add_branches(unpadded_conv_params(self.fea_conv), identity_params(mid, 1, like=expand[0]))
        body = merge_sequential(merge_sequential(expand, inner), conv_params(self.reduce_conv))
        channels = body[0].shape[0]
        return RepConv(to_conv(add_branches(body, identity_params(channels, 3, like=body[0]))))


class ERB(nn.Module):
    """Enhanced residual block: RRRB -> LeakyReLU(0.1) -> RRRB.

    Not itself re-parameterizable: its two RRRBs fuse in place, which yields the official deployed
    layout `conv1.rep_conv`, `conv2.rep_conv`.
    """

    def __init__(self, channels: int, ratio: int = 2) -> None:
        super().__init__()
        self.conv1: nn.Module = RRRB(channels, ratio)
        self.conv2: nn.Module = RRRB(channels, ratio)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv2(lrelu(self.conv1(x)))
