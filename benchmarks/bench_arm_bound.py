"""The best any tile router could do with a supernet: an upper bound on ARM routing quality at a budget.

For each image (MATLAB-bicubic LR of the HR folder) every route runs on the whole image; the squared Y error
of each route on each `--tile` x `--tile` core (HR border of `scale` px excluded, as `leansr evaluate`) is then
known exactly, and the routes are chosen per image to minimise the summed error within the budget
(`leansr.arm.budget.choose`: Lagrangian bisection, then the leftover spent greedily). No predictor, no halos,
no seams: every tile gets its whole-image quality, and costs count the cores only:

- `macs`: a tile costs its pixels x the route's true MACs per pixel; the budget is a fraction of the full
  width's MACs on the whole image (what `--budget F` means).
- `time`: a tile costs its pixels x the route's measured time per pixel on batches of (tile + 4)^2 windows,
  over the full width's per-pixel time on a whole 128x128 image (what `--budget F --cost time` plans with,
  halos left out: still optimistic).

A real router can only do worse (up to the little the greedy leftover step may miss against an exact
knapsack), so a target the bound misses cannot be met by routing that supernet's tiles.
Where the rest goes: `planner, true MSE` runs our planner and executor (`run_budget`: windows, halos, exact
executed cost) with the true per-tile errors as its prediction, and with `--table FILE` the same with the
calibrated table, as `--budget` does; the gaps are the cost of halos and the cost of the prediction.

    .venv/bin/python benchmarks/bench_arm_bound.py --weights ../shared/weights/chenbong-ARM-Net/arm-carn.pth \\
        --data ../shared/data/Set5 ../shared/data/Set14 ../shared/data/BSD68 --budgets 0.7 0.8 --table carn_table.json
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import torch

from leansr.arm.budget import DEFAULT_TILE, choose, run_budget, run_width
from leansr.arm.costs import route_costs
from leansr.arm.table import load_table
from leansr.arm.timing import route_times, whole_image_time
from leansr.data.image_io import list_images, read_rgb_uint8
from leansr.data.imresize import bicubic_degrade, mod_crop
from leansr.loading import load_model
from leansr.metrics.psnr_ssim import psnr, rgb_to_y


class TrueErrors:
    """A stand-in for the quality table that "predicts" each tile's true MSE (set per image)."""

    mse: np.ndarray

    def predict_mse(self, scores: np.ndarray) -> np.ndarray:
        return self.mse


def tile_errors(model, hr: np.ndarray, lr: np.ndarray, tile: int) -> tuple[np.ndarray, np.ndarray]:
    """(routes, tiles) summed squared Y error of each route's whole-image output per core; (tiles,) LR areas."""
    s = model.scale
    mask = np.zeros(hr.shape[:2])
    mask[s:-s, s:-s] = 1.0
    y_hr = rgb_to_y(hr)
    rows, cols = range(0, lr.shape[0], tile), range(0, lr.shape[1], tile)
    errors = []
    for width in model.routes:
        err = (rgb_to_y(run_width(model, lr, width).sr) - y_hr) ** 2 * mask
        errors.append([err[r * s:(r + tile) * s, c * s:(c + tile) * s].sum() for r in rows for c in cols])
    areas = [min(tile, lr.shape[0] - r) * min(tile, lr.shape[1] - c) for r in rows for c in cols]
    return np.array(errors), np.array(areas, dtype=np.float64)


def per_pixel_costs(model, cost: str, tile: int) -> np.ndarray:
    if cost == "macs":
        macs = np.array([c.macs for c in route_costs(model).values()])
        return macs / macs[-1]
    cpu = torch.device("cpu")
    return np.array(route_times(model, (tile + 4, tile + 4), cpu)) / whole_image_time(model, cpu)


def psnr_of(sse: float, pixels: int) -> float:
    return 10.0 * math.log10(255.0**2 * pixels / sse)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", required=True)
    p.add_argument("--data", type=Path, nargs="+", required=True)
    p.add_argument("--budgets", type=float, nargs="+", default=[0.7])
    p.add_argument("--cost", choices=("macs", "time"), default="macs")
    p.add_argument("--tile", type=int, default=DEFAULT_TILE)
    p.add_argument("--table", type=Path, help="also route with this calibrated table (JSON)")
    args = p.parse_args()
    torch.set_num_threads(1)
    model = load_model(args.weights).model
    costs = per_pixel_costs(model, args.cost, args.tile)
    print(f"{args.weights}: routes {model.routes}, {args.cost} per pixel / full width on a whole image: "
          + ", ".join(f"{c:.2f}" for c in costs))
    predictors = {"planner, true MSE": TrueErrors()}
    if args.table:
        predictors["planner, table"] = load_table(args.table, model.arch)
    for folder in args.data:
        deltas: dict[tuple[str, float], list[float]] = {}
        shares: dict[float, np.ndarray] = {b: np.zeros(len(model.routes)) for b in args.budgets}
        count = 0
        for file in list_images(folder):
            hr = mod_crop(read_rgb_uint8(file), model.scale)
            lr = bicubic_degrade(hr, model.scale)
            errors, areas = tile_errors(model, hr, lr, args.tile)
            pixels = (hr.shape[0] - 2 * model.scale) * (hr.shape[1] - 2 * model.scale)
            full = psnr_of(errors[-1].sum(), pixels)
            predictors["planner, true MSE"].mse = errors / areas[None, :]
            count += 1
            for b in args.budgets:
                choice = choose(errors / areas[None, :], areas, costs[:, None] * areas[None, :], b * areas.sum())
                deltas.setdefault(("bound", b), []).append(
                    psnr_of(errors[choice, np.arange(areas.size)].sum(), pixels) - full)
                shares[b] += np.bincount(choice, weights=areas, minlength=len(model.routes)) / areas.sum()
                if args.tile != DEFAULT_TILE:
                    continue  # the planner's tiles are DEFAULT_TILE: the true errors would not fit them
                for name, predictor in predictors.items():
                    sr = run_budget(model, lr, predictor, b, cost=args.cost).sr
                    deltas.setdefault((name, b), []).append(psnr(sr.astype(np.uint8), hr, border=model.scale) - full)
        for (name, b), d in deltas.items():
            line = f"{folder.name} ({count} images), budget {b} ({args.cost}), {args.tile}-px tiles, {name}: " \
                   f"{np.mean(d):+.3f} dB Y-PSNR vs full width, worst image {min(d):+.3f}"
            if name == "bound":
                mix = zip(model.routes, shares[b] / count)
                line += "; pixels per route " + ", ".join(f"{r}: {share:.0%}" for r, share in mix)
            print(line)


if __name__ == "__main__":
    main()
