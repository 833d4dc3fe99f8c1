"""The training loop: stages (L1, then optional L2), Adam, warm-up schedules, EMA, AMP, DDP, exact resume."""

from __future__ import annotations

import copy
import inspect
import itertools
import json
import logging
import math
import signal
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from leansr.atomic import atomic_path
from leansr.checkpoint import read_state_dict, save_checkpoint
from leansr.color import rgb_to_ycbcr
from leansr.deploy.qat import quant_aware
from leansr.errors import LeansrError
from leansr.layers.reparam import is_reparameterized, reparameterize_model
from leansr.loading import load_model
from leansr.registry import create_model, get_model_info
from leansr.runtime import resolve_device, threads
from leansr.train import checkpoints, transitions
from leansr.train.basis_schedule import training_stages
from leansr.train.config import StageConfig, TrainConfig, save_config, to_dict
from leansr.train import guards
from leansr.train.data import PatchDataset, StreamSampler, collect_samples
from leansr.train.distributed import DistInfo, barrier, broadcast_flag, cleanup, init_distributed, mean_across
from leansr.train.ema import ModelEMA
from leansr.train.plots import plot_curves, read_log
from leansr.train.runlock import RunLock, remove_stale_temp_files
from leansr.train.runtime import autocast, install_stop_handlers
from leansr.train.schedule import build_scheduler, param_groups
from leansr.train.supernet import step_widths

log = logging.getLogger("leansr.train")


def build_model(config: TrainConfig) -> nn.Module:
    kwargs: dict[str, Any] = dict(config.model.args)
    if "scale" in inspect.signature(get_model_info(config.model.name).constructor).parameters:
        kwargs["scale"] = config.model.scale
    model = create_model(config.model.name, **kwargs)
    if config.model.train_fused:
        fused = reparameterize_model(model, inplace=True)
        fused.arch, fused.hparams = model.arch, model.hparams
        model = fused
    if config.model.init:
        _load_init(model, config)
    if config.model.quant_aware:
        quant_aware(model, torch.rand(1, getattr(model, "in_channels", 3), 32, 32))
    return model


def _load_init(model: nn.Module, config: TrainConfig) -> None:
    state = read_state_dict(config.model.init)[0]
    if set(state) != set(model.state_dict()):  # an official layout (detected, renamed) or the unfused form
        loaded = load_model(config.model.init).model
        if getattr(model, "deployed", False) and not getattr(loaded, "deployed", False):
            loaded = reparameterize_model(loaded, inplace=True)
        state = loaded.state_dict()
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        detail = str(exc).replace("\n", " ")[:300]
        raise LeansrError(f"model.init {config.model.init} does not fit {config.model.name}: {detail}") from None


def resolve_run_dir(config: TrainConfig) -> Path:
    return Path(config.output.format(model=config.model.name, scale=config.model.scale))


