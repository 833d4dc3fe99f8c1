"""ARM supernets (Chen et al., ECCV 2022, chenbong/ARM-Net): slimmable FSRCNN, CARN-M and SRResNet.

One set of weights runs at several widths (prefix slices, `leansr.layers.slimmable`); width 0 is the bicubic
branch. `forward` is the full width, a plain SR forward; `forward_width(x, width)` runs one width. Attribute
names match the official checkpoints. All take RGB on 0-1.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from leansr.errors import LeansrError
from leansr.layers.slimmable import SlimConv2d, SlimConvTranspose2d, SlimSequential, WidthAware, run_slim
from leansr.models._layout import Detection, StateDict, numbered, shapes_match
from leansr.models.base import SRModel

_RGB = 3
_CARN_MEAN = (0.4488, 0.4371, 0.4040)


# Published widths (`widths=None`); a supernet of another full width gets just that width unless told.
_PUBLISHED_WIDTHS = {("arm_fsrcnn", 56): (16, 36, 56), ("arm_carn", 64): (36, 52, 64),
                     ("arm_srresnet", 64): (36, 52, 64)}


def _widths(arch: str, channels: int) -> tuple[int, ...]:
    return _PUBLISHED_WIDTHS.get((arch, channels), (channels,))


class SlimmableSR(SRModel):
    """A supernet: `widths` are the trained widths (ascending, the last = `channels`, the full width)."""

    def __init__(self, *, scale: int, channels: int, widths: tuple[int, ...] | list[int] | None, arch: str) -> None:
        super().__init__(scale=scale)
        widths = _widths(arch, channels) if widths is None else tuple(int(w) for w in widths)
        if not widths or list(widths) != sorted(set(widths)) or widths[0] <= 0 or widths[-1] != channels:
            raise LeansrError(f"widths must ascend to the full width {channels}, got {list(widths)}")
        self.channels, self.widths = channels, widths

    @property
    def routes(self) -> tuple[int, ...]:
        """Every route: 0 (bicubic), then the widths ascending."""
        return (0, *self.widths)

    def check_width(self, width: int) -> int:
        if width not in self.routes:
            raise LeansrError(
                f"this supernet has widths {', '.join(map(str, self.widths))} (0 = bicubic), not {width}"
            )
        return width

    def forward(self, x: Tensor, width: int | None = None) -> Tensor:
        """The full width (a plain SR forward), or one width: `width=` reaches DDP-wrapped training."""
        return super().forward(x) if width is None else self.forward_width(x, width)

    def forward_width(self, x: Tensor, width: int) -> Tensor:
        """SR of 0-1 `x` at one width; 0 = bicubic (PyTorch's, as the official code)."""
        if self.check_width(width) == 0:
            return F.interpolate(x, scale_factor=self.scale, mode="bicubic", align_corners=False)
        return self.forward_ratio(x, width / self.channels)

    def forward_sr(self, x: Tensor) -> Tensor:
        return self.forward_ratio(x, 1.0)

    def at_width(self, width: int) -> FixedWidth:
        """A plain SR model running this supernet (shared, not copied) at one width."""
        return FixedWidth(self, self.check_width(width))

    def forward_ratio(self, x: Tensor, ratio: float) -> Tensor:
        raise NotImplementedError


class FixedWidth(SRModel):
    """One width of a supernet as an ordinary model (for evaluation, benchmarks, export)."""

    def __init__(self, supernet: SlimmableSR, width: int) -> None:
        super().__init__(scale=supernet.scale)
        self.supernet, self.width = supernet, width
        self.arch = f"{getattr(supernet, 'arch', type(supernet).__name__)}@{width}"

    def forward_sr(self, x: Tensor) -> Tensor:
        return self.supernet.forward_width(x, self.width)


_DECONV_PADDING = {2: (4, 1), 3: (3, 0), 4: (3, 1)}  # x4 is the official one


class ARMFSRCNN(SlimmableSR):
    """FSRCNN: 5x5 feature conv (sliced out), shrink 1x1, m 3x3 maps, expand 1x1 (sliced out), 9x9 deconv."""

    def __init__(
        self, *, scale: int = 4, channels: int = 56, shrink: int = 12, mapping: int = 4,
        widths: tuple[int, ...] | None = None,
    ) -> None:
        super().__init__(scale=scale, channels=channels, widths=widths, arch="arm_fsrcnn")
        self.head_conv = SlimSequential(SlimConv2d(_RGB, channels, 5, padding=2), nn.PReLU())
        layers: list[nn.Module] = [SlimSequential(SlimConv2d(channels, shrink, 1, slice_out=False), nn.PReLU())]
        layers += [SlimConv2d(shrink, shrink, 3, padding=1, slice_out=False) for _ in range(mapping)]
        layers += [nn.PReLU(), SlimSequential(SlimConv2d(shrink, channels, 1), nn.PReLU())]
        self.body_conv = SlimSequential(*layers)
        padding, output_padding = _DECONV_PADDING[scale]  # (H - 1) * s - 2p + 9 + op = sH
        self.tail_conv = SlimConvTranspose2d(channels, _RGB, 9, stride=scale, padding=padding,
                                             output_padding=output_padding)

    def forward_ratio(self, x: Tensor, ratio: float) -> Tensor:
        return self.tail_conv(self.body_conv(self.head_conv(x, ratio), ratio), ratio)


class _EResidual(WidthAware):
    """CARN-M efficient residual block: grouped 3x3, ReLU, grouped 3x3, ReLU, 1x1, then relu(out + x)."""

    def __init__(self, channels: int, groups: int) -> None:
        super().__init__()
        self.body = SlimSequential(
            SlimConv2d(channels, channels, 3, padding=1, groups=groups), nn.ReLU(inplace=True),
            SlimConv2d(channels, channels, 3, padding=1, groups=groups), nn.ReLU(inplace=True),
            SlimConv2d(channels, channels, 1),
        )

    def forward(self, x: Tensor, ratio: float = 1.0) -> Tensor:
        return F.relu(self.body(x, ratio) + x)


def _fusion(in_channels: int, channels: int) -> SlimSequential:
    return SlimSequential(SlimConv2d(in_channels, channels, 1), nn.ReLU(inplace=True))


def _cascade(x: Tensor, units: list[nn.Module], fusions: list[nn.Module], ratio: float) -> Tensor:
    """CARN's cascade: each unit's output joins the running concatenation, which a 1x1 fusion reduces."""
    concat = out = x
    for unit, fusion in zip(units, fusions):
        concat = torch.cat([concat, run_slim(unit, out, ratio)], dim=1)
        out = run_slim(fusion, concat, ratio)
    return out


class _CascadingBlock(WidthAware):
    """One residual block (`b1`) applied three times with shared weights, fused by `c1..c3`."""

    def __init__(self, channels: int, groups: int) -> None:
        super().__init__()
        self.b1 = _EResidual(channels, groups)
        self.c1, self.c2, self.c3 = (_fusion(channels * n, channels) for n in (2, 3, 4))

    def forward(self, x: Tensor, ratio: float = 1.0) -> Tensor:
        return _cascade(x, [self.b1] * 3, [self.c1, self.c2, self.c3], ratio)


def _mean_shift(sign: float) -> nn.Conv2d:
    conv = nn.Conv2d(_RGB, _RGB, 1)
    with torch.no_grad():
        conv.weight.copy_(torch.eye(_RGB).view(_RGB, _RGB, 1, 1))
        conv.bias.copy_(sign * torch.tensor(_CARN_MEAN))
    conv.requires_grad_(False)
    return conv


def _upsampler(channels: int, scale: int, groups: int) -> SlimSequential:
    steps = [3] if scale == 3 else [2] * {2: 1, 4: 2}[scale]
    layers: list[nn.Module] = []
    for step in steps:
        layers += [SlimConv2d(channels, step * step * channels, 3, padding=1, groups=groups),
                   nn.ReLU(inplace=True), nn.PixelShuffle(step)]
    return SlimSequential(*layers)


class ARMCARN(SlimmableSR):
    """CARN-M: entry 3x3, three cascading blocks in a cascade, grouped pixel-shuffle upsampler, exit 3x3."""

    def __init__(
        self, *, scale: int = 4, channels: int = 64, groups: int = 4, widths: tuple[int, ...] | None = None,
    ) -> None:
        super().__init__(scale=scale, channels=channels, widths=widths, arch="arm_carn")
        self.sub_mean, self.add_mean = _mean_shift(-1.0), _mean_shift(1.0)
        self.entry = SlimConv2d(_RGB, channels, 3, padding=1)
        self.b1, self.b2, self.b3 = (_CascadingBlock(channels, groups) for _ in range(3))
        self.c1, self.c2, self.c3 = (_fusion(channels * n, channels) for n in (2, 3, 4))
        self.upsample = nn.ModuleDict({"up": nn.ModuleDict({"body": _upsampler(channels, scale, groups)})})
        self.exit = SlimConv2d(channels, _RGB, 3, padding=1, slice_out=False)

    def forward_ratio(self, x: Tensor, ratio: float) -> Tensor:
        out = self.entry(self.sub_mean(x), ratio)
        out = _cascade(out, [self.b1, self.b2, self.b3], [self.c1, self.c2, self.c3], ratio)
        out = self.upsample["up"]["body"](out, ratio)
        return self.add_mean(self.exit(out, ratio))


class _SlimResBlock(WidthAware):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = SlimConv2d(channels, channels, 3, padding=1)
        self.conv2 = SlimConv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor, ratio: float = 1.0) -> Tensor:
        return x + self.conv2(F.relu(self.conv1(x, ratio)), ratio)


