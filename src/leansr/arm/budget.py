"""Our routing: every LR pixel covered, tiles routed to meet a cost budget at the least predicted MSE.

The image is cut into `tile` x `tile` cores (the last row/column narrower). Neighbouring cores of one route
in a row run together in one window, and the rows below that repeat such a run exactly (same route, same
columns) join its window, which gets `halo` pixels of context on each side that is not the image border (the
network sees the true border there). Only the cores are kept: no averaging, no seams (a halo of 2 px costs
< 0.003 dB against the whole-image forward of ARM-CARN). The route of each core minimises
`pixels * MSE_j + lambda * C_j`; lambda is found by bisection so the executed cost, halos included, stays
within the budget (a fraction of the full width on the whole image, in MACs or in measured time; in time,
each batched call also pays a measured overhead, and the time spent scoring the tiles counts). Every route,
bicubic included, runs on its windows only, and the windows of one route and size run as batches.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import cached_property
from typing import Callable

import numpy as np
import torch

from leansr.arm.batching import run_patches
from leansr.arm.costs import route_costs
from leansr.arm.edge import edge_score
from leansr.arm.official import RoutedResult
from leansr.arm.table import QualityTable
from leansr.arm.timing import call_times, route_times, whole_image_time
from leansr.errors import LeansrError
from leansr.models.arm import SlimmableSR

DEFAULT_TILE, DEFAULT_HALO = 32, 2
COSTS = ("macs", "time")


@dataclass(frozen=True)
class Span:
    start: int  # core, in LR pixels
    stop: int
    window: int  # first pixel of the window holding the core


def spans(length: int, tile: int, halo: int) -> tuple[list[Span], int]:
    """Cores covering `length`, each with its window start; and the common window length."""
    window = min(length, tile + 2 * halo)
    out = [Span(s, min(s + tile, length), min(max(s - halo, 0), length - window)) for s in range(0, length, tile)]
    return out, window


def check_budget(budget: float) -> float:
    if not (0.0 < budget <= 1.0):
        raise LeansrError(f"--budget must be a fraction in (0, 1] of the full-width cost, not {budget}")
    return budget


def choose(mse: np.ndarray, areas: np.ndarray, costs: np.ndarray, limit: float,
           spent: Callable[[np.ndarray], float] | None = None) -> np.ndarray:
    """Route per tile minimising sum(area * mse) with cost <= limit, by bisection on the multiplier.

    mse: (routes, tiles) predicted MSE; areas: (tiles,) core pixels; costs: (routes,) or (routes, tiles)
    nominal cost of a tile on each route; `spent(choice)`: the exact cost of a choice (default: the sum of
    nominal costs), which may share work between neighbours.
    """
    loss = mse * areas[None, :]
    costs = np.broadcast_to(costs[:, None] if costs.ndim == 1 else costs, loss.shape)
    tiles = np.arange(areas.size)
    if spent is None:
        def spent(choice: np.ndarray) -> float:
            return float(costs[choice, tiles].sum())

    def pick(lam: float) -> np.ndarray:
        return np.argmin(loss + lam * costs, axis=0)

    best = pick(0.0)
    if spent(best) <= limit:
        return best
    # A tile's choice changes only at the multipliers where two of its routes tie: bisect over those.
    dl, dc = loss[:, None, :] - loss[None, :, :], costs[None, :, :] - costs[:, None, :]
    trade = (dl > 0) & (dc > 0)  # route k costs more than route j and loses less
    ties = np.unique(dl[trade] / dc[trade]) * (1 + 1e-9)  # just past each tie
    lo, hi = -1, ties.size - 1  # ties[hi] fits (or is the cheapest choice there is); ties[lo] does not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if spent(pick(float(ties[mid]))) > limit else (lo, mid)
    hi = float(ties[hi]) if ties.size else 0.0
    return _fill(pick(hi), loss, costs, limit, spent)


def _fill(choice: np.ndarray, loss: np.ndarray, costs: np.ndarray, limit: float,
          spent: Callable[[np.ndarray], float]) -> np.ndarray:
    """Spend what the multiplier left over: upgrades by loss saved per nominal extra cost, if they fit."""
    tiles = np.arange(choice.size)
    saved = loss[choice, tiles][None, :] - loss
    extra = costs - costs[choice, tiles][None, :]
    ratio = np.where((saved > 0) & (extra > 0), saved / np.where(extra > 0, extra, 1.0), -np.inf)
    for flat in np.argsort(-ratio, axis=None):
        j, i = np.unravel_index(int(flat), ratio.shape)
        if not np.isfinite(ratio[j, i]):
            break
        if loss[j, i] >= loss[choice[i], i]:
            continue  # an earlier upgrade of this tile already did better
        trial = choice.copy()
        trial[i] = j
        if spent(trial) <= limit:
            choice = trial
    return choice


@dataclass(frozen=True)
class Window:
    """A rectangle of tiles of one route, run as one window: tile rows top..bottom, columns first..last."""
    top: int
    bottom: int
    first: int
    last: int
    route: int


@dataclass
class Plan:
    rows: list[Span]
    cols: list[Span]
    halo: int
    height: int  # LR image height
    width: int  # LR image width
    choices: np.ndarray  # route index per tile, row-major
    route_count: int = 0
    whole: bool = False  # one width on the whole image (all choices equal) beat every tiled plan

    @property
    def tiles(self) -> list[tuple[Span, Span]]:
        return [(r, c) for r in self.rows for c in self.cols]

    def _grid(self, choices: np.ndarray | None) -> np.ndarray:
        return (self.choices if choices is None else choices).reshape(len(self.rows), len(self.cols))

    def _runs(self, grid: np.ndarray) -> tuple[np.ndarray, ...]:
        """Per tile: does a run start / end here, its run's first and last column, and whether the tile
        above (below) sits in a run of the same route and columns (so both rows share one window)."""
        starts = np.ones(grid.shape, dtype=bool)
        starts[:, 1:] = grid[:, 1:] != grid[:, :-1]
        ends = np.ones(grid.shape, dtype=bool)
        ends[:, :-1] = grid[:, :-1] != grid[:, 1:]
        col = np.arange(grid.shape[1])
        first = np.maximum.accumulate(np.where(starts, col, 0), axis=1)
        last = np.minimum.accumulate(np.where(ends, col, col[-1])[:, ::-1], axis=1)[:, ::-1]
        above = np.zeros(grid.shape, dtype=bool)
        above[1:] = (grid[1:] == grid[:-1]) & (first[1:] == first[:-1]) & (last[1:] == last[:-1])
        below = np.zeros(grid.shape, dtype=bool)
        below[:-1] = above[1:]
        return starts, ends, first, last, above, below

    def windows(self, choices: np.ndarray | None = None) -> list[Window]:
        """The runs of equal routes in each row of tiles, stacked where the rows below repeat them exactly."""
        grid = self._grid(choices)
        starts, _, first, last, above, _ = self._runs(grid)
        out = []
        for r, c in zip(*np.nonzero(starts & ~above)):
            bottom = r
            while bottom + 1 < grid.shape[0] and above[bottom + 1, c]:
                bottom += 1
            out.append(Window(int(r), int(bottom), int(c), int(last[r, c]), int(grid[r, c])))
        return out

    @cached_property
    def _spans(self) -> tuple[np.ndarray, ...]:
        """Core sizes of the tile rows and columns, and the halo each side of them gets (none past the image)."""
        def sides(cores: list[Span], length: int) -> tuple[np.ndarray, ...]:
            return (np.array([c.stop - c.start for c in cores]), np.array([min(self.halo, c.start) for c in cores]),
                    np.array([min(self.halo, length - c.stop) for c in cores]))
        return (*sides(self.rows, self.height), *sides(self.cols, self.width))

    def window_pixels(self, choices: np.ndarray | None = None) -> np.ndarray:
        """LR pixels the windows of each route cover: cores, plus a halo on each side of a window."""
        grid = self._grid(choices)
        return self._pixels(grid, self._runs(grid))

    def calls(self, choices: np.ndarray | None = None) -> np.ndarray:
        """Batched calls of each route: one per distinct window size (windows of one size run as a batch)."""
        grid = self._grid(choices)
        return self._calls(grid, self._runs(grid))

    def usage(self, choices: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """`window_pixels` and `calls` of one choice, its runs found once (the planner asks for both)."""
        grid = self._grid(choices)
        runs = self._runs(grid)
        return self._pixels(grid, runs), self._calls(grid, runs)

    def _pixels(self, grid: np.ndarray, runs: tuple[np.ndarray, ...]) -> np.ndarray:
        """Called for every candidate choice while planning, so it is vectorised: a tile adds its share of its
        window's width (its core, plus the halo where its run starts or ends) times its row's share of the
        window's height (the core, plus the halo where the stack of runs starts or ends)."""
        heights, top, bottom, widths, left, right = self._spans
        starts, ends, _, _, above, below = runs
        span_x = widths[None, :] + starts * left[None, :] + ends * right[None, :]
        span_y = heights[:, None] + ~above * top[:, None] + ~below * bottom[:, None]
        return np.bincount(grid.ravel(), weights=(span_x * span_y).ravel(), minlength=self.route_count)

    def _calls(self, grid: np.ndarray, runs: tuple[np.ndarray, ...]) -> np.ndarray:
        heights, top, bottom, widths, left, right = self._spans
        starts, _, _, last, above, _ = runs
        down = np.zeros(grid.shape, dtype=np.int64)  # rows below a tile that its window stacks
        for r in range(grid.shape[0] - 2, -1, -1):
            down[r] = np.where(above[r + 1], down[r + 1] + 1, 0)
        r, c = np.nonzero(starts & ~above)
        b, e = r + down[r, c], last[r, c]
        ys, xs = np.concatenate([[0], np.cumsum(heights)]), np.concatenate([[0], np.cumsum(widths)])
        box_h, box_w = ys[b + 1] - ys[r] + top[r] + bottom[b], xs[e + 1] - xs[c] + left[c] + right[e]
        side = max(self.height, self.width) + 1
        sizes = np.unique((grid[r, c] * side + box_h) * side + box_w)  # one integer per (route, height, width)
        return np.bincount(sizes // (side * side), minlength=self.route_count)

    def box(self, window: Window) -> tuple[int, int, int, int]:
        """LR pixels (top, bottom, left, right) a window reads: its cores plus the halo, inside the image."""
        return (max(self.rows[window.top].start - self.halo, 0),
                min(self.rows[window.bottom].stop + self.halo, self.height),
                max(self.cols[window.first].start - self.halo, 0),
                min(self.cols[window.last].stop + self.halo, self.width))


def plan_budget(
    model: SlimmableSR, lr: np.ndarray, table: QualityTable, budget: float, *, cost: str = "macs",
    tile: int = DEFAULT_TILE, halo: int = DEFAULT_HALO,
) -> Plan:
    """Routes of the tiles of `lr` within `budget`; a single whole-image width when it is predicted better.

    Neighbouring tiles of one route in a row run as one window, and rows that repeat it exactly below join
    that window, so halos are paid where routes change; on small images one width on the whole image can
    still beat any mix.
    """
    check_budget(budget)
    if cost not in COSTS:
        raise LeansrError(f"--cost must be one of {', '.join(COSTS)}, not {cost!r}")
    h, w = lr.shape[:2]
    rows, win_h = spans(h, tile, halo)
    cols, win_w = spans(w, tile, halo)
    plan = Plan(rows, cols, halo, h, w, np.zeros(0, dtype=np.int64), len(model.routes))
    start = time.perf_counter()
    scores = np.array([edge_score(lr[r.start:r.stop, c.start:c.stop]) for r, c in plan.tiles])
    mse = table.predict_mse(scores)
    scoring = time.perf_counter() - start  # in time, already spent out of the budget
    widths = np.array([c.stop - c.start for _, c in plan.tiles], dtype=np.float64)
    areas = np.array([r.stop - r.start for r, _ in plan.tiles], dtype=np.float64) * widths
    device = next(model.parameters()).device
    per_pixel, per_call = _unit_costs(model, cost, (win_h, win_w), device)
    nominal = per_pixel[:, None] * areas[None, :]  # ranks upgrades; `spent` adds the halos and calls
    reference = whole_image_time(model, device) if cost == "time" else per_pixel[-1]
    limit = budget * reference * h * w - (scoring if cost == "time" else 0.0)

    def spent(choice: np.ndarray) -> float:
        if not per_call.any():
            return float(per_pixel @ plan.window_pixels(choice))
        pixels, calls = plan.usage(choice)
        return float(per_pixel @ pixels + per_call @ calls)

    plan.choices = choose(mse, areas, nominal, limit, spent)
    best = float((mse[plan.choices, np.arange(areas.size)] * areas).sum())
    for j in range(len(model.routes)):
        loss = float((mse[j] * areas).sum())
        whole = per_pixel[j] * reference / per_pixel[-1]  # in time, a whole image is slower than windows
        if whole * h * w <= limit and loss <= best:
            plan.choices, plan.whole, best = np.full(areas.size, j), True, loss
    return plan


def run_budget(
    model: SlimmableSR, lr: np.ndarray, table: QualityTable, budget: float, *, cost: str = "macs",
    tile: int = DEFAULT_TILE, halo: int = DEFAULT_HALO,
) -> RoutedResult:
    """Super-resolve the HxWx3 uint8 `lr` within `budget` x the full width's cost on the whole image."""
    start = time.perf_counter()
    plan = plan_budget(model, lr, table, budget, cost=cost, tile=tile, halo=halo)
    if plan.whole:
        result = run_width(model, lr, model.routes[int(plan.choices[0])])
        sr, fraction = result.sr, result.cost_fraction
    else:
        sr, fraction = execute(model, lr, plan), _fraction(model, plan, lr.shape[0] * lr.shape[1])
    runtime_ms = (time.perf_counter() - start) * 1e3
    s = model.scale
    boxes = [(r.start * s, c.start * s, (r.stop - r.start) * s, (c.stop - c.start) * s) for r, c in plan.tiles]
    counts = np.bincount(plan.choices, minlength=len(model.routes)).tolist()
    return RoutedResult(sr, plan.choices.reshape(len(plan.rows), len(plan.cols)), counts, fraction, runtime_ms,
                        boxes)


def _fraction(model: SlimmableSR, plan: Plan, pixels: int) -> float:
    """Executed true MACs (bicubic counts none) over the full width's on the whole image."""
    macs = np.array([c.macs for c in route_costs(model).values()])
    return float(macs @ plan.window_pixels() / (macs[-1] * pixels))


def _unit_costs(model: SlimmableSR, cost: str, window: tuple[int, int],
                device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    """Each route's cost per window pixel and per batched call (MACs do not depend on calls)."""
    if cost == "time":
        return (np.asarray(route_times(model, window, device), dtype=np.float64),
                np.asarray(call_times(model, window, device), dtype=np.float64))
    macs = np.array([c.macs for c in route_costs(model).values()], dtype=np.float64)
    return macs, np.zeros_like(macs)


def execute(model: SlimmableSR, lr: np.ndarray, plan: Plan) -> np.ndarray:
    """Run a tiled plan: HxWx3 float64 SR on 0-255, rounded to 8-bit values.

    Every route runs on its windows, bicubic included (its 4 taps need 2 px of context: exact with the
    default halo); the windows of each route are batched by size, and only their cores are kept.
    """
    s, device = model.scale, next(model.parameters()).device
    x = torch.from_numpy(np.ascontiguousarray(lr)).permute(2, 0, 1)[None].float().div(255.0)
    out = torch.empty(1, 3, lr.shape[0] * s, lr.shape[1] * s)
    groups: dict[tuple[int, int, int], list[tuple[Window, tuple[int, int, int, int]]]] = {}
    for win in plan.windows():
        top, bottom, left, right = box = plan.box(win)
        groups.setdefault((win.route, bottom - top, right - left), []).append((win, box))
    for (route, _, _), members in groups.items():
        batch = torch.cat([x[..., top:bottom, left:right] for _, (top, bottom, left, right) in members])
        sr = run_patches(lambda b, wd=model.routes[route]: model.forward_width(b, wd), batch, device=device)
        for (win, (top, _, left, _)), patch in zip(members, sr):
            y0, y1 = plan.rows[win.top].start, plan.rows[win.bottom].stop
            x0, x1 = plan.cols[win.first].start, plan.cols[win.last].stop
            out[0, :, y0 * s:y1 * s, x0 * s:x1 * s] = patch[
                :, (y0 - top) * s:(y1 - top) * s, (x0 - left) * s:(x1 - left) * s]
    return np.floor(out[0].clamp(0, 1).permute(1, 2, 0).double().numpy() * 255.0 + 0.5)


def run_width(model: SlimmableSR, lr: np.ndarray, width: int) -> RoutedResult:
    """The whole image at one width (0 = bicubic), one forward."""
    model.check_width(width)
    start = time.perf_counter()
    x = torch.from_numpy(np.ascontiguousarray(lr)).permute(2, 0, 1)[None].float().div(255.0)
    with torch.inference_mode():
        sr = model.forward_width(x.to(next(model.parameters()).device), width).cpu()
    runtime_ms = (time.perf_counter() - start) * 1e3
    macs = route_costs(model)
    counts = [int(r == width) for r in model.routes]
    out = np.floor(sr[0].clamp(0, 1).permute(1, 2, 0).double().numpy() * 255.0 + 0.5)
    h, w = out.shape[:2]
    return RoutedResult(out, np.array([[model.routes.index(width)]]), counts,
                        macs[width].macs / macs[model.widths[-1]].macs, runtime_ms, [(0, 0, h, w)])
