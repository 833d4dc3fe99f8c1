"""Checks that keep a run from losing work: settings that cannot take effect, bad data found up front,
non-finite losses or weights, loss spikes (skipped) and a model broken by one step (rolled back),
data-loader failures as one line, and JSON logs that stay standard JSON."""

from __future__ import annotations

import math
import os
import signal
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from torch import nn

from leansr.errors import LeansrError
from leansr.train.config import TrainConfig


class TrainingDiverged(LeansrError):
    """The loss or the weights stopped being finite numbers."""


def settings_warnings(config: TrainConfig) -> list[str]:
    """Settings that are valid but cannot do what they say in this run."""
    total = config.stage1.iters + config.stage2.iters
    notes = []
    if config.checkpoint_every > total:
        notes.append(f"checkpoint_every={config.checkpoint_every} exceeds the {total} iterations; checkpoints "
                     "are written only at the end of each stage and when stopped")
    if config.val_every > total:
        notes.append(f"val_every={config.val_every} exceeds the {total} iterations; validation runs only at the end")
    if config.log_every > total:
        notes.append(f"log_every={config.log_every} exceeds the {total} iterations; one log line at the end")
    for name in ("stage1", "stage2"):
        stage = getattr(config, name)
        if stage.iters == 0:
            continue
        if stage.warmup_iters >= stage.iters:
            notes.append(f"{name}.warmup_iters={stage.warmup_iters} is not shorter than {name}.iters="
                         f"{stage.iters}; the learning rate never reaches {name}.lr")
        late = [m for m in stage.milestones if m >= stage.iters]
        if stage.schedule == "multistep" and late:
            notes.append(f"{name}.milestones {late} lie beyond the stage's {stage.iters} iterations")
    return notes


def check_validation_data(folders: list[str], scale: int) -> None:
    """Decode every validation image now, not at the first validation a checkpoint interval later."""
    from leansr.data.image_io import read_rgb_uint8
    from leansr.metrics.evaluate import list_images

    for folder in folders:
        for path in list_images(folder):
            height, width = read_rgb_uint8(path).shape[:2]
            if min(height, width) < 2 * scale:
                raise LeansrError(f"validation image {path} ({width}x{height}) is too small for x{scale}")


def check_training_headers(paths: list[Path], min_side: int) -> list[str]:
    """Problems found from the image headers alone (cheap even for thousands of files)."""
    from PIL import Image, UnidentifiedImageError

    problems = []
    for path in paths:
        try:
            with Image.open(path) as im:
                width, height = im.size
        except (OSError, UnidentifiedImageError, ValueError, SyntaxError):
            problems.append(f"{path}: not a readable image")
            continue
        if min(width, height) < min_side:
            problems.append(f"{path}: {width}x{height} is smaller than the {min_side}px HR patch")
    return problems


def check_finite(model: nn.Module, what: str, iteration: int) -> None:
    for name, value in model.state_dict().items():
        if value.dtype.is_floating_point and not bool(torch.isfinite(value).all()):
            raise TrainingDiverged(f"training diverged by iteration {iteration}: {what} weight {name} is not "
                                   "finite; nothing was saved from this point (lower the learning rate)")


def check_loss(loss: float, iteration: int, last_saved: int) -> None:
    if not math.isfinite(loss):
        kept = f"the last good checkpoint is iteration {last_saved}" if last_saved else "no checkpoint was written"
        raise TrainingDiverged(f"training diverged at iteration {iteration}: the loss is {loss}; {kept} "
                               "(lower the learning rate, e.g. --resume RUN stage1.lr=...)")


def json_safe(record: Any) -> Any:
    """NaN/inf become null: json.dumps would write the non-standard tokens NaN and Infinity."""
    if isinstance(record, float):
        return record if math.isfinite(record) else None
    if isinstance(record, dict):
        return {k: json_safe(v) for k, v in record.items()}
    if isinstance(record, (list, tuple)):
        return [json_safe(v) for v in record]
    return record


