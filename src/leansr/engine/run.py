"""The engine's entry points: plan by the model's context and a memory budget, execute, assemble.

Whole images run at once whenever their estimated peak fits `max_memory` (bit-identical to calling the
model). Otherwise: local models are tiled exactly (cores plus a receptive-field halo); other models get
the largest tiles that fit, blended, with one notice that the result may differ slightly from untiled.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Callable

import numpy as np
import torch
from torch import Tensor, nn

from leansr.color import ImageAdapter
from leansr.context import GLOBAL, Context
from leansr.data.image_io import Image
from leansr.engine.assemble import Assembler, QuantizedSink, Sink, TensorSink
from leansr.engine.executor import Model, run_batches
from leansr.engine.memory import profile_memory
from leansr.engine.plan import TilePlan, cheapest_plan, plan_tiles, whole_plan
from leansr.engine.settings import DEFAULT_CPU_MEMORY, DEFAULT_OVERLAP, TileSettings
from leansr.errors import LeansrError
from leansr.registry import model_context
from leansr.runtime import Precision, model_device, resolve_precision

SMALL_IMAGE = 256 * 256  # LR pixels any zoo model handles whole within budget: no memory probe needed
Progress = Callable[[int, int], None]  # (windows done, windows total)
Notice = Callable[[str], None]


class ApproximateTilingWarning(UserWarning):
    """The model is not local: a tiled result may differ slightly from an untiled one."""


def upscale_tensor(
    model: Model,
    x: Tensor,
    settings: TileSettings | None = None,
    *,
    tile: int | None = None,
    tile_overlap: int | None = None,
    precision: Precision | None = None,
    device: torch.device | str | None = None,
    progress: Progress | None = None,
    notice: Notice | None = None,
) -> Tensor:
    """Super-resolve 0-1 NCHW `x`; unclamped float32 NCHW on `x.device` (channels-last memory).

    `tile`, `tile_overlap` and `precision` are shortcuts over `settings`. A module in training mode runs in
    eval mode (restored afterwards): batch statistics would make tiles disagree.
    """
    settings = _merged(settings, tile, tile_overlap, precision)
    _check_input(x)
    sink_factory = lambda scale, channels: TensorSink(  # noqa: E731
        x.shape[0], channels, x.shape[-2] * scale, x.shape[-1] * scale, x.device)
    sink = _run(model, x, settings, device, progress, notice, sink_factory)
    return sink.out


def upscale_array(
    model: Model,
    planes: np.ndarray,
    settings: TileSettings | None = None,
    *,
    bits: int = 8,
    device: torch.device | str | None = None,
    progress: Progress | None = None,
    notice: Notice | None = None,
) -> np.ndarray:
    """Super-resolve HxWxC float 0-1 planes into an HxWxC uint8/uint16 array, quantized as rows complete."""
    settings = settings or TileSettings()
    x = torch.from_numpy(np.asarray(planes, dtype=np.float32)).permute(2, 0, 1)[None]  # channels-last view
    sink_factory = lambda scale, channels: QuantizedSink(  # noqa: E731
        x.shape[-2] * scale, x.shape[-1] * scale, channels, bits)
    return _run(model, x, settings, device, progress, notice, sink_factory).array


def context_of(model: object) -> Context:
    """A model's context: its descriptor's or adapter's, a registered model's, else `global` (safe)."""
    context = getattr(model, "context", None)
    if isinstance(context, Context):
        return context
    arch, hparams = getattr(model, "arch", ""), getattr(model, "hparams", None)
    if arch and isinstance(hparams, dict):
        try:
            return model_context(arch, hparams)
        except LeansrError:
            pass
    return GLOBAL


def plan_for(
    model: Model, x: Tensor, settings: TileSettings, device: torch.device, precision: Precision,
    *, notice: Notice | None = None, budget: int | None = None,
) -> tuple[TilePlan, int]:
    """The tile plan for `x` and how many windows may run in one batch."""
    height, width = x.shape[-2:]
    context = context_of(model)
    overlap = DEFAULT_OVERLAP if settings.overlap is None else settings.overlap
    if settings.tile == 0 or (settings.tile is None and budget is None and height * width <= SMALL_IMAGE):
        return whole_plan(height, width), 1
    if settings.tile:  # forced: one window a call, no probing
        plan = plan_tiles(height, width, context, settings.tile, overlap=overlap)
    else:
        profile = profile_memory(model, x.shape[1], device, precision, key_module=_inner_module(model))
        budget = budget if budget is not None else _budget(settings, device)
        band = lambda p: 0 if p.mode != "blend" else (  # noqa: E731  the blend band, float32 HR rows
            p.window_shape[0] * width * _scale_guess(model) ** 2 * x.shape[1] * 4)
        fits = lambda p: profile.peak(p.window_shape[0] * p.window_shape[1]) + band(p) <= budget  # noqa: E731
        plan = cheapest_plan(height, width, context, fits, overlap=overlap, min_tile=settings.min_tile)
        if plan is None:
            plan = plan_tiles(height, width, context, settings.min_tile if context.exact_tiling
                              else max(settings.min_tile, 2 * overlap + 1), overlap=overlap)
        if plan.mode == "blend":
            _notify(notice, f"{_name(model)} is not local ({context}): tiled output may differ slightly from "
                            f"an untiled run ({len(plan.windows)} tiles of {plan.window_shape[1]}x"
                            f"{plan.window_shape[0]}; raise --max-memory or pass --tile 0 to run it whole)")
        if plan.mode != "whole":
            return plan, max(1, profile.max_pixels(budget) // (plan.window_shape[0] * plan.window_shape[1]))
    return plan, 1


def _run(model, x, settings, device, progress, notice, sink_factory):
    device = torch.device(device) if device is not None else model_device(model)
    precision = resolve_precision(settings.precision, device, notice)
    channels_last = _has_convolutions(model) if settings.channels_last is None else settings.channels_last
    inner = _inner_module(model)
    was_training = inner.training if inner is not None else False
    if inner is not None:
        inner.eval()
    budget = None
    try:
        while True:
            plan, max_batch = plan_for(model, x, settings, device, precision, notice=notice, budget=budget)
            try:
                return _execute(model, x, plan, max_batch, device, precision, channels_last, progress,
                                sink_factory)
            except torch.cuda.OutOfMemoryError:
                window = max(plan.window_shape)
                if window <= settings.min_tile:
                    raise LeansrError(f"out of GPU memory even with {window}px tiles; "
                                      "try --device cpu or a smaller model") from None
                budget = _budget(settings, device) if budget is None else budget
                budget //= 2
                settings = dataclasses.replace(settings, tile=None if settings.tile is None
                                               else max(settings.min_tile, settings.tile // 2))
                torch.cuda.empty_cache()
    finally:
        if inner is not None:
            inner.train(was_training)


def _execute(model, x, plan: TilePlan, max_batch, device, precision, channels_last, progress, sink_factory):
    windows = plan.windows
    patches = _Patches(x, windows)
    assembler: Assembler | None = None
    sink: Sink | None = None
    done = 0
    for first, out in run_batches(model, patches, max_batch=max_batch, device=device, precision=precision,
                                  channels_last=channels_last):
        if assembler is None:
            scale = _measure_scale(patches[0], out)
            sink = sink_factory(scale, out.shape[1])
            assembler = Assembler(plan, scale, sink)
        for i in range(out.shape[0] // x.shape[0]):
            window = windows[first + i]
            assembler.add(window, out[i * x.shape[0]:(i + 1) * x.shape[0]])
            done += 1
            if progress is not None:
                progress(done, len(windows))
    assert assembler is not None and sink is not None
    assembler.finish()
    return sink


class _Patches:
    """The windows of `x` as a lazy sequence of tensors (each slice made only when batched)."""

    def __init__(self, x: Tensor, windows) -> None:
        self.x, self.windows = x, windows

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, i: int) -> Tensor:
        w = self.windows[i]
        return self.x[:, :, w.top:w.top + w.height, w.left:w.left + w.width]


def _budget(settings: TileSettings, device: torch.device) -> int:
    if settings.max_memory is not None:
        return settings.max_memory
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free * 0.8)
    return DEFAULT_CPU_MEMORY


def _merged(settings, tile, tile_overlap, precision) -> TileSettings:
    settings = settings or TileSettings()
    changes = {k: v for k, v in (("tile", tile), ("overlap", tile_overlap), ("precision", precision))
               if v is not None}
    settings = dataclasses.replace(settings, **changes)
    if (settings.tile or 0) < 0 or (settings.overlap or 0) < 0:
        raise LeansrError(f"tile size and overlap must not be negative (got {settings.tile} and {settings.overlap})")
    return settings


def _check_input(x: Tensor) -> None:
    if x.dim() != 4 or not x.is_floating_point():
        raise LeansrError(f"expected a float NCHW tensor, got a {x.dim()}-D {x.dtype} one")


def _measure_scale(patch: Tensor, result: Tensor) -> int:
    scale = result.shape[-1] // patch.shape[-1] if result.dim() == 4 else 0
    if scale < 1 or tuple(result.shape[-2:]) != (patch.shape[-2] * scale, patch.shape[-1] * scale):
        raise LeansrError(
            f"the model maps a {tuple(patch.shape)} input to {tuple(result.shape)}, not an integer upscale"
        )
    return scale


def _inner_module(model: object) -> nn.Module | None:
    inner = model
    while not isinstance(inner, nn.Module) and hasattr(inner, "model"):
        inner = inner.model
    return inner if isinstance(inner, nn.Module) else None


def _has_convolutions(model: object) -> bool:
    inner = _inner_module(model)
    return inner is not None and any(isinstance(m, nn.Conv2d) for m in inner.modules())


def _scale_guess(model: object) -> int:
    return int(getattr(model, "scale", 4) or 4)


def _name(model: object) -> str:
    return getattr(model, "arch", "") or type(_inner_module(model) or model).__name__


def _notify(notice: Notice | None, message: str) -> None:
    if notice is not None:
        notice(message)
    else:
        warnings.warn(message, ApproximateTilingWarning, stacklevel=4)


@dataclasses.dataclass
class QuantizedImage:
    """An upscaled image ready to encode: HxWxC uint8/uint16 with colour planes first, then alpha."""

    data: np.ndarray
    colour: int
    has_alpha: bool
    source: Image


def upscale_image(
    model: Model, image: Image, settings: TileSettings | None = None, *,
    tile: int | None = None, tile_overlap: int | None = None, precision: Precision | None = None,
    device: torch.device | str | None = None, progress: Progress | None = None, notice: Notice | None = None,
) -> Image:
    """Super-resolve an `Image` (gray/RGB, optional alpha); same bit depth and layout, pixels clamped to 0-1."""
    settings = _merged(settings, tile, tile_overlap, precision)
    adapter, planes = _adapt(model, image)
    x = torch.from_numpy(planes).permute(2, 0, 1)[None]
    out = upscale_tensor(adapter, x, settings, device=device or model_device(model), progress=progress,
                         notice=notice).clamp_(0, 1)
    hwc = out[0].permute(1, 2, 0).numpy()
    alpha = hwc[..., image.channels] if image.alpha is not None else None
    return dataclasses.replace(image, pixels=hwc[..., :image.channels], alpha=alpha)


def upscale_image_quantized(
    model: Model, image: Image, settings: TileSettings | None = None, *,
    tile: int | None = None, tile_overlap: int | None = None, precision: Precision | None = None,
    device: torch.device | str | None = None, progress: Progress | None = None, notice: Notice | None = None,
) -> QuantizedImage:
    """As `upscale_image`, straight into the file's bit depth: no full-size float result is kept."""
    settings = _merged(settings, tile, tile_overlap, precision)
    adapter, planes = _adapt(model, image)
    data = upscale_array(adapter, planes, settings, bits=image.bit_depth, device=device or model_device(model),
                         progress=progress, notice=notice)
    return QuantizedImage(data, image.channels, image.alpha is not None, image)


def _adapt(model: Model, image: Image) -> tuple[ImageAdapter, np.ndarray]:
    planes = image.pixels if image.alpha is None else np.concatenate([image.pixels, image.alpha[..., None]], 2)
    adapter = ImageAdapter(model, colour=image.channels, alpha=image.alpha is not None,
                           scale=int(getattr(model, "scale")), context=context_of(model))
    return adapter, np.asarray(planes, dtype=np.float32)
