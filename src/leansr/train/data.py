"""Training data: HR folders (LR made by MATLAB-style bicubic on the fly) or paired HR/LR folders.

Every sample's crop and augmentation come from a seed derived from (run seed, stream position), never from a
worker's RNG state, so the data order is a pure function of the iteration: resuming at iteration k, with any
number of DataLoader workers or DDP ranks, yields exactly the batches an uninterrupted run would have seen.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from leansr.data.image_io import list_images, read_rgb_uint8
from leansr.data.imresize import imresize
from leansr.errors import ImageError, LeansrError

log = logging.getLogger("leansr.train")

# Bicubic taps reach 2 LR pixels (8 HR pixels at x4) beyond a pixel; cropping this much extra before the
# downscale makes the LR patch equal the crop of the whole image's LR.
LR_MARGIN = 3


@dataclass(frozen=True)
class Sample:
    hr: Path
    lr: Path | None  # None: made from hr by bicubic on the fly


def find_images(root: str | Path) -> list[Path]:
    """Training images under `root`, sub-folders included."""
    return list_images(root, recursive=True, what="training folder")


def paired_lr_dir(hr_dir: Path, scale: int) -> Path | None:
    """`<prefix>HR` beside `<prefix>LR_bicubic/X<scale>` (DIV2K, and what `leansr data prepare` writes)."""
    name = hr_dir.name
    if not name.endswith("HR"):
        return None
    candidate = hr_dir.parent / f"{name[:-2]}LR_bicubic" / f"X{scale}"
    return candidate if candidate.is_dir() else None


def collect_samples(folders: list[str], scale: int, *, use_prepared_lr: bool = True) -> list[Sample]:
    samples: list[Sample] = []
    for folder in folders:
        hr_dir = Path(folder)
        hr_paths = find_images(hr_dir)
        lr_dir = paired_lr_dir(hr_dir, scale) if use_prepared_lr else None
        lr_index = _index_lr(lr_dir, scale) if lr_dir is not None else {}
        found = [Sample(hr, lr_index.get(hr.relative_to(hr_dir).with_suffix("").as_posix())) for hr in hr_paths]
        paired = sum(1 for s in found if s.lr is not None)
        log.info("%s: %d HR images, %d with prepared x%d LR", hr_dir, len(found), paired, scale)
        samples.extend(found)
    if not samples:
        raise LeansrError(f"no training images found in {', '.join(folders) or '(no folders given)'}")
    return samples


def _index_lr(lr_dir: Path, scale: int) -> dict[str, Path]:
    """LR files keyed by their HR name: `0001x4.png` (DIV2K) or `0001.png`."""
    pattern = re.compile(rf"x{scale}$")
    return {pattern.sub("", p.relative_to(lr_dir).with_suffix("").as_posix()): p for p in find_images(lr_dir)}


def crop_window(
    size: int, patch: int, start: int, scale: int, margin: int = LR_MARGIN
) -> tuple[int, int, int]:
    """HR window [lo, hi) around LR patch [start, start+patch) on one axis, clipped to the image.

    Returns (lo, hi, offset): offset = LR pixels to trim at the low side after downscaling the window.
    `lo` stays a multiple of `scale` so the window's LR grid is the whole image's LR grid.
    """
    lr_size = size // scale
    lo = max(start - margin, 0)
    hi = min(start + patch + margin, lr_size)
    return lo * scale, hi * scale, start - lo


def bicubic_patch(hr: np.ndarray, y: int, x: int, patch: int, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """(HR patch, LR patch) for LR top-left (y, x): LR = crop of bicubic_degrade(hr) up to float rounding."""
    y0, y1, oy = crop_window(hr.shape[0], patch, y, scale)
    x0, x1, ox = crop_window(hr.shape[1], patch, x, scale)
    # Resized by torch, not numpy: numpy's OpenBLAS threads spin after each call and stall torch's own
    # threads in the training step that follows (measured: a 1.7 ms conv took 11 ms beside them).
    window = torch.from_numpy(np.ascontiguousarray(hr[y0:y1, x0:x1])).permute(2, 0, 1).double()
    lr = imresize(window, 1.0 / scale).clamp_(0.0, 255.0).add_(0.5).floor_().to(torch.uint8)
    lr = lr.permute(1, 2, 0).numpy()  # quantize_uint8 in torch: clip, round half up
    hr_patch = hr[y * scale : (y + patch) * scale, x * scale : (x + patch) * scale]
    return hr_patch, lr[oy : oy + patch, ox : ox + patch]


def augment(hr: np.ndarray, lr: np.ndarray, rng: np.random.Generator, *, flip: bool, rot90: bool):
    """The same flips and transpose for both; together they give all 8 dihedral transforms."""
    if flip and rng.random() < 0.5:
        hr, lr = hr[:, ::-1], lr[:, ::-1]
    if flip and rng.random() < 0.5:
        hr, lr = hr[::-1], lr[::-1]
    if rot90 and rng.random() < 0.5:
        hr, lr = hr.transpose(1, 0, 2), lr.transpose(1, 0, 2)
    return hr, lr


def to_tensor(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).float().div_(255.0)


class PatchDataset(Dataset):
    """Indexed by (image index, sample seed) pairs from `StreamSampler`; returns (LR, HR) 0-1 CHW patches."""

    def __init__(self, samples: list[Sample], *, scale: int, patch_size: int, flip: bool, rot90: bool,
                 cache: bool = False) -> None:
        self.samples = samples
        self._cache: dict[Sample, tuple[np.ndarray, np.ndarray | None]] | None = {} if cache else None
        self.scale = scale
        self.patch = patch_size
        self.flip = flip
        self.rot90 = rot90
        self._reported: set[Path] = set()

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        index, seed = key
        rng = np.random.default_rng(seed)
        # An unreadable or too small image is reported once and replaced by a deterministic other one.
        for attempt in range(len(self.samples)):
            sample = self.samples[(index + attempt) % len(self.samples)]
            try:
                hr, lr = self._patch(sample, rng)
            except (ImageError, OSError, ValueError) as exc:
                self._report(sample.hr, exc)
                continue
            hr, lr = augment(hr, lr, rng, flip=self.flip, rot90=self.rot90)
            return to_tensor(lr), to_tensor(hr)
        raise LeansrError("no readable training image is large enough for the patch size")

    def _patch(self, sample: Sample, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        s, p = self.scale, self.patch
        hr, lr = self._read(sample)
        lr_h, lr_w = hr.shape[0] // s, hr.shape[1] // s
        if lr is not None and lr.shape[:2] != (lr_h, lr_w):
            raise ValueError(f"LR {sample.lr.name} is {lr.shape[1]}x{lr.shape[0]}, expected {lr_w}x{lr_h}")
        if lr_h < p or lr_w < p:
            raise ValueError(f"{lr_w}x{lr_h} LR is smaller than the {p}px patch")
        y = int(rng.integers(0, lr_h - p + 1))
        x = int(rng.integers(0, lr_w - p + 1))
        if lr is None:
            return bicubic_patch(hr, y, x, p, s)
        return hr[y * s : (y + p) * s, x * s : (x + p) * s], lr[y : y + p, x : x + p]

    def _read(self, sample: Sample) -> tuple[np.ndarray, np.ndarray | None]:
        if self._cache is not None and sample in self._cache:
            return self._cache[sample]
        pair = read_rgb_uint8(sample.hr), read_rgb_uint8(sample.lr) if sample.lr is not None else None
        if self._cache is not None:
            self._cache[sample] = pair
        return pair

    def _report(self, path: Path, exc: Exception) -> None:
        if path not in self._reported:
            self._reported.add(path)
            log.warning("skipping training image %s: %s", path, exc)


class StreamSampler(Sampler):
    """Batches of (image index, sample seed) from an endless stream of per-epoch permutations.

    Stream position p lies in epoch p // n at slot p % n of permutation(seed, epoch). Batch g covers positions
    [g*B, (g+1)*B); DDP rank r takes its contiguous share. Starting at batch `start` is an exact resume.
    """

    def __init__(self, num_items: int, batch_size: int, *, seed: int, start: int = 0, rank: int = 0,
                 world_size: int = 1) -> None:
        if batch_size % world_size:
            raise LeansrError(f"batch size {batch_size} does not split over {world_size} processes")
        self.n = num_items
        self.batch = batch_size
        self.seed = seed
        self.start = start
        self.per_rank = batch_size // world_size
        self.offset = rank * self.per_rank
        self._perm_epoch = -1
        self._perm: np.ndarray = np.empty(0, dtype=np.int64)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        g = self.start
        while True:
            first = g * self.batch + self.offset
            yield [self._item(p) for p in range(first, first + self.per_rank)]
            g += 1

    def __len__(self) -> int:  # endless; DataLoader only needs a number
        return 2**62

    def _item(self, position: int) -> tuple[int, int]:
        epoch, slot = divmod(position, self.n)
        if epoch != self._perm_epoch:
            self._perm = np.random.default_rng([self.seed, epoch]).permutation(self.n)
            self._perm_epoch = epoch
        sample_seed = int(np.random.default_rng([self.seed, epoch, slot, 1]).integers(2**63))
        return int(self._perm[slot]), sample_seed