def worker_signals(worker_id: int) -> None:
    """DataLoader worker_init_fn. Ctrl-C and `timeout`'s SIGTERM reach the whole process group, but only the
    main process decides how to stop (checkpoint first): a worker ignores SIGINT and leaves on SIGTERM with
    exit status 0, which torch does not report as a crash (it would as "killed by signal")."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda signum, frame: os._exit(0))


def next_batch(batches: Iterator[Any], stopping: Callable[[], bool]) -> Any:
    """The next batch, or None when the workers left because a stop was asked for; any other error in a
    loader worker becomes one line instead of the traceback torch embeds in the message."""
    try:
        return next(batches)
    except Exception as exc:
        if stopping():
            return None
        text = str(exc)
        if "DataLoader worker" not in text and isinstance(exc, LeansrError):
            raise
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        last = lines[-1] if lines else type(exc).__name__
        last = last.removeprefix("leansr.errors.LeansrError: ").removeprefix("leansr.errors.ImageError: ")
        raise LeansrError(f"loading training data failed: {last}") from None


def format_duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


class LossSpikes:
    """Which steps to skip: a loss above `factor` x the median of the last `window` kept losses (after
    `MIN_HISTORY` of them). Its state is part of a checkpoint, so that a resumed run skips the same steps."""

    MIN_HISTORY = 20

    def __init__(self, factor: float, window: int = 100) -> None:
        self.factor, self.window = factor, window
        self.recent: list[float] = []
        self.skipped = 0

    @property
    def enabled(self) -> bool:
        return self.factor > 0

    def is_spike(self, loss: float) -> bool:
        if len(self.recent) >= self.MIN_HISTORY and loss > self.factor * sorted(self.recent)[len(self.recent) // 2]:
            self.skipped += 1
            return True
        self.recent = (self.recent + [loss])[-self.window :]
        return False

    def state_dict(self) -> dict[str, Any]:
        return {"recent": list(self.recent), "skipped": self.skipped}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.recent, self.skipped = [float(v) for v in state["recent"]], int(state["skipped"])


class SpikeRecovery:
    """Rolls the model back when the loss stays a spike for `STREAK` steps in a row.

    One batch whose loss is a spike is skipped (`LossSpikes`). But a step whose loss stayed just under the
    factor can break the model itself: a quick GhostSR run (RLFN_ntire, 30 min) went from a loss of 0.0066
    to ~160 between iterations 3,290 and 3,300 (two steps kept), and every later batch was a spike, so it
    skipped all 4,000+ remaining steps and wrote a broken model. Then the run restores the newest in-memory
    snapshot (model, optimizer, EMA; taken every `EVERY` iterations) from before the last step it kept, and
    carries on with the next batches; after `MAX_ROLLBACKS` it stops with one line instead.
    """

    STREAK = 20  # healthy runs skip one step in 500-1,000, never twenty in a row
    EVERY = 100
    MAX_ROLLBACKS = 3

    def __init__(self, capture: Callable[[], Any], restore: Callable[[Any], None]) -> None:
        self.capture, self.restore = capture, restore
        self.rollbacks = 0
        self.reset()

    def reset(self) -> None:
        """Forget the snapshots (a new stage has a new optimizer, or the model changed shape)."""
        self.snapshots: list[tuple[int, Any]] = []
        self.streak = 0
        self.last_kept = 0

    def after_step(self, iteration: int, skipped: bool) -> int | None:
        """Record a finished step; returns the iteration restored, when it rolls back."""
        if not skipped:
            self.streak, self.last_kept = 0, iteration
            if not self.snapshots or iteration % self.EVERY == 0:
                self.snapshots = [*self.snapshots, (iteration, self.capture())][-2:]
            return None
        self.streak += 1
        if self.streak < self.STREAK:
            return None
        # Every step since the last kept one was a spike: that step (or one just before it) broke the model.
        usable = [snapshot for snapshot in self.snapshots if snapshot[0] < self.last_kept]
        if not usable or self.rollbacks >= self.MAX_ROLLBACKS:
            raise TrainingDiverged(
                f"training diverged by iteration {iteration}: the loss has been a spike for {self.streak} steps "
                f"in a row since iteration {self.last_kept}"
                + (f", after {self.rollbacks} rollbacks" if self.rollbacks else "")
                + " (lower the learning rate)")
        restored, state = usable[-1]
        self.restore(state)
        self.snapshots, self.streak = usable, 0
        self.rollbacks += 1
        return restored
