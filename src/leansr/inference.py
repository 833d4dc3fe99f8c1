"""Running a model on whole images: tiled inference with feathered seams, OOM fallback, colour handling.

Images of any size run in bounded memory: the output is assembled where the input lives (normally CPU) and
only one tile is on the model's device at a time. Neighbouring tiles overlap by `tile_overlap` LR pixels and
are cross-faded by a linear ramp over the middle quarter of the overlap; the outer 3/8 on each side, where a
tile lacks context, gets no weight. Models that see less than 3/8 of the overlap around a pixel are tiled
exactly; for local models whose influence fades (FMEN, PAN) seams stay below one 8-bit gray level at the
default overlap. Models with image-wide statistics (IMDN's contrast attention, the ESA of RFDN/RLFN, whose
coarse grid depends on the input size) change with any tiling: use `tile=0` or tiles as big as the image.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import itertools
import time
from importlib import resources
from typing import TYPE_CHECKING, Callable, Literal

import numpy as np
import torch
from torch import Tensor, nn

from leansr.checkpoint import load_model
from leansr.color import ImageAdapter, Model
from leansr.deploy.compile_cache import enable_persistent_cache
from leansr.errors import LeansrError
from leansr.registry import create_model, get_model_info

if TYPE_CHECKING:
    from leansr.data.image_io import Image

Precision = Literal["fp32", "fp16", "bf16"]
PRECISIONS: dict[str, torch.dtype] = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
DEFAULT_TILE = 512  # LR pixels; a 512x512 tile of x4 IMDN (the widest zoo model) needs about 1 GB
DEFAULT_OVERLAP = 32
MIN_TILE = 32  # CUDA out-of-memory retries halve the tile down to this floor
DEFAULT_SCALE = 4
Progress = Callable[[int, int], None]  # called with (tiles done, tiles total)


def upscale_tensor(
    model: Model,
    x: Tensor,
    *,
    tile: int = DEFAULT_TILE,
    tile_overlap: int = DEFAULT_OVERLAP,
    precision: Precision = "fp32",
    progress: Progress | None = None,
    device: torch.device | str | None = None,
    channels_last: bool | None = None,
    min_tile: int = MIN_TILE,
) -> Tensor:
    """Super-resolve 0-1 NCHW `x` tile by tile (`tile=0`: whole image at once); unclamped float32 result.

    The model runs on `device` (default: where its parameters are) under `torch.inference_mode`, fed
    channels-last tiles when it has convolutions (`channels_last=None`; faster on CPU and GPU, same
    numbers; resampling by matrix products, as in bicubic, is faster on plain NCHW). The result lives on `x.device` in
    channels-last memory, so `out[0].permute(1, 2, 0)` is a contiguous HxWxC view. On CUDA out-of-memory
    the tile is halved and the image restarted, down to `min_tile`, then a LeansrError.
    """
    check_tiling(tile, tile_overlap)
    if precision not in PRECISIONS:
        raise LeansrError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if x.dim() != 4 or not x.is_floating_point():
        raise LeansrError(f"expected a float NCHW tensor, got a {x.dim()}-D {x.dtype} one")
    device = torch.device(device) if device is not None else model_device(model)
    if channels_last is None:
        channels_last = _has_convolutions(model)
    while True:
        try:
            return _run_tiles(model, x, tile, tile_overlap, precision, progress, device, channels_last)
        except torch.cuda.OutOfMemoryError:
            current = tile if tile > 0 else max(x.shape[-2:])
            tile = current // 2
            if tile < max(min_tile, 2 * tile_overlap + 1):
                raise LeansrError(
                    f"out of GPU memory even with {current}px tiles; try --device cpu or a smaller model"
                ) from None
            if torch.cuda.is_available():
                torch.cuda.empty_cache()


def check_tiling(tile: int, overlap: int) -> None:
    if tile < 0 or overlap < 0:
        raise LeansrError(f"tile size and overlap must not be negative (got {tile} and {overlap})")
    if tile and tile <= 2 * overlap:
        raise LeansrError(f"tile size {tile} must be more than twice the overlap {overlap} (see --tile-overlap)")


def _has_convolutions(model: Model) -> bool:
    inner = model.model if isinstance(model, ImageAdapter) else model
    return isinstance(inner, nn.Module) and any(isinstance(m, nn.Conv2d) for m in inner.modules())


def model_device(model: Model) -> torch.device:
    """Where a module's parameters (or buffers) live; CPU for parameter-free callables."""
    if isinstance(model, nn.Module):
        for tensor in (*model.parameters(), *model.buffers()):
            return tensor.device
    return torch.device("cpu")


