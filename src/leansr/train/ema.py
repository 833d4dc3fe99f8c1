"""Exponential moving average of a model's weights, used for validation and the exported model."""

from __future__ import annotations

import copy

import torch
from torch import nn


class ModelEMA:
    """`ema = decay * ema + (1 - decay) * weights` after every optimizer step; buffers are copied.

    The effective decay ramps up as min(decay, (1 + n) / (10 + n)) so the average is not dominated by the
    random initial weights in short runs.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.updates = 0
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    def current_decay(self) -> float:
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        d = self.current_decay()
        self.updates += 1
        ema_state = self.module.state_dict()
        for name, value in model.state_dict().items():
            target = ema_state[name]
            if target.dtype.is_floating_point:
                target.mul_(d).add_(value.detach(), alpha=1.0 - d)
            else:
                target.copy_(value)

    def state_dict(self) -> dict:
        return {"decay": self.decay, "updates": self.updates, "module": self.module.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.decay = float(state["decay"])
        self.updates = int(state["updates"])
        self.module.load_state_dict(state["module"])
