"""How an output pixel depends on the input: what tiling may do to a model without changing its result.

- `local(r)`: every output pixel depends only on LR pixels within `r` (receptive-field radius); tiles with
  an `r`-pixel halo, cropped and pasted, equal the untiled result.
- `approximate(r)`: mostly local within `r`, but with size-dependent statistics (e.g. RLFN/RFDN's ESA, whose
  pooling grid follows the input size): tiles are close to untiled, not equal.
- `global`: whole-image statistics (e.g. IMDN's contrast channel attention): any tiling changes the result.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

ContextKind = Literal["local", "approximate", "global"]


@dataclass(frozen=True)
class Context:
    kind: ContextKind
    radius: int = 0  # LR pixels; for `global` the radius of its local part (0 when unknown)
    stride: int = 1  # total downsampling inside the model (ESA: 2 x 3): tile origins align to it

    @property
    def exact_tiling(self) -> bool:
        return self.kind == "local"

    def __str__(self) -> str:
        return "global" if self.kind == "global" else f"{self.kind}({self.radius})"

    def widened(self, radius: int) -> Context:
        """The context after composing with a local step of `radius` (e.g. a colour adapter's bicubic)."""
        return Context(self.kind, max(self.radius, radius), self.stride)


def local(radius: int) -> Context:
    return Context("local", int(radius))


def approximate(radius: int, stride: int = 1) -> Context:
    return Context("approximate", int(radius), int(stride))


GLOBAL = Context("global")


def measured_radius(model: nn.Module, *, size: int = 0, channels: int = 3) -> int:
    """Receptive-field radius in LR pixels, probed by the gradient of the centre output pixel (float64).

    A check for declared radii: random weights and input make a dead path to the farthest pixels unlikely,
    and an underestimate only makes the check weaker. `size` must exceed twice the radius (0: 129).
    """
    size = size or 129
    model = model.double().eval()
    x = torch.rand(1, channels, size, size, dtype=torch.float64, requires_grad=True)
    y = model(x)
    scale = y.shape[-1] // size
    centre = (size // 2) * scale + scale // 2
    y[..., centre, centre].sum().backward()
    grad: Tensor = x.grad.abs().sum(dim=(0, 1))
    rows, cols = torch.nonzero(grad > 0, as_tuple=True)
    if rows.numel() == 0:
        return 0
    mid = size // 2
    return int(max((rows - mid).abs().max(), (cols - mid).abs().max()))
