"""What the AIM 2020 training-time tricks buy at zero inference cost: one network trained three ways.

The same FIMDN-shaped network (`fimdn`, x4) is trained with equal iteration budgets on the same data,
(a) plainly (`conv=plain`), (b) with the kernel-basis schedule (`conv=basis`, 3 bases, then +2, then +2),
(c) with asymmetric convolution blocks (`conv=acb`, FIMDN). All three deploy to the identical plain
network; the table gives its Set5/Set14 Y-PSNR (`leansr evaluate` machinery: bicubic LR, 8-bit output,
border = scale) and the training wall time. Runs are resumable: rerunning continues unfinished ones.

    nice -n 10 .venv/bin/python benchmarks/bench_aim2020.py --data /tmp/x4/HR --work /tmp/aim2020 \
        [--iters 3000 --channels 32 --blocks 2 --patch 32 --batch 8 --threads 1 --seeds 0]

`--step-times` instead times one training step (forward + backward + Adam on a random batch) of each form,
back to back in one process: the per-step cost without data loading or the machine's load swings.

`--data` is an HR folder, ideally from `leansr data prepare ../shared/data/train -o /tmp/x4 --scale 4
--sub-image 480 --step 480` (paired LR beside it is used, so no bicubic runs during training).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import yaml

from leansr.checkpoint import read_state_dict
from leansr.layers.reparam import is_reparameterized, reparameterize_model
from leansr.loading import load_model
from leansr.metrics.evaluate import evaluate_model
from leansr.registry import create_model

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
METHODS = ("plain", "basis", "acb")


def recipe(method: str, args: argparse.Namespace, seed: int) -> dict:
    config = {
        "model": {"name": "fimdn", "scale": 4,
                  "args": {"channels": args.channels, "num_blocks": args.blocks, "conv": method}},
        "data": {"train": [str(args.data)], "patch_size": args.patch, "batch_size": args.batch, "workers": 0,
                 "cache": True},
        "stage1": {"loss": "l1", "iters": args.iters, "lr": args.lr, "schedule": "cosine", "warmup_iters": 100},
        "stage2": {"iters": 0},
        "ema_decay": 0.999, "seed": seed, "threads": args.threads, "val_every": 0,
        "checkpoint_every": 250, "log_every": 50,
    }
    if method == "basis":  # half the budget on N0 = 3 bases, then two growth stages of +2 (N = 5, 7)
        half, quarter = args.iters // 2, args.iters // 4
        config["kernel_basis"] = {"stages": [{"bases": 3, "iters": half}, {"add_bases": 2, "iters": quarter},
                                             {"add_bases": 2, "iters": args.iters - half - quarter}]}
    return config


def train(method: str, args: argparse.Namespace, seed: int) -> Path:
    run = args.work / f"{method}_s{seed}"
    if (run / "model.safetensors").is_file():
        return run
    command = [sys.executable, "-m", "leansr", "train"]
    if (run / "checkpoints").is_dir() and any((run / "checkpoints").glob("iter_*.pt")):
        command += ["--resume", str(run)]
    else:
        run.mkdir(parents=True, exist_ok=True)
        (args.work / f"{method}_s{seed}.yaml").write_text(yaml.safe_dump(recipe(method, args, seed)))
        command += [str(args.work / f"{method}_s{seed}.yaml"), "-o", str(run)]
    with open(args.work / f"{method}_s{seed}.log", "a") as log:
        subprocess.run(command, check=True, stdout=log, stderr=log)
    return run


def score(run: Path, threads: int) -> dict:
    fused = run / "model_fused.safetensors"
    deployed = load_model(fused if fused.is_file() else run / "model.safetensors").model
    deployed = deployed if is_reparameterized(deployed) else reparameterize_model(deployed)
    meta = read_state_dict(run / "model.safetensors")[1]
    model = create_model(meta["arch"], **meta["hparams"])  # the training form, for its parameter count
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    torch.set_num_threads(threads)
    row = {"params": sum(p.numel() for p in deployed.parameters()),
           "train_params": sum(p.numel() for p in model.parameters()),
           "minutes": records[-1]["elapsed_s"] / 60}
    for name in ("Set5", "Set14"):
        row[name] = float(evaluate_model(deployed, SHARED / name, scale=4).psnr_y)
    return row


def step_times(args: argparse.Namespace, steps: int = 10) -> None:
    torch.set_num_threads(args.threads)
    x, y = torch.rand(args.batch, 3, args.patch, args.patch), torch.rand(args.batch, 3, args.patch * 4, args.patch * 4)
    for method in METHODS:
        model = create_model("fimdn", scale=4, channels=args.channels, num_blocks=args.blocks, conv=method)
        optimizer = torch.optim.Adam(model.parameters())
        times = []
        for _ in range(steps + 1):  # the first step warms up
            start = time.perf_counter()
            loss = (model(x) - y).abs().mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            times.append(time.perf_counter() - start)
        print(f"{method}: {1000 * statistics.median(times[1:]):.0f} ms per step (median of {steps})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="HR training folder")
    parser.add_argument("--work", type=Path, help="folder for the runs (resumable)")
    parser.add_argument("--step-times", action="store_true", help="only time one training step of each form")
    parser.add_argument("--iters", type=int, default=3000)
    parser.add_argument("--channels", type=int, default=32)
    parser.add_argument("--blocks", type=int, default=2)
    parser.add_argument("--patch", type=int, default=32, help="LR patch side")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seeds", default="0", help="comma-separated seeds")
    parser.add_argument("--methods", default=",".join(METHODS))
    args = parser.parse_args()
    if args.step_times:
        step_times(args)
        return
    if args.data is None or args.work is None:
        parser.error("--data and --work are required (except with --step-times)")
    args.work.mkdir(parents=True, exist_ok=True)
    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        for method in args.methods.split(","):
            rows.append({"method": method, "seed": seed, **score(train(method, args, seed), args.threads)})
            (args.work / "results.json").write_text(json.dumps(rows, indent=1))
    print(f"\nfimdn x4, {args.channels} channels, {args.blocks} blocks, {args.iters} iterations, "
          f"batch {args.batch} x LR {args.patch}px, {args.threads} thread(s), torch {torch.__version__}")
    print("| training form | seed | params (training → deployed) | Set5 Y-PSNR | Set14 Y-PSNR | train minutes |")
    print("|---|---:|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r['method']} | {r['seed']} | {r['train_params']:,} → {r['params']:,} | {r['Set5']:.2f} | "
              f"{r['Set14']:.2f} | {r['minutes']:.1f} |")


if __name__ == "__main__":
    main()