class ARMSRResNet(SlimmableSR):
    """MSRResNet with sliced convs; the names are KAIR's (`recon_trunk`, `HRconv`) as in ARM-Net."""

    def __init__(
        self, *, scale: int = 4, channels: int = 64, num_blocks: int = 16, widths: tuple[int, ...] | None = None,
    ) -> None:
        super().__init__(scale=scale, channels=channels, widths=widths, arch="arm_srresnet")
        step = 3 if scale == 3 else 2
        self.conv_first = SlimConv2d(_RGB, channels, 3, padding=1)
        self.recon_trunk = SlimSequential(*(_SlimResBlock(channels) for _ in range(num_blocks)))
        self.upconv1 = SlimConv2d(channels, channels * step * step, 3, padding=1)
        if scale == 4:
            self.upconv2 = SlimConv2d(channels, channels * step * step, 3, padding=1)
        self.pixel_shuffle = nn.PixelShuffle(step)
        self.HRconv = SlimConv2d(channels, channels, 3, padding=1)
        self.conv_last = SlimConv2d(channels, _RGB, 3, padding=1, slice_out=False)
        self.lrelu = nn.LeakyReLU(0.1)

    def forward_ratio(self, x: Tensor, ratio: float) -> Tensor:
        out = self.recon_trunk(self.lrelu(self.conv_first(x, ratio)), ratio)
        out = self.lrelu(self.pixel_shuffle(self.upconv1(out, ratio)))
        if self.scale == 4:
            out = self.lrelu(self.pixel_shuffle(self.upconv2(out, ratio)))
        out = self.conv_last(self.lrelu(self.HRconv(out, ratio)), ratio)
        return out + F.interpolate(x, scale_factor=self.scale, mode="bilinear", align_corners=False)


