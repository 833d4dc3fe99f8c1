"""Deployment figures: ONNX parity and speed, int8 speed and PSNR loss, `--compile` warm-up cold vs warm.

Official weights from ../shared/weights (x4). All speed figures are LR --size x --size on the CPU with --threads
threads, through the same call the CLI uses (`upscale_tensor`, default tiling: one tile at 256x256); the variants
take turns within every repeat, so load from other processes hits them alike, and only ratios within one run
should be compared.

- parity: `export --dynamic`, the verification's max |ONNX - PyTorch| (0-1 scale), and the largest difference in
  8-bit gray levels of a tiled upscale of Set5 `baby.png` (PyTorch vs onnxruntime).
- speed: PyTorch default path (deployed, channels-last) vs the fp32 ONNX file vs the int8 file (`leansr
  quantize`, default settings, calibrated on ../shared/data/train).
- psnr: Y-PSNR (`leansr evaluate` protocol) on Set14 and BSD68, fp32 PyTorch vs int8.
- fx: PyTorch's own x86 int8 path (FX graph mode, calibrated on 32 training crops) against onnxruntime's int8,
  same run, and the FX model's Set14 Y-PSNR.
- compile: two fresh processes sharing an empty inductor cache: the first call's time (compile + one forward).

    .venv/bin/python benchmarks/bench_deploy.py --threads 2 --repeats 7 [--parts parity speed fx psnr compile]
        [--models rlfn_ntire fmen_s] [--keep-float first,last,conv_2,...]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from bench_inference import alternate_timings
from leansr.deploy.onnx_export import export_onnx
from leansr.deploy.quantize import DEFAULT_KEEP_FLOAT, calibration_crops, quantize_model
from leansr.engine import upscale_tensor
from leansr.loading import load_model as load_descriptor
from leansr.metrics.evaluate import evaluate_model
from leansr.runtime import prepare_for_inference as prepare_model
from leansr.runtime import tune_allocator

SHARED = Path(__file__).resolve().parents[2] / "shared"
WEIGHTS = {
    "rlfn_ntire": "bytedance-RLFN/rlfn_ntire_x4.pth",
    "fmen_s": "NJU-Jet-FMEN/test_weights.pt",
    "imdn": "Zheng222-IMDN/IMDN_x4.pth",
    "rfdn_e": "njulj-RFDN/RFDN_AIM.pth",
    "pan": "zhaohengyuan1-PAN/PANx4_DF2K.pth",
    "default_x4": None,  # the packaged default
}
INT8_MODELS = ("rlfn_ntire", "fmen_s")


def load_model(path: Path) -> torch.nn.Module:
    return load_descriptor(path).model


def weights_path(name: str) -> Path:
    if WEIGHTS[name] is None:
        return Path(__file__).resolve().parents[1] / "src" / "leansr" / "weights" / "default_x4.safetensors"
    return SHARED / "weights" / WEIGHTS[name]


def parity(name: str, out: Path) -> None:
    model = load_model(weights_path(name))
    result = export_onnx(model, out / f"{name}.onnx", dynamic=True)
    onnx_model = load_model(result.path)
    image = np.asarray(Image.open(SHARED / "data" / "Set5" / "baby.png").convert("RGB"))
    x = torch.from_numpy(image.copy()).permute(2, 0, 1)[None].float() / 255
    if model.in_channels == 1:
        x = x.mean(1, keepdim=True)
    kw = {"tile": 256, "tile_overlap": 32}
    with torch.inference_mode():
        a, b = ((upscale_tensor(m, x, **kw).clamp(0, 1) * 255).round() for m in (prepare_model(model), onnx_model))
    print(f"| {name} | {model.arch} | {result.max_abs_diff:.1e} | {int((a - b).abs().max())} |", flush=True)


def int8_file(name: str, out: Path, keep: tuple[str, ...]) -> Path:
    path = out / f"{name}_int8_{'-'.join(keep) or 'none'}.onnx"
    if not path.exists():
        quantize_model(load_model(weights_path(name)), [SHARED / "data" / "train"], path, keep_float=keep)
    return path


def speed(name: str, out: Path, args: argparse.Namespace) -> None:
    torch_model = prepare_model(leansr_deploy(load_model(weights_path(name))))  # what `leansr upscale` runs
    fp32 = load_model(out / f"{name}.onnx") if (out / f"{name}.onnx").exists() else load_model(
        export_onnx(load_model(weights_path(name)), out / f"{name}.onnx", dynamic=True).path)
    int8 = load_model(int8_file(name, out, args.keep))
    x = torch.rand(1, 3, args.size, args.size)
    fns = {m: (lambda model=model: upscale_tensor(model, x)) for m, model in
           (("torch", torch_model), ("onnx", fp32), ("int8", int8))}
    with torch.inference_mode():
        ms = {k: statistics.median(v) for k, v in
              alternate_timings(fns, warmup=2, repeats=args.repeats).items()}
    print(f"| {name} | {ms['torch']:.0f} | {ms['onnx']:.0f} ({ms['torch'] / ms['onnx']:.2f}x) | "
          f"{ms['int8']:.0f} ({ms['torch'] / ms['int8']:.2f}x) |", flush=True)


def fx_int8_speed(name: str, out: Path, args: argparse.Namespace) -> None:
    """PyTorch's x86 int8 alternative: FX graph mode (`x86` qconfig); the ESA stays a float leaf (untraceable)."""
    import copy

    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.fx.custom_config import PrepareCustomConfig
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    from leansr.layers.reduced_esa import ReducedESA

    torch.backends.quantized.engine = "x86"
    model = leansr_deploy(load_model(weights_path(name)))
    crops = [torch.from_numpy(c) for c in calibration_crops([SHARED / "data" / "train"], 3, 32, 128)]
    config = PrepareCustomConfig().set_non_traceable_module_classes([ReducedESA])
    prepared = prepare_fx(copy.deepcopy(model), get_default_qconfig_mapping("x86"), (crops[0],),
                          prepare_custom_config=config)
    with torch.no_grad():
        for crop in crops:
            prepared(crop)
    fx = convert_fx(prepared)
    fx.scale, fx.in_channels = model.scale, model.in_channels  # what evaluate_model reads
    fx_psnr = evaluate_model(fx, SHARED / "data" / "Set14", scale=model.scale).psnr_y
    torch_model, int8 = prepare_model(model), load_model(int8_file(name, out, args.keep))
    x = torch.rand(1, 3, args.size, args.size)
    fns = {"torch": lambda: upscale_tensor(torch_model, x), "fx": lambda: fx(x),
           "ort": lambda: upscale_tensor(int8, x)}
    with torch.inference_mode():
        ms = {k: statistics.median(v) for k, v in alternate_timings(fns, warmup=2, repeats=args.repeats).items()}
    print(f"| {name} | {ms['torch']:.0f} | {ms['fx']:.0f} ({ms['torch'] / ms['fx']:.2f}x) | "
          f"{ms['ort']:.0f} ({ms['torch'] / ms['ort']:.2f}x) | FX int8 Set14 Y-PSNR {fx_psnr:.2f} dB |",
          flush=True)


