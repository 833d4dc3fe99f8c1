"""IMDN (Hui et al., ACM MM 2019) and its AIM 2019 variant (the NTIRE 2022 efficient-SR baseline).

`DistillationSR` is the trunk IMDN shares with RFDN (and ACB-based IMDN variants): a 3x3 head, a chain of
distillation blocks whose outputs are concatenated and fused by a 1x1 convolution, a 3x3 convolution with a
long skip, and a pixel-shuffle upsampler. Module names follow the official code (`fea_conv`, `c`, `LR_conv`,
`upsampler`, `c1`..`c5`, `cca`) so official checkpoints load with little renaming.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

from leansr.layers.attention import ContrastChannelAttention
from leansr.layers.upsample import PixelShuffleUpsampler, pixel_shuffle_scale
from leansr.models._layout import Detection, StateDict, layout_keys, numbered, renamed
from leansr.models.base import SRModel

Conv3x3Factory = Callable[[int, int], nn.Module]
BlockFactory = Callable[[int], nn.Module]
LEAKY_SLOPE = 0.05  # the official IMDN/RFDN LeakyReLU slope


def plain_conv3x3(in_channels: int, out_channels: int) -> nn.Module:
    return nn.Conv2d(in_channels, out_channels, 3, padding=1)


class IMDB(nn.Module):
    """Information multi-distillation block: three 3x3 stages each split off a quarter of the channels.

    `conv3x3` builds c1..c4 (swap in e.g. an asymmetric block); `channel_attention=False` gives the
    AIM 2019 form, which fuses the distilled features without the CCA gate.
    """

    def __init__(
        self,
        channels: int,
        *,
        conv3x3: Conv3x3Factory = plain_conv3x3,
        channel_attention: bool = True,
        distillation_rate: float = 0.25,
    ) -> None:
        super().__init__()
        self.distilled = int(channels * distillation_rate)
        self.remaining = channels - self.distilled
        self.c1 = conv3x3(channels, channels)
        self.c2 = conv3x3(self.remaining, channels)
        self.c3 = conv3x3(self.remaining, channels)
        self.c4 = conv3x3(self.remaining, self.distilled)
        self.act = nn.LeakyReLU(LEAKY_SLOPE)
        self.c5 = nn.Conv2d(self.distilled * 4, channels, 1)
        self.cca = ContrastChannelAttention(self.distilled * 4) if channel_attention else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.c5(self.cca(distilled_features(self, x))) + x


def distilled_features(block: nn.Module, x: Tensor) -> Tensor:
    """IMDN's progressive distillation: c1..c3 each keep `distilled` channels and pass the rest on; c4 ends it."""
    split = (block.distilled, block.remaining)
    d1, r1 = torch.split(block.act(block.c1(x)), split, dim=1)
    d2, r2 = torch.split(block.act(block.c2(r1)), split, dim=1)
    d3, r3 = torch.split(block.act(block.c3(r2)), split, dim=1)
    return torch.cat([d1, d2, d3, block.c4(r3)], dim=1)


class DistillationSR(SRModel):
    """Head, distillation blocks with concatenated outputs, 1x1 fusion, 3x3 + long skip, pixel shuffle."""

    def __init__(
        self, *, scale: int, img_range: float, channels: int, num_blocks: int, make_block: BlockFactory
    ) -> None:
        super().__init__(scale=scale, img_range=img_range, in_channels=3)
        self.fea_conv = nn.Conv2d(3, channels, 3, padding=1)
        self.blocks = nn.ModuleList(make_block(channels) for _ in range(num_blocks))
        self.c = nn.Sequential(nn.Conv2d(channels * num_blocks, channels, 1), nn.LeakyReLU(LEAKY_SLOPE))
        self.LR_conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.upsampler = PixelShuffleUpsampler(channels, 3, scale)

    def forward_sr(self, x: Tensor) -> Tensor:
        features = self.fea_conv(x)
        outputs = []
        h = features
        for block in self.blocks:
            h = block(h)
            outputs.append(h)
        fused = self.c(torch.cat(outputs, dim=1))
        return self.upsampler(self.LR_conv(fused).add_(features))