def detect_arm_fsrcnn(state_dict: StateDict) -> Detection | None:
    if not {"head_conv.0.weight", "body_conv.0.0.weight", "tail_conv.weight"} <= state_dict.keys():
        return None
    channels = state_dict["head_conv.0.weight"].shape[0]
    convs = numbered(state_dict, r"body_conv\.(\d+)\.weight")
    maps = [i for i in convs if state_dict[f"body_conv.{i}.weight"].dim() == 4]  # PReLUs are 1-D
    # The deconv's shape does not tell its stride: the official supernet is x4.
    hparams = {"scale": 4, "channels": channels, "shrink": state_dict["body_conv.0.0.weight"].shape[0],
               "mapping": len(maps), "widths": list(_widths("arm_fsrcnn", channels))}
    if not shapes_match(ARMFSRCNN, hparams, state_dict):
        return None
    return Detection("arm_fsrcnn", hparams, state_dict, notes=[f"slimmable widths {hparams['widths']}"])


def detect_arm_carn(state_dict: StateDict) -> Detection | None:
    required = {"sub_mean.weight", "entry.weight", "b1.b1.body.0.weight", "upsample.up.body.0.weight", "exit.weight"}
    if not required <= state_dict.keys():
        return None
    channels = state_dict["entry.weight"].shape[0]
    groups = channels // state_dict["b1.b1.body.0.weight"].shape[1]
    ups = numbered(state_dict, r"upsample\.up\.body\.(\d+)\.weight")
    expansion = state_dict["upsample.up.body.0.weight"].shape[0] // channels
    scale = {(1, 4): 2, (1, 9): 3, (2, 4): 4}.get((len(ups), expansion))
    if scale is None:
        return None
    hparams = {"scale": scale, "channels": channels, "groups": groups, "widths": list(_widths("arm_carn", channels))}
    if not shapes_match(ARMCARN, hparams, state_dict):
        return None
    return Detection("arm_carn", hparams, state_dict, notes=[f"slimmable widths {hparams['widths']}"])
