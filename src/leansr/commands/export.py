"""`leansr export`: a checkpoint as an ONNX file, verified in onnxruntime before it is written."""

from __future__ import annotations

import argparse
from pathlib import Path

from leansr.loading import load_model
from leansr.deploy.onnx_export import DEFAULT_OPSET, TOLERANCE, export_onnx
from leansr.deploy.onnx_model import is_onnx_file
from leansr.errors import LeansrError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="write a checkpoint as ONNX (re-parameterized, verified by onnxruntime)",
        description="Fuse re-parameterizable blocks, export to ONNX with leansr metadata (arch, scale, channels, "
        "input range, version), run the file in onnxruntime against PyTorch on a test image, and write it only "
        f"if they agree (max |diff| <= {TOLERANCE['fp32']:.0e} on the 0-1 scale; fp16: one gray level, 1/255). "
        "The file runs with `leansr upscale/evaluate/bench --weights FILE.onnx`.",
    )
    p.add_argument("--weights", type=Path, required=True, metavar="W", help="checkpoint (official or leansr)")
    p.add_argument("-o", "--output", type=Path, required=True, metavar="OUT", help="ONNX file to write (.onnx)")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default {DEFAULT_OPSET})")
    p.add_argument("--dynamic", action="store_true",
                   help="dynamic batch, height and width (needed for tiling images of any size)")
    p.add_argument("--input-size", type=int, nargs=2, default=(256, 256), metavar=("H", "W"),
                   help="the fixed LR input size without --dynamic (default 256 256)")
    p.add_argument("--fp16", action="store_true", help="half-precision weights and inputs")
    p.add_argument("--force", action="store_true", help="overwrite OUT if it exists")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    check_output(args.weights, args.output, force=args.force)
    if min(args.input_size) < 1:
        raise LeansrError("--input-size needs two positive numbers")
    model = load_model(args.weights).model
    result = export_onnx(model, args.output, opset=args.opset, dynamic=args.dynamic, fp16=args.fp16,
                         input_size=tuple(args.input_size), source=args.weights.name)
    shape = "dynamic HxW" if args.dynamic else "{}x{} input".format(*args.input_size)
    print(f"wrote {args.output} ({model.arch}, x{model.scale}, {result.metadata['precision']}, {shape}, "
          f"opset {args.opset}): verified in onnxruntime, max |diff| {result.max_abs_diff:.1e} "
          f"(limit {result.tolerance:.0e})")
    return 0


def check_output(source: Path, target: Path, *, force: bool) -> None:
    """Refusals shared by export and quantize, before any work."""
    if is_onnx_file(source):
        raise LeansrError(f"{source} is already ONNX; give the PyTorch checkpoint it came from")
    if not is_onnx_file(target):
        raise LeansrError(f"the output {target} must end in .onnx")
    if target.exists() and not force:
        raise LeansrError(f"{target} exists; pass --force to overwrite it")
