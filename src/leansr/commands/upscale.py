"""`leansr upscale`: super-resolve image files and folders, never touching the inputs or others' outputs.

Images are computed one after another while the previous result is encoded on a writer thread. Each output
is claimed at its final rename (exclusive unless --overwrite), so two runs into one folder never replace
each other's results; outputs already present are skipped, so a re-run finishes an interrupted batch.
"""

from __future__ import annotations

import argparse
import atexit
import dataclasses
import re
import shutil
import sys
import tempfile
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import cv2
from tqdm import tqdm

from leansr.arm import options as arm_options
from leansr.data.image_io import WRITE_FORMATS, format_for, list_images, output_bits, read_image, write_pixels
from leansr.engine import DEFAULT_OVERLAP, QuantizedImage, TileSettings, upscale_image_quantized
from leansr.errors import LeansrError
from leansr.loading import ModelDescriptor, resolve_model
from leansr.runtime import PRECISIONS, CompiledModel, prepare_for_inference, resolve_device, resolve_precision

STDIO = Path("-")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "upscale",
        help="super-resolve images (files or folders) into an output folder",
        description="Super-resolve images. Outputs keep each input's bit depth, gray/RGB layout and alpha; "
        "inputs are never overwritten, existing outputs are skipped unless --overwrite.",
    )
    p.add_argument("inputs", nargs="+", type=Path, metavar="INPUT",
                   help="image files or folders of images; - reads one image from standard input")
    p.add_argument("-o", "--output", type=Path, required=True, metavar="OUT",
                   help="output folder (created if missing); a file name for a single input; - for stdout")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--weights", metavar="FILE", help="checkpoint: an official .pth or one saved by leansr")
    which.add_argument("--model", metavar="NAME", help="a registered parameter-free model, e.g. bicubic")
    p.add_argument("--scale", type=_positive, help="upscaling factor (default: the checkpoint's, else 4)")
    p.add_argument("--outscale", type=_positive_float, metavar="F",
                   help="final scale: the model's, then a high-quality resize (e.g. 3.5 with an x4 model)")
    p.add_argument("--tile", type=_non_negative, default=None,
                   help="force tiles of N input pixels; 0 = whole image (default: whole when it fits "
                   "--max-memory, else the fewest pixels that fit)")
    p.add_argument("--tile-overlap", type=_non_negative, default=None, metavar="N",
                   help=f"blending overlap for models that are not local (default {DEFAULT_OVERLAP}); "
                   "local models use their receptive field and are tiled exactly")
    p.add_argument("--max-memory", type=_bytes, default=None, metavar="SIZE",
                   help="working-memory budget for the model, e.g. 2G, 512M (default: 2G on CPU, "
                   "80%% of free memory on a GPU)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default: cuda if available)")
    p.add_argument("--precision", choices=list(PRECISIONS), default="fp32",
                   help="compute precision (fp16 on CPU runs fp32: it is slower there)")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the model first (kernels cached on disk, warm-up reported): about 1.8x "
                   "faster on CPU after a warm-up of seconds "
                   "to a minute; pays off for large images and batches")
    p.add_argument("--suffix", help="added to each output's file name (default: _x<scale>)")
    p.add_argument("--format", "--ext", dest="format", choices=sorted(s[1:] for s in WRITE_FORMATS),
                   help="output format (default: the input's)")
    p.add_argument("--recursive", action="store_true", help="search folders recursively (keeps sub-folders)")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    arm_options.add_route_arguments(p, route_map=True)
    p.set_defaults(func=run)


@dataclasses.dataclass(frozen=True)
class Job:
    src: Path
    dst: Path


