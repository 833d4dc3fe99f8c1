"""End to end: `leansr upscale` with default settings versus the plain way, as separate processes.

`leansr upscale` runs as a user starts it (`python -m leansr`, torch's default threads: one per core). The
plain way is what an official test script does: load the checkpoint, run the whole image eagerly on
a contiguous NCHW tensor under `torch.no_grad()`, write the PNG with OpenCV (its default PNG level). Both
run the same RLFN_ntire weights (../shared, else random weights of that architecture) on LR photos made
from the first training photo, 2 threads each; the two take turns in every repeat, so load from other
processes hits them alike. Reported: median wall time of each, their ratio, the pixels the engine computes
per image pixel, and the peak RSS of each process.

    .venv/bin/python benchmarks/bench_end_to_end.py --sizes 960x720 2048x2048 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from leansr import create_model, load_model, save_checkpoint
from leansr.engine import TileSettings, plan_for

SHARED = Path(__file__).resolve().parents[2] / "shared"
OFFICIAL = SHARED / "weights" / "bytedance-RLFN" / "rlfn_ntire_x4.pth"

PLAIN = r"""
import sys, torch, cv2, numpy as np
torch.set_num_threads(2)
from leansr.checkpoint import read_state_dict
from leansr.models.rlfn import RLFN
state, _ = read_state_dict(sys.argv[1])
state = {k.replace('fea_conv.', 'conv_1.'): v for k, v in state.items()}
model = RLFN(channels=46, mid_channels=48, num_blocks=4).eval()
model.load_state_dict(state)
lr = cv2.imread(sys.argv[2], cv2.IMREAD_COLOR)[:, :, ::-1]
x = torch.from_numpy(np.ascontiguousarray(lr)).permute(2, 0, 1)[None].float().div(255).contiguous()
with torch.no_grad():
    sr = model(x)
out = (sr[0].clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
cv2.imwrite(sys.argv[3], np.ascontiguousarray(out[:, :, ::-1]))
"""

def make_photo(size: tuple[int, int], folder: Path) -> Path:
    train = sorted(p for p in (SHARED / "data" / "train").glob("*") if p.suffix.lower() in (".png", ".jpg"))
    if train:
        image = cv2.imread(str(train[0]), cv2.IMREAD_COLOR)
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    else:
        image = (np.random.default_rng(0).random((size[1], size[0], 3)) * 255).astype(np.uint8)
    path = folder / f"lr_{size[0]}x{size[1]}.png"
    cv2.imwrite(str(path), image)
    return path


def timed(command: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (GiB) of one child process."""
    start = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    elapsed = time.perf_counter() - start
    if status != 0:
        raise SystemExit(child.stderr.read().decode())
    return elapsed, usage.ru_maxrss / 2**20  # KiB -> GiB


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", nargs="+", default=["960x720", "2048x2048"])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        weights = OFFICIAL if OFFICIAL.is_file() else save_checkpoint(
            create_model("rlfn_ntire"), folder / "rlfn_ntire.safetensors")
        descriptor = load_model(weights)
        rows = []
        for size in args.sizes:
            width, height = map(int, size.split("x"))
            lr = make_photo((width, height), folder)
            x = torch.zeros(1, 3, height, width)
            plan, _ = plan_for(descriptor, x, TileSettings(), torch.device("cpu"), "fp32", notice=lambda m: None)
            times: dict[str, list[float]] = {"plain": [], "leansr": []}
            rss: dict[str, float] = {}
            for _ in range(args.repeats):
                t, rss["plain"] = timed([sys.executable, "-c", PLAIN, str(weights), str(lr), str(folder / "p.png")])
                times["plain"].append(t)
                t, rss["leansr"] = timed([sys.executable, "-m", "leansr", "upscale", str(lr), "-o", str(folder / "ours"),
                                          "--weights", str(weights), "--overwrite"])
                times["leansr"].append(t)
            plain, ours = statistics.median(times["plain"]), statistics.median(times["leansr"])
            rows.append({"size": size, "plain_s": round(plain, 2), "leansr_s": round(ours, 2),
                         "ratio": round(ours / plain, 3), "computed_pixels": round(plan.overcompute, 3),
                         "plan": f"{plan.mode}, {len(plan.windows)} window(s)",
                         "rss_plain_gib": round(rss["plain"], 2), "rss_leansr_gib": round(rss["leansr"], 2)})
            print(json.dumps(rows[-1]), flush=True)
    print("| LR size | plain (s) | leansr upscale (s) | ratio | pixels computed | plan | peak RSS plain / leansr (GiB) |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['size']} | {r['plain_s']} | {r['leansr_s']} | {r['ratio']} | {r['computed_pixels']}x | {r['plan']} "
              f"| {r['rss_plain_gib']} / {r['rss_leansr_gib']} |")


if __name__ == "__main__":
    main()
