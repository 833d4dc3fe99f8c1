"""Fine-tune a converted GhostSR model with the `leansr train` machinery, distilling from the original.

Recipes (the converted model already starts close to the original):
- quick: fits a wall-clock budget (`--minutes`, 15 by default): shifts fixed at the data-chosen ones (the
  shift is a slice, the cheapest training form), LR patches 48, batch 8, 200 warm-up steps then cosine over
  the steps a timed probe says fit in the time left, plus the trainer's time limit as a backstop.
- full: hours; patches 64, batch 16, 20,000 steps, cosine; checkpoints every 500 steps; `--resume RUN_DIR`
  continues it.
Both keep the shifts the conversion chose from data (`selection="fixed"`). Learned shifts (the official
straight-through Gumbel selection, `selection="hard"`) draw a wrong shift for some of a converted RLFN_ntire's
24 shift rows in most training forwards (Gumbel noise against logits of 4), and the least-squares fits
behind each ghost hold only for its own shift: a full-recipe run so started sat at a loss of ~800 (normal:
~0.008). The layer keeps them for training from scratch.
Loss: L1 to the original model's output on the same LR patch (weight 0.9) plus L1 to the HR patch (0.1).
Models whose weight tensors differ in scale by orders of magnitude (deployed FMEN) train with per-tensor
learning rates proportional to each tensor's scale.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from leansr.checkpoint import read_state_dict, save_checkpoint
from leansr.errors import LeansrError
from leansr.layers.fusion_check import relative_error
from leansr.layers.ghost import GhostConv
from leansr.layers.reparam import reparameterize_model
from leansr.loading import load_model
from leansr.registry import create_model
from leansr.train.config import DataConfig, DistillConfig, ModelConfig, StageConfig, TrainConfig
from leansr.train.schedule import tensor_rms

RECIPES = ("quick", "full")
HR_WEIGHT = 0.1
# skip_loss_spikes: see GRAD_CLIP below.
_QUICK = {"patch_size": 48, "batch_size": 8, "lr": 6e-4, "ema_decay": 0.99, "skip_loss_spikes": 20.0}
_FULL = {"patch_size": 64, "batch_size": 16, "lr": 2e-4, "ema_decay": 0.999, "iters": 20_000,
         "skip_loss_spikes": 5.0}
_FOLD_TOLERANCE = 1e-8
WARMUP_ITERS = 200
# Gradient norms of RLFN_ntire ghost batches are 0.05-0.3, but a rare patch can make a converted model's output
# explode (one batch: 2.3e5); unclipped, that one step filled Adam's second moments and stalled the quick recipe.
GRAD_CLIP = 1.0
# ... and, clipped or not, Adam's second moments keep such a batch's size for thousands of steps (an exploding
# batch at step 360 of a ratio-0.33 quick run left the loss at 0.012 where it had been 0.008): skip steps whose
# loss exceeds the recent median by the recipe's factor. The full recipe's 64 px patches meet such content more
# often: at 20, RLFN_ntire at ratio 0.5 diverged from step 200 (109 of its first 650 steps skipped, loss 0.3-3);
# at 5, on the same batches, it skipped 11 and was back at 0.0078 by step 350.
# Above this spread of weight scales, each weight tensor's learning rate follows its scale (`lr_scale:
# weight_rms`): deployed FMEN-S spans 5.9e6 (attention weights ~1e-7..1e-5) and one plain Adam step of 2e-5
# destroys it; RLFN_ntire spans 47, our default model 3.3.
MAX_WEIGHT_SCALE_SPREAD = 1e3


def train_config(recipe: str, ghost: nn.Module, *, init: Path, teacher: Path, data: list[str], val: list[str],
                 run_dir: Path, threads: int, minutes: float, iters: int) -> TrainConfig:
    settings = _QUICK if recipe == "quick" else _FULL
    args = {k: v for k, v in ghost.hparams.items() if k != "scale"}
    # A short warm-up, as usual from a pretrained start: Adam's first updates are full-size whatever the gradient.
    stage = StageConfig(loss="l1", iters=iters, lr=settings["lr"], schedule="cosine", min_lr=1e-6,
                        warmup_iters=min(WARMUP_ITERS, iters // 10), grad_clip=GRAD_CLIP,
                        lr_scale="weight_rms" if weight_scale_spread(ghost) > MAX_WEIGHT_SCALE_SPREAD else "none")
    return TrainConfig(
        model=ModelConfig(name="ghostsr", scale=ghost.scale, args=args, init=str(init)),
        data=DataConfig(train=list(data), val=list(val), patch_size=settings["patch_size"],
                        batch_size=settings["batch_size"], workers=0, cache=True),
        stage1=stage,
        stage2=StageConfig(loss="l2", iters=0),
        distill=DistillConfig(teacher=str(teacher), hr_weight=HR_WEIGHT),
        ema_decay=settings["ema_decay"],
        log_every=10 if recipe == "quick" else 50,
        val_every=0,
        checkpoint_every=100 if recipe == "quick" else 500,
        threads=threads,
        time_limit_min=minutes,
        skip_loss_spikes=settings["skip_loss_spikes"],
        output=str(run_dir),
    )


def weight_scale_spread(model: nn.Module) -> float:
    """Largest / smallest RMS among the model's weight tensors."""
    rms = [tensor_rms(p) for p in model.parameters() if p.dim() > 1]
    return max(rms) / max(min(rms), 1e-30)