def run(args: argparse.Namespace) -> int:
    device = resolve_device(args.device)
    precision = resolve_precision(args.precision, device, _notice)
    if args.tile and args.tile_overlap is not None and args.tile <= 2 * args.tile_overlap:
        raise LeansrError(f"tile size {args.tile} must be more than twice the overlap {args.tile_overlap}")
    if args.suffix is not None and not _safe_suffix(args.suffix):
        raise LeansrError(f"--suffix {args.suffix!r} must be a plain name part (no / or ..)")
    inputs = find_images(args.inputs, recursive=args.recursive)
    descriptor = resolve_model(args.weights, args.model, args.scale)
    routing = arm_options.routing_from_args(args, descriptor.model, args.weights)
    final_scale = args.outscale or descriptor.scale
    suffix = _default_suffix(final_scale) if args.suffix is None else args.suffix
    jobs, skipped = plan_outputs(inputs, args.output, suffix, args.format, overwrite=args.overwrite)
    if skipped:
        print(f"leansr: {skipped} done already; --overwrite to redo", file=sys.stderr)
    if not jobs:
        return 0
    if args.compile and descriptor.source.format == "onnx":
        raise LeansrError(f"--compile applies to PyTorch models; {args.weights} runs in onnxruntime")
    model = dataclasses.replace(
        descriptor, model=prepare_for_inference(descriptor.model, device, compiled=args.compile))
    settings = TileSettings(tile=args.tile, overlap=args.tile_overlap, max_memory=args.max_memory,
                            precision=precision)
    print(f"leansr: {descriptor.arch} x{descriptor.scale} ({_source(descriptor)}) on {device}, "
          f"{len(jobs)} image(s)", file=sys.stderr)
    failures = _process(jobs, model, settings, args.outscale, args.overwrite, routing)
    if args.output != STDIO:
        print(f"wrote {len(jobs) - len(failures)} image(s) to {args.output}", file=sys.stderr)
    if isinstance(model.model, CompiledModel):
        print(f"leansr: compile warm-up {model.model.warmup_s:.1f} s for {len(model.model.shapes)} input "
              f"shape(s), kernels cached in {model.model.cache_dir}", file=sys.stderr)
    if failures:
        print(f"leansr: {len(failures)} of {len(jobs)} image(s) failed:", file=sys.stderr)
        for src, reason in failures:
            print(f"  {reason}" if str(src) in reason else f"  {src}: {reason}", file=sys.stderr)
        return 1
    return 0


def _process(jobs: list[Job], model: ModelDescriptor, settings: TileSettings, outscale: float | None,
             overwrite: bool, routing: arm_options.Routing | None = None) -> list[tuple[Path, str]]:
    """Compute each image while the previous one is written (one write in flight bounds memory)."""
    failures: list[tuple[Path, str]] = []
    pending: tuple[Job, Future] | None = None
    notices: set[str] = set()
    with ThreadPoolExecutor(max_workers=1) as writer:
        for job in tqdm(jobs, unit="img", disable=None, file=sys.stderr):
            try:
                result = (routing.upscale(read_image(job.src), job.src, many=len(jobs) > 1) if routing
                          else _upscale(job, model, settings, notices))
            except (LeansrError, RuntimeError, ValueError, MemoryError) as exc:
                failures.append((job.src, _reason(exc)))
                result = None
            if pending is not None:
                _collect(pending, failures)
            pending = (job, writer.submit(_write, job, result, outscale, model.scale, overwrite)) if result else None
        if pending is not None:
            _collect(pending, failures)
    return failures


def _upscale(job: Job, model: ModelDescriptor, settings: TileSettings, notices: set[str]) -> QuantizedImage:
    image = read_image(_stdin_file() if job.src == STDIO else job.src)
    bits = output_bits(image.bit_depth, format_for(job.dst if job.dst != STDIO else Path("x.png")))
    image = dataclasses.replace(image, bit_depth=bits)
    bar = _TileBar(job.src.name or "stdin")
    try:
        return upscale_image_quantized(model, image, settings, progress=bar, notice=_once(notices))
    finally:
        bar.close()


def _write(job: Job, result: QuantizedImage, outscale: float | None, scale: int, overwrite: bool) -> None:
    data = result.data
    if outscale is not None and outscale != scale:
        height, width = result.source.height, result.source.width
        size = (max(1, round(width * outscale)), max(1, round(height * outscale)))
        shrinking = outscale < scale
        data = cv2.resize(data, size, interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LANCZOS4)
        data = data.reshape(size[1], size[0], -1)
    if job.dst == STDIO:
        _write_stdout(data, result, job)
        return
    write_pixels(job.dst, data, colour=result.colour, icc_profile=result.source.icc_profile,
                 exclusive=not overwrite)


def _collect(pending: tuple[Job, Future], failures: list[tuple[Path, str]]) -> None:
    job, future = pending
    try:
        future.result()
    except (LeansrError, OSError, ValueError, cv2.error) as exc:
        failures.append((job.src, _reason(exc)))


def _write_stdout(data, result: QuantizedImage, job: Job) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "out.png"  # a pipe gets PNG: lossless, and what the bit depth was planned for
        write_pixels(path, data, colour=result.colour, icc_profile=result.source.icc_profile)
        sys.stdout.buffer.write(path.read_bytes())
        sys.stdout.buffer.flush()


_STDIN_COPY: list[Path] = []


def _stdin_file() -> Path:
    """Standard input saved to a temp file once (decoders need to seek); removed at exit."""
    if not _STDIN_COPY:
        folder = Path(tempfile.mkdtemp(prefix="leansr-stdin-"))
        path = folder / "stdin"
        with open(path, "wb") as f:
            shutil.copyfileobj(sys.stdin.buffer, f)
        atexit.register(shutil.rmtree, folder, True)
        _STDIN_COPY.append(path)
    return _STDIN_COPY[0]


