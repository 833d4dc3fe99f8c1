"""`leansr quantize`: post-training static int8 for CPU, as an ONNX file with QDQ nodes run by onnxruntime.

Chosen by measurement over PyTorch's x86 int8 path (see docs/benchmarks.md): onnxruntime fuses the QDQ pairs
into u8 x s8 kernels (VNNI on x86), loads with the same `OnnxModel` as fp32 exports, and needs no compile
warm-up. Weights are per output channel (symmetric int8), activations per tensor (uint8) from calibration
images; the layers that matter most for quality stay in float (`KEEP_FLOAT`).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch import nn

from leansr.atomic import atomic_path
from leansr.color import rgb_to_ycbcr
from leansr.data.image_io import read_rgb_uint8
from leansr.deploy.onnx_export import export_onnx, set_metadata
from leansr.errors import LeansrError
from leansr.metrics.evaluate import list_images

# first: the conv reading the image; last: the conv(s) feeding pixel shuffle or the output; sigmoid: attention
# gates (a sigmoid and the multiply it feeds).
KEEP_FLOAT_CHOICES = ("first", "last", "sigmoid")
DEFAULT_KEEP_FLOAT = ("first", "last")
# Only convolutions (80-85 % of the time): int8 element-wise ops (residual adds, gates) cost quality, no speed.
QUANTIZED_OPS = ("Conv",)
DEFAULT_CALIB_IMAGES = 32
DEFAULT_CALIB_SIZE = 128  # LR pixels: centre crops, so the activation ranges see whole textures


@dataclass(frozen=True)
class QuantizeResult:
    path: Path
    calib_images: int
    float_nodes: list[str]
    psnr_vs_fp32: float  # on the calibration crops, int8 against the fp32 export


def quantize_model(model: nn.Module, calib_dirs: list[Path], path: Path, *,
                   keep_float: tuple[str, ...] = DEFAULT_KEEP_FLOAT, calib_images: int = DEFAULT_CALIB_IMAGES,
                   calib_size: int = DEFAULT_CALIB_SIZE, method: str = "percentile",
                   source: str = "") -> QuantizeResult:
    """Write an int8 QDQ ONNX file of `model` calibrated on images in `calib_dirs` (atomically)."""
    channels = int(getattr(model, "in_channels", 3))
    crops = calibration_crops(calib_dirs, channels, calib_images, calib_size)
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory(prefix="leansr-quantize-") as folder:
        fp32, pre, int8 = (Path(folder) / name for name in ("fp32.onnx", "pre.onnx", "int8.onnx"))
        exported = export_onnx(model, fp32, dynamic=True, source=source)
        quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
        graph = onnx.load(str(pre)).graph
        float_nodes = nodes_kept_float(graph, keep_float)  # checks the names before the slow calibration
        quantize_static(
            str(pre), str(int8), _Reader(graph.input[0].name, crops), quant_format=QuantFormat.QDQ,
            per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            calibrate_method=_METHODS[method](CalibrationMethod), nodes_to_exclude=float_nodes,
            op_types_to_quantize=list(QUANTIZED_OPS),
            extra_options={"CalibPercentile": 99.999} if method == "percentile" else {},
        )
        proto = onnx.load(str(int8))
        meta = dict(exported.metadata, precision="int8",
                    quantization=f"static QDQ u8/s8 per-channel, {method}, {len(crops)} crops, float: "
                    f"{','.join(keep_float) or 'none'}")
        meta.pop("verified_max_abs_diff")  # int8 is checked by PSNR against fp32, not by a 1e-4 bound
        set_metadata(proto, meta)
        int8.write_bytes(proto.SerializeToString())
        psnr = psnr_between(fp32, int8, crops)
        with atomic_path(path) as tmp:
            tmp.write_bytes(int8.read_bytes())
    return QuantizeResult(path, len(crops), float_nodes, psnr)


_METHODS = {"minmax": lambda c: c.MinMax, "percentile": lambda c: c.Percentile, "entropy": lambda c: c.Entropy}
METHODS = tuple(_METHODS)


def calibration_crops(folders: list[Path], channels: int, limit: int, size: int) -> list[np.ndarray]:
    """Up to `limit` centre crops (1xCxHxW float32, 0-1) from the images in `folders`, spread over them."""
    files = [f for folder in folders for f in list_images(folder)]  # an empty folder: one-line LeansrError
    step = max(1, len(files) // limit)
    crops = []
    for file in files[::step][:limit]:
        rgb = read_rgb_uint8(file)
        h, w = rgb.shape[:2]
        top, left = max(0, (h - size) // 2), max(0, (w - size) // 2)
        x = torch.from_numpy(rgb[top:top + size, left:left + size]).permute(2, 0, 1)[None].float() / 255
        if channels == 1:
            x = rgb_to_ycbcr(x)[:, :1]
        crops.append(np.ascontiguousarray(x.numpy()))
    return crops


def nodes_kept_float(graph, keep: tuple[str, ...]) -> list[str]:
    """Names of the nodes that stay float for the `keep` choices (KEEP_FLOAT_CHOICES or module paths)."""
    nodes = list(graph.node)
    convs = [n for n in nodes if n.op_type == "Conv"]
    chosen: list[str] = []
    for module in (k for k in keep if k not in KEEP_FLOAT_CHOICES):
        # The exporter names a module's nodes by its path: block_1.c5 -> /block_1/c5/Conv.
        prefix = "/" + module.replace(".", "/") + "/"
        found = [n.name for n in nodes if n.name.startswith(prefix)]
        if not found:
            raise LeansrError(f"--keep-float {module}: no such layer (use {', '.join(KEEP_FLOAT_CHOICES)} or a "
                              "module path such as block_1.c5)")
        chosen += found
    if "first" in keep and convs:
        inputs = {i.name for i in graph.input}
        chosen += [n.name for n in convs if n.input[0] in inputs] or [convs[0].name]
    if "last" in keep and convs:
        chosen.append(convs[-1].name)  # exporters emit nodes in execution order: the conv before the output
    if "sigmoid" in keep:
        sigmoids = [n for n in nodes if n.op_type == "Sigmoid"]
        gated = {n.output[0] for n in sigmoids}
        chosen += [n.name for n in sigmoids]
        chosen += [n.name for n in nodes if n.op_type == "Mul" and gated & set(n.input)]
    return list(dict.fromkeys(chosen))


def psnr_between(reference: Path, candidate: Path, crops: list[np.ndarray]) -> float:
    """PSNR (dB, 0-1 scale, all channels, clamped) of `candidate`'s outputs against `reference`'s."""
    from leansr.deploy.onnx_model import create_session

    a, b = create_session(reference), create_session(candidate)
    name = a.get_inputs()[0].name
    errors = []
    for crop in crops:
        x = np.clip(a.run(None, {name: crop})[0], 0, 1)
        y = np.clip(b.run(None, {name: crop})[0], 0, 1)
        errors.append(float(np.mean((x - y) ** 2)))
    mse = float(np.mean(errors))
    return float("inf") if mse == 0 else 10 * np.log10(1 / mse)


class _Reader:
    """onnxruntime's calibration protocol: `get_next()` returns one feed dict, then None."""

    def __init__(self, name: str, crops: list[np.ndarray]) -> None:
        self._all = [{name: c} for c in crops]
        self.rewind()

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._feeds, None)

    def rewind(self) -> None:  # some calibrators read the data twice
        self._feeds: Iterator[dict[str, np.ndarray]] = iter(self._all)
