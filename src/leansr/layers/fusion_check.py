"""Checking a fusion numerically: random weights and statistics, float64, relative error of the outputs."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def randomize(module: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights AND BatchNorm running statistics, float64, eval mode (in place; returns `module`).

    Default initialisations leave some branches near zero (ECB edge scales start at 1e-3, BN at identity),
    where a wrong fusion would hide; this gives every branch a comparable share of the output.
    """
    generator = torch.Generator().manual_seed(seed)
    module = module.double().eval()
    with torch.no_grad():
        for param in (p for p in module.parameters() if p.numel()):
            std = 1.0 / math.sqrt(param[0].numel()) if param.dim() > 1 else 0.5
            param.copy_(torch.randn(param.shape, generator=generator, dtype=param.dtype) * std)
        for bn in (m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)):
            if bn.running_mean is not None and bn.running_var is not None:
                bn.running_mean.copy_(torch.randn(bn.running_mean.shape, generator=generator) * 0.5)
                bn.running_var.copy_(torch.rand(bn.running_var.shape, generator=generator) * 1.5 + 0.5)
    return module


def relative_error(actual: Tensor, expected: Tensor) -> float:
    """max |actual - expected| / max |expected|."""
    return float((actual - expected).abs().max() / expected.abs().max().clamp_min(1e-300))


@torch.no_grad()
def fusion_error(original: nn.Module, fused: nn.Module, shape: tuple[int, ...], seed: int = 0) -> float:
    """Relative error of `fused` against `original` on one random 0-1 input of `shape` (in their dtype)."""
    dtype = next(original.parameters()).dtype
    x = torch.rand(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)
    return relative_error(fused(x), original(x))
