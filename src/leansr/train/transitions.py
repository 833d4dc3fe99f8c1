"""Structural changes of the model at stage boundaries: kernel-basis growth and mid-run re-parameterization.

`prepare_stage` is idempotent: called when a stage opens, in a straight run or before a resumed run loads
its checkpoint, it brings the model (and its EMA copy) to the structure that stage trains.
"""

from __future__ import annotations

from torch import nn

from leansr.errors import LeansrError
from leansr.layers.reparam import is_reparameterized, reparameterize_model
from leansr.train import basis_schedule
from leansr.train.config import StageConfig, TrainConfig


def check_supported(config: TrainConfig, stages: list[StageConfig], distributed: bool) -> None:
    changes = bool(config.kernel_basis.stages) or any(s.reparameterize for s in stages)
    if distributed and changes:
        raise LeansrError("kernel_basis.stages and stage reparameterize are not supported under DDP (yet)")


def prepare_stage(
    models: list[nn.Module], config: TrainConfig, stages: list[StageConfig], index: int
) -> None:
    """Grow the kernel bases to stage `index`'s count; fuse if this or an earlier stage re-parameterizes."""
    if config.kernel_basis.stages:
        target = basis_schedule.bases_at(config, index)
        for model in models:
            if not is_reparameterized(model):
                basis_schedule.grow(model, target, config.seed)
    if any(stage.reparameterize for stage in stages[: index + 1]):
        for model in models:
            if not is_reparameterized(model):
                reparameterize_model(model, inplace=True)
