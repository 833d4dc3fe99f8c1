"""Learning-rate schedules with linear warm-up, as multiplicative factors of the stage's base lr."""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch.optim.lr_scheduler import LambdaLR

from leansr.train.config import StageConfig


def lr_factor(stage: StageConfig) -> Callable[[int], float]:
    """factor(step) for step = optimizer steps taken in the stage (0-based)."""

    def factor(step: int) -> float:
        if step < stage.warmup_iters:
            return (step + 1) / stage.warmup_iters
        if stage.schedule == "multistep":
            return stage.gamma ** sum(1 for m in stage.milestones if step >= m)
        if stage.schedule == "cosine":
            span = max(stage.iters - stage.warmup_iters, 1)
            progress = min((step - stage.warmup_iters) / span, 1.0)
            floor = min(stage.min_lr / stage.lr, 1.0)
            return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
        return 1.0

    return factor


def build_scheduler(optimizer: torch.optim.Optimizer, stage: StageConfig) -> LambdaLR:
    return LambdaLR(optimizer, lr_factor(stage))


def param_groups(model: torch.nn.Module, stage: StageConfig) -> list[dict]:
    """Adam's parameter groups: one at the stage's lr, or (`lr_scale: weight_rms`) one per weight tensor at
    lr * its RMS / the median weight RMS, biases and other vectors at lr."""
    params = [p for p in model.parameters() if p.requires_grad]
    if stage.lr_scale == "none":
        return [{"params": params, "lr": stage.lr}]
    weights = [p for p in params if p.dim() > 1]
    rms = [tensor_rms(p) for p in weights]
    median = float(torch.tensor(rms).median()) if rms else 1.0
    groups = [{"params": [p for p in params if p.dim() <= 1], "lr": stage.lr}]
    groups += [{"params": [p], "lr": stage.lr * max(r, 1e-12) / max(median, 1e-12)} for p, r in zip(weights, rms)]
    return groups


def tensor_rms(tensor: torch.Tensor) -> float:
    return float(tensor.detach().float().square().mean().sqrt())
