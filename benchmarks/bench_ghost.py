"""GhostSR: original vs ghost model, cost and quality in one run.

For each ORIGINAL=GHOST pair of checkpoints (GHOST written by `leansr ghost`): parameters, MACs and
activations (one forward, `leansr.bench.counting`), peak memory (`leansr.bench.memory`), CPU time per forward
on a 256x256 LR input, and Y-PSNR on each --dataset (`leansr.metrics.evaluate_model`, the code path of
`leansr evaluate`). Timing alternates the two models round by round (`--rounds` x `--repeats` forwards each)
so that load changes on a shared machine hit both alike; the ratio is the median of per-round ratios.
Both wall time and process CPU time (all threads) per forward are reported, at each --threads count, with
the input in the engine's layout (channels-last; `--layout nchw` for the other). The
allocator settings of the performance notes keep page-faulting of fresh buffers out of the comparison.

    MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=1073741824 MALLOC_TOP_PAD_=268435456 \
    .venv/bin/python benchmarks/bench_ghost.py --threads 2 1 \
        --pair rlfn_ntire=../shared/weights/bytedance-RLFN/rlfn_ntire_x4.pth:/work/runs/ghost/rlfn_ntire_quick.safetensors \
        --dataset ../shared/data/Set14 ../shared/data/BSD68 --json /work/runs/ghost/bench.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from leansr import load_model
from leansr.bench.counting import count_model
from leansr.bench.memory import MIB, peak_memory_bytes
from leansr.layers.reparam import is_reparameterized, reparameterize_model
from leansr.metrics.evaluate import evaluate_model


def costs(model: nn.Module, size: int) -> dict[str, Any]:
    shape = (1, model.in_channels, size, size)
    counts = count_model(model, shape)
    memory, _ = peak_memory_bytes(model, torch.rand(shape))
    return {"params": counts.params, "macs": counts.ops.macs, "activations": counts.ops.activations,
            "peak_memory_mb": memory / MIB}


@torch.inference_mode()
def forward_times(model: nn.Module, x: torch.Tensor, repeats: int) -> tuple[float, float]:
    """(median wall ms, median process CPU ms) over `repeats` forwards."""
    wall, cpu = [], []
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        model(x)
        wall.append((time.perf_counter() - w) * 1e3)
        cpu.append((time.process_time() - c) * 1e3)
    return statistics.median(wall), statistics.median(cpu)


def alternate(models: dict[str, nn.Module], size: int, rounds: int, repeats: int, layout: str) -> dict[str, Any]:
    x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    if layout == "channels_last":  # what leansr's engine feeds a conv model
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        for model in models.values():  # warm-up
            model(x[:, : model.in_channels])
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in models}
    for _ in range(rounds):
        for name, model in models.items():
            samples[name].append(forward_times(model, x[:, : model.in_channels], repeats))
    original, ghost = (samples[name] for name in models)
    return {
        "wall_ms": {n: statistics.median(s[0] for s in v) for n, v in samples.items()},
        "cpu_ms": {n: statistics.median(s[1] for s in v) for n, v in samples.items()},
        "wall_ratio": statistics.median(g[0] / o[0] for o, g in zip(original, ghost)),
        "cpu_ratio": statistics.median(g[1] / o[1] for o, g in zip(original, ghost)),
        "rounds": rounds, "repeats": repeats, "layout": layout,
    }


def deployed(path: Path) -> nn.Module:
    model = load_model(path).model.eval()
    return model if is_reparameterized(model) else reparameterize_model(model)


def measure_pair(label: str, original_path: Path, ghost_path: Path, args: argparse.Namespace) -> dict[str, Any]:
    models = {"original": deployed(original_path), "ghost": deployed(ghost_path)}
    record: dict[str, Any] = {"model": label, "original": str(original_path), "ghost": str(ghost_path),
                              "input": [args.size, args.size]}
    for name, model in models.items():
        record[name] = costs(model, args.size)
    record["timing"] = {}
    for threads in args.threads:
        torch.set_num_threads(threads)
        record["timing"][str(threads)] = alternate(models, args.size, args.rounds, args.repeats, args.layout)
    for dataset in args.dataset:
        for name, model in models.items():
            result = evaluate_model(model, dataset, scale=model.scale)
            record[name][f"psnr_y_{Path(dataset).name}"] = float(result.psnr_y)
    print(json.dumps(record), file=sys.stderr, flush=True)
    return record


def markdown(records: list[dict[str, Any]], datasets: list[str]) -> str:
    names = [Path(d).name for d in datasets]
    threads = list(records[0]["timing"]) if records else []
    timing_heads = [f"{kind} ms ({t} thr)" for t in threads for kind in ("wall", "CPU")]
    head = ["model", "params", "MACs (G)", "activations (M)", "peak MB", *timing_heads,
            *[f"{n} Y-PSNR" for n in names]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in records:
        t = r["timing"]
        for name in ("original", "ghost"):
            c = r[name]
            times = [f"{t[k][kind][name]:.0f}" for k in threads for kind in ("wall_ms", "cpu_ms")]
            lines.append("| " + " | ".join([
                f"{r['model']} {name}", f"{c['params']:,}", f"{c['macs'] / 1e9:.2f}",
                f"{c['activations'] / 1e6:.1f}", f"{c['peak_memory_mb']:.0f}", *times,
                *[f"{c.get(f'psnr_y_{n}', float('nan')):.3f}" for n in names]]) + " |")
        o, g = r["original"], r["ghost"]
        ratios = [f"{t[k][kind]:.3f}x" for k in threads for kind in ("wall_ratio", "cpu_ratio")]
        lines.append("| " + " | ".join([
            f"{r['model']} ghost / original", f"{g['params'] / o['params']:.3f}x", f"{g['macs'] / o['macs']:.3f}x",
            f"{g['activations'] / o['activations']:.3f}x", f"{g['peak_memory_mb'] / o['peak_memory_mb']:.3f}x",
            *ratios, *[f"{g.get(f'psnr_y_{n}', 0) - o.get(f'psnr_y_{n}', 0):+.3f} dB" for n in names]]) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pair", action="append", required=True, metavar="LABEL=ORIGINAL:GHOST")
    parser.add_argument("--dataset", nargs="*", default=[], help="HR folders for Y-PSNR")
    parser.add_argument("--threads", type=int, nargs="+", default=[2], help="thread counts to time at")
    parser.add_argument("--size", type=int, default=256, help="LR side for cost and timing")
    parser.add_argument("--layout", choices=("channels_last", "nchw"), default="channels_last",
                        help="input layout while timing (the engine's default path is channels_last)")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, help="write the records here")
    args = parser.parse_args()
    records = []
    for spec in args.pair:
        label, _, paths = spec.partition("=")
        original, _, ghost = paths.partition(":")
        records.append(measure_pair(label, Path(original), Path(ghost), args))
    if args.json:
        args.json.write_text(json.dumps(records, indent=1))
    print(markdown(records, args.dataset))
    return 0


if __name__ == "__main__":
    sys.exit(main())