class Trainer:
    """One run in `run_dir`; `resume=True` continues from its newest checkpoint exactly."""

    def __init__(self, config: TrainConfig, run_dir: Path, *, resume: bool = False) -> None:
        self.config = config
        self.run_dir = Path(run_dir)
        self.device = resolve_device(config.device)
        self.dist: DistInfo = init_distributed(self.device.type)
        if self.dist.enabled and self.device.type == "cuda":
            self.device = torch.device("cuda", self.dist.local_rank)
        torch.manual_seed(config.seed)
        self.lock = RunLock(self.run_dir) if self.dist.is_main else None
        self._check_data()
        self.model = build_model(config).to(self.device)
        self.teacher = _load_teacher(config.distill.teacher, self.device) if config.distill.teacher else None
        self.ema = ModelEMA(self.model, config.ema_decay) if config.ema_decay > 0 else None
        self.net: nn.Module = self.model
        if self.dist.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = DistributedDataParallel(self.model, device_ids=ids)
        self.stages = training_stages(config)
        transitions.check_supported(config, self.stages, self.dist.enabled)
        self.total_iters = sum(s.iters for s in self.stages)
        self.scaler = torch.amp.GradScaler("cuda", enabled=config.amp == "fp16" and self.device.type == "cuda")
        self.iteration = 0
        self.best_psnr = -math.inf
        self.spikes = guards.LossSpikes(config.skip_loss_spikes)
        self.recovery = guards.SpikeRecovery(self._snapshot, self._restore_snapshot)
        self.elapsed_s = 0.0  # wall time over all sessions of this run
        self.stage_index = -1
        self.stop_requested = False
        self.stop_signal: int | None = None  # the signal that asked for the stop, if one did
        self.last_saved = 0  # iteration of the newest checkpoint written or resumed from
        self._open_stage(0)
        self._acquire_lock()
        try:
            self._start(resume)
        except BaseException:
            self._release_lock()
            raise

    def _start(self, resume: bool) -> None:
        if self.dist.is_main:
            for stale in remove_stale_temp_files(self.run_dir):
                log.info("removed %s, a temp file left by a killed run", stale)
        state = checkpoints.load_latest(self.run_dir) if resume else None
        if resume and state is None:
            raise LeansrError(f"nothing to resume: {self.run_dir} has no checkpoints")
        if state is not None:
            self._load_state(state)
            self.last_saved = self.iteration
        if self.dist.is_main:
            save_config(self.config, self.run_dir / "config.yaml")
            if resume:
                _truncate_log(self.log_path, self.iteration)
            else:  # a fresh run: whatever an earlier run left without a checkpoint is not continued
                self.log_path.unlink(missing_ok=True)
            for note in guards.settings_warnings(self.config):
                log.warning("%s", note)

    def _acquire_lock(self) -> None:
        if self.lock is not None and not self.lock.held:
            self.lock.acquire()

    def _release_lock(self) -> None:
        if self.lock is not None:
            self.lock.release()

    def _check_data(self) -> None:
        """Every problem with the data now, before hours of work: missing folders, unreadable images."""
        cfg, scale = self.config.data, self.config.model.scale
        self.samples = collect_samples(cfg.train, scale, use_prepared_lr=cfg.use_prepared_lr)
        problems = guards.check_training_headers([s.hr for s in self.samples], cfg.patch_size * scale)
        for problem in problems[:5]:
            log.warning("training image %s; it will be skipped", problem)
        if len(problems) > 5:
            log.warning("... and %d more training images that will be skipped", len(problems) - 5)
        if len(problems) == len(self.samples):
            raise LeansrError(f"none of the {len(self.samples)} training images is readable and at least "
                              f"{cfg.patch_size * scale}px on each side (data.patch_size x scale)")
        guards.check_validation_data(cfg.val, scale)

    @property
    def log_path(self) -> Path:
        return self.run_dir / "log.jsonl"

    # -- stages -------------------------------------------------------------------------------------------
    def _stage_at(self, iteration: int) -> int:
        """Index of the stage a global iteration belongs to."""
        end = 0
        for index, stage in enumerate(self.stages):
            end += stage.iters
            if iteration < end:
                return index
        return len(self.stages) - 1

    def _open_stage(self, index: int) -> None:
        """A fresh Adam and schedule per stage, as the challenge recipes restart for the L2 fine-tune."""
        stage: StageConfig = self.stages[index]
        transitions.prepare_stage([self.model, *([self.ema.module] if self.ema else [])], self.config,
                                  self.stages, index)
        self.stage_index = index
        self.stage = stage
        self.recovery.reset()  # a snapshot holds the previous stage's optimizer (and maybe model shape)
        self.optimizer = torch.optim.Adam(
            param_groups(self.model, stage), lr=stage.lr, betas=tuple(stage.betas), weight_decay=stage.weight_decay
        )
        self.scheduler = build_scheduler(self.optimizer, stage)

    # -- state ---------------------------------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        state = {
            "iteration": self.iteration,
            "stage_index": self.stage_index,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "best_psnr": self.best_psnr,
            "loss_spikes": self.spikes.state_dict(),
            "elapsed_s": self.elapsed_s,
            # The data order is a function of (seed, iteration); see leansr.train.data.StreamSampler.
            "data": {"seed": self.config.seed, "next_batch": self.iteration},
            "rng": {"torch": torch.get_rng_state()},
            "config": to_dict(self.config),
        }
        if self.ema is not None:
            state["ema"] = self.ema.state_dict()
        if torch.cuda.is_available():
            state["rng"]["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def _load_state(self, state: dict[str, Any]) -> None:
        if int(state["stage_index"]) != self.stage_index:
            self._open_stage(int(state["stage_index"]))  # first: the stage may grow or fuse the model
        self.model.load_state_dict(state["model"])
        self.iteration = int(state["iteration"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        if self.ema is not None and "ema" in state:
            self.ema.load_state_dict(state["ema"])
        self.best_psnr = float(state["best_psnr"])
        if "loss_spikes" in state:  # checkpoints from before the option have none
            self.spikes.load_state_dict(state["loss_spikes"])
        self.elapsed_s = float(state["elapsed_s"])
        torch.set_rng_state(state["rng"]["torch"])
        if "cuda" in state["rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])

    def save(self, *, best: bool = False) -> None:
        guards.check_finite(self.model, "a", self.iteration)
        if self.ema is not None:
            guards.check_finite(self.ema.module, "an EMA", self.iteration)
        if self.dist.is_main:
            checkpoints.save_training_state(
                self.run_dir, self._state(), keep=self.config.keep_checkpoints, best=best
            )
        self.last_saved = self.iteration

    # -- loop ----------------------------------------------------------------------------------------------
    def _loader(self) -> DataLoader:
        cfg = self.config.data
        dataset = PatchDataset(self.samples, scale=self.config.model.scale, patch_size=cfg.patch_size,
                               flip=cfg.flip, rot90=cfg.rot90, cache=cfg.cache)
        sampler = StreamSampler(len(self.samples), cfg.batch_size, seed=self.config.seed, start=self.iteration,
                                rank=self.dist.rank, world_size=self.dist.world_size)
        return DataLoader(dataset, batch_sampler=sampler, num_workers=cfg.workers,
                          pin_memory=self.device.type == "cuda", persistent_workers=False,
                          prefetch_factor=4 if cfg.workers > 0 else None,
                          worker_init_fn=guards.worker_signals if cfg.workers > 0 else None)

    def summary(self, end: int) -> str:
        """One line before the first step: what trains, where, for how long, on how much data."""
        params = sum(p.numel() for p in self.model.parameters())
        stages = " + ".join(f"{s.iters} {s.loss.upper()}" for s in self.stages)
        count = torch.get_num_threads()
        threads = f", {count} thread{'s' * (count != 1)}" if self.device.type == "cpu" else ""
        return (f"training {self.config.model.name} x{self.config.model.scale}: {params:,} parameters on "
                f"{self.device}{threads}; iterations {self.iteration}->{end} of {self.total_iters} ({stages}); "
                f"{len(self.samples)} training images, batch {self.config.data.batch_size} of "
                f"{self.config.data.patch_size}px LR patches; run folder {self.run_dir}")

    def train(self, max_steps: int | None = None) -> Path:
        """Train (to the end, or `max_steps` more steps) with the configured thread count, then restore it."""
        with threads(self.config.threads if self.config.threads > 0 else None):
            return self._train(max_steps)

    def _train(self, max_steps: int | None) -> Path:
        """Train to the end (or `max_steps` more steps); returns the run folder."""
        from tqdm import tqdm

        end = self.total_iters if max_steps is None else min(self.total_iters, self.iteration + max_steps)
        self._acquire_lock()
        if self.dist.is_main:
            log.info("%s", self.summary(end))
        # disable=None: no bar when stderr is not a terminal (logs, CI), where it would only add noise.
        bar = tqdm(total=self.total_iters, initial=self.iteration, disable=None if self.dist.is_main else True,
                   dynamic_ncols=True, unit="it")
        previous = install_stop_handlers(self)
        window: list[tuple[float, float]] = []
        tick = time.perf_counter()
        session_start, elapsed_before = tick, self.elapsed_s
        stage_ends = set(itertools.accumulate(s.iters for s in self.stages))
        eta_reported = False
        try:
            batches = iter(self._loader())
            while self.iteration < end:
                batch = guards.next_batch(batches, lambda: self.stop_requested)
                if batch is None:
                    return self._stop()
                loss, psnr = self._step(batch)
                guards.check_loss(loss, self.iteration, self.last_saved)
                window.append((loss, psnr))
                self.elapsed_s = elapsed_before + time.perf_counter() - session_start
                bar.update(1)
                if self.iteration % self.config.log_every == 0 or self.iteration == end:
                    now = time.perf_counter()
                    self._log_train(window, len(window) / (now - tick), bar)
                    if not eta_reported and self.dist.is_main:
                        rate = len(window) / max(now - tick, 1e-9)
                        bar.write(f"ETA {guards.format_duration((end - self.iteration) / rate)} at {rate:.1f} it/s")
                        eta_reported = True
                    window, tick = [], now
                if self.config.val_every and self.iteration % self.config.val_every == 0:
                    self._validate_and_maybe_checkpoint(bar)
                elif self.iteration % self.config.checkpoint_every == 0 or (
                    self.iteration in stage_ends and self.iteration < self.total_iters
                ):
                    self.save()  # periodic, and at the end of every stage but the last (_finish saves that)
                limit = self.config.time_limit_min * 60
                if limit and time.perf_counter() - session_start > limit:
                    self.stop_requested = True
                    log.warning("time limit of %g min reached", self.config.time_limit_min)
                if broadcast_flag(self.dist, self.stop_requested):
                    return self._stop()
            if self.iteration >= self.total_iters:
                self._finish(bar)
            else:
                self.save()
        finally:
            bar.close()
            cleanup(self.dist)
            for sig, old_handler in previous.items():
                signal.signal(sig, old_handler)
            self._release_lock()
        return self.run_dir

    def _stop(self) -> Path:
        self.save()
        log.warning("stopped at iteration %d; resume with --resume %s", self.iteration, self.run_dir)
        return self.run_dir

    def _step(self, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[float, float]:
        stage_index = self._stage_at(self.iteration)
        if stage_index != self.stage_index:
            self._open_stage(stage_index)
        lr_img, hr_img = (t.to(self.device, non_blocking=True) for t in batch)
        if self.model.in_channels == 1:
            lr_img, hr_img = rgb_to_ycbcr(lr_img)[:, :1], rgb_to_ycbcr(hr_img)[:, :1]
        if self.config.channels_last and self.device.type == "cpu":
            lr_img = lr_img.contiguous(memory_format=torch.channels_last)
        self.net.train()
        self.optimizer.zero_grad(set_to_none=True)
        loss, sr = self._forward_backward(lr_img, hr_img)
        # Only when on: the check costs a device sync, and under DDP an all-reduce, per step.
        skipped = self.spikes.enabled and self.spikes.is_spike(mean_across(self.dist, loss.item()))
        if skipped:
            self.optimizer.zero_grad(set_to_none=True)
        else:
            if self.stage.grad_clip > 0:
                self.scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.stage.grad_clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update(self.model)
        self.iteration += 1
        if self.spikes.enabled:
            self._recover_if_broken(skipped)
        with torch.no_grad():
            mse = F.mse_loss(sr.detach().clamp(0, 1), hr_img).item()
        return loss.item(), 10 * math.log10(1.0 / max(mse, 1e-10))

    def _recover_if_broken(self, skipped: bool) -> None:
        restored = self.recovery.after_step(self.iteration, skipped)
        if restored is not None:
            log.warning("iteration %d: the loss has been a spike for %d steps in a row since iteration %d; "
                        "restored the model of iteration %d and continuing", self.iteration,
                        guards.SpikeRecovery.STREAK, self.recovery.last_kept, restored)
            self._write_log({"event": "rollback", "iter": self.iteration, "restored": restored,
                             "last_kept": self.recovery.last_kept})

    def _snapshot(self) -> dict[str, Any]:
        """A rollback point (`guards.SpikeRecovery`): model, optimizer, EMA and scaler, copied to the CPU."""
        state = {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "scaler": self.scaler.state_dict()}
        if self.ema is not None:
            state["ema"] = self.ema.state_dict()
        return _cpu_copy(state)

    def _restore_snapshot(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])  # its learning rate is reset by the next step
        self.scaler.load_state_dict(state["scaler"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])

    def _loss(self, sr: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.l1_loss(sr, target) if self.stage.loss == "l1" else F.mse_loss(sr, target)

    def _forward_backward(self, lr_img: torch.Tensor, hr_img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Loss and SR of the step (of its widest width for supernets); gradients accumulated."""
        widths: list[int | None] = [None]
        if hasattr(self.model, "widths"):
            widths = step_widths(self.model, self.config.supernet.sampling, self.config.seed, self.iteration)
        first: tuple[torch.Tensor, torch.Tensor] | None = None
        for width in widths:
            with autocast(self.device, self.config.amp):
                sr = (self.net(lr_img) if width is None else self.net(lr_img, width=width)).float()
            target = hr_img if first is None or not self.config.supernet.distill else first[1].detach()
            loss = self._loss(sr, target)
            if self.teacher is not None and first is None:
                with torch.no_grad():
                    taught = self.teacher(lr_img).float()
                hr_weight = self.config.distill.hr_weight
                loss = (1 - hr_weight) * self._loss(sr, taught) + hr_weight * loss
            self.scaler.scale(loss / len(widths)).backward()
            if first is None:
                first = (loss, sr)
        return first

    def _log_train(self, window: list[tuple[float, float]], it_per_s: float, bar: Any) -> None:
        loss = sum(w[0] for w in window) / len(window)
        psnr = sum(w[1] for w in window) / len(window)
        bar.set_postfix(loss=f"{loss:.4f}", psnr=f"{psnr:.2f}", best=f"{self.best_psnr:.2f}", refresh=False)
        self._write_log({"event": "train", "iter": self.iteration, "stage": self.stage_index + 1,
                         "loss": loss, "train_psnr": psnr, "lr": self.optimizer.param_groups[0]["lr"],
                         "it_per_s": it_per_s, "patches_per_s": it_per_s * self.config.data.batch_size,
                         **({"skipped_spikes": self.spikes.skipped} if self.spikes.enabled else {}),
                         "elapsed_s": self.elapsed_s})

    def _validate_and_maybe_checkpoint(self, bar: Any) -> None:
        if not self.config.data.val:
            self.save()
            return
        is_best = False
        if self.dist.is_main:
            scores = self.validate()
            headline = next(iter(scores.values()))
            is_best = headline > self.best_psnr
            self.best_psnr = max(self.best_psnr, headline)
            self._write_log({"event": "val", "iter": self.iteration, "psnr": scores, "elapsed_s": self.elapsed_s})
            bar.write(f"iter {self.iteration}: " + ", ".join(f"{k} {v:.3f} dB" for k, v in scores.items()))
            self._plot()
        self.save(best=is_best)
        barrier(self.dist)

    def validate(self) -> dict[str, float]:
        """Mean Y-PSNR per validation folder, of the EMA weights when EMA is on (as `leansr evaluate`)."""
        from leansr.metrics.evaluate import evaluate_model

        model = self.ema.module if self.ema is not None else self.model
        model.eval()
        scores = {}
        for folder in self.config.data.val:
            result = evaluate_model(model, folder, scale=self.config.model.scale)
            scores[Path(folder).name] = result.psnr_y
        return scores

    def _finish(self, bar: Any) -> None:
        if self.iteration % max(self.config.val_every, 1) != 0 or not self.config.val_every:
            self._validate_and_maybe_checkpoint(bar)
        if self.dist.is_main:
            self.export()
            self._plot()
        barrier(self.dist)

    def export(self) -> list[Path]:
        """`model.safetensors` (training form; EMA weights if on) and `model_fused.safetensors` if it re-parameterizes."""
        model = (self.ema.module if self.ema is not None else self.model).cpu().eval()
        guards.check_finite(model, "an exported", self.iteration)
        extra: dict[str, Any] = {"iterations": self.iteration}
        if math.isfinite(self.best_psnr):
            extra["best_val_psnr"] = self.best_psnr
        written = [save_checkpoint(model, self.run_dir / "model.safetensors", extra=extra)]
        if not is_reparameterized(model):
            fused = reparameterize_model(model)
            written.append(save_checkpoint(fused, self.run_dir / "model_fused.safetensors", extra=extra))
        model.to(self.device)
        return written

    def _plot(self) -> None:
        switch = self.config.stage1.iters if len(self.stages) == 2 else None
        plot_curves(self.log_path, self.run_dir / "curves.png", stage_switch=switch)

    def _write_log(self, record: dict[str, Any]) -> None:
        if self.dist.is_main:
            with open(self.log_path, "a") as f:
                f.write(json.dumps(guards.json_safe(record), allow_nan=False) + "\n")


def _cpu_copy(tree: Any) -> Any:
    if isinstance(tree, torch.Tensor):
        return tree.detach().to("cpu", copy=True)
    if isinstance(tree, dict):
        return {key: _cpu_copy(value) for key, value in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(_cpu_copy(value) for value in tree)
    return copy.deepcopy(tree)


def _truncate_log(path: Path, iteration: int) -> None:
    """Drop records a killed session wrote after the checkpoint we resume from."""
    kept = [r for r in read_log(path) if r["iter"] <= iteration]
    with atomic_path(path) as tmp:
        tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))


def _load_teacher(path: str, device: torch.device) -> nn.Module:
    from leansr.loading import load_model

    return load_model(path, device=device).model
