"""ARM routing: whole-image Y-PSNR against cost, the official routing beside ours, one supernet.

Rows: every fixed width on the whole image; the authors' routing (`--route official`, k values of the paper,
official LUT; it covers only the patch grid, so its Y-PSNR is compared with the full width on that same
region); our routing at several budgets (true MACs), table from `leansr arm calibrate` on training images.
Protocol of `leansr evaluate`: HR cropped to a multiple of 4, MATLAB-bicubic LR, 8-bit SR, Y BT.601, 4-px
border. Runtimes are wall time of the whole routed call (scores, planning, network, merge), one thread.

    .venv/bin/python benchmarks/bench_arm.py --weights ../shared/weights/chenbong-ARM-Net/arm-carn.pth \\
        --table /work/runs/arm/carn_table.json --lut ../shared/reference/arm_official_lut.json \\
        --data ../shared/data/Set5 ../shared/data/Set14 ../shared/data/BSD68 --json out.json
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np
import torch

from leansr.arm.budget import run_budget, run_width
from leansr.arm.official import run_official
from leansr.arm.options import evaluation_runner
from leansr.arm.table import load_table
from leansr.loading import load_model
from leansr.metrics.evaluate import evaluate_model

OFFICIAL_K = {"arm_carn": (1.30, 1.38, 1.94), "arm_fsrcnn": (0.85, 3.45, 4.0)}


def evaluate_rows(model, folders: list[Path], rows: dict) -> dict[str, dict]:
    out = {}
    for label, router in rows.items():
        per_set = {}
        for folder in folders:
            r = evaluate_model(model, folder, scale=model.scale, runner=evaluation_runner(router, official=False))
            per_set[folder.name] = {
                "psnr_y": r.psnr_y,
                "per_image_psnr_y": [s.psnr_y for s in r.per_image.values()],
                "cost_fraction": float(np.mean([s.routing["cost_fraction"] for s in r.per_image.values()])),
                "runtime_ms": float(np.sum([s.routing["runtime_ms"] for s in r.per_image.values()])),
            }
        out[label] = per_set
        print(label, {k: (round(v["psnr_y"], 3), round(v["cost_fraction"], 3)) for k, v in per_set.items()},
              flush=True)
    return out


def covered_full(model, router):
    """The full width cut to the region an official routing covers (same-region comparison)."""
    full = model.widths[-1]

    def run(lr):
        covered = router(lr)
        result = run_width(model, lr, full)
        h, w = covered.sr.shape[:2]
        result.sr = result.sr[:h, :w]
        return result

    return run


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", type=Path, required=True)
    p.add_argument("--table", type=Path, required=True, help="our calibrated table (JSON)")
    p.add_argument("--lut", type=Path, required=True, help="the official LUT file")
    p.add_argument("--data", type=Path, nargs="+", required=True)
    p.add_argument("--budgets", type=float, nargs="+", default=[0.5, 0.6, 0.7, 0.8, 0.9])
    p.add_argument("--time-budgets", type=float, nargs="*", default=[0.7], help="budgets with --cost time")
    p.add_argument("--only", help="run the rows whose label matches this regular expression")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model(args.weights).model
    ours, lut = load_table(args.table, model.arch), load_table(args.lut, model.arch)
    rows = {f"width {w}": (lambda lr, w=w: run_width(model, lr, w)) for w in model.routes}
    for k in OFFICIAL_K.get(model.arch, ()):
        official = (lambda lr, k=k: run_official(model, lr, lut, k))
        rows[f"official k={k}"] = official
        rows[f"full width on official k={k} region"] = covered_full(model, official)
    for b in args.budgets:
        rows[f"ours budget {b}"] = (lambda lr, b=b: run_budget(model, lr, ours, b))
    for b in args.time_budgets:
        rows[f"ours budget {b} (time)"] = (lambda lr, b=b: run_budget(model, lr, ours, b, cost="time"))
    if args.only:
        rows = {label: run for label, run in rows.items() if re.search(args.only, label)}
    results = {"model": model.arch, "rows": evaluate_rows(model, args.data, rows)}
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
