"""Kernel-basis convolution: the kernel is a learned linear combination of a growing bank of basis kernels.

weight = sum_i pi_i * k_i over all bases k_i (full out x in/groups x kh x kw kernels) with scalar
coefficients pi_i (stage tensors hold their bases stacked along the output axis). Bases are added in stages. Two initialisations:

- `init="kaiming"` (our own progressive formulation): first-stage coefficients 1/sqrt(n), a new stage starts
  with zero coefficients, so adding it leaves the function unchanged, and earlier stages can be frozen;
- `init="xavier"` (the UESTC-MediaLab recipe of the AIM 2020 efficient-SR report): Xavier-uniform bases,
  coefficients 1/N; each later stage adds random bases and `reweight_uniform` sets every coefficient to
  1/N_t (see `leansr.train.basis_schedule`).

After training the sum is taken once and the block becomes one plain (possibly grouped) convolution.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from leansr.layers import fusion
from leansr.layers.reparam import Reparameterizable

INITS = ("kaiming", "xavier")


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
        groups: int = 1,
        init: str = "kaiming",
    ) -> None:
        super().__init__()
        if not stages or min(stages) < 1:
            raise ValueError(f"every stage needs at least one basis kernel, got stages={stages}")
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"groups={groups} must divide {in_channels} and {out_channels} channels")
        if init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {init!r}")
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
        self.groups, self.init = groups, init
        self.bases = nn.ParameterList()
        self.coefficients = nn.ParameterList()
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        for i, count in enumerate(stages):
            # kaiming: 1/sqrt(n) keeps the combined kernel at the variance of one basis.
            self.add_stage(count, freeze_previous=False, initial_coefficient=count**-0.5 if i == 0 else 0.0)
        if init == "xavier":
            self.reweight_uniform()

    @property
    def stages(self) -> tuple[int, ...]:
        return tuple(c.numel() for c in self.coefficients)

    @property
    def num_bases(self) -> int:
        return sum(self.stages)

    def add_stage(
        self,
        num_bases: int,
        *,
        freeze_previous: bool = True,
        initial_coefficient: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> None:
        """Append `num_bases` new random basis kernels (drawn on the CPU from `generator` if given)."""
        if freeze_previous:
            for param in [*self.bases, *self.coefficients]:
                param.requires_grad_(False)
        like = self.bases[0] if len(self.bases) else None
        factory = {} if like is None else {"device": like.device, "dtype": like.dtype}
        # Stored 4-D, the bases stacked along the output axis, so `.to(memory_format=...)` works on the model.
        fan_in = self.in_channels // self.groups
        shape = (num_bases * self.out_channels, fan_in, self.kernel_size, self.kernel_size)
        bases = torch.empty(shape, dtype=factory.get("dtype"))
        if self.init == "xavier":
            for basis in bases.split(self.out_channels):  # torch's Xavier fans for one (out, in/groups, k, k) kernel
                nn.init.xavier_uniform_(basis, generator=generator)
        else:
            bound = math.sqrt(3.0 / (fan_in * self.kernel_size**2))  # kaiming-uniform, gain 1
            bases.uniform_(-bound, bound, generator=generator)
        self.bases.append(nn.Parameter(bases.to(factory.get("device", bases.device))))
        self.coefficients.append(nn.Parameter(torch.full((num_bases,), initial_coefficient, **factory)))

    @torch.no_grad()
    def reweight_uniform(self) -> None:
        """Every coefficient := 1/N over all N bases (the re-weighting after a stage adds bases)."""
        for coefficients in self.coefficients:
            coefficients.fill_(1.0 / self.num_bases)

    def combined_weight(self) -> Tensor:
        return sum(
            torch.einsum("n,noihw->oihw", c, b.reshape(c.numel(), self.out_channels, *b.shape[1:]))
            for c, b in zip(self.coefficients, self.bases)
        )

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.combined_weight(), self.bias, padding=self.kernel_size // 2, groups=self.groups)

    @torch.no_grad()
    def fuse(self) -> nn.Conv2d:
        weight = self.combined_weight()
        bias = self.bias.detach().clone() if self.bias is not None else weight.new_zeros(self.out_channels)
        return fusion.to_conv((weight, bias), groups=self.groups)
