"""ECBSR (Zhang, Zeng, Zhang, ACM MM 2021; xindongzhang/ECBSR): a plain stack of re-parameterizable ECBs.

Training form: ECB -> PReLU, M x (ECB -> PReLU), ECB to in*s*s channels, + the input repeated s*s times
(a nearest-neighbour global residual after the pixel shuffle), pixel shuffle. Deployed: the same with
3x3 convolutions. The official models are Y-only (`in_channels=1`) on the 0-255 range.
"""

from __future__ import annotations

import math
import re

from torch import Tensor, nn

from leansr.layers.ecb import ECB
from leansr.layers.upsample import repeat_channels
from leansr.models._layout import Detection, StateDict, numbered, renamed
from leansr.models.base import SRModel

ACTIVATIONS = ("prelu", "relu")


class ConvAct(nn.Module):
    """A convolution (an ECB before deployment) and its activation."""

    def __init__(self, conv: nn.Module, act: nn.Module) -> None:
        super().__init__()
        self.conv = conv
        self.act = act

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.conv(x))


class ECBSR(SRModel):
    def __init__(
        self,
        *,
        num_blocks: int,
        channels: int,
        scale: int = 4,
        img_range: float = 255.0,
        in_channels: int = 1,
        with_identity: bool = False,
        act: str = "prelu",
    ) -> None:
        super().__init__(scale=scale, img_range=img_range, in_channels=in_channels)
        if act not in ACTIVATIONS:
            raise ValueError(f"act must be one of {ACTIVATIONS}, got {act!r}")
        widths = [in_channels, *([channels] * (num_blocks + 1)), in_channels * scale * scale]
        layers = []
        for i, (c_in, c_out) in enumerate(zip(widths[:-1], widths[1:])):
            last = i == len(widths) - 2
            activation = nn.Identity() if last else _activation(act, c_out)
            layers.append(ConvAct(ECB(c_in, c_out, with_identity=with_identity), activation))
        self.backbone = nn.Sequential(*layers)
        self.upsampler = nn.PixelShuffle(scale)

    def forward_sr(self, x: Tensor) -> Tensor:
        residual = repeat_channels(x, self.scale * self.scale)
        return self.upsampler(self.backbone(x) + residual)


def _activation(act: str, channels: int) -> nn.Module:
    return nn.PReLU(channels) if act == "prelu" else nn.ReLU(inplace=True)


# Official layout: SeqConv3x3 stores k0/b0 (1x1) and k1/b1 (3x3) or scale/bias/mask; PlainSR stores conv3x3.
_TRAINING_RULES = [
    (r"^(backbone\.\d+)\.conv3x3\.", r"\1.conv.conv3x3."),
    (r"^(backbone\.\d+)\.conv1x1_3x3\.k0$", r"\1.conv.expand3x3.expand.weight"),
    (r"^(backbone\.\d+)\.conv1x1_3x3\.b0$", r"\1.conv.expand3x3.expand.bias"),
    (r"^(backbone\.\d+)\.conv1x1_3x3\.k1$", r"\1.conv.expand3x3.conv.weight"),
    (r"^(backbone\.\d+)\.conv1x1_3x3\.b1$", r"\1.conv.expand3x3.conv.bias"),
    *[
        rule
        for ours, theirs in (("sobel_x", "sbx"), ("sobel_y", "sby"), ("laplacian", "lpl"))
        for rule in (
            (rf"^(backbone\.\d+)\.conv1x1_{theirs}\.k0$", rf"\1.conv.{ours}.reduce.weight"),
            (rf"^(backbone\.\d+)\.conv1x1_{theirs}\.b0$", rf"\1.conv.{ours}.reduce.bias"),
            (rf"^(backbone\.\d+)\.conv1x1_{theirs}\.(scale|bias)$", rf"\1.conv.{ours}.\2"),
        )
    ],
]
_DEPLOYED_KEY = re.compile(r"backbone\.\d+\.(conv3x3\.(weight|bias)|act\.weight)")
_TRAINING_KEY = re.compile(
    r"backbone\.\d+\.(conv3x3\.(weight|bias)|conv1x1_3x3\.[kb][01]"
    r"|conv1x1_(sbx|sby|lpl)\.(k0|b0|scale|bias|mask)|act\.weight)"
)


def detect_ecbsr(state_dict: StateDict) -> Detection | None:
    keys = list(state_dict)
    deployed = all(_DEPLOYED_KEY.fullmatch(k) for k in keys)
    if not deployed and not (
        all(_TRAINING_KEY.fullmatch(k) for k in keys) and any(k.endswith("conv1x1_sbx.mask") for k in keys)
    ):
        return None
    layers = numbered(keys, r"backbone\.(\d+)\.conv3x3\.weight")
    if len(layers) < 3 or layers != list(range(len(layers))):
        return None
    first, last = state_dict["backbone.0.conv3x3.weight"], state_dict[f"backbone.{layers[-1]}.conv3x3.weight"]
    in_channels, channels = first.shape[1], first.shape[0]
    scale = math.isqrt(last.shape[0] // in_channels)
    if scale * scale * in_channels != last.shape[0]:
        return None
    act = "prelu" if "backbone.0.act.weight" in state_dict else "relu"
    if deployed:
        weights = renamed(state_dict, [(r"^(backbone\.\d+)\.conv3x3\.", r"\1.conv.")])
    else:
        weights = _official_training_weights(state_dict)
    hparams = {
        "scale": scale, "img_range": 255.0, "in_channels": in_channels, "act": act,
        "num_blocks": len(layers) - 2, "channels": channels,
    }
    notes = ["the identity-branch flag is not stored in official weights; assumed off (idt_ecbsr: 0)"]
    return Detection(
        "ecbsr", hparams, weights, deployed=deployed, notes=[] if deployed else notes,
        layout="xindongzhang/ECBSR",
    )


def _official_training_weights(state_dict: StateDict) -> StateDict:
    # The masks are the fixed Sobel/Laplacian filters, rebuilt by the model; scale is (C,1,1,1) there.
    kept = {k: v for k, v in state_dict.items() if not k.endswith(".mask")}
    out = renamed(kept, _TRAINING_RULES)
    return {k: v.reshape(-1) if k.endswith(".scale") else v for k, v in out.items()}
