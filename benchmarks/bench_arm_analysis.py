"""Why ARM routing saves MACs but not time on small images: the figures behind docs/benchmarks.md (arm_x4).

- widths: time of each width of a 32-channel `arm_plain` (random weights) on one 128x128 image, relative to
  the full width (oneDNN's 16-channel blocks: width 24 costs what 32 does).
- windows: per-LR-pixel time of each route on batches of windows (`leansr.arm.timing.route_times`), relative
  to the full width on one whole 128x128 image (`whole_image_time`), for the window sizes a plan produces.
- oracle: whole-image outputs of width 16 and the full width; the 32-px tiles with the lowest edge scores take
  width 16 until a fraction of the pixels is reached; mean Y-PSNR change per dataset. No halos, no table:
  the best an edge-ranked router could do.
- halo: a checkerboard of widths (the worst case for seams) run by the tiled executor with halos of 2/4/8 px,
  against the same mix cut from whole-image outputs.

    .venv/bin/python benchmarks/bench_arm_analysis.py --weights arm_x4 --data ../shared/data/Set14 ../shared/data/BSD68
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from leansr.arm.budget import Plan, execute, run_width, spans
from leansr.arm.edge import edge_score
from leansr.arm.timing import route_times, whole_image_time
from leansr.data.image_io import list_images, read_rgb_uint8
from leansr.data.imresize import bicubic_degrade, mod_crop
from leansr.loading import load_model
from leansr.metrics.psnr_ssim import psnr
from leansr.registry import create_model

TILE = 32


def width_times() -> None:
    model = create_model("arm_plain", channels=32, widths=[8, 16, 24, 32]).eval()
    x = torch.rand(1, 3, 128, 128)
    best = {}
    with torch.inference_mode():
        for _ in range(20):
            for w in model.routes:
                start = time.perf_counter()
                model.forward_width(x, w)
                best[w] = min(best.get(w, 1e9), time.perf_counter() - start)
    print("widths (time / width 32): " + ", ".join(f"{w}: {t / best[32]:.2f}" for w, t in best.items()))


def window_costs(model) -> None:
    ref = whole_image_time(model, torch.device("cpu"))
    for window in ((TILE + 4, TILE + 4), (TILE + 4, 2 * TILE + 4), (TILE + 4, 4 * TILE + 2)):
        costs = route_times(model, window, torch.device("cpu"))
        print(f"window {window}: per pixel / whole image, routes {model.routes}: "
              + ", ".join(f"{c / ref:.2f}" for c in costs))


def pairs(folder: Path, model):
    for file in list_images(folder):
        hr = mod_crop(read_rgb_uint8(file), model.scale)
        lr = bicubic_degrade(hr, model.scale)
        yield hr, lr, {w: run_width(model, lr, w).sr for w in model.widths}


def oracle(model, folder: Path, fractions=(0.2, 0.3, 0.4, 0.5)) -> None:
    narrow, full, s = model.widths[0], model.widths[-1], model.scale
    deltas = {f: [] for f in fractions}
    for hr, lr, out in pairs(folder, model):
        base = psnr(out[full].astype(np.uint8), hr, border=s)
        tiles = [(r, c) for r in range(0, lr.shape[0], TILE) for c in range(0, lr.shape[1], TILE)]
        order = np.argsort([edge_score(lr[r:r + TILE, c:c + TILE]) for r, c in tiles])
        for f in fractions:
            mix, covered = out[full].copy(), 0
            for i in order:
                r, c = tiles[i]
                core = np.s_[r * s:(r + TILE) * s, c * s:(c + TILE) * s]
                if covered + mix[core][..., 0].size > f * hr.shape[0] * hr.shape[1]:
                    break
                mix[core] = out[narrow][core]
                covered += mix[core][..., 0].size
            deltas[f].append(psnr(mix.astype(np.uint8), hr, border=s) - base)
    print(f"oracle {folder.name}: " + ", ".join(f"{f:.0%} at width {narrow}: {np.mean(d):+.3f} dB"
                                              for f, d in deltas.items()))


def halo(model, folder: Path) -> None:
    narrow, full, s = model.widths[0], model.widths[-1], model.scale
    for h in (2, 4, 8):
        deltas = []
        for hr, lr, out in pairs(folder, model):
            rows, _ = spans(lr.shape[0], TILE, h)
            cols, _ = spans(lr.shape[1], TILE, h)
            grid = np.add.outer(np.arange(len(rows)), np.arange(len(cols))) % 2  # 1 = full width
            routes = np.where(grid.ravel() == 1, len(model.routes) - 1, 1)
            tiled = execute(model, lr, Plan(rows, cols, h, lr.shape[0], lr.shape[1], routes, len(model.routes)))
            mask = np.kron(grid, np.ones((TILE * s, TILE * s)))[:hr.shape[0], :hr.shape[1], None] == 1
            mix = np.where(mask, out[full], out[narrow])
            deltas.append(psnr(tiled.astype(np.uint8), hr, border=s) - psnr(mix.astype(np.uint8), hr, border=s))
        print(f"halo {h} px, checkerboard of widths, {folder.name}: {np.mean(deltas):+.4f} dB vs whole-image outputs")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", default="arm_x4")
    p.add_argument("--data", type=Path, nargs="+", required=True)
    args = p.parse_args()
    torch.set_num_threads(1)
    model = load_model(args.weights).model
    width_times()
    window_costs(model)
    for folder in args.data:
        oracle(model, folder)
    halo(model, args.data[0])


if __name__ == "__main__":
    main()
