"""RLFN (Kong et al. 2022, bytedance/RLFN): RLFN, RLFN-S and the pruned NTIRE 2022 ESR winner.

All official weights expect inputs on 0-255 (the official test multiplies the 0-1 tensor by 255).
"""

from __future__ import annotations

from torch import Tensor, nn

from leansr.layers.rlfb import RLFB
from leansr.layers.upsample import PixelShuffleUpsampler, pixel_shuffle_scale
from leansr.models._layout import Detection, StateDict, renamed, shapes_match
from leansr.models.base import SRModel

_COLOR_CHANNELS = 3


class RLFN(SRModel):
    """conv -> N residual local feature blocks -> conv (+ long skip) -> conv + pixel shuffle.

    Attribute names (`conv_1`, `block_1..N`, `conv_2`, `upsampler.0`) match the official weights.
    """

    def __init__(
        self,
        *,
        scale: int = 4,
        img_range: float = 255.0,
        channels: int = 52,
        mid_channels: int = 52,
        num_blocks: int = 6,
        esa_channels: int = 16,
    ) -> None:
        super().__init__(scale=scale, img_range=img_range)
        self.num_blocks = num_blocks
        self.conv_1 = nn.Conv2d(_COLOR_CHANNELS, channels, 3, padding=1)
        for index in range(1, num_blocks + 1):
            self.add_module(f"block_{index}", RLFB(channels, mid_channels, esa_channels))
        self.conv_2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.upsampler = PixelShuffleUpsampler(channels, _COLOR_CHANNELS, scale)

    def forward_sr(self, x: Tensor) -> Tensor:
        shallow = self.conv_1(x)
        out = shallow
        for index in range(1, self.num_blocks + 1):
            out = getattr(self, f"block_{index}")(out)
        return self.upsampler(self.conv_2(out).add_(shallow))


# The NTIRE 2022 challenge repository ships the same network (`RLFN_cut`) under other names:
# fea_conv / B1..B4 / LR_conv / upsampler.0 (ofsoundof/NTIRE2022_ESR, models/team04_rlfn.py).
_NTIRE_LAYOUT = [(r"^fea_conv\.", "conv_1."), (r"^B(\d+)\.", r"block_\1."), (r"^LR_conv\.", "conv_2.")]


def detect_rlfn(state_dict: StateDict) -> Detection | None:
    notes, layout = [], "bytedance/RLFN"
    if "fea_conv.weight" in state_dict and "B1.esa.conv_f.weight" in state_dict:
        state_dict = renamed(state_dict, _NTIRE_LAYOUT)
        notes.append("NTIRE 2022 challenge key layout (fea_conv/B*/LR_conv) renamed")
        layout = "ofsoundof/NTIRE2022_ESR"
    required = ("conv_1.weight", "block_1.c1_r.weight", "block_1.esa.conv1.weight", "upsampler.0.weight")
    if not all(key in state_dict for key in required):
        return None
    scale = pixel_shuffle_scale(state_dict["upsampler.0.weight"].shape[0])
    if scale is None or scale < 2:
        return None
    hparams = {
        "scale": scale,
        "img_range": 255.0,
        "channels": state_dict["conv_1.weight"].shape[0],
        "mid_channels": state_dict["block_1.c1_r.weight"].shape[0],
        "num_blocks": _count_blocks(state_dict),
        "esa_channels": state_dict["block_1.esa.conv1.weight"].shape[0],
    }
    if not shapes_match(RLFN, hparams, state_dict):
        return None
    return Detection("rlfn", hparams, state_dict, notes=notes, layout=layout)


def _count_blocks(state_dict: StateDict) -> int:
    count = 0
    while f"block_{count + 1}.c1_r.weight" in state_dict:
        count += 1
    return count