def leansr_deploy(model: torch.nn.Module) -> torch.nn.Module:
    from leansr.layers.reparam import is_reparameterized, reparameterize_model

    return model if is_reparameterized(model) else reparameterize_model(model)


def psnr(name: str, out: Path, args: argparse.Namespace) -> None:
    fp32, int8 = load_model(weights_path(name)), load_model(int8_file(name, out, args.keep))
    cells = []
    for dataset in ("Set14", "BSD68"):
        a, b = (evaluate_model(m, SHARED / "data" / dataset, scale=4).psnr_y for m in (fp32, int8))
        cells.append(f"{a:.3f} → {b:.3f} ({b - a:+.3f})")
    print(f"| {name} | {' | '.join(cells)} |", flush=True)


_COMPILE_RUN = """
import sys, time, torch
from leansr.engine import upscale_tensor
from leansr.loading import load_model
from leansr.runtime import prepare_for_inference as prepare_model, tune_allocator
torch.set_num_threads(int(sys.argv[2]))
tune_allocator()
model = prepare_model(load_model(sys.argv[1]).model, compiled=True)
x = torch.rand(1, 3, int(sys.argv[3]), int(sys.argv[3]))
upscale_tensor(model, x)
start = time.perf_counter(); upscale_tensor(model, x); steady = time.perf_counter() - start
print(model.warmup_s, steady)
"""


def compile_warmup(name: str, args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=cache)
        runs = []
        for _ in range(2):
            done = subprocess.run([sys.executable, "-c", _COMPILE_RUN, str(weights_path(name)), str(args.threads),
                                   str(args.size)], env=env, capture_output=True, text=True, check=True)
            runs.append([float(v) for v in done.stdout.split()])
    (cold, steady), (warm, _) = runs
    print(f"| {name} | {cold:.1f} | {warm:.1f} | {steady * 1e3:.0f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--parts", nargs="+", default=["parity", "speed", "fx", "psnr", "compile"])
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "leansr-bench-deploy",
                        help="where the exported and quantized files go (reused by later parts)")
    parser.add_argument("--keep-float", default=",".join(DEFAULT_KEEP_FLOAT),
                        help="as `leansr quantize --keep-float` (default first,last)")
    parser.add_argument("--models", nargs="+", default=list(INT8_MODELS), help="models of the int8 parts")
    args = parser.parse_args()
    args.keep = tuple(k for k in args.keep_float.split(",") if k and k != "none")
    torch.set_num_threads(args.threads)
    tune_allocator()  # as the CLI does: the default path includes it
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, LR {args.size}x{args.size}")
    if "parity" in args.parts:
        print("\n| model | arch | export max abs diff | upscale max diff (gray levels) |\n|---|---|---|---|")
        for name in WEIGHTS:
            parity(name, args.out)
    if "speed" in args.parts:
        print("\n| model | PyTorch ms | ONNX fp32 ms (speed-up) | int8 ms (speed-up) |\n|---|---|---|---|")
        for name in args.models:
            speed(name, args.out, args)
    if "fx" in args.parts:
        print("\n| model | PyTorch fp32 ms | FX int8 ms (speed-up) | onnxruntime int8 ms (speed-up) |\n"
              "|---|---|---|---|")
        for name in ("rlfn_ntire",):  # one model compares the two int8 paths
            fx_int8_speed(name, out=args.out, args=args)
    if "psnr" in args.parts:
        print("\n| model | Set14 Y-PSNR fp32 → int8 | BSD68 Y-PSNR fp32 → int8 |\n|---|---|---|")
        for name in args.models:
            psnr(name, args.out, args)
    if "compile" in args.parts:
        print("\n| model | first call, cold cache s | first call, warm cache s | steady ms |\n|---|---|---|---|")
        for name in args.models:
            compile_warmup(name, args)


if __name__ == "__main__":
    main()
