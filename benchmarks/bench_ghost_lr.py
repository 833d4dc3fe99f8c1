"""GhostSR fine-tuning: which peak learning rate moves a converted model fastest towards the original.

Converts WEIGHTS once (`leansr.ghost.convert`, 64 calibration patches from --data; `--free`: consumer taps on
ghosts fitted freely, not tied), then for each --lr fine-tunes a fresh copy of it for --steps steps by
distillation from the original (L1 to its output, batch 8 of 48 px flipped/rotated training patches, Adam,
gradient norm clipped at 1, 200 warm-up steps then cosine to 0; the same batches for every --lr) and reports
the PSNR of its output against the original's on held-out patches (--held-out), before and after.

    .venv/bin/python benchmarks/bench_ghost_lr.py --weights ../shared/weights/bytedance-RLFN/rlfn_ntire_x4.pth \
        --data ../shared/data/train --held-out ../shared/data/Set14 --ratio 0.33 --lr 2e-4 6e-4 1.5e-3
"""

from __future__ import annotations

import argparse
import copy
import math

import torch
import torch.nn.functional as F

import leansr.ghost.convert as ghost_convert
from leansr import load_model
from leansr.train.data import PatchDataset, collect_samples

BATCH, PATCH, WARMUP = 8, 48, 200


def batches(folders: list[str], scale: int, steps: int) -> list[torch.Tensor]:
    samples = collect_samples(folders, scale)
    dataset = PatchDataset(samples, scale=scale, patch_size=PATCH, flip=True, rot90=True)
    g = torch.Generator().manual_seed(1)
    out = []
    for step in range(steps):
        keys = torch.randint(len(samples), (BATCH,), generator=g).tolist()
        x = torch.stack([dataset[(k, step * BATCH + i)][0] for i, k in enumerate(keys)])
        out.append(x.contiguous(memory_format=torch.channels_last))
    return out


def fine_tune(ghost: torch.nn.Module, original: torch.nn.Module, data: list[torch.Tensor], lr: float) -> None:
    optimizer = torch.optim.Adam(ghost.parameters(), lr=lr)
    ghost.train()
    for step, x in enumerate(data):
        progress = max(0, step - WARMUP) / max(1, len(data) - WARMUP)
        factor = min(1.0, (step + 1) / WARMUP) * 0.5 * (1 + math.cos(math.pi * progress))
        for group in optimizer.param_groups:
            group["lr"] = lr * factor
        with torch.no_grad():
            target = original(x)
        loss = F.l1_loss(ghost(x), target)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(ghost.parameters(), 1.0)
        optimizer.step()
    ghost.eval()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", required=True)
    parser.add_argument("--data", nargs="+", required=True, help="HR folders: calibration and training patches")
    parser.add_argument("--held-out", nargs="+", required=True)
    parser.add_argument("--ratio", type=float, default=0.33)
    parser.add_argument("--lr", type=float, nargs="+", required=True)
    parser.add_argument("--steps", type=int, default=860)
    parser.add_argument("--free", action="store_true", help="untied consumer fit (before session 4)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    ghost_convert.TIE_GHOST_TAPS = not args.free
    original = load_model(args.weights).model.eval()
    held = ghost_convert.calibration_patches(args.held_out, original.scale, count=32, seed=7)
    calibration = ghost_convert.calibration_patches(args.data, original.scale)
    converted = ghost_convert.convert(original, calibration, ratio=args.ratio, selection="fixed")
    data = batches(args.data, original.scale, args.steps)
    print(f"converted ({'free' if args.free else 'tied'} fit): "
          f"{ghost_convert.calibration_error(original, converted, held):.2f} dB to the original, held out")
    print(f"| peak lr | held-out PSNR to the original after {args.steps} steps |")
    print("|---|---|")
    for lr in args.lr:
        ghost = copy.deepcopy(converted)
        fine_tune(ghost, original, data, lr)
        print(f"| {lr:g} | {ghost_convert.calibration_error(original, ghost, held):.2f} dB |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
