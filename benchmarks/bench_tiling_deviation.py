"""How far forced tiling moves the output of models that are not local (RLFN, E-RFDN: ESA's pooling grid).

Each official checkpoint upscales LR photos (the first training photos, MATLAB-style bicubic x1/2: about
512x384) whole and with forced tiles, at the default blending overlap and at an overlap covering the
model's ESA receptive field (the radius its context declares); deviations are on the 8-bit scale (gray
levels) after clamping and rounding.

    .venv/bin/python benchmarks/bench_tiling_deviation.py --tile 300
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from leansr import load_model
from leansr.data.image_io import read_rgb_uint8
from leansr.data.imresize import bicubic_degrade, mod_crop
from leansr.engine import DEFAULT_OVERLAP, upscale_tensor

SHARED = Path(__file__).resolve().parents[2] / "shared"
CHECKPOINTS = ("bytedance-RLFN/rlfn_ntire_x4.pth", "njulj-RFDN/RFDN_AIM.pth")


def to_uint8(x: torch.Tensor) -> np.ndarray:
    return (x.clamp(0, 1) * 255).round().to(torch.int16).numpy()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tile", type=int, default=300)
    parser.add_argument("--images", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(2)
    files = sorted(p for p in (SHARED / "data" / "train").glob("*") if p.suffix.lower() in (".png", ".jpg"))
    files = files[:args.images]
    print(f"| model | overlap (LR px) | max dev. (gray levels) | mean dev. | pixels off by > 1 |")
    print("|---|---|---|---|---|")
    for checkpoint in CHECKPOINTS:
        d = load_model(SHARED / "weights" / checkpoint)
        for overlap in (DEFAULT_OVERLAP, d.context.radius):
            devs, over = [], 0
            for f in files:
                lr = bicubic_degrade(mod_crop(read_rgb_uint8(f), 2), 2)
                x = torch.from_numpy(lr).permute(2, 0, 1)[None].float() / 255
                whole = to_uint8(upscale_tensor(d, x, tile=0))
                tiled = to_uint8(upscale_tensor(d, x, tile=max(args.tile, 2 * overlap + 8), tile_overlap=overlap,
                                                notice=lambda m: None))
                diff = np.abs(whole - tiled)
                devs.append(diff)
                over += int((diff > 1).sum())
            allv = np.concatenate([v.ravel() for v in devs])
            print(f"| {d.arch} | {overlap} | {allv.max()} | {allv.mean():.4f} | {over} |", flush=True)


if __name__ == "__main__":
    main()
