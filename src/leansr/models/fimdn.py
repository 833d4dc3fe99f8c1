"""FIMDN (team AiriA_CG, AIM 2020 efficient SR): IMDN whose blocks are six CACB units and a 1x1 fusion.

A CACB unit is an asymmetric convolution block (3x3 + 1x3 + 3x1, `leansr.layers.acb.ACB`, without
BatchNorm as usual in SR) followed by LeakyReLU; `reparameterize_model` turns every ACB into one 3x3
convolution. Our reading of the report's short description (choices are ours where it is silent):
the block distils progressively as IMDN's IMDB does, with six units instead of four: units 1-5 split off
a quarter of the channels and pass the rest on, unit 6 maps the rest to a quarter, and a 1x1 convolution
fuses the six distilled parts (no contrast-aware attention, for speed) before the block's residual add.
The trunk (3x3 head, concatenation of all block outputs + 1x1, 3x3 + long skip, pixel shuffle) is IMDN's.

`conv` picks what the units' 3x3 convolutions are during training: "acb" (FIMDN), "plain" or "basis"
(kernel-basis convolutions for `leansr.train.basis_schedule`, bases per stage in `basis_stages`). All
three deploy to exactly the same plain network, which is what `benchmarks/bench_aim2020.py` compares.
"""

from __future__ import annotations

from functools import partial
from typing import Callable

import torch
from torch import Tensor, nn

from leansr.layers.acb import ACB
from leansr.layers.kernel_basis import KernelBasisConv2d
from leansr.models.imdn import LEAKY_SLOPE, DistillationSR

CONVS = ("acb", "plain", "basis")
DEFAULT_BASES = (3,)  # N0 = 3 basis kernels, as in the UESTC-MediaLab recipe


def unit_conv_factory(conv: str, basis_stages: list[int] | None) -> Callable[[int, int], nn.Module]:
    """The 3x3 convolution of a unit in its training form."""
    if conv == "acb":
        return partial(ACB, batch_norm=False)
    if conv == "basis":
        stages = tuple(basis_stages or DEFAULT_BASES)
        return partial(KernelBasisConv2d, kernel_size=3, stages=stages, init="xavier")
    if conv == "plain":
        return partial(nn.Conv2d, kernel_size=3, padding=1)
    raise ValueError(f"conv must be one of {CONVS}, got {conv!r}")


class FIMDB(nn.Module):
    """Six conv + LeakyReLU units with progressive distillation, 1x1 fusion of the distilled parts, residual."""

    def __init__(
        self, channels: int, *, conv3x3: Callable[[int, int], nn.Module], num_units: int = 6,
        distillation_rate: float = 0.25,
    ) -> None:
        super().__init__()
        self.distilled = int(channels * distillation_rate)
        self.remaining = channels - self.distilled
        widths_in = [channels] + [self.remaining] * (num_units - 1)
        widths_out = [channels] * (num_units - 1) + [self.distilled]
        self.units = nn.ModuleList(conv3x3(cin, cout) for cin, cout in zip(widths_in, widths_out))
        self.act = nn.LeakyReLU(LEAKY_SLOPE)
        self.fuse = nn.Conv2d(self.distilled * num_units, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        distilled, h = [], x
        for unit in self.units[:-1]:
            d, h = torch.split(self.act(unit(h)), (self.distilled, self.remaining), dim=1)
            distilled.append(d)
        distilled.append(self.act(self.units[-1](h)))
        return self.fuse(torch.cat(distilled, dim=1)) + x


class FIMDN(DistillationSR):
    def __init__(
        self,
        *,
        scale: int = 4,
        channels: int = 48,
        num_blocks: int = 6,
        conv: str = "acb",
        basis_stages: list[int] | None = None,  # conv="basis": bases per stage (None = [3])
        img_range: float = 1.0,
    ) -> None:
        conv3x3 = unit_conv_factory(conv, basis_stages)
        super().__init__(
            scale=scale, img_range=img_range, channels=channels, num_blocks=num_blocks,
            make_block=partial(FIMDB, conv3x3=conv3x3),
        )
