"""`leansr data prepare`: cut HR images into sub-images with their bicubic LR, once, for cheap loading."""

from __future__ import annotations

import argparse
import logging
import shutil
import signal
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from leansr.commands.options import check_output_path
from leansr.errors import LeansrError
from leansr.progress import add_quiet_flag, progress

log = logging.getLogger("leansr.data")
# What `data prepare` writes into its output; only a folder holding nothing else may be cleared by --overwrite.
_OURS = {"HR", "LR_bicubic"}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="training data tools")
    data_sub = p.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    q = data_sub.add_parser(
        "prepare",
        help="sub-images of HR photos + MATLAB-bicubic LR (DST/HR, DST/LR_bicubic/X<s>), as PNG",
        description="The LR of each sub-image is cut from the LR of the whole image, so it equals the "
        "benchmark protocol (bicubic_degrade) exactly. `leansr train data.train=DST/HR` pairs them. "
        "All files appear at once at the end: an interrupted or failed run leaves DST as it was.",
    )
    q.add_argument("source", type=Path, help="folder of HR images (searched recursively)")
    q.add_argument("-o", "--output", type=Path, required=True, help="destination folder (new or empty)")
    q.add_argument("--scale", type=int, default=4)
    q.add_argument("--sub-image", type=int, default=480, help="HR sub-image side (0 = whole images)")
    q.add_argument("--step", type=int, default=240, help="HR stride between sub-images")
    q.add_argument("--workers", type=int, default=1, help="processes")
    q.add_argument("--overwrite", action="store_true",
                   help="replace an earlier `data prepare` output in DST (it is cleared first)")
    add_quiet_flag(q)
    q.set_defaults(func=run_prepare)


def run_prepare(args: argparse.Namespace) -> int:
    from leansr.train.data import find_images

    s, size, step = args.scale, args.sub_image, args.step
    if s < 1 or size < 0 or step < 1 or size % s or step % s:
        raise LeansrError(f"--sub-image ({size}) and --step ({step}) must be positive multiples of --scale ({s})")
    if not 1 <= args.workers <= 256:
        raise LeansrError(f"--workers must be between 1 and 256, not {args.workers}")
    out = args.output
    check_output_path(out, folder=True)
    _check_output(args.source, out, args.overwrite)
    # Never read what this or an earlier run wrote: the output may lie inside the source.
    sources = [p for p in find_images(args.source) if not _inside(p, out)]
    if not sources:
        raise LeansrError(f"no images found in {args.source}")
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob(".prepare.*"):  # left by a killed run
        shutil.rmtree(stale, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=".prepare.", dir=out))
    try:
        written, skipped = _prepare_all(args, sources, staging)
        _clear_ours(out)
        for name in _OURS:
            (staging / name).rename(out / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    hr_dir = out / "HR"
    print(f"wrote {written} HR/LR pairs from {len(sources) - skipped} images to {out} "
          f"(train with data.train={hr_dir})")
    return 0


def _check_output(source: Path, out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise LeansrError(f"--output {out} exists and is not a folder")
    if _inside(source, out):
        raise LeansrError(f"the source {source} lies inside the output {out}; choose another -o")
    entries = {p.name for p in out.iterdir()} if out.is_dir() else set()
    entries = {e for e in entries if not e.startswith(".prepare.")}  # staging left by a killed run
    if not entries:
        return
    if not overwrite:
        raise LeansrError(f"{out} is not empty; pass --overwrite to replace an earlier `data prepare` output")
    if not entries <= _OURS:
        raise LeansrError(f"{out} holds files `data prepare` did not write ({', '.join(sorted(entries - _OURS))}); "
                          "--overwrite only clears a folder it made")


def _clear_ours(out: Path) -> None:
    for name in _OURS:
        shutil.rmtree(out / name, ignore_errors=True)


def _inside(path: Path, folder: Path) -> bool:
    return path.resolve().is_relative_to(folder.resolve())


def _prepare_all(args: argparse.Namespace, sources: list[Path], staging: Path) -> tuple[int, int]:
    s = args.scale
    hr_dir, lr_dir = staging / "HR", staging / "LR_bicubic" / f"X{s}"
    hr_dir.mkdir(parents=True)
    lr_dir.mkdir(parents=True)
    jobs = [(p, p.relative_to(args.source).with_suffix("").as_posix().replace("/", "__")) for p in sources]
    written = skipped = 0
    pool = ProcessPoolExecutor(max_workers=args.workers, initializer=_ignore_sigint)
    try:
        futures = [pool.submit(prepare_image, p, stem, hr_dir, lr_dir, s, args.sub_image, args.step)
                   for p, stem in jobs]
        bar = progress(zip(jobs, futures), quiet=args.quiet, total=len(jobs), unit="img", desc="prepare")
        for (path, _), future in bar:
            count, problem = future.result()
            written += count
            if problem:
                skipped += 1
                bar.write(f"skipped {path}: {problem}")
    except BaseException:
        # Ctrl-C or a failure: stop now, not after every queued image (workers ignore SIGINT themselves).
        for process in list(getattr(pool, "_processes", {}).values()):
            process.terminate()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()
    return written, skipped


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def prepare_image(path: Path, stem: str, hr_dir: Path, lr_dir: Path, scale: int, size: int,
                  step: int) -> tuple[int, str | None]:
    """Write the sub-images of one image; (count, reason it was skipped or None)."""
    from leansr.data.imresize import bicubic_degrade, mod_crop
    from leansr.engine.plan import window_starts
    from leansr.errors import ImageError
    from leansr.data.image_io import read_rgb_uint8

    try:
        hr = mod_crop(read_rgb_uint8(path), scale)
    except (ImageError, OSError, ValueError) as exc:
        return 0, str(exc)
    if min(hr.shape[:2]) < scale:
        return 0, f"smaller than the scale ({hr.shape[1]}x{hr.shape[0]})"
    lr = bicubic_degrade(hr, scale)
    ys = window_starts(hr.shape[0], size or hr.shape[0], step)
    xs = window_starts(hr.shape[1], size or hr.shape[1], step)
    count = 0
    for y in ys:
        for x in xs:
            count += 1
            h = min(size or hr.shape[0], hr.shape[0])
            w = min(size or hr.shape[1], hr.shape[1])
            name = f"{stem}_s{count:03d}"
            _save_png(hr[y : y + h, x : x + w], hr_dir / f"{name}.png")
            _save_png(lr[y // scale : (y + h) // scale, x // scale : (x + w) // scale],
                      lr_dir / f"{name}x{scale}.png")
    return count, None


def _save_png(pixels: np.ndarray, path: Path) -> None:
    from PIL import Image

    # Staged output: the folder is renamed into place only when complete, so no per-file temp is needed.
    # Low compression: these files are read thousands of times and written once.
    Image.fromarray(np.ascontiguousarray(pixels)).save(path, format="PNG", compress_level=1)
