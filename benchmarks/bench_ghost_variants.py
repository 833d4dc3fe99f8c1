"""GhostSR layouts before any fine-tuning: MACs and CPU time of converted variants against the original.

Which ratio, per-layer ratios, channel multiple and folding fit a time budget does not depend on the
weights, only on the shapes, so each variant is converted without least-squares fits (`refit=False`, a
few random calibration patches) and deployed as `leansr ghost` deploys it. Timing alternates original and
variant round by round (`bench_ghost.alternate`, LR 256x256, channels-last), one variant after another in
one run. A variant is `LABEL=RATIO[:multiple=M][:fold][:notrunk][:shift=D][:at=PATTERN=R]...` (`notrunk`:
convs that write into a residual trunk stay; `shift=D`: every layer shifts by direction D, as a trained
model mostly does, where random patches often choose no shift):

    MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=1073741824 MALLOC_TOP_PAD_=268435456 \
    .venv/bin/python benchmarks/bench_ghost_variants.py --weights ../shared/weights/bytedance-RLFN/rlfn_ntire_x4.pth \
        --variant third=0.33 'half=0.5' 'half_folded=0.5:fold' 'third_b1=0.33:multiple=16:at=block_1.*=0.6'
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

from bench_ghost import alternate, deployed
from leansr.bench.counting import count_model
from leansr.checkpoint import save_checkpoint
from leansr.ghost.convert import convert
from leansr.ghost.finetune import deploy_ghost
from leansr.layers.ghost import GhostConv


def parse_variant(spec: str) -> tuple[str, dict[str, Any], bool]:
    label, _, rest = spec.partition("=")
    ratio, *options = rest.split(":")
    kwargs: dict[str, Any] = {"ratio": float(ratio), "layer_ratios": {}}
    fold = False
    for option in options:
        key, _, value = option.partition("=")
        if key == "fold":
            fold = True
        elif key == "multiple":
            kwargs["multiple"] = int(value)
        elif key == "notrunk":
            kwargs["trunk"] = False
        elif key == "shift":
            kwargs["shifts"] = (int(value),)
        elif key == "at":
            pattern, _, layer_ratio = value.rpartition("=")
            kwargs["layer_ratios"][pattern] = float(layer_ratio)
        else:
            raise SystemExit(f"unknown variant option {option!r} in {spec!r}")
    kwargs["tie_slopes"] = fold
    return label, kwargs, fold


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, required=True)
    parser.add_argument("--variant", nargs="+", required=True, metavar="LABEL=RATIO[:OPTION]...")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    original = deployed(args.weights)
    calibration = torch.rand(4, original.in_channels, 48, 48, generator=torch.Generator().manual_seed(0))
    shape = (1, original.in_channels, args.size, args.size)
    base_macs = count_model(original, shape).ops.macs
    print(f"| variant ({args.weights.name}) | intrinsic channels | MACs | CPU time ({args.threads} thr) |")
    print("|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for spec in args.variant:
            label, kwargs, fold = parse_variant(spec)
            ghost = convert(original, calibration, selection="fixed", refit=False, **kwargs)
            path = save_checkpoint(ghost, Path(tmp) / f"{label}.safetensors")
            model = deploy_ghost(path, fold=fold)[0].eval()
            timing = alternate({"original": original, "variant": model}, args.size, args.rounds, args.repeats,
                               "channels_last")
            counts = sorted({m.intrinsic for m in ghost.modules() if isinstance(m, GhostConv)})
            print(f"| {label} | {'/'.join(map(str, counts))} | {count_model(model, shape).ops.macs / base_macs:.3f}x "
                  f"| {timing['cpu_ratio']:.3f}x |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
