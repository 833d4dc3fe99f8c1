"""The kernel-basis training schedule (AIM 2020 efficient SR, UESTC-MediaLab) for `leansr train`.

Every `KernelBasisConv2d` of the model computes its kernel as sum_i pi_i k_i. Stage 0 trains N0 bases
(Xavier-uniform, pi = 1/N0, set by the model's `basis_stages=[N0]`); each later stage t adds delta_t new
Xavier-uniform bases to every such conv and re-weights all of them to pi = 1/N_t (N_t = N_{t-1} + delta_t),
then trains all bases with a fresh Adam and stage1's schedule. `leansr deploy` merges the bases into one
kernel. Growth draws from a generator seeded by (seed, stage), never from the global RNG, so a resumed run
rebuilds exactly the straight run's structure before loading its checkpoint.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from leansr.errors import LeansrError
from leansr.layers.kernel_basis import KernelBasisConv2d
from leansr.train.config import StageConfig, TrainConfig


def training_stages(config: TrainConfig) -> list[StageConfig]:
    """The trainer's stages: stage1 (or one copy of it per basis stage) and stage2, skipping empty ones."""
    if not config.kernel_basis.stages:
        return [s for s in (config.stage1, config.stage2) if s.iters > 0]
    basis = [dataclasses.replace(config.stage1, iters=s.iters) for s in config.kernel_basis.stages]
    return basis + ([config.stage2] if config.stage2.iters > 0 else [])


def bases_at(config: TrainConfig, stage_index: int) -> list[int]:
    """Bases per growth stage that trainer stage `stage_index` trains (stage2 keeps the last ones)."""
    stages = config.kernel_basis.stages
    last = min(stage_index, len(stages) - 1)
    return [stages[0].bases] + [s.add_bases for s in stages[1 : last + 1]]


def kernel_basis_convs(model: nn.Module) -> list[KernelBasisConv2d]:
    return [m for m in model.modules() if isinstance(m, KernelBasisConv2d)]


@torch.no_grad()
def grow(model: nn.Module, target: list[int], seed: int) -> bool:
    """Add the growth stages `model` lacks of `target` (bases per stage) to every kernel-basis conv."""
    convs = kernel_basis_convs(model)
    if not convs:
        raise LeansrError("kernel_basis.stages needs a model whose convolutions are kernel-basis ones")
    have = len(convs[0].stages)
    if any(list(conv.stages) != target[: len(conv.stages)] for conv in convs) or have > len(target):
        raise LeansrError(f"the model's bases {list(convs[0].stages)} do not fit the schedule {target}")
    for stage in range(have, len(target)):
        generator = torch.Generator().manual_seed(seed * 1000 + stage)  # module order fixes the draws
        for conv in convs:
            conv.add_stage(target[stage], freeze_previous=False, generator=generator)
            conv.reweight_uniform()
    if hasattr(model, "hparams"):
        model.hparams["basis_stages"] = list(target)  # so checkpoints rebuild the grown layout
    return have < len(target)
