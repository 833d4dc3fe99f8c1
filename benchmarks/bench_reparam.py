"""Structural re-parameterization: cost of every re-parameterizable zoo model, training form vs deployed.

For each registered model that holds a `Reparameterizable` (default hyper-parameters, x4 where supported):
parameters, MACs (every multiply-accumulate kernel of one forward, `leansr.bench.counting`) and CPU time
(median of N forwards) on a 256x256 LR input, unfused and fused; plus the fusion's max relative error in
float64 (random weights and BatchNorm statistics, eval mode, a 37x29 input).

    .venv/bin/python benchmarks/bench_reparam.py --threads 2 --repeats 5 [--size 256] [--models 'ecbsr*']
"""

from __future__ import annotations

import argparse
import sys

import torch

import leansr
from leansr.bench.counting import count_model
from leansr.bench.timing import time_forward
from leansr.layers import is_reparameterized
from leansr.layers.fusion_check import fusion_error, randomize
from leansr.registry import get_model_info, list_models



def reparam_models(pattern: str) -> list[str]:
    return [name for name in list_models(pattern) if not is_reparameterized(leansr.create_model(name))]


def float64_fusion_error(name: str, scale: int) -> float:
    model = randomize(leansr.create_model(name, scale=scale))
    return fusion_error(model, leansr.reparameterize_model(model), (1, model.in_channels, 37, 29))


def measure(name: str, args: argparse.Namespace) -> dict[str, object]:
    scale = 4 if 4 in get_model_info(name).scales else max(get_model_info(name).scales)
    model = leansr.create_model(name, scale=scale).eval()
    fused = leansr.reparameterize_model(model)
    shape = (1, model.in_channels, args.size, args.size)
    x = torch.rand(shape)
    row: dict[str, object] = {"model": name, "scale": scale, "in_channels": model.in_channels}
    for form, net in (("unfused", model), ("fused", fused)):
        counts = count_model(net, shape)
        timing = time_forward(net, x, warmup=1, repeats=args.repeats)
        row[f"{form}_params"] = counts.params
        row[f"{form}_macs"] = counts.ops.macs
        row[f"{form}_ms"] = timing.median
        row[f"{form}_best_ms"] = min(timing.samples_ms)
        row[f"{form}_noisy"] = timing.noisy
    row["max_rel_err"] = float64_fusion_error(name, scale)
    return row


def markdown(rows: list[dict[str, object]], args: argparse.Namespace) -> str:
    lines = [
        f"LR {args.size}x{args.size}, CPU, {args.threads} threads, median of {args.repeats} forwards "
        f"(fastest in brackets; torch {torch.__version__}); * = interquartile range above 10 % of the "
        "median.",
        "",
        "| model | x | in | params unfused → fused | GMACs unfused → fused | CPU ms unfused → fused | "
        "max rel. err (float64) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ms = [
            f"{r[f'{f}_ms']:.0f}{'*' if r[f'{f}_noisy'] else ''} ({r[f'{f}_best_ms']:.0f})"
            for f in ("unfused", "fused")
        ]
        lines.append(
            f"| {r['model']} | {r['scale']} | {r['in_channels']} | "
            f"{r['unfused_params']:,} → {r['fused_params']:,} | "
            f"{r['unfused_macs'] / 1e9:.2f} → {r['fused_macs'] / 1e9:.2f} | {ms[0]} → {ms[1]} | "
            f"{r['max_rel_err']:.1e} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--size", type=int, default=256, help="LR height and width")
    parser.add_argument("--models", default="*", help="shell-style filter on model names")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = []
    for name in reparam_models(args.models):
        rows.append(measure(name, args))
        print(f"done {name}", file=sys.stderr)
    print(markdown(rows, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
