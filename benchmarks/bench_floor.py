"""The default fp32 path as a multiple of a shape-aware floor: each convolution at its own best rate on this CPU.

For each model (official x4 weights, deployed), one forward of the default path (`upscale_tensor` on a
prepared model, LR --size x --size, one tile) is traced: every `conv2d` call's input shape, weight shape,
stride, padding and groups. Each distinct convolution is then timed alone (fresh random tensors, NCHW and
channels-last, best of --repeats): its own best time on this CPU. The floor is the sum over the forward's
calls; "64-ch floor" is the forward's MACs at the rate of one 64->64 3x3 convolution (the old yardstick).
The model's time is the best of --repeats, taken in the same run. "other" = model time - time of its convs
measured in place (profiler), i.e. what element-wise ops, copies and allocation cost.

    .venv/bin/python benchmarks/bench_floor.py --threads 2 --repeats 15 [--models rlfn_ntire fmen_s rfdn_e]
"""

from __future__ import annotations

import argparse
import time
from collections import Counter

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from bench_deploy import WEIGHTS, load_model, weights_path
from leansr.engine import upscale_tensor
from leansr.runtime import prepare_for_inference, tune_allocator


class ConvTrace(TorchFunctionMode):
    """Records (input shape, weight shape, stride, padding, dilation, groups, bias) of every conv2d call."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: Counter = Counter()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.conv2d or func is torch.conv2d:
            x, w, *rest = args
            names = ("bias", "stride", "padding", "dilation", "groups")
            opts = dict(zip(names, rest), **kwargs)
            key = (tuple(x.shape), tuple(w.shape), _pair(opts.get("stride", 1)), _pair(opts.get("padding", 0)),
                   _pair(opts.get("dilation", 1)), int(opts.get("groups", 1)), opts.get("bias") is not None)
            self.calls[key] += 1
        return func(*args, **kwargs)


def _pair(v) -> tuple:
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def best_ms(fn, repeats: int) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter_ns()
        fn()
        best = min(best, (time.perf_counter_ns() - start) / 1e6)
    return best


def conv_best_ms(key: tuple, repeats: int) -> float:
    x_shape, w_shape, stride, padding, dilation, groups, has_bias = key
    w, b = torch.randn(w_shape), torch.randn(w_shape[0]) if has_bias else None
    times = []
    for fmt in (torch.contiguous_format, torch.channels_last):
        x = torch.rand(x_shape).contiguous(memory_format=fmt)
        wf = w.contiguous(memory_format=fmt)
        with torch.inference_mode():
            times.append(best_ms(lambda: F.conv2d(x, wf, b, stride, padding, dilation, groups), repeats))
    return min(times)


def macs(key: tuple) -> int:
    x_shape, w_shape, stride, padding, dilation, groups, _ = key
    h = (x_shape[2] + 2 * padding[0] - dilation[0] * (w_shape[2] - 1) - 1) // stride[0] + 1
    w = (x_shape[3] + 2 * padding[1] - dilation[1] * (w_shape[3] - 1) - 1) // stride[1] + 1
    return x_shape[0] * h * w * w_shape[0] * w_shape[1] * w_shape[2] * w_shape[3]


def conv_time_in_place(run) -> float:
    """Milliseconds the model's own convolutions take in one forward (profiler, CPU self time)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        run()
    names = ("aten::mkldnn_convolution", "aten::_slow_conv2d_forward", "aten::_convolution", "aten::convolution",
             "aten::conv2d")
    events = [e for e in prof.key_averages() if e.key in names]
    return sum(e.self_cpu_time_total for e in events) / 1e3


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["rlfn_ntire", "fmen_s", "rfdn_e"], choices=sorted(WEIGHTS))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--repeats", type=int, default=15)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    tune_allocator()
    peak = 64 * 64 * 9 * args.size**2 / conv_best_ms(
        ((1, 64, args.size, args.size), (64, 64, 3, 3), (1, 1), (1, 1), (1, 1), 1, True), args.repeats)
    print(f"threads {args.threads}, LR {args.size}x{args.size}; 64->64 3x3 conv: {peak / 1e6:.0f} GMAC/s\n")
    print("| model | default ms | shape-aware floor ms | x floor | convs in place ms | other ms | "
          "64-ch floor ms | x 64-ch floor |")
    print("|---|---|---|---|---|---|---|---|")
    for name in args.models:
        model = prepare_for_inference(load_model(weights_path(name)))
        x = torch.rand(1, model.in_channels, args.size, args.size)

        def run() -> None:
            with torch.inference_mode():
                upscale_tensor(model, x, tile=0)

        trace = ConvTrace()
        with trace:
            run()
        floor = sum(n * conv_best_ms(key, args.repeats) for key, n in trace.calls.items())
        total_macs = sum(n * macs(key) for key, n in trace.calls.items())
        model_ms = best_ms(run, args.repeats)
        in_place = conv_time_in_place(run)
        flat = total_macs / peak
        print(f"| {name} | {model_ms:.0f} | {floor:.0f} | {model_ms / floor:.2f} | {in_place:.0f} | "
              f"{model_ms - in_place:.0f} | {flat:.0f} | {model_ms / flat:.2f} |", flush=True)


if __name__ == "__main__":
    main()