def find_images(paths: list[Path], *, recursive: bool = False) -> dict[Path, Path | None]:
    """Each image and the folder it was found in as given (None for files named directly), in order.

    Folders are searched for image suffixes (recursively with `recursive`), sorted; a file named twice
    is done once.
    """
    found: dict[Path, Path | None] = {}
    for path in paths:
        if path == STDIO or path.is_file():
            found.setdefault(path, None)
        elif path.is_dir():
            for image in list_images(path, recursive=recursive, what="folder"):
                found.setdefault(image, path)
        else:
            raise LeansrError(f"input {path} does not exist")
    return found


def plan_outputs(
    inputs: dict[Path, Path | None], output: Path, suffix: str, fmt: str | None, *, overwrite: bool
) -> tuple[list[Job], int]:
    """Jobs and the count of outputs that exist already (skipped unless `overwrite`).

    Refuses before any work if an output would replace an input or another output, or leave `output`.
    """
    if STDIO in inputs and (len(inputs) > 1 or output != STDIO and output.suffix.lower() not in WRITE_FORMATS):
        raise LeansrError("standard input (-) takes exactly one image and -o FILE or -o -")
    if output == STDIO:
        if len(inputs) != 1:
            raise LeansrError("-o - (standard output) takes exactly one input image")
        return [Job(next(iter(inputs)), STDIO)], 0
    single_file = len(inputs) == 1 and output.suffix.lower() in WRITE_FORMATS and not output.is_dir()
    if not single_file and output.exists() and not output.is_dir():
        raise LeansrError(f"output folder {output} exists and is not a folder")
    resolved_inputs = {p.resolve() for p in inputs if p != STDIO}
    jobs, claimed, skipped = [], {}, 0
    for src, root in inputs.items():
        dst = output if single_file else _output_name(src, root, output, suffix, fmt)
        key = dst.resolve()
        if not single_file and output.resolve() not in key.parents:
            raise LeansrError(f"output name {dst} would leave the output folder {output}")
        if key in resolved_inputs:
            raise LeansrError(f"refusing to write {dst}: it is one of the inputs (choose another -o or --suffix)")
        if key in claimed:
            raise LeansrError(f"{claimed[key]} and {src} would both be written to {dst}; use --format or --suffix")
        claimed[key] = src
        if dst.exists() and not overwrite:
            skipped += 1
            continue
        jobs.append(Job(src, dst))
    return jobs, skipped


def _output_name(src: Path, root: Path | None, output: Path, suffix: str, fmt: str | None) -> Path:
    """`output/[sub-folders under root/]stem+suffix.ext`: a recursive search keeps its sub-folders."""
    ext = f".{fmt}" if fmt else src.suffix.lower()
    relative = src.parent.relative_to(root) if root is not None else Path()
    return output / relative / f"{src.stem}{suffix}{ext if ext in WRITE_FORMATS else '.png'}"


def _safe_suffix(suffix: str) -> bool:
    return "/" not in suffix and "\\" not in suffix and ".." not in suffix and "\0" not in suffix


def _default_suffix(scale: float) -> str:
    return f"_x{scale:g}"


def _source(descriptor: ModelDescriptor) -> str:
    if descriptor.source.path:
        return descriptor.source.path
    if descriptor.arch == "bicubic":
        return f"no trained x{descriptor.scale} default is packaged, so plain bicubic"
    return "packaged default" if descriptor.source.format != "registered model" else "registered model"


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    if isinstance(exc, LeansrError):
        return text
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"


def _notice(message: str) -> None:
    print(f"leansr: {message}", file=sys.stderr)


def _once(seen: set[str]):
    def notice(message: str) -> None:
        key = re.sub(r"\(\d+ tiles of \d+x\d+;", "(", message)  # one notice per model, not per image size
        if key not in seen:
            seen.add(key)
            _notice(message)
    return notice


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


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value <= 64:
        raise argparse.ArgumentTypeError("must be a number above 0 and at most 64")
    return value


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return value


_UNITS = {"": 1, "B": 1, "K": 1 << 10, "KB": 1 << 10, "KIB": 1 << 10, "M": 1 << 20, "MB": 1 << 20,
          "MIB": 1 << 20, "G": 1 << 30, "GB": 1 << 30, "GIB": 1 << 30, "T": 1 << 40, "TB": 1 << 40, "TIB": 1 << 40}


def _bytes(text: str) -> int:
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", text)
    unit = match.group(2).upper() if match else None
    if match is None or unit not in _UNITS:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size like 2G, 512M or 1500000000")
    value = int(float(match.group(1)) * _UNITS[unit])
    if value < 16 << 20:
        raise argparse.ArgumentTypeError("must be at least 16M")
    return value
