"""Benchmark evaluation of an SR model on a folder of HR images, by the published protocol.

HR is quantised to 8 bits (gray replicated to RGB, as the reference LR files are) and cropped to a multiple
of the scale; LR is the MATLAB-bicubic shrink of it (or a paired LR file of the same name); SR is clamped to
[0, 1] and rounded to 8 bits; PSNR/SSIM are taken on Y (and PSNR on RGB) with `border = scale`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch
from torch import nn

from leansr.data.image_io import list_images, read_rgb_uint8
from leansr.data.imresize import bicubic_degrade, mod_crop, quantize_uint8
from leansr.errors import LeansrError
from leansr.color import ImageAdapter
from leansr.engine import upscale_tensor
from leansr.runtime import model_device
from leansr.metrics.psnr_ssim import Y_CONVENTIONS, YConvention, psnr, ssim
from leansr.progress import progress



@dataclass(frozen=True)
class ImageScores:
    psnr_y: float
    ssim_y: float
    psnr_rgb: float
    routing: dict[str, Any] = field(default_factory=dict)  # what a `runner` reports (ARM: routes, cost, ...)

    def to_json(self) -> dict[str, Any]:
        return {"psnr_y": self.psnr_y, "ssim_y": self.ssim_y, "psnr_rgb": self.psnr_rgb, **self.routing}


@dataclass(frozen=True)
class EvaluationResult:
    """Means over a folder (Y-PSNR, Y-SSIM, RGB-PSNR) and the scores of each image, by file name."""

    psnr_y: float
    ssim_y: float
    psnr_rgb: float
    per_image: dict[str, ImageScores]

    def to_json(self) -> dict[str, Any]:
        return {"psnr_y": self.psnr_y, "ssim_y": self.ssim_y, "psnr_rgb": self.psnr_rgb,
                "per_image": {name: s.to_json() for name, s in self.per_image.items()}}


def evaluate_model(
    model: nn.Module,
    hr_dir: str | os.PathLike,
    *,
    scale: int,
    lr_dir: str | os.PathLike | None = None,
    y_convention: YConvention = "rounded",
    device: str | torch.device | None = None,
    quiet: bool = True,
    runner: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, dict[str, Any]]] | None = None,
) -> EvaluationResult:
    """Mean and per-image metrics on one folder.

    `device=None` runs where the model already is. The model's train/eval mode is restored afterwards.
    `quiet=False` shows a progress bar (on a terminal). `runner(lr, hr) -> (sr_uint8, fields)` replaces the
    plain forward (ARM routing): metrics are taken on the region its SR covers (top-left), and its fields are
    kept as the image's `routing`.
    """
    model = getattr(model, "model", model)  # a ModelDescriptor runs its module
    if y_convention not in Y_CONVENTIONS:
        raise LeansrError(f"unknown Y convention {y_convention!r}; use one of {', '.join(Y_CONVENTIONS)}")
    model_scale = getattr(model, "scale", scale)
    if model_scale != scale:
        raise LeansrError(f"the model upscales x{model_scale}, not x{scale}")
    files = list_images(hr_dir)
    if device is not None:
        model.to(device)
    was_training = model.training
    model.eval()
    per_image: dict[str, ImageScores] = {}
    try:
        for hr_file in progress(files, quiet=quiet, desc=Path(hr_dir).name, unit="img", leave=False):
            hr, lr = _load_pair(hr_file, scale, lr_dir)
            if runner is None:
                sr, fields = run_model_uint8(model, lr), {}
            else:
                sr, fields = runner(lr, hr)
                hr = hr[:sr.shape[0], :sr.shape[1]]
            if sr.shape != hr.shape:
                raise LeansrError(f"the model made {sr.shape[:2]} from {hr_file.name}, expected {hr.shape[:2]}")
            kw = {"border": scale, "y_convention": y_convention}
            per_image[hr_file.name] = ImageScores(psnr(sr, hr, **kw), ssim(sr, hr, **kw),
                                                  psnr(sr, hr, border=scale, channels="rgb"), fields)
    finally:
        model.train(was_training)
    scores = per_image.values()
    return EvaluationResult(_mean(s.psnr_y for s in scores), _mean(s.ssim_y for s in scores),
                            _mean(s.psnr_rgb for s in scores), per_image)


def run_model_uint8(model: nn.Module, lr: np.ndarray) -> np.ndarray:
    """SR of an HxWx3 uint8 image, clamped and rounded to uint8 (Y-only models: bicubic CbCr)."""
    x = torch.from_numpy(lr).permute(2, 0, 1)[None].float() / 255.0
    adapter = ImageAdapter(model, colour=3, alpha=False, scale=int(model.scale))
    # The one place the network runs: the whole image at once (tile=0), as the published numbers were made.
    sr = upscale_tensor(adapter, x, tile=0, device=model_device(model))
    sr = sr[0].clamp(0, 1).permute(1, 2, 0).double().cpu().numpy()
    return quantize_uint8(sr * 255.0)


def _load_pair(hr_file: Path, scale: int, lr_dir: str | os.PathLike | None) -> tuple[np.ndarray, np.ndarray]:
    hr = read_rgb_uint8(hr_file)
    if min(hr.shape[:2]) < 2 * scale:
        raise LeansrError(f"HR image {hr_file} ({hr.shape[1]}x{hr.shape[0]}) is too small for x{scale}")
    if lr_dir is None:
        hr = mod_crop(hr, scale)
        return hr, bicubic_degrade(hr, scale)
    lr_file = Path(lr_dir) / hr_file.name
    if not lr_file.is_file():
        raise LeansrError(f"no paired LR image {lr_file} for {hr_file}")
    lr = read_rgb_uint8(lr_file)
    h, w = lr.shape[0] * scale, lr.shape[1] * scale
    if h > hr.shape[0] or w > hr.shape[1] or hr.shape[0] - h >= scale or hr.shape[1] - w >= scale:
        raise LeansrError(f"LR {lr_file} ({lr.shape[1]}x{lr.shape[0]}) does not match HR {hr_file} at x{scale}")
    return hr[:h, :w], lr


def _mean(values: Iterable[float]) -> float:
    return float(np.mean(list(values)))
