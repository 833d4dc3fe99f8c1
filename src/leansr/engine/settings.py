"""Tiling settings, in one place."""

from __future__ import annotations

from dataclasses import dataclass

from leansr.runtime import Precision

GIB = 1 << 30
DEFAULT_CPU_MEMORY = 2 * GIB  # sized for a laptop; whole images run when their estimate fits
DEFAULT_OVERLAP = 32  # LR pixels blended between tiles of models that are not local
MIN_TILE = 32  # CUDA out-of-memory retries shrink tiles down to this floor


@dataclass(frozen=True)
class TileSettings:
    """How the engine splits an image. Defaults choose everything from the model and the memory budget.

    tile: None = automatic (whole image when it fits `max_memory`, else the fewest pixels that fit);
          0 = whole image; N = forced tiles of N LR pixels (a local model's tile is the region each window
          makes, its halo added around it; other models' tiles overlap by `overlap` and are blended).
    overlap: blending overlap for non-local models (None: DEFAULT_OVERLAP); local models use their radius.
    max_memory: bytes of working memory for the model (None: DEFAULT_CPU_MEMORY on CPU, 80% of free GPU memory).
    """

    tile: int | None = None
    overlap: int | None = None
    max_memory: int | None = None
    precision: Precision = "fp32"
    channels_last: bool | None = None  # None: when the model has convolutions
    min_tile: int = MIN_TILE
