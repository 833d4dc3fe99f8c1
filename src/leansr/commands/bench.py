"""`leansr bench`: the efficient-SR challenges' metrics for zoo models or checkpoints, with reports."""

from __future__ import annotations

import argparse
import gc
import inspect
import shlex
import sys
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from leansr.bench.report import BenchReport, progress_header, progress_row, write_json, write_report
from leansr.bench.runner import BenchSettings, benchmark_model, machine_info, prepare_model
from leansr.bench.timing import SPREAD_WARNING
from leansr.commands.options import add_hidden_alias, capped_threads, check_device_name, check_output_path
from leansr.loading import load_model
from leansr.errors import LeansrError
from leansr.metrics.evaluate import list_images
from leansr.progress import add_quiet_flag, progress
from leansr.registry import create_model, get_model_info, list_models
from leansr.runtime import threads

ModelSource = tuple[str, Callable[[], nn.Module]]
# LR pixels of the timed input: 2048 x 2048 already needs GBs of activations for the larger models.
MAX_INPUT_PIXELS = 2048 * 2048


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="params, MACs, activations, #conv, memory, runtime (and PSNR) per model")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--models", nargs="+", metavar="PATTERN", help="registered model names or shell patterns")
    what.add_argument("--weights", nargs="+", type=Path, metavar="W", help="checkpoint files (official or ours)")
    p.add_argument("--dataset", type=Path, action="append", metavar="DIR",
                   help="HR image folder: adds PSNR/SSIM (Y) per model (repeatable, like evaluate --data)")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default: cpu)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: all usable cores)")
    p.add_argument("--repeats", type=int, default=10, help="timed forwards per model (default: 10)")
    p.add_argument("--warmup", type=int, default=3, help="untimed forwards first (default: 3)")
    p.add_argument("--input-size", type=int, nargs=2, default=(256, 256), metavar=("H", "W"),
                   help="LR input size (default: 256 256, the challenges')")
    p.add_argument("--scale", type=int, default=None, help="upscaling factor (default: 4 for --models; "
                   "a checkpoint's own for --weights); models without it are skipped")
    p.add_argument("--no-deploy", action="store_true", help="measure the training form, not the re-parameterized one")
    p.add_argument("-o", "--output", type=Path, default=Path("bench"), help="output folder (default: ./bench)")
    add_hidden_alias(p, "--out", "output", type=Path)
    p.add_argument("--json", type=Path, metavar="FILE", help="also write the records to FILE")
    add_quiet_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = _settings(args)
    with threads(settings.threads):  # callers in the same process (tests, notebooks) keep their own setting
        return _run(args, settings)


def _run(args: argparse.Namespace, settings: BenchSettings) -> int:
    sources, notes = (_registry_sources(args.models, settings.scale) if args.models
                      else _weight_sources(args.weights, args.scale))
    records = []
    bar = progress(sources, quiet=args.quiet, desc="bench", unit="model")
    for name, build in bar:
        model = build()
        if args.scale is not None and int(getattr(model, "scale", args.scale)) != args.scale:
            notes.append(f"{name} skipped: it is a x{model.scale} model, not x{args.scale}")
            continue
        gc.collect()
        measured = benchmark_model(name, prepare_model(model, settings), settings)
        record = measured.to_json()  # reports and --json hold rows of JSON
        if measured.runtime_noisy:
            bar.write(f"warning: {name}: runtime IQR exceeds {SPREAD_WARNING:.0%} of the median; "
                      "the machine is busy or --repeats is too small", file=sys.stderr)
        if not records:
            bar.write(progress_header(record))
        bar.write(progress_row(record))  # each model's row as soon as it is measured
        records.append(record)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    if not records:
        raise LeansrError("no model was measured")
    report = BenchReport(records, machine_info(settings), _command_line(args, settings), notes)
    for path in write_report(report, args.output):
        print(f"wrote {path}")
    if args.json:
        print(f"wrote {write_json(records, args.json)}")
    return 0


def _command_line(args: argparse.Namespace, settings: BenchSettings) -> str:
    """The run's command with every setting spelled out (defaults resolved), to repeat it."""
    what = ["--models", *args.models] if args.models else ["--weights", *map(str, args.weights)]
    parts = ["leansr", "bench", *what]
    for dataset in args.dataset or []:
        parts += ["--dataset", str(dataset)]
    parts += ["--device", settings.device, "--threads", str(settings.threads), "--repeats", str(settings.repeats),
              "--warmup", str(settings.warmup), "--input-size", *map(str, settings.input_size)]
    if args.scale is not None:
        parts += ["--scale", str(args.scale)]
    if args.no_deploy:
        parts.append("--no-deploy")
    parts += ["--output", str(args.output)] + (["--json", str(args.json)] if args.json else [])
    return shlex.join(parts)


def _settings(args: argparse.Namespace) -> BenchSettings:
    if args.repeats < 1 or args.warmup < 0:
        raise LeansrError("--repeats must be at least 1 and --warmup at least 0")
    if min(args.input_size) < 1:
        raise LeansrError("--input-size needs two positive numbers")
    if args.input_size[0] * args.input_size[1] > MAX_INPUT_PIXELS:
        raise LeansrError(f"--input-size {args.input_size[0]} {args.input_size[1]} is too large to benchmark: "
                          f"at most {MAX_INPUT_PIXELS:,} LR pixels (e.g. 2048 2048)")
    if args.scale is not None and not 1 <= args.scale <= 16:
        raise LeansrError(f"--scale must be between 1 and 16, not {args.scale}")
    device = "cpu" if check_device_name(args.device) == "auto" and not torch.cuda.is_available() else args.device
    device = "cuda" if device == "auto" else device
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise LeansrError(f"--device {args.device} asked for, but CUDA is not available here")
    check_output_path(args.output, folder=True)
    if args.json is not None:
        check_output_path(args.json)
    datasets = tuple(args.dataset or ())
    names = [d.name for d in datasets]
    for dataset in datasets:
        list_images(dataset)  # a folder of images, or one sentence now rather than after the timing
    if len(set(names)) != len(names):
        raise LeansrError(f"--dataset folders must have distinct names (they key the results): {names}")
    count, note = capped_threads(args.threads)
    if note:
        print(f"note: {note}", file=sys.stderr)
    return BenchSettings(device=device, threads=count, warmup=args.warmup, repeats=args.repeats,
                         input_size=tuple(args.input_size), scale=args.scale or 4, deploy=not args.no_deploy,
                         datasets=datasets)


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
    return [(_unique_stem(p, paths), _loader(p, scale)) for p in paths], []


def _loader(path: Path, scale: int | None) -> Callable[[], nn.Module]:
    return lambda: load_model(path, scale=scale).model  # scale: read only by ONNX files without leansr metadata


def _unique_stem(path: Path, paths: list[Path]) -> str:
    same = [p for p in paths if p.stem == path.stem]
    return path.stem if len(same) == 1 else str(path)
