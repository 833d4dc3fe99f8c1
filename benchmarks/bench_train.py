"""Training throughput on CPU: iterations/s and patches/s of the full `leansr train` loop (data included).

A fixed small recipe (x4, LR patch 48, batch 16, in-memory prepared pairs, no validation) for each model,
in the branched (re-parameterizable) and, where it differs, the fused training form. Timed after a warm-up
that fills the image cache; the median of the per-window rates is reported.

    .venv/bin/python benchmarks/bench_train.py --threads 1 [--iters 60] [--models ecbsr_m4c16,rlfn_s]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from leansr.cli import main as leansr_main
from leansr.layers.reparam import is_reparameterized
from leansr.registry import create_model
from leansr.train.config import load_config
from leansr.train.trainer import Trainer

SHARED_TRAIN = Path(__file__).resolve().parents[2] / "shared" / "data" / "train"


def make_data(root: Path, count: int = 16) -> Path:
    """Prepared 480px sub-images of a few shared photos (or synthetic ones without ../shared)."""
    src = root / "src"
    src.mkdir()
    photos = sorted(SHARED_TRAIN.glob("*.jpg"))[:count]
    rng = np.random.default_rng(0)
    for i in range(count):
        if photos:
            Image.open(photos[i]).convert("RGB").save(src / f"{i}.png")
        else:
            Image.fromarray(rng.integers(0, 256, (480, 480, 3), dtype=np.uint8)).save(src / f"{i}.png")
    leansr_main(["data", "prepare", str(src), "-o", str(root / "prep"), "--scale", "4",
                 "--sub-image", "480", "--step", "480"])
    return root / "prep" / "HR"


def measure(model: str, fused: bool, data: Path, out: Path, iters: int, threads: int) -> dict:
    warmup = 20
    # ECBSR defaults to Y only (as the official models); train all models on RGB here.
    rgb = ["model.args.in_channels=3", "model.args.img_range=1.0"] if model.startswith("ecbsr") else []
    config = load_config(None, [
        f"model.name={model}", *rgb, f"model.train_fused={fused}", f"data.train={data}",
        "data.patch_size=48", "data.batch_size=16", "data.workers=0", "data.cache=true",
        f"stage1.iters={warmup + iters}", "val_every=0", "log_every=10",
        f"checkpoint_every={10 ** 9}", f"threads={threads}", f"output={out}",
    ])
    trainer = Trainer(config, out)
    trainer.train()
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    rates = [r["it_per_s"] for r in records if r["event"] == "train" and r["iter"] > warmup]
    it_s = statistics.median(rates)
    return {"model": model, "it_per_s": it_s, "patches_per_s": it_s * 16}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="ecbsr_m4c16,rlfn_s,imdn")
    parser.add_argument("--iters", type=int, default=60)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = make_data(Path(tmp))
        for model in args.models.split(","):
            forms = {"plain": False} if is_reparameterized(create_model(model)) else {"branched": False, "fused": True}
            for form, fused in forms.items():
                row = measure(model, fused, data, Path(tmp) / f"{model}_{form}", args.iters, args.threads)
                rows.append({**row, "form": form})
    print(f"\nx4, LR patch 48, batch 16, {args.threads} thread(s), {torch.__version__}")
    print("| model | training form | iterations/s | patches/s |\n|---|---|---:|---:|")
    for r in rows:
        print(f"| {r['model']} | {r['form']} | {r['it_per_s']:.2f} | {r['patches_per_s']:.1f} |")


if __name__ == "__main__":
    main()
