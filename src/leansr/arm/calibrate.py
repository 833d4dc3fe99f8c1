"""Calibration: the edge -> quality table of a supernet, measured on the user's HR images.

LR is made on the fly (MATLAB-style bicubic of the HR cropped to a multiple of the scale). Samples are the
tiles of our routing (`budget.spans`: cores with their halo windows), so the table describes what inference
will do: per tile, the edge score of its LR core and, per route, the MSE and PSNR (80 dB when exact, as the
official tables) of the 8-bit SR core. Bins hold equal numbers of tiles (the official equal-width bins leave
3-31 patches in the busiest bins); each bin keeps its mean score as centre, mean MSE and mean PSNR.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch
import torch.nn.functional as F

from leansr.arm.batching import run_patches
from leansr.arm.budget import DEFAULT_HALO, DEFAULT_TILE, spans
from leansr.arm.costs import PATCH, route_costs
from leansr.arm.edge import edge_score
from leansr.arm.table import QualityTable
from leansr.data.image_io import read_rgb_uint8
from leansr.data.imresize import bicubic_degrade, imresize, mod_crop, quantize_uint8
from leansr.errors import LeansrError
from leansr.models.arm import SlimmableSR

DEFAULT_BINS = 30
PSNR_CAP = 80.0


def tile_samples(model: SlimmableSR, hr: np.ndarray, *, tile: int = DEFAULT_TILE,
                 halo: int = DEFAULT_HALO) -> tuple[np.ndarray, np.ndarray]:
    """(scores (tiles,), mse (routes, tiles)) of one HxWx3 uint8 HR image."""
    s = model.scale
    hr = mod_crop(hr, s)
    lr = bicubic_degrade(hr, s)
    rows, win_h = spans(lr.shape[0], tile, halo)
    cols, win_w = spans(lr.shape[1], tile, halo)
    tiles = [(r, c) for r in rows for c in cols]
    scores = np.array([edge_score(lr[r.start:r.stop, c.start:c.stop]) for r, c in tiles])
    x = torch.from_numpy(np.ascontiguousarray(lr)).permute(2, 0, 1)[None].float().div(255.0)
    wins = torch.cat([x[..., r.window:r.window + win_h, c.window:c.window + win_w] for r, c in tiles])
    device = next(model.parameters()).device
    target = torch.from_numpy(hr).permute(2, 0, 1).double()
    mse = np.empty((len(model.routes), len(tiles)))
    for j, width in enumerate(model.routes):
        if width == 0:  # bicubic: the whole image at once, as at inference
            with torch.inference_mode():
                whole = F.interpolate(x, scale_factor=s, mode="bicubic", align_corners=False)[0]
            cores = [whole[:, r.start * s:r.stop * s, c.start * s:c.stop * s] for r, c in tiles]
        else:
            sr = run_patches(lambda b, wd=width: model.forward_width(b, wd), wins, device=device)
            cores = [out[:, (r.start - r.window) * s:(r.stop - r.window) * s,
                         (c.start - c.window) * s:(c.stop - c.window) * s] for out, (r, c) in zip(sr, tiles)]
        mse[j] = [_core_mse(core, target, r, c, s) for core, (r, c) in zip(cores, tiles)]
    return scores, mse


def _core_mse(sr: torch.Tensor, target: torch.Tensor, r, c, s: int) -> float:
    sr8 = torch.floor(sr.clamp(0, 1).double() * 255.0 + 0.5)
    return float(((sr8 - target[:, r.start * s:r.stop * s, c.start * s:c.stop * s]) ** 2).mean())


def build_table(scores: np.ndarray, mse: np.ndarray, *, bins: int = DEFAULT_BINS) -> tuple[np.ndarray, ...]:
    """(centres, mean MSE, mean PSNR, counts) over equal-count bins of the scores; empty bins dropped."""
    if scores.size < 2:
        raise LeansrError(f"calibration needs at least 2 tiles, got {scores.size}; give more or larger images")
    edges = np.unique(np.quantile(scores, np.linspace(0, 1, min(bins, scores.size) + 1)))
    index = np.clip(np.searchsorted(edges, scores, side="right") - 1, 0, max(edges.size - 2, 0))
    psnr = np.where(mse == 0, PSNR_CAP, 10 * np.log10(255.0**2 / np.maximum(mse, 1e-12)))
    keep = [b for b in range(max(edges.size - 1, 1)) if np.any(index == b)]
    centers = np.array([scores[index == b].mean() for b in keep])
    counts = np.array([int((index == b).sum()) for b in keep])
    mean_mse = np.stack([[row[index == b].mean() for b in keep] for row in mse])
    mean_psnr = np.stack([[row[index == b].mean() for b in keep] for row in psnr])
    return centers, mean_mse, mean_psnr, counts


def calibrate(model: SlimmableSR, files: Iterable[Path], *, bins: int = DEFAULT_BINS, hr_scale: float = 1.0,
              progress: Callable[[Path], None] | None = None) -> QualityTable:
    """The table over `files`; `hr_scale` < 1 first shrinks each HR (MATLAB bicubic), which washes out JPEG
    artefacts that no SR width can restore and that otherwise hide the differences between widths."""
    if not 0 < hr_scale <= 1:
        raise LeansrError(f"--hr-scale must be in (0, 1], not {hr_scale}")
    all_scores, all_mse = [], []
    for path in files:
        hr = read_rgb_uint8(path)
        if hr_scale < 1:
            hr = quantize_uint8(imresize(hr, hr_scale))
        scores, mse = tile_samples(model, hr)
        all_scores.append(scores)
        all_mse.append(mse)
        if progress is not None:
            progress(path)
    if not all_scores:
        raise LeansrError("no calibration images")
    centers, mse, psnr, counts = build_table(np.concatenate(all_scores), np.concatenate(all_mse, axis=1), bins=bins)
    official = tuple(c.official_flops * PATCH * PATCH for c in route_costs(model).values())
    return QualityTable(centers, psnr, counts, mse, official, model.routes, source="calibrated")
