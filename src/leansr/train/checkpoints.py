"""Training checkpoints in a run folder: atomic writes, the last K kept, `best.pt` beside them."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import torch

from leansr.atomic import atomic_path
from leansr.errors import CheckpointError, OutputError

_NAME = re.compile(r"^iter_(\d+)\.pt$")


def checkpoint_dir(run_dir: Path) -> Path:
    return run_dir / "checkpoints"


def list_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """(iteration, path) sorted by iteration."""
    folder = checkpoint_dir(run_dir)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return sorted(found)


def save_training_state(run_dir: Path, state: dict[str, Any], *, keep: int, best: bool) -> Path:
    path = checkpoint_dir(run_dir) / f"iter_{state['iteration']:08d}.pt"
    try:
        with atomic_path(path) as tmp:
            torch.save(state, tmp)
        if best:
            with atomic_path(checkpoint_dir(run_dir) / "best.pt") as tmp:
                shutil.copyfile(path, tmp)
    except (OSError, RuntimeError) as exc:  # torch reports a full disk as RuntimeError("... write failed")
        reason = getattr(exc, "strerror", None) or str(exc).splitlines()[0]
        raise OutputError(f"cannot write checkpoint {path}: {reason}") from None
    for _, old in list_checkpoints(run_dir)[: -max(keep, 1)]:
        old.unlink(missing_ok=True)
    return path


def load_latest(run_dir: Path) -> dict[str, Any] | None:
    """The newest readable checkpoint (a torn file from a crash cannot exist: writes are atomic)."""
    found = list_checkpoints(run_dir)
    if not found:
        return None
    path = found[-1][1]
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"cannot read training checkpoint {path}: {exc}") from None
