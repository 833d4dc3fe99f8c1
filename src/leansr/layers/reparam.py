"""The one re-parameterization contract: training-time blocks fuse into new plain modules."""

from __future__ import annotations

import copy

from torch import nn


class Reparameterizable(nn.Module):
    """A training-time block whose eval-mode function equals a plain module returned by `fuse()`.

    `fuse` never modifies `self`; `forward` never fuses (so profilers see what really runs).
    """

    def fuse(self) -> nn.Module:
        raise NotImplementedError


def reparameterize_model(model: nn.Module, *, inplace: bool = False) -> nn.Module:
    """Swap every `Reparameterizable` (outermost first) for its fused module; returns the model."""
    if not inplace:
        model = copy.deepcopy(model)
    if isinstance(model, Reparameterizable):
        return model.fuse()
    _swap_children(model)
    if hasattr(model, "deployed"):
        model.deployed = True
    return model


def _swap_children(module: nn.Module) -> None:
    for name, child in module.named_children():
        if isinstance(child, Reparameterizable):
            setattr(module, name, child.fuse())
        else:
            _swap_children(child)


def is_reparameterized(model: nn.Module) -> bool:
    return not any(isinstance(m, Reparameterizable) for m in model.modules())