def _run_tiles(
    model: Model,
    x: Tensor,
    tile: int,
    overlap: int,
    precision: Precision,
    progress: Progress | None,
    device: torch.device,
    channels_last: bool,
) -> Tensor:
    height, width = x.shape[-2:]
    tile_h, tile_w = min(tile or height, height), min(tile or width, width)
    rows, cols = _starts(height, tile_h, overlap), _starts(width, tile_w, overlap)
    out: Tensor | None = None
    total = len(rows) * len(cols)
    with torch.inference_mode(), _autocast(device, precision):
        for done, (row, col) in enumerate(itertools.product(range(len(rows)), range(len(cols))), 1):
            top, left = rows[row], cols[col]
            patch = x[:, :, top:top + tile_h, left:left + tile_w].to(device)
            if channels_last:
                patch = patch.contiguous(memory_format=torch.channels_last)
            result = model(patch).float()
            if out is None:
                scale = _measure_scale(patch, result)
                with torch.inference_mode(False):  # a normal tensor, so callers may modify it in place
                    out = torch.empty((x.shape[0], result.shape[1], height * scale, width * scale),
                                      device=x.device, memory_format=torch.channels_last).zero_()
                weights_y = _axis_weights(height, rows, tile_h, scale, overlap)
                weights_x = _axis_weights(width, cols, tile_w, scale, overlap)
            target = out[:, :, top * scale:(top + tile_h) * scale, left * scale:(left + tile_w) * scale]
            result = result.to(out.device)
            if total == 1:
                target.copy_(result)  # untiled: bit-identical to calling the model
            else:
                target.add_(result * (weights_y[row][:, None] * weights_x[col][None, :]))
            if progress is not None:
                progress(done, total)
    assert out is not None
    return out


def _starts(length: int, size: int, overlap: int) -> list[int]:
    """Tile origins along one axis: equal tiles `overlap` apart, the last one flush with the far edge."""
    if size >= length:
        return [0]
    return [*range(0, length - size, size - overlap), length - size]


def _axis_weights(length: int, starts: list[int], size: int, scale: int, overlap: int) -> list[Tensor]:
    """Per-tile blending weights along one axis (HR pixels), normalised to sum to one at every pixel."""
    centre = (torch.arange(size * scale, dtype=torch.float64) + 0.5) / scale  # LR distance from tile start
    margin, ramp = overlap * 3 / 8, overlap / 4  # measured best of 0 .. 1/2 on FMEN-S and PAN seams
    weights = []
    for start in starts:
        w = torch.ones_like(centre)
        if overlap and start > 0:
            w *= ((centre - margin) / ramp).clamp(0, 1)
        if overlap and start + size < length:
            w *= ((size - centre - margin) / ramp).clamp(0, 1)
        weights.append(w)
    total = torch.zeros(length * scale, dtype=torch.float64)
    for start, w in zip(starts, weights):
        total[start * scale:(start + size) * scale] += w
    return [(w / total[s * scale:(s + size) * scale]).float() for s, w in zip(starts, weights)]


def _measure_scale(patch: Tensor, result: Tensor) -> int:
    scale = result.shape[-1] // patch.shape[-1] if result.dim() == 4 else 0
    if scale < 1 or tuple(result.shape[-2:]) != (patch.shape[-2] * scale, patch.shape[-1] * scale):
        raise LeansrError(
            f"the model maps a {tuple(patch.shape)} input to {tuple(result.shape)}, not an integer upscale"
        )
    return scale


def _autocast(device: torch.device, precision: Precision) -> contextlib.AbstractContextManager:
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=PRECISIONS[precision])


