"""`leansr bench`: the efficient-SR challenges' metrics for zoo models or checkpoints, with reports."""

from __future__ import annotations

import argparse
import gc
import inspect
import os
import shlex
import sys
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from tqdm import tqdm

from leansr.bench.report import BenchReport, write_json, write_report
from leansr.bench.runner import BenchSettings, benchmark_model, machine_info, prepare_model
from leansr.bench.timing import SPREAD_WARNING
from leansr.loading import load_model
from leansr.errors import LeansrError
from leansr.registry import create_model, get_model_info, list_models
from leansr.runtime import threads

ModelSource = tuple[str, Callable[[], nn.Module]]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="params, MACs, activations, #conv, memory, runtime (and PSNR) per model")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--models", nargs="+", metavar="PATTERN", help="registered model names or shell patterns")
    what.add_argument("--weights", nargs="+", type=Path, metavar="W", help="checkpoint files (official or ours)")
    p.add_argument("--dataset", type=Path, metavar="DIR", help="HR image folder: adds PSNR/SSIM (Y) per model")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default: cpu)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: all usable cores)")
    p.add_argument("--repeats", type=int, default=10, help="timed forwards per model (default: 10)")
    p.add_argument("--warmup", type=int, default=3, help="untimed forwards first (default: 3)")
    p.add_argument("--input-size", type=int, nargs=2, default=(256, 256), metavar=("H", "W"),
                   help="LR input size (default: 256 256, the challenges')")
    p.add_argument("--scale", type=int, default=None, help="upscaling factor (default: 4 for --models; "
                   "a checkpoint's own for --weights); models without it are skipped")
    p.add_argument("--no-deploy", action="store_true", help="measure the training form, not the re-parameterized one")
    p.add_argument("--out", type=Path, default=Path("bench"), help="output folder (default: ./bench)")
    p.add_argument("--json", type=Path, metavar="FILE", help="also write the records to FILE")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = _settings(args)
    with threads(settings.threads):  # callers in the same process (tests, notebooks) keep their own setting
        return _run(args, settings)


def _run(args: argparse.Namespace, settings: BenchSettings) -> int:
    sources, notes = (_registry_sources(args.models, settings.scale) if args.models
                      else _weight_sources(args.weights, args.scale))
    records = []
    for name, build in tqdm(sources, desc="bench", unit="model", file=sys.stderr):
        model = build()
        if args.scale is not None and int(getattr(model, "scale", args.scale)) != args.scale:
            notes.append(f"{name} skipped: it is a x{model.scale} model, not x{args.scale}")
            continue
        gc.collect()
        record = benchmark_model(name, prepare_model(model, settings), settings)
        if record["runtime_noisy"]:
            tqdm.write(f"warning: {name}: runtime IQR exceeds {SPREAD_WARNING:.0%} of the median; "
                       "the machine is busy or --repeats is too small", file=sys.stderr)
        records.append(record)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    if not records:
        raise LeansrError("no model was measured")
    report = BenchReport(records, machine_info(settings), _command_line(args, settings), notes)
    for path in write_report(report, args.out):
        print(f"wrote {path}")
    if args.json:
        print(f"wrote {write_json(records, args.json)}")
    return 0


def _command_line(args: argparse.Namespace, settings: BenchSettings) -> str:
    """The run's command with every setting spelled out (defaults resolved), to repeat it."""
    what = ["--models", *args.models] if args.models else ["--weights", *map(str, args.weights)]
    parts = ["leansr", "bench", *what]
    if args.dataset is not None:
        parts += ["--dataset", str(args.dataset)]
    parts += ["--device", settings.device, "--threads", str(settings.threads), "--repeats", str(settings.repeats),
              "--warmup", str(settings.warmup), "--input-size", *map(str, settings.input_size)]
    if args.scale is not None:
        parts += ["--scale", str(args.scale)]
    if args.no_deploy:
        parts.append("--no-deploy")
    parts += ["--out", str(args.out)] + (["--json", str(args.json)] if args.json else [])
    return shlex.join(parts)


def _settings(args: argparse.Namespace) -> BenchSettings:
    if args.repeats < 1 or args.warmup < 0:
        raise LeansrError("--repeats must be at least 1 and --warmup at least 0")
    if min(args.input_size) < 1:
        raise LeansrError("--input-size needs two positive numbers")
    if args.device != "cpu" and not args.device.startswith("cuda"):
        raise LeansrError(f"--device must be cpu or cuda[:N], not {args.device!r}")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise LeansrError(f"--device {args.device} asked for, but CUDA is not available here")
    if args.dataset is not None and not args.dataset.is_dir():
        raise LeansrError(f"--dataset {args.dataset} is not a folder")
    threads = args.threads or _usable_cores()
    if threads < 1:
        raise LeansrError("--threads must be at least 1")
    return BenchSettings(device=args.device, threads=threads, warmup=args.warmup, repeats=args.repeats,
                         input_size=tuple(args.input_size), scale=args.scale or 4, deploy=not args.no_deploy,
                         dataset=args.dataset)


def _usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _registry_sources(patterns: list[str], scale: int) -> tuple[list[ModelSource], list[str]]:
    names = list(dict.fromkeys(n for pattern in patterns for n in list_models(pattern)))
    if not names:
        raise LeansrError(f"no registered model matches {' '.join(patterns)}")
    sources, notes = [], []
    for name in names:
        info = get_model_info(name)
        if info.scales and scale not in info.scales:
            notes.append(f"{name} skipped: supports x{','.join(map(str, info.scales))}, not x{scale}")
            continue
        sources.append((name, _builder(name, scale)))
    return sources, notes


def _builder(name: str, scale: int) -> Callable[[], nn.Module]:
    takes_scale = "scale" in inspect.signature(get_model_info(name).constructor).parameters
    return lambda: create_model(name, scale=scale) if takes_scale else create_model(name)


def _weight_sources(paths: list[Path], scale: int | None) -> tuple[list[ModelSource], list[str]]:
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise LeansrError(f"no such checkpoint: {', '.join(missing)}")
    return [(_unique_stem(p, paths), _loader(p)) for p in paths], []


def _loader(path: Path) -> Callable[[], nn.Module]:
    return lambda: load_model(path).model


def _unique_stem(path: Path, paths: list[Path]) -> str:
    same = [p for p in paths if p.stem == path.stem]
    return path.stem if len(same) == 1 else str(path)
