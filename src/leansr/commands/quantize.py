"""`leansr quantize`: post-training static int8 (onnxruntime QDQ) from a checkpoint and calibration images."""

from __future__ import annotations

import argparse
from pathlib import Path

from leansr.loading import load_model
from leansr.commands.export import check_output
from leansr.deploy.quantize import (
    DEFAULT_CALIB_IMAGES,
    DEFAULT_CALIB_SIZE,
    DEFAULT_KEEP_FLOAT,
    KEEP_FLOAT_CHOICES,
    METHODS,
    quantize_model,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "quantize",
        help="int8 post-training quantization for CPU (ONNX with QDQ, run by onnxruntime)",
        description="Export the checkpoint to ONNX (verified), calibrate activation ranges on centre crops of "
        "the images in --calib, and write an int8 ONNX file (per-channel int8 weights, uint8 activations). "
        "It runs with `leansr upscale/evaluate/bench --weights OUT`.",
    )
    p.add_argument("--weights", type=Path, required=True, metavar="W", help="checkpoint (official or leansr)")
    p.add_argument("--calib", type=Path, nargs="+", required=True, metavar="DIR",
                   help="folder(s) of calibration images, used as LR inputs (not your test set)")
    p.add_argument("-o", "--output", type=Path, required=True, metavar="OUT", help="int8 ONNX file (.onnx)")
    p.add_argument("--calib-images", type=int, default=DEFAULT_CALIB_IMAGES, metavar="N",
                   help=f"at most N images, spread over the folders (default {DEFAULT_CALIB_IMAGES})")
    p.add_argument("--calib-size", type=int, default=DEFAULT_CALIB_SIZE, metavar="PX",
                   help=f"centre crop size in pixels (default {DEFAULT_CALIB_SIZE})")
    p.add_argument("--method", choices=METHODS, default="percentile",
                   help="activation range calibration (default percentile: 99.999%% of values; minmax lost more)")
    p.add_argument("--keep-float", default=",".join(DEFAULT_KEEP_FLOAT), metavar="LIST",
                   help=f"comma-separated layers left in float: {', '.join(KEEP_FLOAT_CHOICES)} or none "
                   f"(default {','.join(DEFAULT_KEEP_FLOAT)})")
    p.add_argument("--force", action="store_true", help="overwrite OUT if it exists")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    check_output(args.weights, args.output, force=args.force)
    keep = tuple(k for k in args.keep_float.split(",") if k and k != "none")
    model = load_model(args.weights).model
    result = quantize_model(model, args.calib, args.output, keep_float=keep, calib_images=args.calib_images,
                            calib_size=args.calib_size, method=args.method, source=args.weights.name)
    print(f"wrote {args.output} ({model.arch}, x{model.scale}, int8): calibrated on {result.calib_images} "
          f"crop(s), {len(result.float_nodes)} node(s) kept in float, PSNR {result.psnr_vs_fp32:.1f} dB "
          "against fp32 on the calibration crops")
    return 0
