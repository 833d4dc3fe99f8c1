"""`leansr data prepare`: cut HR images into sub-images with their bicubic LR, once, for cheap loading."""

from __future__ import annotations

import argparse
import logging
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from leansr.errors import LeansrError

log = logging.getLogger("leansr.data")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="training data tools")
    data_sub = p.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    q = data_sub.add_parser(
        "prepare",
        help="sub-images of HR photos + MATLAB-bicubic LR (DST/HR, DST/LR_bicubic/X<s>), as PNG",
        description="The LR of each sub-image is cut from the LR of the whole image, so it equals the "
        "benchmark protocol (bicubic_degrade) exactly. `leansr train data.train=DST/HR` pairs them.",
    )
    q.add_argument("source", type=Path, help="folder of HR images (searched recursively)")
    q.add_argument("-o", "--output", type=Path, required=True, help="destination folder")
    q.add_argument("--scale", type=int, default=4)
    q.add_argument("--sub-image", type=int, default=480, help="HR sub-image side (0 = whole images)")
    q.add_argument("--step", type=int, default=240, help="HR stride between sub-images")
    q.add_argument("--workers", type=int, default=1, help="processes")
    q.set_defaults(func=run_prepare)


def run_prepare(args: argparse.Namespace) -> int:
    from leansr.train.data import find_images

    s, size, step = args.scale, args.sub_image, args.step
    if s < 1 or size < 0 or step < 1 or size % s or step % s:
        raise LeansrError(f"--sub-image ({size}) and --step ({step}) must be positive multiples of --scale ({s})")
    sources = find_images(args.source)
    if not sources:
        raise LeansrError(f"no images found in {args.source}")
    hr_dir, lr_dir = args.output / "HR", args.output / "LR_bicubic" / f"X{s}"
    hr_dir.mkdir(parents=True, exist_ok=True)
    lr_dir.mkdir(parents=True, exist_ok=True)
    jobs = [(p, p.relative_to(args.source).with_suffix("").as_posix().replace("/", "__")) for p in sources]
    written = skipped = 0
    with ProcessPoolExecutor(max_workers=max(args.workers, 1)) as pool:
        futures = [pool.submit(prepare_image, p, stem, hr_dir, lr_dir, s, size, step) for p, stem in jobs]
        for (path, _), future in zip(jobs, futures):
            count, problem = future.result()
            written += count
            if problem:
                skipped += 1
                print(f"skipped {path}: {problem}")
    print(f"wrote {written} HR/LR pairs from {len(jobs) - skipped} images to {args.output} "
          f"(train with data.train={hr_dir})")
    return 0


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

    from leansr.atomic import atomic_path

    with atomic_path(path) as tmp:
        # Low compression: these files are read thousands of times and written once.
        Image.fromarray(np.ascontiguousarray(pixels)).save(tmp, format="PNG", compress_level=1)
