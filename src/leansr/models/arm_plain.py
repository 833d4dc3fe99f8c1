"""`arm_plain`: our CPU-friendly ARM supernet, a slimmable plain network (ECBSR's deployed form on RGB).

ARM's published supernets are slow at their narrow widths on a CPU: CARN-M's grouped convolutions keep 9 or 13
channels a group and SRResNet's widths 36/52 are not multiples of the 16-channel blocks oneDNN computes in.
This one is M+2 plain 3x3 convolutions with per-channel PReLUs, ECBSR's nearest-neighbour global residual and
a pixel shuffle; every hidden layer slices the prefix of its channels (use widths in multiples of 16).
A plain trained ECBSR (such as the default model) becomes its full width exactly (`leansr.arm.from_plain`).
"""

from __future__ import annotations

from torch import Tensor, nn

from leansr.layers.slimmable import SlimConv2d, SlimPReLU
from leansr.layers.upsample import repeat_channels
from leansr.models.arm import SlimmableSR

_RGB = 3


class ARMPlain(SlimmableSR):
    """`convs.i` / `acts.i`: conv 3->C, PReLU, num_blocks x (conv C->C, PReLU), conv C->3*s*s, shuffle."""

    def __init__(
        self, *, scale: int = 4, channels: int = 32, num_blocks: int = 10,
        widths: tuple[int, ...] | list[int] | None = None,
    ) -> None:
        super().__init__(scale=scale, channels=channels, widths=widths, arch="arm_plain")
        hidden = num_blocks + 1
        self.convs = nn.ModuleList(
            [SlimConv2d(_RGB, channels, 3, padding=1)]
            + [SlimConv2d(channels, channels, 3, padding=1) for _ in range(num_blocks)]
            + [SlimConv2d(channels, _RGB * scale * scale, 3, padding=1, slice_out=False)]
        )
        self.acts = nn.ModuleList(SlimPReLU(channels) for _ in range(hidden))
        self.shuffle = nn.PixelShuffle(scale)

    def forward_ratio(self, x: Tensor, ratio: float) -> Tensor:
        out = x
        for conv, act in zip(self.convs, self.acts):
            out = act(conv(out, ratio), ratio)
        out = self.convs[-1](out, ratio)
        return self.shuffle(out + repeat_channels(x, self.scale * self.scale))
