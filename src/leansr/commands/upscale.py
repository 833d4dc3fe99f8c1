"""`leansr upscale`: super-resolve image files and folders, tile by tile, never touching the inputs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from torch import nn
from tqdm import tqdm

from leansr.arm import options as arm_options
from leansr.data.image_io import IMAGE_SUFFIXES, WRITE_FORMATS, Image, read_image, write_image
from leansr.errors import LeansrError
from leansr.inference import (
    DEFAULT_OVERLAP,
    DEFAULT_TILE,
    PRECISIONS,
    check_tiling,
    resolve_device,
    resolve_model,
    upscale_image,
)



def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "upscale",
        help="super-resolve images (files or folders) into an output folder",
        description="Super-resolve images. Outputs keep each input's bit depth, gray/RGB layout and alpha; "
        "inputs are never overwritten, and existing outputs only with --overwrite.",
    )
    p.add_argument("inputs", nargs="+", type=Path, metavar="INPUT", help="image files or folders of images")
    p.add_argument("-o", "--output", dest="outdir", type=Path, required=True, metavar="OUTDIR",
                   help="folder for the results (created if missing)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--weights", metavar="FILE", help="checkpoint: an official .pth or one saved by leansr")
    which.add_argument("--model", metavar="NAME", help="a registered parameter-free model, e.g. bicubic")
    p.add_argument("--scale", type=_positive, help="upscaling factor (default: the checkpoint's, else 4)")
    p.add_argument("--tile", type=_non_negative, default=DEFAULT_TILE,
                   help=f"tile size in input pixels; 0 = whole image at once (default {DEFAULT_TILE})")
    p.add_argument("--tile-overlap", type=_non_negative, default=DEFAULT_OVERLAP, metavar="N",
                   help=f"overlap of neighbouring tiles in input pixels (default {DEFAULT_OVERLAP})")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default: cuda if available)")
    p.add_argument("--precision", choices=list(PRECISIONS), default="fp32", help="compute precision")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the model first: about 1.8x faster on CPU after a warm-up of seconds "
                   "to a minute; pays off for large images and batches")
    p.add_argument("--suffix", help="added to each output's file name (default: _x<scale>)")
    p.add_argument("--format", choices=sorted(s[1:] for s in WRITE_FORMATS),
                   help="output format (default: the input's)")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    arm_options.add_route_arguments(p, route_map=True)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    check_tiling(args.tile, args.tile_overlap)
    device = resolve_device(args.device)
    inputs = find_images(args.inputs)
    model = resolve_model(args.weights, args.model, args.scale, device, compiled=args.compile)
    args.router = arm_options.make_router(args, model, args.weights)
    suffix = f"_x{model.scale}" if args.suffix is None else args.suffix
    jobs = plan_outputs(inputs, args.outdir, suffix, args.format, overwrite=args.overwrite)
    source = args.weights or ("registered model" if args.model else _default_source(model))
    print(f"leansr: {getattr(model, 'arch', type(model).__name__)} x{model.scale} ({source}) on {device}, "
          f"{len(jobs)} image(s)", file=sys.stderr)
    failures: list[tuple[Path, str]] = []
    for src, dst in tqdm(jobs, unit="img", disable=None, file=sys.stderr):
        try:
            upscale_file(model, src, dst, args, many=len(jobs) > 1)
        except LeansrError as exc:
            failures.append((src, str(exc)))
        except (RuntimeError, ValueError, MemoryError) as exc:  # e.g. an image too small for the model
            failures.append((src, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"))
    written = len(jobs) - len(failures)
    print(f"wrote {written} image(s) to {args.outdir}")
    if failures:
        print(f"leansr: {len(failures)} of {len(jobs)} image(s) failed:", file=sys.stderr)
        for src, reason in failures:
            print(f"  {reason}" if str(src) in reason else f"  {src}: {reason}", file=sys.stderr)
        return 1
    return 0


def upscale_file(model: nn.Module, src: Path, dst: Path, args: argparse.Namespace, many: bool = False) -> None:
    image = read_image(src)
    if getattr(args, "router", None) is not None:  # ARM supernet routing (leansr.arm)
        result, routed = arm_options.routed_image(args.router, image, model.scale)
        write_image(dst, result)
        if args.route_map is not None:
            write_image(arm_options.route_map_path(args.route_map, src, many),
                        Image(arm_options.route_map(routed)))
        return
    bar = _TileBar(src.name)
    try:
        result = upscale_image(model, image, tile=args.tile, tile_overlap=args.tile_overlap,
                               precision=args.precision, progress=bar)
    finally:
        bar.close()
    write_image(dst, result)  # atomic: a temp file beside dst, renamed only once complete


def _default_source(model: nn.Module) -> str:
    if getattr(model, "arch", None) == "bicubic":
        return f"no trained x{model.scale} default is packaged, so plain bicubic"
    return "packaged default"


def find_images(paths: list[Path]) -> list[Path]:
    """Files as given; folders searched (not recursively) for image suffixes, sorted."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            images = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not images:
                raise LeansrError(f"folder {path} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
            found.extend(images)
        elif path.is_file():
            found.append(path)
        else:
            raise LeansrError(f"input {path} does not exist")
    return list(dict.fromkeys(found))  # the same file named twice is done once


def plan_outputs(
    inputs: list[Path], outdir: Path, suffix: str, fmt: str | None, *, overwrite: bool
) -> list[tuple[Path, Path]]:
    """(input, output) pairs; refuses before any work if an output would replace an input or another output."""
    if outdir.exists() and not outdir.is_dir():
        raise LeansrError(f"output folder {outdir} exists and is not a folder")
    resolved_inputs = {p.resolve() for p in inputs}
    jobs, claimed = [], {}
    for src in inputs:
        ext = f".{fmt}" if fmt else src.suffix.lower()
        dst = outdir / f"{src.stem}{suffix}{ext if ext in WRITE_FORMATS else '.png'}"
        key = dst.resolve()
        if key in resolved_inputs:
            raise LeansrError(f"refusing to write {dst}: it is one of the inputs (choose another -o or --suffix)")
        if key in claimed:
            raise LeansrError(f"{claimed[key]} and {src} would both be written to {dst}; use --format or --suffix")
        if dst.exists() and not overwrite:
            raise LeansrError(f"{dst} already exists; pass --overwrite to replace it")
        claimed[key] = src
        jobs.append((src, dst))
    outdir.mkdir(parents=True, exist_ok=True)
    return jobs


class _TileBar:
    """Per-image tile progress, shown only for images split into several tiles."""

    def __init__(self, name: str) -> None:
        self.name, self.bar = name, None

    def __call__(self, done: int, total: int) -> None:
        if total < 2:
            return
        if self.bar is None:
            self.bar = tqdm(total=total, desc=self.name, unit="tile", leave=False, disable=None, file=sys.stderr)
        elif self.bar.total != total:  # restarted with smaller tiles after running out of GPU memory
            self.bar.reset(total=total)
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _positive(text: str) -> int:
    value = _non_negative(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be a positive integer")
    return value


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return value
