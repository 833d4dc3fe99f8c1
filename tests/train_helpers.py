"""Tiny images and configs shared by the training tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from leansr.train.config import TrainConfig, load_config


def write_images(folder: Path, count: int = 3, size: tuple[int, int] = (72, 88), seed: int = 0) -> list[Path]:
    """Smooth random RGB photos-to-be (smooth so that bicubic LR is meaningful)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        coarse = rng.random((size[0] // 8 + 1, size[1] // 8 + 1, 3))
        img = Image.fromarray((coarse * 255).astype(np.uint8)).resize((size[1], size[0]), Image.BICUBIC)
        noisy = np.asarray(img).astype(np.int16) + rng.integers(-12, 13, (size[0], size[1], 3))
        path = folder / f"img{i}.png"
        Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(path)
        paths.append(path)
    return paths


def tiny_config(train_dir: Path, out: Path, *extra: str) -> TrainConfig:
    """ECBSR-M4C8 (re-parameterizable) on 8-px LR patches: a step takes milliseconds."""
    return load_config(None, [
        "model.name=ecbsr_m4c8", "model.args.in_channels=3", "model.args.img_range=1.0", "model.scale=4",
        f"data.train={train_dir}", "data.patch_size=8", "data.batch_size=4", "data.workers=0",
        "stage1.iters=6", "stage1.lr=1e-3", "stage1.warmup_iters=2", "stage1.schedule=cosine",
        "stage2.iters=3", "ema_decay=0.9", "log_every=2", "val_every=0", "checkpoint_every=3",
        f"output={out}", *extra,
    ])
