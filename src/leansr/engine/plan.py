"""The tile plan: a pure function of image size, model context and tile size; no tensors involved.

`whole`: one window, the model sees the image (bit-identical to calling it). `paste`: for local models,
the image is cut into cores; each window is its core plus a halo of the model's receptive-field radius
(shifted inward at the image edges, so all windows share one shape and batch together), and only the core
of each output is kept, so tiled equals untiled. `blend`: for other models, equal tiles overlapping by
`overlap` pixels, cross-faded where they meet.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Literal

from leansr.context import Context
from leansr.errors import LeansrError

Mode = Literal["whole", "paste", "blend"]


@dataclass(frozen=True)
class Window:
    """An LR window the model runs on, and the core region (LR) whose output it supplies."""

    top: int
    left: int
    height: int
    width: int
    core_top: int
    core_left: int
    core_height: int
    core_width: int


@dataclass(frozen=True)
class TilePlan:
    height: int
    width: int
    mode: Mode
    windows: tuple[Window, ...]
    margin: int  # paste: the halo; blend: the overlap
    row_starts: tuple[int, ...]  # distinct window tops (blend weights and banding need them)
    col_starts: tuple[int, ...]

    @property
    def window_shape(self) -> tuple[int, int]:
        return self.windows[0].height, self.windows[0].width

    @property
    def computed_pixels(self) -> int:
        return sum(w.height * w.width for w in self.windows)

    @property
    def overcompute(self) -> float:
        """Pixels the model computes per image pixel (1.0 = no waste)."""
        return self.computed_pixels / (self.height * self.width)


def whole_plan(height: int, width: int) -> TilePlan:
    window = Window(0, 0, height, width, 0, 0, height, width)
    return TilePlan(height, width, "whole", (window,), 0, (0,), (0,))


def plan_tiles(height: int, width: int, context: Context, tile: int, *, overlap: int) -> TilePlan:
    """Plan for forced `tile` (0 = whole image)."""
    if tile == 0 or (tile >= height and tile >= width):
        return whole_plan(height, width)
    if context.exact_tiling:
        rows, cols = math.ceil(height / tile), math.ceil(width / tile)
        return grid_plan(height, width, context, rows, cols, overlap=overlap)
    if tile <= 2 * overlap:
        raise LeansrError(f"tile size {tile} must be more than twice the overlap {overlap} (see --tile-overlap)")
    tile_h, tile_w = min(tile, height), min(tile, width)
    return _blend_plan(height, width, tile_h, tile_w, overlap, context.stride)


def grid_plan(height: int, width: int, context: Context, rows: int, cols: int, *, overlap: int) -> TilePlan:
    """A `rows` x `cols` grid: paste mode for local models, blend mode otherwise."""
    if rows == cols == 1:
        return whole_plan(height, width)
    if context.exact_tiling:
        return _paste_plan(height, width, rows, cols, context.radius, context.stride)
    tile_h = min(height, math.ceil((height + (rows - 1) * overlap) / rows))
    tile_w = min(width, math.ceil((width + (cols - 1) * overlap) / cols))
    return _blend_plan(height, width, max(tile_h, 2 * overlap + 1), max(tile_w, 2 * overlap + 1), overlap,
                       context.stride)


def cheapest_plan(
    height: int, width: int, context: Context, fits: Callable[[TilePlan], bool], *,
    overlap: int, min_tile: int,
) -> TilePlan | None:
    """The plan computing the fewest pixels that `fits` (the memory budget); None if none does."""
    whole = whole_plan(height, width)
    if fits(whole):
        return whole
    best: TilePlan | None = None
    for rows in range(1, max(1, height // min_tile) + 1):
        for cols in range(1, max(1, width // min_tile) + 1):
            if rows == cols == 1:
                continue
            plan = grid_plan(height, width, context, rows, cols, overlap=overlap)
            if not fits(plan):
                continue
            if best is None or plan.computed_pixels < best.computed_pixels:
                best = plan
            break  # more columns only add overlap at this row count
    return best


def _paste_plan(height: int, width: int, rows: int, cols: int, halo: int, stride: int) -> TilePlan:
    row_spans = _spans(height, rows, halo, stride)
    col_spans = _spans(width, cols, halo, stride)
    windows = tuple(
        Window(top, left, h, w, core_top, core_left, core_h, core_w)
        for top, h, core_top, core_h in row_spans
        for left, w, core_left, core_w in col_spans
    )
    return TilePlan(height, width, "paste", windows, halo,
                    tuple(dict.fromkeys(s[0] for s in row_spans)), tuple(dict.fromkeys(s[0] for s in col_spans)))


def _spans(length: int, parts: int, halo: int, stride: int) -> list[tuple[int, int, int, int]]:
    """(window start, window size, core start, core size) along one axis; all windows the same size."""
    bounds = [round(i * length / parts) for i in range(parts + 1)]
    cores = [(a, b - a) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
    size = min(length, max(c for _, c in cores) + 2 * halo + stride - 1)
    spans = []
    for start, core in cores:
        top = max(0, (start - halo) // stride * stride)
        top = min(top, length - size)
        spans.append((top, size, start, core))
    return spans


def _blend_plan(height: int, width: int, tile_h: int, tile_w: int, overlap: int, stride: int = 1) -> TilePlan:
    rows, cols = _starts(height, tile_h, overlap, stride), _starts(width, tile_w, overlap, stride)
    windows = tuple(Window(t, l, tile_h, tile_w, t, l, tile_h, tile_w) for t in rows for l in cols)
    return TilePlan(height, width, "blend", windows, overlap, tuple(rows), tuple(cols))


def _starts(length: int, size: int, overlap: int, stride: int) -> list[int]:
    """Blend tile origins, aligned down to the model's stride (the last stays flush with the far edge)."""
    starts = window_starts(length, size, size - overlap)
    if overlap < stride:  # aligning could open gaps between tiles
        return starts
    return sorted({s // stride * stride for s in starts[:-1]} | {starts[-1]})


def window_starts(length: int, size: int, step: int) -> list[int]:
    """Origins of equal windows `step` apart along one axis, the last one flush with the far edge."""
    if size >= length:
        return [0]
    return [*range(0, length - size, step), length - size]