def default_iters(recipe: str) -> int:
    return _FULL["iters"] if recipe == "full" else 0


def probe_step_seconds(ghost: nn.Module, teacher: nn.Module, recipe: str) -> float:
    """Seconds per training step (student forward + backward, teacher forward) on this machine, now."""
    settings = _QUICK if recipe == "quick" else _FULL
    student = copy.deepcopy(ghost).train()
    optimizer = torch.optim.Adam(student.parameters(), lr=1e-9)
    x = torch.rand(settings["batch_size"], student.in_channels, settings["patch_size"], settings["patch_size"])
    x = x.contiguous(memory_format=torch.channels_last)  # as the trainer feeds its batches on CPU
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        with torch.no_grad():
            target = teacher(x)
        loss = F.l1_loss(student(x), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        best = min(best, time.perf_counter() - start)
    return best * 1.15  # data loading and EMA, measured at about 10-15% of a step here


def steps_for(minutes: float, step_seconds: float) -> int:
    return max(1, int(minutes * 60 / step_seconds))


def deploy_ghost(trained: Path, *, fold: bool) -> tuple[nn.Module, float]:
    """The deployed model from a trained `ghostsr` checkpoint: directions frozen into the hyper-parameters,
    shifts folded where possible, checked in float64 against the training form."""
    tensors, meta = read_state_dict(trained)
    if meta is None or meta.get("arch") != "ghostsr":
        raise LeansrError(f"{trained} is not a ghostsr checkpoint")
    model = create_model("ghostsr", **meta["hparams"])
    model.load_state_dict(tensors)
    directions = [_frozen(m) for m in _ghost_convs(model, meta["hparams"]["pairs"])]
    hparams = {**meta["hparams"], "directions": directions, "fold": fold}
    frozen = create_model("ghostsr", **hparams)
    frozen.load_state_dict(tensors)
    for module, direction in zip(_ghost_convs(frozen, hparams["pairs"]), directions):
        module.set_direction(direction)  # logits become an exact one-hot: deployment uses exactly these
    reference = copy.deepcopy(frozen).double().eval()
    deployed = reparameterize_model(reference)
    x = torch.rand(1, frozen.in_channels, 11, 9, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    with torch.no_grad():
        error = relative_error(deployed(x), reference(x))
    if not error <= _FOLD_TOLERANCE:
        raise LeansrError(f"deployed ghost model differs from its training form (relative error {error:.1e})")
    deployed = deployed.float()
    deployed.arch, deployed.hparams = "ghostsr", hparams
    return deployed, error


def _ghost_convs(model: nn.Module, pairs: list[dict[str, Any]]) -> list[GhostConv]:
    return [model.get_submodule(p["producer"]) for p in pairs]


def _frozen(module: GhostConv) -> Any:
    directions = module.directions()
    return directions[0] if module.shift_logits.shape[0] == 1 else directions


def write_deployed(model: nn.Module, out: Path, extra: dict[str, Any]) -> Path:
    save_checkpoint(model, out, extra=extra)
    load_model(out)  # what we wrote must load as it is
    return out
