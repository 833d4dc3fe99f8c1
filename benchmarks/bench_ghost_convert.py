"""GhostSR conversion alone: how close the converted model starts, on the calibration images and on others.

For each --setting RATIO:PATCHES:ROWS:RIDGE[:free][:mined], converts WEIGHTS (`leansr.ghost.convert`,
calibration patches from --data; `free`: consumer taps on ghosts fitted freely instead of tied to their
sources; `mined`: `convert_calibrated`, the two-pass conversion of `leansr ghost`) and reports the PSNR of
its output against the original model's on the calibration patches, on held-out patches from --held-out,
and the worst per-patch L1 (0-1 scale) over the held-out patches and over "clipped" copies of them
(contrast stretched so that about a fifth of the pixels saturate at 0 or 1: the content that made
under-regularized fits explode during fine-tuning).

    .venv/bin/python benchmarks/bench_ghost_convert.py --weights ../shared/weights/bytedance-RLFN/rlfn_ntire_x4.pth \
        --data ../shared/data/train --held-out ../shared/data/Set14 \
        --setting 0.33:64:96000:1e-3:free 0.33:64:96000:1e-3 0.33:64:96000:1e-3:mined
"""

from __future__ import annotations

import argparse
import json
import sys

import torch

import leansr.ghost.convert as ghost_convert
from leansr import load_model


def clipped(x: torch.Tensor) -> torch.Tensor:
    return (x * 1.6 - 0.3).clamp(0.0, 1.0)


@torch.no_grad()
def worst_l1(original: torch.nn.Module, ghost: torch.nn.Module, x: torch.Tensor) -> float:
    return float((ghost(x) - original(x)).abs().flatten(1).mean(1).max())


def measure(original: torch.nn.Module, setting: str, args: argparse.Namespace, held: torch.Tensor) -> dict:
    ratio, patches, rows, ridge, *how = setting.split(":")
    ghost_convert.MAX_LS_ROWS, ghost_convert.RIDGE = int(rows), float(ridge)
    ghost_convert.TIE_GHOST_TAPS = "free" not in how
    if "mined" in how:  # what `leansr ghost` does: a second conversion with the worst-fitted patches added
        if int(patches) != ghost_convert.CALIBRATION_PATCHES:
            raise SystemExit(f"mined settings use {ghost_convert.CALIBRATION_PATCHES} calibration patches")
        ghost, calibration = ghost_convert.convert_calibrated(original, args.data, ratio=float(ratio))
    else:
        calibration = ghost_convert.calibration_patches(args.data, original.scale, count=int(patches))
        ghost = ghost_convert.convert(original, calibration, ratio=float(ratio))
    return {
        "setting": setting,
        "calibration_psnr": ghost_convert.calibration_error(original, ghost, calibration),
        "held_out_psnr": ghost_convert.calibration_error(original, ghost, held),
        "worst_l1": worst_l1(original, ghost, held),
        "worst_l1_clipped": worst_l1(original, ghost, clipped(held)),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", required=True)
    parser.add_argument("--data", nargs="+", required=True, help="calibration HR folders")
    parser.add_argument("--held-out", nargs="+", required=True, help="HR folders for held-out patches")
    parser.add_argument("--setting", nargs="+", required=True, metavar="RATIO:PATCHES:ROWS:RIDGE[:free][:mined]")
    parser.add_argument("--held-out-patches", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    original = load_model(args.weights).model.eval()
    held = ghost_convert.calibration_patches(args.held_out, original.scale, count=args.held_out_patches, seed=7)
    print("| setting | calibration PSNR | held-out PSNR | worst L1 | worst L1, clipped |")
    print("|---|---|---|---|---|")
    for setting in args.setting:
        r = measure(original, setting, args, held)
        print(json.dumps(r), file=sys.stderr, flush=True)
        print(f"| {setting} | {r['calibration_psnr']:.2f} | {r['held_out_psnr']:.2f} | {r['worst_l1']:.4f} | "
              f"{r['worst_l1_clipped']:.4f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
