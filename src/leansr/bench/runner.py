"""Measure one model with fixed settings: counts, peak memory, runtime, and optionally PSNR/SSIM."""

from __future__ import annotations

import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from leansr.bench.counting import count_model
from leansr.bench.memory import MIB, peak_memory_bytes
from leansr.bench.timing import time_forward
from leansr.layers.reparam import is_reparameterized, reparameterize_model


@dataclass(frozen=True)
class BenchSettings:
    device: str = "cpu"
    threads: int = 1
    warmup: int = 3
    repeats: int = 10
    input_size: tuple[int, int] = (256, 256)
    scale: int = 4
    deploy: bool = True
    datasets: tuple[Path, ...] = ()
    seed: int = 0


def prepare_model(model: nn.Module, settings: BenchSettings) -> nn.Module:
    """The form to measure: re-parameterized (deployed) unless `deploy` is off; eval mode."""
    model = model.eval()
    if settings.deploy and not is_reparameterized(model):
        model = reparameterize_model(model)
    return model.eval()


@dataclass(frozen=True)
class DatasetScores:
    """Quality on one benchmark folder, by `leansr evaluate`'s protocol, and the forward time per image."""

    dataset: str
    psnr_y: float
    ssim_y: float
    psnr_rgb: float
    dataset_images: int
    dataset_runtime_ms_per_image: float  # forward passes only (no I/O, resizing or metrics)


@dataclass(frozen=True)
class BenchRecord:
    """What `leansr bench` measures for one model; `to_json` is the row reports and --json hold."""

    name: str
    arch: str
    scale: int
    deployed: bool  # fused here, or loaded from a deployed checkpoint (no training form to measure)
    input_size: tuple[int, int]
    params: int
    macs: int
    activations: int
    conv: int
    macs_by_op: dict[str, int]
    challenge: dict[str, int]  # the official script's convention: flops, activations, conv
    peak_memory_mb: float
    memory_method: str
    runtime_ms: dict[str, float]
    runtime_noisy: bool
    threads: int
    device: str
    datasets: dict[str, DatasetScores] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        row = asdict(self)
        row["input_size"] = list(self.input_size)
        if self.datasets:
            row.update(asdict(next(iter(self.datasets.values()))))  # the first dataset's fields at the top
        else:
            del row["datasets"]
        return row


def benchmark_model(name: str, model: nn.Module, settings: BenchSettings) -> BenchRecord:
    """What `model` (already prepared) measures under `settings`."""
    channels = int(getattr(model, "in_channels", 3))
    shape = (1, channels, *settings.input_size)
    counts = count_model(model, shape)
    device = torch.device(settings.device)
    model = model.to(device)
    generator = torch.Generator().manual_seed(settings.seed)
    x = torch.rand(shape, generator=generator).to(device)
    memory, memory_method = peak_memory_bytes(model, x)
    timing = time_forward(model, x, warmup=settings.warmup, repeats=settings.repeats)
    scale = int(getattr(model, "scale", settings.scale))
    return BenchRecord(
        name=name,
        arch=getattr(model, "arch", "") or type(model).__name__,
        scale=scale,
        deployed=settings.deploy or bool(getattr(model, "deployed", False)),
        input_size=tuple(settings.input_size),
        params=counts.params,
        macs=counts.ops.macs,
        activations=counts.ops.activations,
        conv=counts.ops.conv,
        macs_by_op=dict(counts.ops.macs_by_op),
        challenge={"flops": counts.challenge.macs, "activations": counts.challenge.activations,
                   "conv": counts.challenge.conv},
        peak_memory_mb=memory / MIB,
        memory_method=memory_method,
        runtime_ms=timing.as_dict(),
        runtime_noisy=timing.noisy,
        threads=torch.get_num_threads(),
        device=device_name(device),
        datasets={d.name: _dataset_metrics(model, d, scale, settings.device) for d in settings.datasets},
    )


def _dataset_metrics(model: nn.Module, dataset: Path, scale: int, device: str) -> DatasetScores:
    from leansr.metrics.evaluate import evaluate_model  # the same code path as `leansr evaluate`

    forward_ms: list[float] = []
    handles = _time_each_forward(model, forward_ms)
    try:
        result = evaluate_model(model, dataset, scale=scale, device=device)
    finally:
        for handle in handles:
            handle.remove()
    return DatasetScores(str(dataset), result.psnr_y, result.ssim_y, result.psnr_rgb, len(result.per_image),
                         sum(forward_ms) / len(forward_ms))


def _time_each_forward(model: nn.Module, sink: list[float]) -> list[Any]:
    """Hooks appending each forward's wall time (ms, synchronized on CUDA) to `sink`."""
    started: list[float] = []

    def sync() -> None:
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.synchronize()

    def before(module: nn.Module, inputs: Any) -> None:
        sync()
        started.append(time.perf_counter())

    def after(module: nn.Module, inputs: Any, output: Any) -> None:
        sync()
        sink.append((time.perf_counter() - started.pop()) * 1e3)

    return [model.register_forward_pre_hook(before), model.register_forward_hook(after)]


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return "cpu"


def machine_info(settings: BenchSettings) -> dict[str, Any]:
    """What the report records about where and how it ran."""
    info = {
        "cpu": _cpu_model(),
        "cpu_cores": os.cpu_count(),
        "cpu_cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "device": device_name(torch.device(settings.device)),
        "deployed": settings.deploy,
        "input_size": list(settings.input_size),
        "scale": settings.scale,
        "warmup": settings.warmup,
        "repeats": settings.repeats,
    }
    if torch.cuda.is_available():
        info["cuda"] = torch.version.cuda
    return info


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
