"""EDSR (Lim et al., CVPRW 2017; sanghyun-son/EDSR-PyTorch): the baseline (16 x 64) and the paper model (32 x 256).

    x - mean -> head conv -> [conv-ReLU-conv (* res_scale) + identity] x N -> conv (+ head) -> upsampler -> tail
    conv -> + mean

Module names follow the official code (`head.0`, `body.N.body.0/2`, `body.N`, `tail.0.*`, `tail.1`) so its
checkpoints load; its `sub_mean`/`add_mean` 1x1 convs are a fixed mean shift here (DIV2K RGB mean, 0-255).
GhostSR's headline numbers are on EDSR: both 3x3 convs of every residual block become ghost convs.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from leansr.models._layout import Detection, StateDict, numbered, shapes_match
from leansr.models.base import SRModel

DIV2K_RGB_MEAN = (0.4488, 0.4371, 0.4040)
_SCALES = (2, 3, 4)


def _conv3x3(in_channels: int, out_channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, padding=1)


class EDSRBlock(nn.Module):
    """`x + res_scale * conv(relu(conv(x)))`; keys `body.0`, `body.2` as the official ResBlock."""

    def __init__(self, channels: int, res_scale: float) -> None:
        super().__init__()
        self.body = nn.Sequential(_conv3x3(channels, channels), nn.ReLU(inplace=True), _conv3x3(channels, channels))
        self.res_scale = res_scale

    def forward(self, x: Tensor) -> Tensor:
        out = self.body(x)
        return out.mul_(self.res_scale).add_(x) if self.res_scale != 1 else out.add_(x)


def _upsampler(channels: int, scale: int) -> nn.Sequential:
    """Official `Upsampler`: log2(s) x [conv to 4C, shuffle 2] for powers of two, else conv to 9C, shuffle 3."""
    layers: list[nn.Module] = []
    steps = [2] * int(math.log2(scale)) if scale & (scale - 1) == 0 else [scale]
    for step in steps:
        layers += [_conv3x3(channels, channels * step * step), nn.PixelShuffle(step)]
    return nn.Sequential(*layers)


class EDSR(SRModel):
    """Defaults: the EDSR baseline (16 x 64, res_scale 1); the paper model is the `edsr` preset
    (256 channels, 32 blocks, res_scale 0.1)."""

    def __init__(
        self,
        *,
        scale: int = 4,
        img_range: float = 255.0,
        channels: int = 64,
        num_blocks: int = 16,
        res_scale: float = 1.0,
    ) -> None:
        if scale not in _SCALES:
            raise ValueError(f"EDSR supports scales {_SCALES}, not {scale}")
        super().__init__(scale=scale, img_range=img_range)
        self.register_buffer("rgb_mean", torch.tensor(DIV2K_RGB_MEAN).view(1, 3, 1, 1), persistent=False)
        self.head = nn.Sequential(_conv3x3(3, channels))
        self.body = nn.Sequential(
            *(EDSRBlock(channels, res_scale) for _ in range(num_blocks)), _conv3x3(channels, channels)
        )
        self.tail = nn.Sequential(_upsampler(channels, scale), _conv3x3(channels, 3))

    def forward_sr(self, x: Tensor) -> Tensor:
        mean = self.rgb_mean * self.img_range
        shallow = self.head(x - mean)
        return self.tail(self.body(shallow) + shallow) + mean


def detect_edsr(state_dict: StateDict) -> Detection | None:
    """Official EDSR-PyTorch checkpoints (`edsr_baseline_x4-6b446fab.pt`, `edsr_x2-0edfb8a3.pt`, ...)."""
    if "head.0.weight" not in state_dict or "body.0.body.0.weight" not in state_dict:
        return None
    weights = {k: v for k, v in state_dict.items() if not k.startswith(("sub_mean.", "add_mean."))}
    channels = weights["head.0.weight"].shape[0]
    num_blocks = len(numbered(weights, r"body\.(\d+)\.body\.0\.weight"))
    steps = numbered(weights, r"tail\.0\.(\d+)\.weight")
    first = weights.get("tail.0.0.weight")
    if first is None or not steps:
        return None
    step = math.isqrt(first.shape[0] // channels)
    scale = step ** len(steps)
    # The paper model (256 channels) trains with res_scale 0.1; the baseline with 1.0. Not stored in weights.
    res_scale = 0.1 if channels >= 256 else 1.0
    hparams = {"scale": scale, "img_range": 255.0, "channels": channels, "num_blocks": num_blocks,
               "res_scale": res_scale}
    if not shapes_match(EDSR, hparams, weights):
        return None
    notes = [f"res_scale {res_scale} assumed from the width (official default for this size)"]
    return Detection("edsr_baseline", hparams, weights, notes=notes, layout="EDSR-PyTorch")
