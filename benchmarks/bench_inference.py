"""Inference speed and memory: plain eager NCHW versus leansr's default inference path.

Speed: for every registered model (x4, random weights, deployed form via `leansr.reparameterize_model` for
both paths), one LR input of --size pixels a side on the CPU with --threads threads. "eager" is
`torch.no_grad()` + `model(x)` on a contiguous NCHW tensor; "leansr" is `upscale_tensor(prepare_model(m), x)`
with default settings (inference mode, channels-last weights and tiles, output assembled in place);
--compile adds `prepare_model(m, compiled=True)` (torch.compile, inductor freezing). The variants take
turns within every repeat, so load from other processes hits them alike. MACs are counted by
`leansr.bench.counting` (every multiply-accumulate kernel); the machine's 3x3-conv peak is the faster layout
of a 64->64 3x3 convolution on a 256x256 input.

Memory: peak resident set size of a fresh process running `upscale_image` on a --memory-size image.

    .venv/bin/python benchmarks/bench_inference.py --threads 2 --repeats 7 [--models 'rlfn*'] [--compile]
        [--memory]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import time
from typing import Callable

import numpy as np
import torch
from torch import Tensor, nn

import leansr
from leansr.bench.counting import count_model
from leansr.engine import upscale_image, upscale_tensor
from leansr.runtime import prepare_for_inference as prepare_model


def alternate_timings(
    fns: dict[str, Callable[[], object]], *, warmup: int, repeats: int
) -> dict[str, list[float]]:
    """Milliseconds per call of each function, the functions taking turns within every repeat."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter_ns()
            fn()
            samples[name].append((time.perf_counter_ns() - start) / 1e6)
    return samples


def conv_peak_gmacs(*, warmup: int, repeats: int) -> float:
    """GMAC/s of a 64->64 3x3 convolution on 256x256, the better of NCHW and channels-last."""
    conv = nn.Conv2d(64, 64, 3, padding=1).eval()
    conv_cl = nn.Conv2d(64, 64, 3, padding=1).eval().to(memory_format=torch.channels_last)
    x = torch.rand(1, 64, 256, 256)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        samples = alternate_timings({"nchw": lambda: conv(x), "cl": lambda: conv_cl(x_cl)},
                                    warmup=warmup, repeats=repeats)
    macs = 64 * 64 * 9 * 256 * 256
    return max(macs / min(ms) / 1e6 for ms in samples.values())  # best run: the least disturbed


def build(name: str, scale: int) -> nn.Module:
    info = leansr.registry.get_model_info(name)
    model = leansr.create_model(name, scale=scale if scale in info.scales else info.scales[-1]).eval()
    return leansr.reparameterize_model(model)


def bench_model(name: str, args: argparse.Namespace, peak: float) -> dict[str, object]:
    torch.manual_seed(0)
    model = build(name, args.scale)
    fast = prepare_model(build(name, args.scale).requires_grad_(False))
    fast.load_state_dict(model.state_dict())
    x = torch.rand(1, getattr(model, "in_channels", 3), args.size, args.size)

    def eager() -> Tensor:
        with torch.no_grad():
            return model(x)

    def ours() -> Tensor:
        return upscale_tensor(fast, x)

    fns = {"eager": eager, "leansr": ours}
    diff = (eager() - ours()).abs().max().item()
    if args.compile:
        compiled = prepare_model(fast, compiled=True)
        start = time.perf_counter()
        diff = max(diff, (eager() - upscale_tensor(compiled, x)).abs().max().item())
        warm_s = time.perf_counter() - start
        fns["compiled"] = lambda: upscale_tensor(compiled, x)
    samples = alternate_timings(fns, warmup=args.warmup, repeats=args.repeats)
    ms = {k: statistics.median(v) for k, v in samples.items()}
    best = {k: min(v) for k, v in samples.items()}
    macs = count_model(model, tuple(x.shape)).ops.macs
    gmac_s = macs / best["leansr"] / 1e6
    row = {"model": name, "scale": model.scale, "gmacs": macs / 1e9, "eager": _ms(ms, best, "eager"),
           "leansr": _ms(ms, best, "leansr"), "speedup": _ratio(ms, best, "eager", "leansr"),
           "gmac_s": gmac_s, "peak_frac": gmac_s / peak, "max_diff": diff}
    if args.compile:
        row.update(compiled=_ms(ms, best, "compiled"), compiled_speedup=_ratio(ms, best, "eager", "compiled"),
                   warm_s=warm_s)
    return row


def _ms(median: dict[str, float], best: dict[str, float], key: str) -> str:
    return f"{median[key]:.0f} [{best[key]:.0f}]"


def _ratio(median: dict[str, float], best: dict[str, float], slow: str, fast: str) -> str:
    return f"{median[slow] / median[fast]:.2f}x [{best[slow] / best[fast]:.2f}x]"


def memory_child(model_name: str, height: int, width: int, scale: int) -> None:
    """Runs in a fresh process: prints the peak RSS before and after upscaling one synthetic image."""
    from leansr.data.image_io import Image

    model = prepare_model(build(model_name, scale))
    image = Image(np.random.default_rng(0).random((height, width, 3), dtype=np.float32))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    start = time.perf_counter()
    out = upscale_image(model, image)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    output_gib = out.pixels.nbytes / 2**30
    print(f"{model_name} x{model.scale} {width}x{height}: peak RSS {after:.2f} GiB (input ready: "
          f"{before:.2f} GiB; the float32 output alone is {output_gib:.2f} GiB), {seconds:.1f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--size", type=int, default=256, help="LR input side in pixels")
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--models", default="*", help="shell-style pattern of registered model names")
    parser.add_argument("--compile", action="store_true", help="also time prepare_model(compiled=True)")
    parser.add_argument("--memory", action="store_true", help="also measure peak RSS on a large image")
    parser.add_argument("--memory-models", default="bicubic", help="comma-separated registered names")
    parser.add_argument("--memory-size", default="3000x4000", help="HxW of the synthetic image")
    parser.add_argument("--memory-child", nargs=4, metavar=("MODEL", "H", "W", "SCALE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.memory_child:
        name, h, w, s = args.memory_child
        memory_child(name, int(h), int(w), int(s))
        return 0
    peak = conv_peak_gmacs(warmup=args.warmup, repeats=args.repeats)
    print(f"torch {torch.__version__}, {args.threads} threads; 3x3-conv peak {peak:.1f} GMAC/s (best run); "
          f"LR {args.size}x{args.size}; median of {args.repeats} [best]\n")
    extra = " compiled ms | compiled speedup | warm-up s |" if args.compile else ""
    print("| model | GMACs | eager NCHW ms | leansr ms | speedup | leansr GMAC/s (best) | of peak | max diff |"
          + extra)
    print("|---" * (8 + 3 * args.compile) + "|")
    for name in leansr.list_models(args.models):
        r = bench_model(name, args, peak)
        line = (f"| {r['model']} x{r['scale']} | {r['gmacs']:.2f} | {r['eager']} | {r['leansr']} | "
                f"{r['speedup']} | {r['gmac_s']:.1f} | {r['peak_frac']:.0%} | {r['max_diff']:.1e} |")
        if args.compile:
            line += f" {r['compiled']} | {r['compiled_speedup']} | {r['warm_s']:.0f} |"
        print(line, flush=True)
    if args.memory:
        h, w = args.memory_size.split("x")
        for name in args.memory_models.split(","):
            subprocess.run([sys.executable, __file__, "--threads", str(args.threads),
                            "--memory-child", name, h, w, str(args.scale)], check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
