"""`leansr evaluate`: Y-PSNR/SSIM of a checkpoint (or the bicubic baseline) on benchmark folders."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from torch import nn

from leansr.arm import options as arm_options
from leansr.atomic import atomic_path
from leansr.commands.options import add_hidden_alias, check_device_name, check_output_path
from leansr.loading import load_model
from leansr.errors import LeansrError
from leansr.runtime import resolve_device
from leansr.data.image_io import list_images
from leansr.metrics.evaluate import evaluate_model
from leansr.metrics.psnr_ssim import Y_CONVENTIONS
from leansr.progress import add_quiet_flag
from leansr.registry import create_model


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="PSNR/SSIM (Y, BT.601) on HR folders, LR made by MATLAB-style bicubic",
        description="HR is cropped to a multiple of the scale and shrunk by MATLAB-style bicubic (or paired "
        "with --lr-dir); SR is clamped and rounded to 8 bits; metrics skip a border of `scale` pixels.",
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--weights", type=Path, help="checkpoint (official .pth or leansr .safetensors)")
    source.add_argument("--model", help="a registered model without weights, e.g. bicubic")
    p.add_argument("--data", type=Path, action="append", required=True, help="HR folder (repeatable)")
    p.add_argument("--scale", type=int, help="upscaling factor (default: the checkpoint's)")
    p.add_argument("--lr-dir", type=Path, action="append",
                   help="paired LR folder, one per --data in the same order (default: bicubic from HR)")
    p.add_argument("--y-convention", choices=Y_CONVENTIONS, default="rounded",
                   help="rounded: Y rounded to 8 bits as MATLAB on uint8 (default); float: unrounded Y")
    p.add_argument("-o", "--output", dest="json", type=Path, metavar="FILE", help="write the results here (JSON)")
    add_hidden_alias(p, "--json", "json", type=Path)
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    add_quiet_flag(p)
    arm_options.add_route_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    lr_dirs = _check_folders(args.data, args.lr_dir)
    if args.json is not None:
        check_output_path(args.json)
    device = resolve_device(check_device_name(args.device))
    if args.scale is not None and not 1 <= args.scale <= 16:
        raise LeansrError(f"--scale must be between 1 and 16, not {args.scale}")
    model = _build_model(args)
    router = arm_options.make_router(args, model, args.weights)
    runner = None if router is None else arm_options.evaluation_runner(router, official=args.route == "official")
    scale = int(model.scale)
    results: dict[str, Any] = {"model": model.arch, "scale": scale, "datasets": {}}
    print(f"{'dataset':<12} {'images':>6} {'PSNR-Y':>8} {'SSIM-Y':>7} {'PSNR-RGB':>9}")
    for hr_dir, lr_dir in zip(args.data, lr_dirs):
        r = evaluate_model(model, hr_dir, scale=scale, lr_dir=lr_dir, y_convention=args.y_convention,
                           device=device, quiet=args.quiet, runner=runner)
        results["datasets"][hr_dir.name] = arm_options.with_summary(r.to_json())
        print(f"{hr_dir.name:<12} {len(r.per_image):>6} {r.psnr_y:>8.4f} {r.ssim_y:>7.4f} {r.psnr_rgb:>9.4f}")
    if args.json:
        with atomic_path(args.json) as tmp:
            tmp.write_text(json.dumps(results, indent=1) + "\n")
        print(f"wrote {args.json}")
    return 0


def _check_folders(data: list[Path], lr_dirs: list[Path] | None) -> list[Path | None]:
    names = [d.name for d in data]
    if len(set(names)) != len(names):
        raise LeansrError(f"--data folders must have distinct names (they key the results): {names}")
    for folder in data:
        list_images(folder)
    if lr_dirs is None:
        return [None] * len(data)
    if len(lr_dirs) != len(data):
        raise LeansrError(f"give one --lr-dir per --data ({len(data)}), not {len(lr_dirs)}")
    for folder in lr_dirs:
        list_images(folder)
    return list(lr_dirs)


def _build_model(args: argparse.Namespace) -> nn.Module:
    if args.weights is not None:
        model = load_model(args.weights, scale=args.scale).model
        if args.scale is not None and args.scale != model.scale:
            raise LeansrError(f"{args.weights} is a x{model.scale} model, not x{args.scale}")
        return model
    if args.scale is None:
        raise LeansrError("--model needs --scale")
    model = create_model(args.model, scale=args.scale)
    if any(True for _ in model.parameters()):
        raise LeansrError(f"model {args.model!r} has learned parameters; evaluate it with --weights")
    return model
