"""ARM routing in wall-clock time: routed runs against the full width on whole images, interleaved per image.

For each image (MATLAB-bicubic LR of the HR folder) the full width on the whole image and each routed setting
run alternately, `--repeats` times, best time kept, so load changes hit all alike; one thread. Reports the
summed time ratio and the Y-PSNR change. The routed time includes scoring, planning, network and merge.
`--widths` times narrower widths on the whole image too: the fixed choices routing has to beat.

    python benchmarks/bench_arm_time.py --weights ../shared/weights/chenbong-ARM-Net/arm-carn.pth \\
        --table carn_table.json --data ../shared/data/Set14 --budgets 0.7
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from leansr.arm.budget import run_budget, run_width
from leansr.arm.table import load_table, stored_table
from leansr.data.image_io import list_images, read_rgb_uint8
from leansr.data.imresize import bicubic_degrade, mod_crop
from leansr.loading import load_model
from leansr.metrics.psnr_ssim import psnr


def best_of(fn, repeats: int):
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", type=Path, required=True)
    p.add_argument("--table", type=Path, help="a table JSON (default: the one stored in --weights)")
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--budgets", type=float, nargs="+", default=[0.7])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--widths", type=int, nargs="*", default=[],
                   help="narrower widths to time too, each on the whole image (what routing must beat)")
    args = p.parse_args()
    torch.set_num_threads(1)
    model = load_model(args.weights).model
    table = load_table(args.table, model.arch) if args.table else stored_table(args.weights)
    if table is None:
        p.error(f"{args.weights} stores no routing table: pass --table")
    settings = [(b, c) for b in args.budgets for c in ("macs", "time")] + [(w, "width") for w in args.widths]
    totals = {"full": 0.0, **{s: 0.0 for s in settings}}
    deltas: dict = {s: [] for s in settings}
    fractions: dict = {s: [] for s in settings}
    for file in list_images(args.data):
        hr = mod_crop(read_rgb_uint8(file), model.scale)
        lr = bicubic_degrade(hr, model.scale)
        t, full = best_of(lambda: run_width(model, lr, model.widths[-1]), args.repeats)
        totals["full"] += t
        base = psnr(full.sr.astype(np.uint8), hr, border=model.scale)
        for b, c in settings:
            if c == "width":
                t, routed = best_of(lambda: run_width(model, lr, b), args.repeats)
            else:
                t, routed = best_of(lambda: run_budget(model, lr, table, b, cost=c), args.repeats)
            totals[(b, c)] += t
            deltas[(b, c)].append(psnr(routed.sr.astype(np.uint8), hr, border=model.scale) - base)
            fractions[(b, c)].append(routed.cost_fraction)
    for s in settings:
        name = f"--width {s[0]}" if s[1] == "width" else f"budget {s[0]} --cost {s[1]}"
        print(f"{name}: time {totals[s] / totals['full']:.2f} x full width, "
              f"MACs {np.mean(fractions[s]):.2f} x, Y-PSNR {np.mean(deltas[s]):+.3f} dB "
              f"({args.data.name}, {len(deltas[s])} images)")


if __name__ == "__main__":
    main()
