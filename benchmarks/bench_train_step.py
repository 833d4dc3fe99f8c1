"""Training throughput of `leansr train`: seconds per step with batches channels-last or NCHW on CPU.

Runs the trainer on CONFIG (a run folder's `config.yaml` works, e.g. a `leansr ghost` run's) for --warmup
steps (fills the image cache), then times --steps more, alternating the two layouts --rounds times; the
whole step is timed: data (on-the-fly bicubic LR), forward, teacher, backward, optimizer, EMA.

    .venv/bin/python benchmarks/bench_train_step.py --config RUN/config.yaml --threads 2
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from leansr.train.config import load_config
from leansr.train.trainer import Trainer


def seconds_per_step(config_path: str, channels_last: bool, args: argparse.Namespace, folder: Path) -> float:
    run = folder / f"cl_{channels_last}"
    shutil.rmtree(run, ignore_errors=True)
    config = load_config(config_path, [
        f"output={run}", "time_limit_min=0", f"threads={args.threads}", "checkpoint_every=1000000",
        "log_every=1000000", f"channels_last={str(channels_last).lower()}", "val_every=0",
    ])
    trainer = Trainer(config, run)
    trainer.train(max_steps=args.warmup)
    start = time.perf_counter()
    trainer.train(max_steps=args.steps)
    return (time.perf_counter() - start) / args.steps


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    times: dict[bool, list[float]] = {True: [], False: []}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.rounds):
            for layout in (False, True):
                times[layout].append(seconds_per_step(args.config, layout, args, Path(tmp)))
    nchw, cl = statistics.median(times[False]), statistics.median(times[True])
    print(f"| batches | s/step ({args.threads} thr) |\n|---|---|\n| NCHW | {nchw:.3f} |\n"
          f"| channels-last | {cl:.3f} ({nchw / cl:.2f}x the steps) |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