class IMDN(DistillationSR):
    def __init__(
        self, *, scale: int = 4, channels: int = 64, num_blocks: int = 6, img_range: float = 1.0
    ) -> None:
        super().__init__(
            scale=scale, img_range=img_range, channels=channels, num_blocks=num_blocks, make_block=IMDB
        )


class IMDNAIM2019(SRModel):
    def __init__(
        self, *, scale: int = 4, channels: int = 64, num_blocks: int = 8, img_range: float = 1.0
    ) -> None:
        super().__init__(scale=scale, img_range=img_range, in_channels=3)
        self.fea_conv = nn.Conv2d(3, channels, 3, padding=1)
        self.blocks = nn.Sequential(*(IMDB(channels, channel_attention=False) for _ in range(num_blocks)))
        self.LR_conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.upsampler = PixelShuffleUpsampler(channels, 3, scale)

    def forward_sr(self, x: Tensor) -> Tensor:
        features = self.fea_conv(x)
        return self.upsampler(self.LR_conv(self.blocks(features)) + features)


def detect_imdn(state_dict: StateDict) -> Detection | None:
    """Zheng222/IMDN: `fea_conv`, `IMDB1..N` with `cca.conv_du`, `c.0`, `LR_conv`, `upsampler.0`."""
    if not {"IMDB1.cca.conv_du.0.weight", "fea_conv.weight", "upsampler.0.weight"} <= state_dict.keys():
        return None
    blocks = numbered(state_dict, r"IMDB(\d+)\.c1\.weight")
    scale = pixel_shuffle_scale(state_dict["upsampler.0.weight"].shape[0])
    if not blocks or scale is None:  # gaps in the numbering fail the exact key check below
        return None
    hparams = {
        "scale": scale,
        "channels": state_dict["fea_conv.weight"].shape[0],
        "num_blocks": len(blocks),
        "img_range": 1.0,
    }
    ours = renamed(state_dict, [(r"^IMDB(\d+)\.", lambda m: f"blocks.{int(m.group(1)) - 1}.")])
    if set(ours) != layout_keys(IMDN, **hparams):
        return None
    return Detection("imdn", hparams, ours, layout="Zheng222/IMDN")


def detect_imdn_aim2019(state_dict: StateDict) -> Detection | None:
    """KAIR/NTIRE2022_ESR IMDN: `model.0` head, `model.1.sub.{i}` IMDBlocks + conv, `model.2` upsampler."""
    if not {"model.1.sub.0.conv1x1.weight", "model.0.weight", "model.2.weight"} <= state_dict.keys():
        return None
    num_blocks = len(numbered(state_dict, r"model\.1\.sub\.(\d+)\.conv1x1\.weight"))
    scale = pixel_shuffle_scale(state_dict["model.2.weight"].shape[0])
    if scale is None:
        return None
    hparams = {
        "scale": scale,
        "channels": state_dict["model.0.weight"].shape[0],
        "num_blocks": num_blocks,
        "img_range": 1.0,
    }
    ours = renamed(
        state_dict,
        [
            (r"^model\.0\.", "fea_conv."),
            (rf"^model\.1\.sub\.{num_blocks}\.", "LR_conv."),
            (r"^model\.1\.sub\.(\d+)\.conv([123])\.0\.", r"blocks.\1.c\2."),
            (r"^model\.1\.sub\.(\d+)\.conv4\.", r"blocks.\1.c4."),
            (r"^model\.1\.sub\.(\d+)\.conv1x1\.", r"blocks.\1.c5."),
            (r"^model\.2\.", "upsampler.0."),
        ],
    )
    if set(ours) != layout_keys(IMDNAIM2019, **hparams):
        return None
    return Detection("imdn_aim2019", hparams, ours, layout="KAIR / NTIRE2022_ESR")
