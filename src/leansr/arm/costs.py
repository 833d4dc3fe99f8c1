"""Cost of each route of a supernet, counted on its sliced convolutions.

Two conventions: `macs`, the true multiply-accumulates; `official_flops`, ARM's "FLOPs": 2 x MACs, with the
transposed conv counted at output resolution (16x its true MACs at x4). Biases, activations, pixel shuffles,
CARN's mean shifts, SRResNet's bilinear skip and the bicubic route count nothing in both.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import nn

from leansr.layers.slimmable import SlimConv2d, SlimConvTranspose2d
from leansr.models.arm import SlimmableSR

PATCH = 32  # the official unit: one 32x32 LR patch


@dataclass(frozen=True)
class RouteCost:
    macs: float  # true MACs per LR pixel
    official_flops: float  # ARM's FLOPs per LR pixel


def route_costs(model: SlimmableSR) -> dict[int, RouteCost]:
    """Per-LR-pixel cost of every route (0 = bicubic = free); convolutions scale with the pixel count."""
    return dict(_cached_costs(_Key(model)))


class _Key:
    """Hashable by architecture and hyper-parameters, so costs are counted once per kind of model."""

    def __init__(self, model: SlimmableSR) -> None:
        self.model = model
        self.key = (type(model).__name__, repr(sorted(getattr(model, "hparams", {}).items())), model.routes)

    def __hash__(self) -> int:
        return hash(self.key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Key) and self.key == other.key


@lru_cache(maxsize=32)
def _cached_costs(key: _Key) -> tuple[tuple[int, RouteCost], ...]:
    model = key.model
    out = [(0, RouteCost(0.0, 0.0))]
    for width in model.widths:
        macs, official = _count(model, width)
        out.append((width, RouteCost(macs / PATCH**2, official / PATCH**2)))
    return tuple(out)


def _count(model: SlimmableSR, width: int) -> tuple[int, int]:
    totals = [0, 0]

    def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        cin, k = inputs[0].shape[1], module.kernel_size[0] * module.kernel_size[1]
        if isinstance(module, SlimConvTranspose2d):  # each input element meets C_out k x k filters
            totals[0] += inputs[0].numel() * output.shape[1] * k
            totals[1] += 2 * output.numel() * cin * k  # the official hook: output size x input channels
        else:
            macs = output.numel() * (cin // module.groups) * k
            totals[0] += macs
            totals[1] += 2 * macs

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (SlimConv2d, SlimConvTranspose2d))]
    try:
        with torch.no_grad():
            param = next(model.parameters())
            model.forward_width(torch.zeros(1, 3, PATCH, PATCH, device=param.device, dtype=param.dtype), width)
    finally:
        for handle in handles:
            handle.remove()
    return totals[0], totals[1]
