"""MSRResNet (modified SRResNet, BasicSR): the AIM 2020 efficient-SR challenge baseline.

16 residual blocks without BN, 64 channels, pixel-shuffle upsampling and a bilinear global skip; 0-1 input.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from leansr.layers.residual_block_nobn import ResidualBlockNoBN
from leansr.models._layout import Detection, StateDict, renamed, shapes_match
from leansr.models.base import SRModel

_COLOR_CHANNELS = 3
_SCALES = (2, 3, 4)


class MSRResNet(SRModel):
    """Attribute names (`conv_first`, `body.N`, `upconv1/2`, `conv_hr`, `conv_last`) match BasicSR."""

    def __init__(
        self, *, scale: int = 4, img_range: float = 1.0, channels: int = 64, num_blocks: int = 16
    ) -> None:
        if scale not in _SCALES:
            raise ValueError(f"MSRResNet supports scales {_SCALES}, not {scale}")
        super().__init__(scale=scale, img_range=img_range)
        self.conv_first = nn.Conv2d(_COLOR_CHANNELS, channels, 3, padding=1)
        self.body = nn.Sequential(*(ResidualBlockNoBN(channels) for _ in range(num_blocks)))
        # x4 is two x2 stages; x2 and x3 one stage.
        step = 2 if scale == 4 else scale
        self.upconv1 = nn.Conv2d(channels, channels * step * step, 3, padding=1)
        if scale == 4:
            self.upconv2 = nn.Conv2d(channels, channels * step * step, 3, padding=1)
        self.pixel_shuffle = nn.PixelShuffle(step)
        self.conv_hr = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv_last = nn.Conv2d(channels, _COLOR_CHANNELS, 3, padding=1)
        self.lrelu = nn.LeakyReLU(0.1, inplace=True)

    def forward_sr(self, x: Tensor) -> Tensor:
        out = self.body(self.lrelu(self.conv_first(x)))
        out = self.lrelu(self.pixel_shuffle(self.upconv1(out)))
        if self.scale == 4:
            out = self.lrelu(self.pixel_shuffle(self.upconv2(out)))
        out = self.conv_last(self.lrelu(self.conv_hr(out)))
        return out + F.interpolate(x, scale_factor=self.scale, mode="bilinear", align_corners=False)


# KAIR's MSRResNet1, which the AIM 2020 test code loads `msrresnet_x4_psnr.pth` into, names the trunk
# `recon_trunk` and the HR conv `HRconv` (cszn/KAIR, models/network_msrresnet.py); same computation.
_LEGACY_LAYOUT = [(r"^recon_trunk\.", "body."), (r"^HRconv\.", "conv_hr.")]


def detect_msrresnet(state_dict: StateDict) -> Detection | None:
    notes = []
    if "recon_trunk.0.conv1.weight" in state_dict and "HRconv.weight" in state_dict:
        state_dict = renamed(state_dict, _LEGACY_LAYOUT)
        notes.append("KAIR key layout (recon_trunk/HRconv) renamed")
    required = ("conv_first", "body.0.conv1", "upconv1", "conv_hr", "conv_last")
    if not all(f"{name}.weight" in state_dict for name in required):
        return None
    channels = state_dict["conv_first.weight"].shape[0]
    scale = _scale(state_dict, channels)
    if scale is None:
        return None
    hparams = {
        "scale": scale, "img_range": 1.0, "channels": channels, "num_blocks": _count_blocks(state_dict)
    }
    if not shapes_match(MSRResNet, hparams, state_dict):
        return None
    return Detection("msrresnet", hparams, state_dict, notes=notes)


def _scale(state_dict: StateDict, channels: int) -> int | None:
    if "upconv2.weight" in state_dict:
        return 4
    step_squared = state_dict["upconv1.weight"].shape[0] // channels
    return {4: 2, 9: 3}.get(step_squared)


def _count_blocks(state_dict: StateDict) -> int:
    count = 0
    while f"body.{count}.conv1.weight" in state_dict:
        count += 1
    return count

