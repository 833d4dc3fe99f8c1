"""RFDN (Liu et al., ECCVW 2020), residual feature distillation; E-RFDN won AIM 2020 efficient SR.

RFDN reuses the IMDN trunk (`DistillationSR`) with the RFDB block: each stage distils through a 1x1
convolution while a 3x3 convolution with a shallow residual refines the features, and ESA gates the fused
output. Module names follow the official code (`B1..`, `c1_d`, `c1_r`, `esa`) up to the block list.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from leansr.layers.attention import EnhancedSpatialAttention
from leansr.layers.upsample import pixel_shuffle_scale
from leansr.models._layout import Detection, StateDict, layout_keys, numbered, renamed
from leansr.models.imdn import LEAKY_SLOPE, DistillationSR


class RFDB(nn.Module):
    """Residual feature distillation block: 3 x (1x1 distil, 3x3 + skip), a 3x3 tail, 1x1 fusion, ESA."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        distilled = channels // 2
        self.c1_d = nn.Conv2d(channels, distilled, 1)
        self.c1_r = nn.Conv2d(channels, channels, 3, padding=1)
        self.c2_d = nn.Conv2d(channels, distilled, 1)
        self.c2_r = nn.Conv2d(channels, channels, 3, padding=1)
        self.c3_d = nn.Conv2d(channels, distilled, 1)
        self.c3_r = nn.Conv2d(channels, channels, 3, padding=1)
        self.c4 = nn.Conv2d(channels, distilled, 3, padding=1)
        self.act = nn.LeakyReLU(LEAKY_SLOPE, inplace=True)  # as the official code; it acts on fresh sums
        self.c5 = nn.Conv2d(distilled * 4, channels, 1)
        self.esa = EnhancedSpatialAttention(channels)

    def forward(self, x: Tensor) -> Tensor:
        d1 = self.act(self.c1_d(x))
        r1 = self.act(self.c1_r(x).add_(x))  # in place on fresh conv outputs, which autograd does not keep
        d2 = self.act(self.c2_d(r1))
        r2 = self.act(self.c2_r(r1).add_(r1))
        d3 = self.act(self.c3_d(r2))
        r3 = self.act(self.c3_r(r2).add_(r2))
        d4 = self.act(self.c4(r3))
        return self.esa(self.c5(torch.cat([d1, d2, d3, d4], dim=1)))


class RFDN(DistillationSR):
    def __init__(
        self, *, scale: int = 4, channels: int = 48, num_blocks: int = 6, img_range: float = 1.0
    ) -> None:
        super().__init__(
            scale=scale, img_range=img_range, channels=channels, num_blocks=num_blocks, make_block=RFDB
        )


def detect_rfdn(state_dict: StateDict) -> Detection | None:
    """njulj/RFDN: `fea_conv`, `B1..N` with `c1_d`/`c1_r`/`esa.conv_max`, `c.0`, `LR_conv`, `upsampler.0`.

    The official code (and RFDN_AIM.pth) works on 0-255 pixel values, so that range is reported.
    """
    if not {"B1.esa.conv_max.weight", "fea_conv.weight", "upsampler.0.weight"} <= state_dict.keys():
        return None
    blocks = numbered(state_dict, r"B(\d+)\.c1_d\.weight")
    scale = pixel_shuffle_scale(state_dict["upsampler.0.weight"].shape[0])
    if not blocks or scale is None:  # gaps in the numbering fail the exact key check below
        return None
    channels, num_blocks = state_dict["fea_conv.weight"].shape[0], len(blocks)
    hparams = {"scale": scale, "channels": channels, "num_blocks": num_blocks, "img_range": 255.0}
    ours = renamed(state_dict, [(r"^B(\d+)\.", lambda m: f"blocks.{int(m.group(1)) - 1}.")])
    if set(ours) != layout_keys(RFDN, **hparams):
        return None
    return Detection("rfdn", hparams, ours, layout="njulj/RFDN")
