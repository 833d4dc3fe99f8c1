"""Kernel-basis convolution: the kernel is a learned linear combination of a growing bank of basis kernels.

weight = sum_i pi_i * k_i over all bases k_i (full out x in x kh x kw kernels) with scalar coefficients pi_i.
Bases are added in stages (progressive training; our own formulation of the kernel-basis idea from the
AIM 2020 efficient-SR reports): a new stage starts with zero coefficients, so adding it leaves the function
unchanged, and earlier stages can be frozen.
After training the sum is taken once and the block becomes one plain convolution.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from leansr.layers import fusion
from leansr.layers.reparam import Reparameterizable


class KernelBasisConv2d(Reparameterizable):
    """A stride-1, 'same'-padded conv whose kernel is sum_i coefficient_i * basis_i.

    `stages` lists how many bases each stage holds, so a checkpoint of a grown block can be rebuilt.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        *,
        stages: tuple[int, ...] = (4,),
        bias: bool = True,
    ) -> None:
        super().__init__()
        if not stages or min(stages) < 1:
            raise ValueError(f"every stage needs at least one basis kernel, got stages={stages}")
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
        self.bases = nn.ParameterList()
        self.coefficients = nn.ParameterList()
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        # First-stage coefficients 1/sqrt(n) keep the combined kernel at the variance of one basis.
        for i, count in enumerate(stages):
            self.add_stage(count, freeze_previous=False, initial_coefficient=count**-0.5 if i == 0 else 0.0)

    @property
    def stages(self) -> tuple[int, ...]:
        return tuple(b.shape[0] for b in self.bases)

    def add_stage(
        self, num_bases: int, *, freeze_previous: bool = True, initial_coefficient: float = 0.0
    ) -> None:
        """Append `num_bases` new random basis kernels; zero coefficients keep the function unchanged."""
        if freeze_previous:
            for param in [*self.bases, *self.coefficients]:
                param.requires_grad_(False)
        like = self.bases[0] if len(self.bases) else None
        factory = {} if like is None else {"device": like.device, "dtype": like.dtype}
        shape = (num_bases, self.out_channels, self.in_channels, self.kernel_size, self.kernel_size)
        bound = math.sqrt(3.0 / (self.in_channels * self.kernel_size**2))  # kaiming-uniform, gain 1
        bases = torch.empty(shape, **factory).uniform_(-bound, bound)
        self.bases.append(nn.Parameter(bases))
        self.coefficients.append(nn.Parameter(torch.full((num_bases,), initial_coefficient, **factory)))

    def combined_weight(self) -> Tensor:
        return sum(torch.einsum("n,noihw->oihw", c, b) for c, b in zip(self.coefficients, self.bases))

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.combined_weight(), self.bias, padding=self.kernel_size // 2)

    @torch.no_grad()
    def fuse(self) -> nn.Conv2d:
        weight = self.combined_weight()
        bias = self.bias.detach().clone() if self.bias is not None else weight.new_zeros(self.out_channels)
        return fusion.to_conv((weight, bias))