def upscale_image(
    model: nn.Module,
    image: Image,
    *,
    tile: int = DEFAULT_TILE,
    tile_overlap: int = DEFAULT_OVERLAP,
    precision: Precision = "fp32",
    progress: Progress | None = None,
) -> Image:
    """Super-resolve an `Image` (gray/RGB, optional alpha); same bit depth and layout, pixels clamped to 0-1."""
    colour = image.pixels.shape[2]
    planes = image.pixels if image.alpha is None else np.concatenate([image.pixels, image.alpha[..., None]], 2)
    # HxWxC memory viewed as NCHW is channels-last already: no copy on the way in or out.
    x = torch.from_numpy(np.asarray(planes, dtype=np.float32)).permute(2, 0, 1)[None]
    adapter = ImageAdapter(model, colour=colour, alpha=image.alpha is not None, scale=int(model.scale))
    out = upscale_tensor(adapter, x, tile=tile, tile_overlap=tile_overlap, precision=precision,
                         progress=progress, device=model_device(model)).clamp_(0, 1)
    hwc = out[0].permute(1, 2, 0).numpy()
    alpha = hwc[..., colour] if image.alpha is not None else None
    return dataclasses.replace(image, pixels=hwc[..., :colour], alpha=alpha)


# --- which model and device ---------------------------------------------------------------------------------


def resolve_device(name: str | None) -> torch.device:
    """`auto`/None: CUDA when available, else CPU. Asking for CUDA without one is an error."""
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise LeansrError(f"unknown device {name!r}; use cpu, cuda or auto") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise LeansrError("--device cuda was requested but no CUDA device is available; use --device cpu")
    return device


def prepare_model(
    model: nn.Module, device: torch.device | str = "cpu", *, compiled: bool = False
) -> nn.Module:
    """Eval mode on `device` with channels-last weights (in place; numerically the same model).

    `compiled`: wrap in `CompiledModel` (torch.compile with inductor freezing), which fuses convolutions
    with their activations and the element-wise tails; about 1.5-2x faster again on CPU, after a warm-up of
    seconds (cached kernels) to a minute per input shape, so worth it for batches and large images only.
    """
    model = model.eval().to(device=device, memory_format=torch.channels_last)
    return CompiledModel(model) if compiled else model


class CompiledModel(nn.Module):
    """`torch.compile` of a model with inductor's freezing on for its calls; other attributes are the model's.

    Compiled kernels persist in `cache_dir` between runs. `warmup_s` sums the first call of each input shape
    (compile, or load from the cache, plus one forward); `shapes` counts those shapes.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.cache_dir = enable_persistent_cache()
        self.compiled = torch.compile(model)
        self.warmup_s, self.shapes = 0.0, set()

    def forward(self, x: Tensor) -> Tensor:
        first = tuple(x.shape) not in self.shapes
        start = time.perf_counter()
        # Freezing (weights as constants, conv + activation fusion) is a global inductor setting that
        # `torch.compile(options=...)` does not pass on; it is read whenever a new input shape compiles.
        with torch._inductor.config.patch(freezing=True):
            out = self.compiled(x)
        if first:
            self.shapes.add(tuple(x.shape))
            self.warmup_s += time.perf_counter() - start
        return out

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self._modules["model"], name)


def resolve_model(
    weights: str | None,
    model_name: str | None,
    scale: int | None,
    device: torch.device | str = "cpu",
    *,
    compiled: bool = False,
) -> nn.Module:
    """The model `leansr upscale` runs: a checkpoint, a parameter-free registered model, or the default.

    The default is the packaged `weights/default_x{scale}.safetensors` when present, else bicubic.
    """
    if weights is not None and model_name is not None:
        raise LeansrError("give either --weights or --model, not both")
    if weights is not None:
        model = load_model(weights, scale=scale)
        if scale is not None and scale != model.scale:
            raise LeansrError(f"{weights} is an x{model.scale} model, which conflicts with --scale {scale}")
        if compiled and not any(True for _ in model.parameters()):
            raise LeansrError(f"--compile applies to PyTorch models, and {weights} has no PyTorch weights")
        return prepare_model(model, device, compiled=compiled)
    scale = DEFAULT_SCALE if scale is None else scale
    if model_name is None:
        default = resources.files("leansr") / "weights" / f"default_x{scale}.safetensors"
        if default.is_file():
            with resources.as_file(default) as path:
                return prepare_model(load_model(path), device, compiled=compiled)
        model_name = "bicubic"
    info = get_model_info(model_name)
    takes_scale = "scale" in inspect.signature(info.constructor).parameters
    model = create_model(model_name, **({"scale": scale} if takes_scale else {}))
    if getattr(model, "scale", None) != scale:
        raise LeansrError(f"model {model_name!r} does not upscale x{scale}")
    if next(model.parameters(), None) is not None:
        raise LeansrError(f"model {model_name!r} needs trained weights: pass --weights FILE instead of --model")
    return prepare_model(model, device)  # nothing to gain from compiling a parameter-free model
